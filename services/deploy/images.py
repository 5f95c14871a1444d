"""The images, built from their targets of the repository's Dockerfile and pushed by Pulumi
(docker-build provider), unless the stack names prebuilt ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# Each image's build target in DOCKERFILE.
TARGETS = {
    "model-api": "model-api",
    "training": "training",
    "scoring": "scoring",
    "monitoring": "monitoring",
    "streaming": "streaming",
}


def git_commit() -> str:
    """The commit the images are built from, for their GIT_COMMIT (training tags its runs with
    it): HEAD of this checkout, or "unknown" outside one."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def build(
    name: str,
    repository_url: pulumi.Input[str],
    registry: docker_build.RegistryArgs,
    opts: pulumi.ResourceOptions | None = None,
) -> pulumi.Output[str]:
    """Build DOCKERFILE's target for image `name` (TARGETS) for linux/amd64, push it, and return
    its digest reference."""
    image = docker_build.Image(
        f"{name}-image",
        context=docker_build.BuildContextArgs(location=str(ROOT)),
        dockerfile=docker_build.DockerfileArgs(location=str(DOCKERFILE)),
        target=TARGETS[name],
        build_args={"GIT_COMMIT": git_commit()},
        platforms=[docker_build.Platform.LINUX_AMD64],
        push=True,
        tags=[pulumi.Output.concat(repository_url, ":latest")],
        registries=[registry],
        opts=opts,
    )
    return image.ref
