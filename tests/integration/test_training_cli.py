"""The training CLI's errors: non-zero exit and one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from scripts import components as c

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


def test_bad_margin_is_a_usage_error(months):
    result = cli("--train", "a", "--val", "b", "--margin", "2")
    assert result.returncode == 2 and "--margin must be in [0, 1)" in result.stderr
