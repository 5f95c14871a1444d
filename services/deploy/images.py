"""The four images, built from the repository's Dockerfiles and pushed by Pulumi (docker-build
provider), unless the stack names prebuilt ones."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "model-api": ROOT / "services/model_api/Dockerfile",
    "training": ROOT / "training/Dockerfile",
    "scoring": ROOT / "scoring/Dockerfile",
    "monitoring": ROOT / "monitoring/Dockerfile",
}


def build(
    name: str,
    repository_url: pulumi.Input[str],
    registry: docker_build.RegistryArgs,
    parent: pulumi.Resource | None = None,
) -> pulumi.Output[str]:
    """Build DOCKERFILES[name] for linux/amd64, push it, and return its digest reference."""
    image = docker_build.Image(
        f"{name}-image",
        context=docker_build.BuildContextArgs(location=str(ROOT)),
        dockerfile=docker_build.DockerfileArgs(location=str(DOCKERFILES[name])),
        platforms=[docker_build.Platform.LINUX_AMD64],
        push=True,
        tags=[pulumi.Output.concat(repository_url, ":latest")],
        registries=[registry],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return image.ref
