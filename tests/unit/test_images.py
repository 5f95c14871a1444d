"""The images' recipes, checked without Docker (scripts/images.py builds and runs them where a
daemon is): each installs only its own dependency group from uv.lock, none carries deployment
tooling or the MLflow server, the API's HEALTHCHECK follows its port, and GIT_COMMIT is baked in."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infra.vm_requirements import Lock
from local_platform import free_port
from scripts.images import IMAGES
from tests.dockerfile import target_text

ROOT = Path(__file__).resolve().parents[2]
NEVER = (
    "pulumi",
    "pulumi-aws",
    "pulumi-gcp",
    "mlflow",
    "psycopg2-binary",
    "moto",
    "pytest",
    "ruff",
)


def dockerfile(name: str) -> str:
    """What the image's target of the root Dockerfile is built from: its stages, base first."""
    return target_text(IMAGES[name])


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_installs_only_its_group_from_the_lock(image):
    text = dockerfile(image)
    [sync] = [line for line in text.splitlines() if "uv sync" in line]
    assert "--frozen" in sync and "--no-default-groups" in sync and "--no-install-project" in sync
    groups = re.findall(r"--group (\S+)", sync)
    assert groups == (["api"] if image == "taxi-model-api" else ["runtime"])
    names = {pin.name for group in groups for pin in Lock().group(group)}
    assert "mlflow-skinny" in names and "lightgbm" in names
    assert not names & set(NEVER), names & set(NEVER)  # no deploy tooling, server or dev tools
    assert not any(n.startswith("pulumi") for n in names)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_knows_its_commit_and_has_no_git_noise(image):
    text = dockerfile(image)
    assert "ARG GIT_COMMIT=unknown" in text and "ENV GIT_COMMIT=$GIT_COMMIT" in text
    assert "GIT_PYTHON_REFRESH=quiet" in text


def test_the_api_healthcheck_asks_the_port_the_server_listens_on(tmp_path):
    assert 'CMD ["python", "-m", "services.model_api.healthcheck"]' in dockerfile("taxi-model-api")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:

        def probe(env: dict[str, str]) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "services.model_api.healthcheck"],
                env={**os.environ, **env}, capture_output=True, text=True, timeout=30, cwd=ROOT,
            )  # fmt: skip

        everywhere = "0.0.0.0"  # noqa: S104 - what the image sets; the probe asks loopback
        assert probe({"UVICORN_HOST": everywhere, "UVICORN_PORT": str(port)}).returncode == 0
        # The old check asked 8000 whatever the port; a port where nothing listens fails.
        wrong = probe({"UVICORN_HOST": everywhere, "UVICORN_PORT": str(free_port())})
        assert wrong.returncode == 1 and wrong.stderr.startswith("unhealthy: http://127.0.0.1:")
    finally:
        server.shutdown()
