"""The stack's images on GCP (the streaming one with streaming on): an Artifact Registry
repository (versions older than IMAGE_DAYS go, but for the newest `imagesKept`) and the images
built from their targets of the repository's Dockerfile and pushed there
(services.deploy.images)."""

from __future__ import annotations

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from services.deploy import images
from services.deploy.components import NAME, child
from services.deploy.config import ServicesConfig
from services.deploy.gcp.common import Platform

IMAGE_DAYS = 30  # an image version older than this goes, unless among the newest imagesKept


class Images(pulumi.ComponentResource):
    refs: dict[str, pulumi.Output[str]]
    """Image name (model-api, training, scoring, monitoring) -> its pushed reference."""

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:services:gcp:Images", f"{NAME}-images", None, opts)
        most_recent = gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs
        repo = gcp.artifactregistry.Repository(
            f"{NAME}-images",
            repository_id=f"mlops-{cfg.stack}",
            format="DOCKER",
            location=platform.region,
            # A KEEP rule alone deletes nothing: versions older than 30 days go, but for the
            # newest imagesKept (a version both rules match is kept).
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=f"{IMAGE_DAYS * 86400}s"
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-newest",
                    action="KEEP",
                    most_recent_versions=most_recent(keep_count=cfg.imagesKept),
                ),
            ],
            opts=child(self),
        )
        host = f"{platform.region}-docker.pkg.dev"
        token = gcp.organizations.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).access_token
        registry = docker_build.RegistryArgs(
            address=host, username="oauth2accesstoken", password=token
        )
        base = pulumi.Output.concat(host, "/", platform.project, "/", repo.repository_id)
        self.refs = {
            image: images.build(
                image, base.apply(lambda b, i=image: f"{b}/{i}"), registry, child(self)
            )  # fmt: skip
            for image in cfg.images
        }
        self.register_outputs({})
