"""The scoring job on local files: shards cover the input exactly once, bad rides are flagged and
never crash it, output is all-or-nothing, memory is bounded by the batch, not the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring import job
from scoring.__main__ import UsageError, parser, shard_of, with_month
from tests.conftest import write_tlc
from trip_model.features import model_input
from trip_model.predict import choose
from trip_model.tlc import InputError, MonthError, month_of


@pytest.fixture(scope="module")
def model_dir(scoring_model_dir) -> Path:
    return scoring_model_dir


@pytest.fixture(scope="module")
def pyfunc(model_dir):
    return mlflow.pyfunc.load_model(str(model_dir))


@pytest.fixture(scope="module")
def scorer(pyfunc):
    return choose(pyfunc, "4")


def read_parts(folder: Path) -> pa.Table:
    return pq.read_table(sorted(folder.glob("part-*.parquet")))


def test_one_shard_scores_every_ride_as_the_pyfunc_does(tmp_path, scorer, pyfunc):
    source = write_tlc(tmp_path / "yellow.parquet", 5000, 1500)
    summary = job.run([str(source)], str(tmp_path / "out"), scorer)
    assert (summary.rows, summary.scored) == (5000, 5000)
    out = pq.read_table(tmp_path / "out" / "part-00000-of-00001.parquet")
    assert out.schema == job.OUTPUT_SCHEMA
    assert out.column("row").to_pylist() == list(range(5000))
    original = pq.read_table(source).to_pandas()
    expected = pyfunc.predict(
        model_input(original.PULocationID, original.DOLocationID, original.trip_distance)
    )
    assert np.array_equal(out.column("predicted_duration").to_numpy(), expected)
    assert out.column("pickup_datetime").to_pylist() == original.tpep_pickup_datetime.tolist()
    assert set(out.column("model_version").to_pylist()) == {"4"}
    assert out.column("reason").null_count == 5000


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_the_shards_together_are_exactly_the_whole(tmp_path, scorer, shards):
    """Every ride is scored by exactly one shard, whatever the files' row groups."""
    inputs = [
        str(write_tlc(tmp_path / "a.parquet", 4000, 1000, seed=1)),
        str(write_tlc(tmp_path / "b.parquet", 2500, 700, colour="green", seed=2)),
        str(write_tlc(tmp_path / "c.parquet", 300, 300, seed=3)),
    ]
    whole = job.run(inputs, str(tmp_path / "whole"), scorer)
    parts = [job.run(inputs, str(tmp_path / "sharded"), scorer, i, shards) for i in range(shards)]
    assert sum(p.rows for p in parts) == whole.rows == 6800
    assert len(list((tmp_path / "sharded").glob("part-*"))) == shards
    union = read_parts(tmp_path / "sharded").to_pandas()
    expected = read_parts(tmp_path / "whole").to_pandas()
    key = ["source", "row"]
    assert not union.duplicated(key).any()
    union = union.sort_values(key, key=lambda s: s.astype(str) if s.name == "source" else s)
    expected = expected.sort_values(key, key=lambda s: s.astype(str) if s.name == "source" else s)
    assert union.reset_index(drop=True).equals(expected.reset_index(drop=True))
    # Balanced by rows: shards differ by one row at most.
    assert max(p.rows for p in parts) - min(p.rows for p in parts) <= 1


@pytest.mark.parametrize("batch_rows", [64, 20_000])
def test_a_month_stored_as_one_row_group_is_split_evenly(tmp_path, scorer, batch_rows):
    """Shards split by row groups left all of a one-row-group month to one shard (3 shards of a
    demo month: 0, 20,000 and 0 rides); by rows, each gets a third, and together the whole."""
    source = str(write_tlc(tmp_path / "month.parquet", 20_000, 20_000, seed=4))
    whole = job.run([source], str(tmp_path / "whole"), scorer)
    parts = [job.run([source], str(tmp_path / "out"), scorer, i, 3, batch_rows) for i in range(3)]
    assert [p.rows for p in parts] == [6666, 6667, 6667]
    key = ["source", "row"]
    union = read_parts(tmp_path / "out").to_pandas().sort_values(key).reset_index(drop=True)
    expected = read_parts(tmp_path / "whole").to_pandas().sort_values(key).reset_index(drop=True)
    assert union.equals(expected) and whole.rows == 20_000


