"""The scoring job in processes of its own: a shard killed mid-write, and memory bounded by the batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from scoring import job
from tests.conftest import write_tlc
from tests.unit.scoring.test_job import (
    KILLED_RUN,
    MEASURE,
)


def test_a_shard_killed_mid_write_leaves_no_output_and_a_rerun_replaces_it(
    tmp_path, model_dir, scorer
):
    """SIGKILL while the part is half written: no part file; the retried shard writes it whole."""
    source = str(write_tlc(tmp_path / "in.parquet", 6000, 2000))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(model_dir), source, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        partial = list(out.glob(".part-*.tmp")) if out.exists() else []
        if partial and partial[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run never started writing")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not list(out.glob("part-*")), "a killed shard published a part"
    summary = job.run([source], str(out), scorer)
    assert summary.rows == 6000
    assert [p.name for p in out.iterdir()] == ["part-00000-of-00001.parquet"]
    assert pq.read_table(out / "part-00000-of-00001.parquet").num_rows == 6000


@pytest.mark.slow
def test_memory_is_bounded_by_the_batch_not_the_file(tmp_path, model_dir):
    """One 400,000-ride row group scored 20,000 at a time: the peak is a fraction of the whole."""
    source = str(write_tlc(tmp_path / "big.parquet", 400_000, 400_000))

    def peak(batch_rows: int) -> int:
        result = subprocess.run(
            [sys.executable, "-c", MEASURE, str(model_dir), source, str(tmp_path / str(batch_rows)),
             str(batch_rows)],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        return figures["arrow"] + figures["numpy"]

    whole, batched = peak(400_000), peak(20_000)  # measured here: 86.5 MB and 16.8 MB
    figures = f"whole row group {whole / 2**20:.1f} MB, batched {batched / 2**20:.1f} MB"
    assert batched < whole / 4, figures
    assert batched < 40 * 2**20, figures
