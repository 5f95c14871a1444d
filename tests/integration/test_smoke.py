"""scripts/smoke for real against the local platform (PostgreSQL + moto + mlflow server + API)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

import local_platform as c

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_smoke_passes_on_a_working_platform_and_fails_on_bad_credentials(
    platform, months, tmp_path
):
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    trained = subprocess.run(
        [sys.executable, "-m", "training", "--train", str(months.train), "--val", str(months.val),
         "--model", "linear", "--model-name", name],
        env={**os.environ, **platform.env()}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    api = c.model_api_start(
        c.free_port(), tmp_path / "api.log", {**platform.env(), "MODEL_API_MODEL_NAME": name}
    )
    try:
        args = [
            "--tracking-uri",
            platform.tracking_uri,
            "--model-api-url",
            api.url,
            "--model",
            name,
            "--wait",
            "120",
        ]
        smoke = subprocess.run(
            [sys.executable, "-m", "scripts.smoke", *args],
            env={**os.environ, **platform.env()}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert smoke.stdout.count("ok   ") == 7 and "the API serves the champion" in smoke.stdout

        bad = subprocess.run(
            [sys.executable, "-m", "scripts.smoke", *args],
            env={**os.environ, **platform.env(), "MLFLOW_TRACKING_PASSWORD": "wrong"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert bad.returncode == 1
        assert bad.stderr.startswith("FAIL run logged with the tracking credentials")
    finally:
        api.stop()