def test_more_shards_than_rides_leaves_empty_but_valid_parts(tmp_path, scorer):
    source = str(write_tlc(tmp_path / "small.parquet", 2, 2))
    parts = [job.run([source], str(tmp_path / "out"), scorer, i, 3) for i in range(3)]
    assert [p.rows for p in parts] == [0, 1, 1]
    assert len(list((tmp_path / "out").glob("part-*"))) == 3  # an empty one too
    assert read_parts(tmp_path / "out").num_rows == 2


def test_rides_the_model_cannot_score_are_flagged_not_fatal(tmp_path, scorer, pyfunc):
    rides = pa.table(
        {
            "VendorID": pa.array([1, 2, 1, 2, 1, 2, 1, 2, None, 1], pa.int64()),
            "tpep_pickup_datetime": pa.array([0] * 10, pa.timestamp("us")),
            "tpep_dropoff_datetime": pa.array([600_000_000] * 10, pa.timestamp("us")),
            "PULocationID": pa.array([43, None, 0, 266, 43, 43, 43, 43, 43, 43], pa.int64()),
            "DOLocationID": pa.array([151, 151, 151, 151, None, 999, 151, 151, 151, 151]),
            "trip_distance": pa.array(
                [1.8, 1.0, 1.0, 1.0, 1.0, 1.0, None, -0.5, float("nan"), 250.0]
            ),
        }
    )
    pq.write_table(rides, tmp_path / "dirty.parquet")
    summary = job.run([str(tmp_path / "dirty.parquet")], str(tmp_path / "out"), scorer)
    out = read_parts(tmp_path / "out")
    assert out.column("reason").to_pylist() == [
        None,
        "PULocationID missing",
        "PULocationID not a zone (1-265)",
        "PULocationID not a zone (1-265)",
        "DOLocationID missing",
        "DOLocationID not a zone (1-265)",
        "trip_distance missing",
        "trip_distance not in [0, 200) miles",
        "trip_distance missing",
        "trip_distance not in [0, 200) miles",
    ]
    predicted = out.column("predicted_duration").to_pylist()
    assert predicted[1:] == [None] * 9
    assert predicted[0] == pyfunc.predict(model_input([43], [151], [1.8]))[0]
    assert (summary.rows, summary.scored) == (10, 1)
    assert summary.flagged["trip_distance missing"] == 2


def test_float_zone_columns_are_read_and_fractional_zones_flagged(tmp_path, scorer):
    rides = pa.table(
        {
            "lpep_pickup_datetime": pa.array([0, 0], pa.timestamp("ns")),
            "lpep_dropoff_datetime": pa.array([1, 1], pa.timestamp("ns")),
            "PULocationID": [43.0, 43.5],
            "DOLocationID": [151.0, 151.0],
            "trip_distance": pa.array([2, 2], pa.int32()),
        }
    )
    pq.write_table(rides, tmp_path / "floats.parquet")
    job.run([str(tmp_path / "floats.parquet")], str(tmp_path / "out"), scorer)
    out = read_parts(tmp_path / "out")
    assert out.column("reason").to_pylist() == [None, "PULocationID not a zone (1-265)"]
    assert out.column("VendorID").null_count == 2  # green files may lack it: kept as null
    assert out.column("PULocationID").to_pylist() == [43, None]


