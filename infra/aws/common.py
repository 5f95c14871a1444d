"""Small helpers shared by the AWS components."""

from __future__ import annotations

import pulumi


def tags(cfg_stack: str, name: str) -> dict[str, str]:
    return {"Name": name, "project": "mlops-platform", "stack": cfg_stack}


def child(parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)
