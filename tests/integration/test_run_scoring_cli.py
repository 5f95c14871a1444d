"""scripts/run_scoring.py as a process: its one-line error without the stack's outputs."""

from __future__ import annotations

import json
import subprocess
import sys


def test_missing_outputs_are_a_one_line_error(tmp_path):
    (tmp_path / "out.json").write_text(json.dumps({"cloud": "aws"}))
    result = subprocess.run(
        [sys.executable, "-m", "scripts.run_scoring", "dev", "--month", "2024-01",
         "--outputs-file", str(tmp_path / "out.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: stack dev has no output(s) scoringJobQueue, scoringJobDefinition, scoringInput, "
        "scoringOutput, scoringShards; deploy the services first"
    )
