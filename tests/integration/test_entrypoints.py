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

import local_platform as c
from tests.dockerfile import DOCKERFILE, last, stages, target_text

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def target_env_and_cmd(target: str) -> tuple[dict[str, str], list[str]]:
    """ENV pairs and the exec-form CMD of one target of the Dockerfile (enough for ours)."""
    text = target_text(target)
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line):
                env[key] = value
    return env, json.loads(last(text, "CMD"))


def test_model_api_image_command_runs_with_two_workers_and_shared_metrics(tmp_path):
    env, cmd = target_env_and_cmd("model-api")
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
    _, cmd = target_env_and_cmd(job)  # the job's target is named after it
    assert last(target_text(job), "ENTRYPOINT") == f'["python", "-m", "{job}"]'
    result = subprocess.run(
        [sys.executable, "-m", job, *cmd], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and flag in result.stdout


# Imports with only the image's /app on the path: not the repository (which the editable install
# puts on sys.path), so a module the image's target forgot to copy fails here.
IMAGE_IMPORTS = """
import sys
sys.path[:] = [p for p in sys.path if p.rstrip("/") != {root!r}]
for module in {modules!r}:
    __import__(module)
assert "training" not in sys.modules, "imports training, whose features the model ships itself"
"""


@pytest.mark.parametrize(
    ("target", "modules"),
    [
        ("scoring",
         ["scoring.__main__", "scoring.job", "trip_model.predict"]),
        ("training", ["training.__main__", "training.train", "training.months"]),
        ("monitoring",
         ["monitoring.__main__", "monitoring.job", "monitoring.report", "trip_model.predict"]),
        ("model-api",
         ["services.model_api.serve", "services.model_api.main", "trip_model.prediction_log"]),
        ("streaming",
         ["awslambdaric", "streaming.aws_lambda", "streaming.push", "streaming.consumer"]),
    ],
)  # fmt: skip
def test_each_image_holds_every_module_its_job_imports(tmp_path, target, modules):
    text = target_text(target)
    for source, dest_rel in re.findall(r"^COPY (\S+) (\./\S+)$", text, re.M):
        origin, dest = ROOT / source, tmp_path / dest_rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, dest)
        else:
            shutil.copy(origin, dest)
    code = IMAGE_IMPORTS.format(root=str(ROOT), modules=modules)
    if target == "training":
        code = code.rsplit("assert", 1)[0]  # the training job is the one that may
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]


TARGETS = ("model-api", "training", "scoring", "monitoring", "streaming")


def test_the_dockerfile_passes_hadolint_and_its_targets_are_the_images_run_as_non_root():
    result = subprocess.run(
        [str(c.BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    known = stages()
    below = {parent for parent, _ in known.values()}
    assert {name for name in known if name not in below} == set(TARGETS)
    for target in TARGETS:
        user = shlex.split(last(target_text(target), "USER"))[0]
        assert not user.startswith(("0", "root")), target


# What each target copies besides the project file and the lock its dependencies come from.
COPIES = {
    "model-api": {"services/__init__.py", "services/model_api", "trip_model", "storage",
                  "tracking_ca"},
    "training": {"trip_model", "storage", "tracking_ca", "training"},
    "scoring": {"trip_model", "storage", "tracking_ca", "scoring"},
    "monitoring": {"trip_model", "storage", "tracking_ca", "monitoring"},
    "streaming": {"streaming", "trip_model", "storage", "tracking_ca"},
}  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
def test_each_image_copies_its_own_code_and_the_layers_below_only(target):
    """The jobs' images hold no API and the API's no job (nor the deployment code beside it in
    services/): what they share is the core (trip_model) and the foundations
    (tests/unit/test_layering.py). Every COPY or ADD of the target's stages counts."""
    sources: set[str] = set()
    for line in target_text(target).splitlines():
        instruction, *args = line.split()
        if instruction.upper() in ("COPY", "ADD"):
            args = [a for a in args if not a.startswith("--")]  # --chown, --from …
            sources |= set(args[:-1])
    assert sources == {"pyproject.toml", "uv.lock"} | COPIES[target]
