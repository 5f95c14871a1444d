"""The scoring job's gs:// input and output for real, against a local GCS emulator: Arrow's GCS
filesystem reads the row groups, google-cloud-storage publishes the part in one upload."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import mlflow
import pyarrow.parquet as pq
import pytest

import local_platform as c
from scoring import job
from tests.conftest import write_tlc
from trip_model.predict import choose
from trip_model.tlc import InputError

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def gcs():
    root = Path(tempfile.mkdtemp(prefix="gcs-scoring-"))
    emulator = c.gcs_emulator_start(c.free_port(), root / "gcs.log")
    mp = pytest.MonkeyPatch()
    try:
        for key, value in c.gcs_store_env(emulator.url).items():
            mp.setenv(key, value)
        from google.cloud import storage

        client = storage.Client()
        client.create_bucket("tlc")
        write_tlc(root / "in.parquet", 5000, 2000)
        client.bucket("tlc").blob("yellow/in.parquet").upload_from_filename(root / "in.parquet")
        yield client.bucket("tlc")
    finally:
        mp.undo()
        emulator.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_month_is_read_from_and_written_to_gcs(gcs, scoring_model_dir):
    scorer = choose(mlflow.pyfunc.load_model(str(scoring_model_dir)), "1")
    summary = job.run(["gs://tlc/yellow/in.parquet"], "gs://tlc/scores/", scorer, 1, 2)
    assert summary.output == "gs://tlc/scores/part-00001-of-00002.parquet"
    assert 0 < summary.rows < 5000  # the second of two shards of three row groups
    names = [b.name for b in gcs.client.list_blobs("tlc", prefix="scores/")]
    assert names == ["scores/part-00001-of-00002.parquet"]
    part = pq.read_table(io.BytesIO(gcs.blob(names[0]).download_as_bytes()))
    assert part.num_rows == summary.rows and part.column("reason").null_count == summary.rows


def test_a_failed_shard_publishes_nothing_to_gcs(gcs, scoring_model_dir, fail_batch):
    scorer = choose(mlflow.pyfunc.load_model(str(scoring_model_dir)), "1")
    fail_batch(2)
    with pytest.raises(RuntimeError, match="batch 2 failed"):
        job.run(["gs://tlc/yellow/in.parquet"], "gs://tlc/failed/", scorer, batch_rows=1000)
    assert list(gcs.client.list_blobs("tlc", prefix="failed/")) == []


def test_a_missing_object_is_an_error_naming_it(gcs, scoring_model_dir):
    scorer = choose(mlflow.pyfunc.load_model(str(scoring_model_dir)), "1")
    with pytest.raises(InputError, match="gs://tlc/yellow/nope.parquet: no such object"):
        job.run(["gs://tlc/yellow/nope.parquet"], "gs://tlc/scores/", scorer)
