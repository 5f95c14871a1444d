"""`scripts/run_training`: the on-demand run of a deployed stack's training job."""

from __future__ import annotations

import boto3
from botocore.stub import Stubber

from scripts import run_training

OUTPUTS = {
    "cloud": "aws",
    "cluster": "mlops-cluster",
    "trainingJob": "arn:aws:ecs:us-east-1:123456789012:task-definition/mlops-dev-training",
    "trainingSubnets": ["subnet-a", "subnet-b"],
    "trainingSecurityGroups": ["sg-clients"],
}


def test_aws_run_uses_the_schedules_network_settings(monkeypatch):
    """The exact RunTask request (moto 5.2.5's RunTask crashes on awsvpc tasks, so the request is
    checked with botocore's Stubber rather than against moto_server)."""
    client = boto3.client(
        "ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.add_response(
        "run_task",
        {
            "tasks": [{"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/mlops-cluster/abc"}],
            "failures": [],
        },
        {
            "cluster": "mlops-cluster",
            "taskDefinition": OUTPUTS["trainingJob"],
            "launchType": "FARGATE",
            "count": 1,
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-a", "subnet-b"],
                    "securityGroups": ["sg-clients"],
                    "assignPublicIp": "ENABLED",
                }
            },
        },
    )
    monkeypatch.setattr(boto3, "client", lambda service, **kw: client)
    with stubber:
        assert run_training.run_aws(OUTPUTS).endswith("task/mlops-cluster/abc")
    stubber.assert_no_pending_responses()
