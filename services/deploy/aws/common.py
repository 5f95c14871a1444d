"""What every component of the AWS service stack shares: the platform stack's outputs it builds on
(typed), its tags, and the options of a child moved into a component from the stack's root."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

NAME = "mlops"
"""Every resource's name starts with it, as before the components (their URNs are kept)."""


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


def tags(stack: str) -> dict[str, str]:
    return {"project": "mlops-services", "stack": stack}


def child(parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
    """A component's child. Each was created at the stack's root before the stack had
    components: the alias keeps its URN, so `pulumi up` moves it instead of replacing it."""
    return pulumi.ResourceOptions(
        parent=parent, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)], **kwargs
    )