def test_a_file_that_is_not_tlc_data_is_an_error_naming_it(tmp_path, scorer):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    for name, message in [
        ("other.parquet", "not a TLC trip file"),
        ("text.parquet", "not a readable parquet file"),
        ("missing.parquet", "no such file"),
    ]:
        with pytest.raises(InputError, match=message) as err:
            job.run([str(tmp_path / name)], str(tmp_path / "out"), scorer)
        assert name in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_failure_mid_shard_publishes_nothing_and_leaves_no_temporary_file(
    tmp_path, scorer, fail_batch
):
    source = str(write_tlc(tmp_path / "in.parquet", 3000, 1000))
    fail_batch(3)
    with pytest.raises(RuntimeError, match="batch 3 failed"):
        job.run([source], str(tmp_path / "out"), scorer, batch_rows=500)
    assert list((tmp_path / "out").iterdir()) == []


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    import mlflow
    from scoring import job
    from trip_model.predict import choose

    real = job.score_batch
    def slow(*args):
        time.sleep(0.1)
        return real(*args)
    job.score_batch = slow
    scorer = choose(mlflow.pyfunc.load_model(sys.argv[1]), "1")
    job.run([sys.argv[2]], sys.argv[3], scorer, batch_rows=200)
    """
)


MEASURE = textwrap.dedent(
    """
    import json, sys, tracemalloc
    import mlflow, pyarrow as pa
    from scoring import job
    from trip_model.predict import choose

    scorer = choose(mlflow.pyfunc.load_model(sys.argv[1]), "1")
    pool = pa.default_memory_pool()
    tracemalloc.start()
    base = pool.bytes_allocated()
    job.run([sys.argv[2]], sys.argv[3], scorer, batch_rows=int(sys.argv[4]))
    _, numpy_peak = tracemalloc.get_traced_memory()
    print(json.dumps({"arrow": pool.max_memory() - base, "numpy": numpy_peak}))
    """
)


def test_shards_come_from_the_flag_or_the_engine_s_task_index():
    args = parser().parse_args(["--input", "x", "--output", "y", "--shard", "2/5"])
    assert shard_of(args, {}) == (2, 5)
    args = parser().parse_args(["--input", "x", "--output", "y", "--shards", "4"])
    assert shard_of(args, {"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == (3, 4)
    assert shard_of(args, {"CLOUD_RUN_TASK_INDEX": "1", "CLOUD_RUN_TASK_COUNT": "4"}) == (1, 4)
    args = parser().parse_args(["--input", "x", "--output", "y"])
    assert shard_of(args, {}) == (0, 1)
    assert shard_of(args, {"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "3"}) == (2, 3)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--shard", "4/4"], {}, "0 <= I < N"),
        (["--shard", "x"], {}, "must be I/N"),
        (["--shards", "3"], {}, "no task index"),
        (["--shards", "0"], {}, "at least 1"),
        (["--shards", "2"], {"AWS_BATCH_JOB_ARRAY_INDEX": "2"}, "not in 0..1"),
        (["--shards", "2"], {"CLOUD_RUN_TASK_INDEX": "0", "CLOUD_RUN_TASK_COUNT": "3"}, "3 tasks"),
    ],
)
def test_bad_shard_settings_name_the_setting(argv, env, message):
    args = parser().parse_args(["--input", "x", "--output", "y", *argv])
    with pytest.raises(UsageError, match=message):
        shard_of(args, env)


def test_month_templates():
    import datetime as dt

    today = dt.date(2026, 2, 15)
    assert month_of("2024-03", today) == "2024-03"
    assert [month_of(v, today) for v in ("0", "-1", "-2", "-14")] == [
        "2026-02", "2026-01", "2025-12", "2024-12",
    ]  # fmt: skip
    assert with_month(["s3://b/y_{month}.parquet"], "s3://b/out/{month}/", "2024-03") == (
        ["s3://b/y_2024-03.parquet"],
        "s3://b/out/2024-03/",
    )
    for month in ("2024-13", "24-03", "+1", "1"):
        with pytest.raises(MonthError, match="--month"):
            month_of(month, today)
    with pytest.raises(UsageError, match="give --month"):
        with_month(["s3://b/y_{month}.parquet"], "out", None)
    with pytest.raises(UsageError, match="neither"):
        with_month(["a.parquet"], "out", "2024-03")
