"""The training CLI's errors: non-zero exit and one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

import local_platform as c

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_help_describes_the_cli():
    result = cli("--help")
    assert result.returncode == 0
    for word in ("--train", "--val", "--margin", "MLFLOW_TRACKING_URI", "champion"):
        assert word in result.stdout


def test_unreachable_server(months):
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{c.free_port()}"}
    line = one_line_error(cli("--train", str(months.train), "--val", str(months.val), env=env))
    assert "unreachable" in line


def test_missing_file(months, tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    line = one_line_error(
        cli("--train", str(tmp_path / "nope.parquet"), "--val", str(months.val), env=env)
    )
    assert "nope.parquet: no such file" in line


def test_wrong_schema(months, tmp_path):
    path = tmp_path / "wrong.parquet"
    pd.DataFrame({"fare": [1.0]}).to_parquet(path)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    line = one_line_error(cli("--train", str(path), "--val", str(months.val), env=env))
    assert "not a TLC trip file" in line


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("PULocationID", lambda s: s.astype(str), "column PULocationID: must hold numbers, found"),
        ("DOLocationID", lambda s: s + 0.5, "column DOLocationID: zone IDs are whole numbers"),
        ("trip_distance", lambda s: s.astype(str), "column trip_distance: must hold numbers"),
        ("trip_distance", lambda s: s > 1, "column trip_distance: must hold numbers, found bool"),
        (
            "lpep_pickup_datetime",
            lambda s: s.astype(str),
            "column pickup_datetime: must hold timestamps",
        ),
    ],
)
def test_the_right_columns_with_the_wrong_types_are_one_line_and_exit_2(
    months, tmp_path, column, values, message
):
    """String zone IDs ended in a 50-line pandas traceback (exit 1)."""
    frame = pd.read_parquet(months.train)
    frame[column] = values(frame[column])
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    for args in (("--train", str(path), "--val", str(months.val)),
                 ("--train", str(months.train), "--val", str(path))):  # fmt: skip
        result = cli(*args, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        # The months read before it logged a line each; the error is the one last line.
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {path}: {message}"), result.stderr
        assert "np." not in line


def test_bad_margin_is_a_usage_error(months):
    result = cli("--train", "a", "--val", "b", "--margin", "2")
    assert result.returncode == 2 and "--margin must be in [0, 1)" in result.stderr


def test_a_data_prefix_trains_on_the_newest_months_and_logs_the_reference(tmp_path):
    """Continuous training: the newest month validates, the --months before it train; the run
    carries the reference sample the monitoring job compares traffic with."""
    from mlflow import MlflowClient

    from training.generate import write_month

    data = tmp_path / "tlc"
    for month in (1, 2, 3):
        write_month(
            data / f"green_tripdata_2024-{month:02d}.parquet", 2024, month, 3000, 0, "green"
        )
    uri = f"sqlite:///{tmp_path}/m.db"
    result = cli("--data-prefix", str(data), "--months", "2", "--model", "linear",
                 env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "linear: val RMSE" in result.stdout and "v1 @champion" in result.stdout
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs(client.get_experiment_by_name("nyc-taxi-duration").experiment_id)
    assert run.data.tags["train_data"] == ", ".join(
        str(data / f"green_tripdata_2024-0{m}.parquet") for m in (1, 2)
    )
    assert run.data.tags["val_data"] == str(data / "green_tripdata_2024-03.parquet")
    assert run.data.metrics["train_rows_read"] == 6000
    reference = pd.read_parquet(
        client.download_artifacts(run.info.run_id, "reference", str(tmp_path))
    )
    assert list(reference.columns) == [
        "PULocationID", "DOLocationID", "trip_distance", "duration", "predicted_duration",
    ]  # fmt: skip
    assert len(reference) == run.data.metrics["train_rows_kept"]  # under the 20,000 cap: all
    assert reference["duration"].between(1, 60).all()


def test_data_prefix_errors(tmp_path, months):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    both = cli("--data-prefix", str(tmp_path), "--train", "a", "--val", "b")
    assert both.returncode == 2 and "not both" in both.stderr
    neither = cli("--model", "linear")
    assert neither.returncode == 2 and "give --train and --val, or --data-prefix" in neither.stderr
    (tmp_path / "green_tripdata_2024-01.parquet").write_bytes(months.train.read_bytes())
    (tmp_path / "green_tripdata_2024-03.parquet").write_bytes(months.val.read_bytes())
    line = one_line_error(cli("--data-prefix", str(tmp_path), env=env))
    assert line.endswith("need 2024-02, which is missing (found green: 2024-01, 2024-03)")
