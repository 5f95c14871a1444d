"""The images' recipes, checked without Docker (scripts/images.py builds and runs them where a
daemon is): each installs only its own dependency group from uv.lock, none carries deployment
tooling or the MLflow server, the API's HEALTHCHECK follows its port, and GIT_COMMIT is baked in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.vm_requirements import Lock
from scripts.images import IMAGES
from tests.dockerfile import target_text

ROOT = Path(__file__).resolve().parents[3]
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
    own = {"taxi-model-api": "api", "taxi-streaming": "streaming"}
    assert groups == [own.get(image, "runtime")]
    names = {pin.name for group in groups for pin in Lock().group(group)}
    assert "mlflow-skinny" in names and "lightgbm" in names
    assert not names & set(NEVER), names & set(NEVER)  # no deploy tooling, server or dev tools
    assert not any(n.startswith("pulumi") for n in names)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_image_knows_its_commit_and_has_no_git_noise(image):
    text = dockerfile(image)
    assert "ARG GIT_COMMIT=unknown" in text and "ENV GIT_COMMIT=$GIT_COMMIT" in text
    assert "GIT_PYTHON_REFRESH=quiet" in text
