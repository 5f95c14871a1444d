"""What the GCP service stack's components share: the platform stack's outputs and the project
they build on (typed), the service accounts' names, IAM conditions on object prefixes and the
workloads' MLflow environment (services.deploy.components: what both clouds share)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import pulumi
import pulumi_gcp as gcp

import tracking_ca
from infra.mlflow_server import user_for
from services.deploy.config import read_prefix


@dataclass(frozen=True)
class Platform:
    """The platform stack's outputs the services use (services.deploy.platform_ref), and the
    project and region they deploy to."""

    tracking_uri: pulumi.Output[str]
    network: pulumi.Output[str]
    subnet: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    password_secrets: dict[str, pulumi.Output[str]]
    """MLflow user -> the Secret Manager secret holding its password."""
    artifact_bucket: pulumi.Output[str]
    tracking_instance: pulumi.Output[str]
    """projects/P/zones/Z/instances/N: the tracking VM."""
    project: str
    region: str

    def job_path(self, job: gcp.cloudrunv2.Job) -> pulumi.Output[str]:
        return pulumi.Output.concat(
            "projects/", self.project, "/locations/", self.region, "/jobs/", job.name
        )

    def envs(self, workload: str, args_cls, source_cls, ref_cls) -> list:
        """Where the tracking server is, how to trust it (tracking_ca.trust() writes the CA to
        a file at start), and the workload's own MLflow user, its password from Secret Manager."""
        user = user_for(workload)
        secret = source_cls(
            secret_key_ref=ref_cls(secret=self.password_secrets[user], version="latest")
        )
        return [
            args_cls(name="MLFLOW_TRACKING_URI", value=self.tracking_uri),
            args_cls(name=tracking_ca.CA_PEM_ENV, value=self.ca_pem),
            args_cls(name="MLFLOW_TRACKING_USERNAME", value=user),
            args_cls(name="MLFLOW_TRACKING_PASSWORD", value_source=secret),
        ]


def prefix_condition(title: str, bucket: pulumi.Input[str], uri_prefix: str):
    """An IAM condition limiting a bucket role to object names under a prefix (the bucket must
    have uniform bucket-level access)."""
    return gcp.storage.BucketIAMMemberConditionArgs(
        title=title,
        expression=pulumi.Output.concat(
            'resource.name.startsWith("projects/_/buckets/', bucket, "/objects/", uri_prefix, '")'
        ),
    )


def gs_prefix(uri: str) -> tuple[str, str]:
    """(bucket, object-name prefix) that covers a gs:// URI where {month} varies."""
    parsed = urlparse(read_prefix(uri).removesuffix("*"))
    return parsed.netloc, parsed.path.lstrip("/")
