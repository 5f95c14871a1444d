"""The scoring job for real: the champion from the MLflow server (auth on) scores a TLC month read
from S3 (moto) and writes its parts back to S3, as two array-job tasks would."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import local_platform as c
from training.generate import generate_month
from trip_model.features import model_input

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scoring_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scoring", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def champion(platform, months) -> tuple[str, str]:
    """A LightGBM champion registered on the platform: (model name, version)."""
    name = f"score-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [sys.executable, "-m", "training", "--train", str(months.train), "--val", str(months.val),
         "--model", "lightgbm", "--model-name", name],
        env={**os.environ, **platform.env()}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return name, "1"


@pytest.fixture(scope="module")
def s3_env(platform) -> dict[str, str]:
    return {**platform.env(), **c.FAKE_AWS, "AWS_ENDPOINT_URL": platform.s3_endpoint}


@pytest.fixture(scope="module")
def month_in_s3(platform) -> tuple[str, pa.Table]:
    rides = pa.Table.from_pandas(generate_month(2024, 3, 12_000, 5, "yellow"), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(rides, buffer, row_group_size=2500)
    key = "tlc/yellow/yellow_tripdata_2024-03.parquet"
    c.s3_client(platform.s3_endpoint).put_object(
        Bucket=platform.bucket, Key=key, Body=buffer.getvalue()
    )
    return f"s3://{platform.bucket}/tlc/yellow/yellow_tripdata_{{month}}.parquet", rides


def test_two_array_tasks_score_a_month_from_s3_into_s3(platform, champion, s3_env, month_in_s3):
    name, version = champion
    source, rides = month_in_s3
    prefix = f"predictions/{uuid.uuid4().hex[:6]}"
    output = f"s3://{platform.bucket}/{prefix}/{{month}}/"
    for index in ("0", "1"):
        result = scoring_cli(
            {**s3_env, "AWS_BATCH_JOB_ARRAY_INDEX": index},
            "--input", source, "--output", output, "--month", "2024-03", "--shards", "2",
            "--model-name", name,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"shard {index}/2: scored" in result.stdout
        assert f"with v{version} via region table" in result.stdout

    s3 = c.s3_client(platform.s3_endpoint)
    listed = s3.list_objects_v2(Bucket=platform.bucket, Prefix=f"{prefix}/2024-03/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert keys == [f"{prefix}/2024-03/part-0000{i}-of-00002.parquet" for i in (0, 1)]
    parts = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=platform.bucket, Key=k)["Body"].read()))
        for k in keys
    ]
    scored = pa.concat_tables(parts).to_pandas().sort_values("row")
    assert scored["row"].tolist() == list(range(rides.num_rows))
    assert set(scored["model_version"].astype(str)) == {version}

    import mlflow

    os.environ.update(platform.env())
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    original = rides.to_pandas()
    expected = pyfunc.predict(
        model_input(original.PULocationID, original.DOLocationID, original.trip_distance)
    )
    assert np.array_equal(scored["predicted_duration"].to_numpy(), expected)


def test_a_pinned_version_and_clear_errors(platform, champion, s3_env, month_in_s3):
    name, version = champion
    source = month_in_s3[0].replace("{month}", "2024-03")
    output = f"s3://{platform.bucket}/pinned-{uuid.uuid4().hex[:6]}/"
    ok = scoring_cli(s3_env, "--input", source, "--output", output, "--model-name", name,
                     "--model-version", version)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]

    cases = [
        (s3_env, ["--input", source.replace("2024-03", "1999-01")], 2, "no such object"),
        (s3_env, ["--input", source, "--model-version", "99"], 1, f"{name} v99"),
        (s3_env, ["--input", source, "--alias", "nope"], 1, f"{name}@nope"),
        ({**s3_env, "MLFLOW_TRACKING_PASSWORD": "wrong"}, ["--input", source], 1, "error: "),
        (s3_env, ["--input", source, "--shards", "2"], 2, "no task index"),
    ]
    for env, args, code, message in cases:
        result = scoring_cli(env, *args, "--output", output, "--model-name", name)
        assert result.returncode == code, (args, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (args, lines[-3:])
        assert "Traceback" not in result.stderr
