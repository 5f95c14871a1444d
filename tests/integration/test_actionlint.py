"""actionlint over every workflow."""

from __future__ import annotations

import os
import subprocess

from local_platform import BIN
from tests.unit.test_workflows import (
    WORKFLOWS,
)


def test_actionlint_passes_on_every_workflow():
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}  # with shellcheck for run: blocks
    result = subprocess.run(
        [str(BIN / "actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
