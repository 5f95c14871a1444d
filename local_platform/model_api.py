"""The model API, locally: `python -m services.model_api.serve` against a tracking server."""

from __future__ import annotations

import sys
from pathlib import Path

from local_platform.processes import LOOPBACK, Proc, http_ok, spawn, wait_until


def model_api_start(
    port: int, log: Path, env: dict[str, str], workers: int = 1, app: str | None = None
) -> Proc:
    """The model API as the image runs it (services.model_api.serve), on loopback; `app` serves
    another ASGI app the same way (the benchmark's bare endpoint)."""
    argv = [sys.executable, "-m", "services.model_api.serve", *(["--app", app] if app else [])]
    env = {
        **env,
        "UVICORN_HOST": LOOPBACK,
        "UVICORN_PORT": str(port),
        "UVICORN_WORKERS": str(workers),
    }
    proc = spawn("model-api", argv, log, env)
    proc.url = f"http://{LOOPBACK}:{port}"
    wait_until(proc, http_ok(f"{proc.url}/health"), 60, "alive")
    return proc
