"""Small helpers shared by the AWS components."""

from __future__ import annotations

import json

import pulumi

LAMBDA_VPC = [
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]  # fmt: skip
"""AWSLambdaVPCAccessExecutionRole's EC2 actions: Lambda makes a function's network interfaces
with its role. They take no resource narrower than *."""


def tags(cfg_stack: str, name: str) -> dict[str, str]:
    return {"Name": name, "project": "mlops-platform", "stack": cfg_stack}


def child(parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)


def assume(service: str) -> str:
    """A role's trust policy: `service` may assume it."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )
