"""What the AWS service stack's components share: the platform stack's outputs they build on
(typed) and their tags (services.deploy.components: what both clouds share)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class Platform:
    """The platform stack's outputs the services use (services.deploy.platform_ref)."""

    tracking_uri: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    subnets: pulumi.Output[list[str]]
    client_sg: pulumi.Output[str]
    ca_pem: pulumi.Output[str]
    password_secrets: pulumi.Output[dict[str, str]]
    """MLflow user -> the ARN of the secret holding its password."""
    artifact_bucket: pulumi.Output[str]
    tracking_instance: pulumi.Output[str]
    """The tracking VM's ARN."""
    db_endpoint: pulumi.Output[str]
    """The database's address:port."""


def tags(stack: str) -> dict[str, str]:
    return {"project": "mlops-services", "stack": stack}
