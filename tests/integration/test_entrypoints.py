"""The images' entrypoints, run as plain processes (no Docker engine here) with the images' env."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from scripts import components as c

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def dockerfile_env_and_cmd(path: Path) -> tuple[dict[str, str], list[str]]:
    """ENV pairs and the exec-form CMD of a Dockerfile (enough for our two files)."""
    text = path.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line):
                env[key] = value
    cmd = next(line for line in text.splitlines() if line.startswith("CMD "))

    return env, json.loads(cmd[len("CMD ") :])


def test_model_api_image_command_runs_with_two_workers_and_shared_metrics(tmp_path):
    env, cmd = dockerfile_env_and_cmd(ROOT / "services/model_api/Dockerfile")
    port = c.free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env |= {
        "UVICORN_HOST": "127.0.0.1",
        "UVICORN_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PATH": f"{c.BIN}:{env.get('PATH', '').replace('/opt/venv/bin:', '')}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{c.free_port()}",  # registry down
    }
    assert env["UVICORN_WORKERS"] == "2"
    proc = c.spawn(
        "model-api-image", [str(c.BIN / cmd[0]), *cmd[1:]], tmp_path / "api.log", env, cwd=ROOT
    )
    try:
        c.wait_until(proc, c.http_ok(f"http://127.0.0.1:{port}/health"), 60, "alive")
        for _ in range(20):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        served = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('model_api_requests_total{method="GET",route="/health"')
        )
        assert served >= 20, text[:2000]  # aggregated over both workers
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("job", "flag"),
    [("training", "--train"), ("scoring", "--shard"), ("monitoring", "--prediction-log")],
)
def test_job_image_entrypoints_are_the_clis(job, flag):
    _, cmd = dockerfile_env_and_cmd(ROOT / job / "Dockerfile")
    text = (ROOT / job / "Dockerfile").read_text()
    entrypoint = next(line for line in text.splitlines() if line.startswith("ENTRYPOINT "))
    assert entrypoint == f'ENTRYPOINT ["python", "-m", "{job}"]'
    result = subprocess.run(
        [sys.executable, "-m", job, *cmd], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and flag in result.stdout


# Imports with only the image's /app on the path: not the repository (which the editable install
# puts on sys.path), so a module the Dockerfile forgot to copy fails here.
IMAGE_IMPORTS = """
import sys
sys.path[:] = [p for p in sys.path if p.rstrip("/") != {root!r}]
for module in {modules!r}:
    __import__(module)
assert "training" not in sys.modules, "imports training, whose features the model ships itself"
"""


@pytest.mark.parametrize(
    ("dockerfile", "modules"),
    [
        ("scoring/Dockerfile",
         ["scoring.__main__", "scoring.job", "trip_model.predict"]),
        ("training/Dockerfile", ["training.__main__", "training.train", "training.months"]),
        ("monitoring/Dockerfile",
         ["monitoring.__main__", "monitoring.job", "monitoring.report", "trip_model.predict"]),
        ("services/model_api/Dockerfile",
         ["services.model_api.serve", "services.model_api.main", "services.model_api.prediction_log"]),
    ],
)  # fmt: skip
def test_each_image_holds_every_module_its_job_imports(tmp_path, dockerfile, modules):
    text = (ROOT / dockerfile).read_text()
    for source, target in re.findall(r"^COPY (\S+) (\./\S+)$", text, re.M):
        origin, dest = ROOT / source, tmp_path / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, dest)
        else:
            shutil.copy(origin, dest)
    code = IMAGE_IMPORTS.format(root=str(ROOT), modules=modules)
    if dockerfile.startswith("training"):
        code = code.rsplit("assert", 1)[0]  # the training job is the one that may
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_dockerfiles_pass_hadolint_and_run_as_non_root():
    for rel in ("training/Dockerfile", "services/model_api/Dockerfile", "scoring/Dockerfile",
                "monitoring/Dockerfile"):  # fmt: skip
        result = subprocess.run(
            [str(c.BIN / "hadolint"), rel], capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0, result.stdout + result.stderr
        users = [
            shlex.split(line)[1]
            for line in (ROOT / rel).read_text().splitlines()
            if line.startswith("USER ")
        ]
        assert users and not users[-1].startswith(("0", "root"))


def test_each_image_copies_its_own_code_and_the_layers_below_only():
    """The jobs' images hold no API and the API's no job: what they share is the core
    (trip_model) and the foundations (tests/unit/test_layering.py)."""

    def copied(dockerfile: str) -> set[str]:
        text = (ROOT / dockerfile).read_text()
        return {s.split("/")[0] for s, _ in re.findall(r"^COPY (\S+) (\./\S+)$", text, re.M)}

    assert copied("scoring/Dockerfile") == {"trip_model", "storage", "tracking_ca", "scoring"}
    assert copied("monitoring/Dockerfile") == {"trip_model", "storage", "tracking_ca", "monitoring"}
    assert "scoring" not in copied("services/model_api/Dockerfile")
    assert "trip_model" in copied("services/model_api/Dockerfile")
