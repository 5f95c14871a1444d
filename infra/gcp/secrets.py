"""A Secret Manager secret with one version: how every GCP secret of the platform is stored."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp


def stored_secret(
    resource_name: str, secret_id: str, data: pulumi.Input[str], parent: pulumi.Resource
) -> gcp.secretmanager.Secret:
    child = pulumi.ResourceOptions(parent=parent)
    secret = gcp.secretmanager.Secret(
        resource_name,
        secret_id=secret_id,
        replication=gcp.secretmanager.SecretReplicationArgs(auto={}),
        opts=child,
    )
    gcp.secretmanager.SecretVersion(
        f"{resource_name}-value", secret=secret.id, secret_data=data, opts=child
    )
    return secret
