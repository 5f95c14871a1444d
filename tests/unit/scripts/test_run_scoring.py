"""`scripts/run_scoring`: the on-demand run of a deployed stack's scoring job."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from scripts import run_scoring

AWS_OUTPUTS = {
    "cloud": "aws",
    "scoringInput": "s3://tlc/yellow/yellow_tripdata_{month}.parquet",
    "scoringOutput": "s3://mlflow-dev-x/batch-predictions/{month}/",
    "scoringShards": 2,
}


def args(*argv: str):
    parser = __import__("argparse").ArgumentParser()
    parser.add_argument("stack")
    for flag in ("--output", "--month", "--model-version"):
        parser.add_argument(flag)
    parser.add_argument("--input", nargs="+")
    parser.add_argument("--shards", type=int)
    return parser.parse_args(["dev", *argv])


@pytest.fixture
def batch(monkeypatch):
    """A job queue and Fargate job definition in moto's Batch (no containers run)."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"batch": {"use_docker": False}}):
        client = boto3.client("batch")
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="g", Description="g", VpcId=vpc)["GroupId"]
        env = client.create_compute_environment(
            computeEnvironmentName="scoring",
            type="MANAGED",
            serviceRole=role,  # moto insists; AWS creates its service-linked role instead
            computeResources={
                "type": "FARGATE",
                "maxvCpus": 4,
                "subnets": [subnet],
                "securityGroupIds": [group],
            },
        )
        queue = client.create_job_queue(
            jobQueueName="scoring",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[
                {"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}
            ],
        )
        definition = client.register_job_definition(
            jobDefinitionName="scoring",
            type="container",
            platformCapabilities=["FARGATE"],
            containerProperties={
                "image": "scoring:latest",
                "command": ["--help"],
                "executionRoleArn": role,
                "resourceRequirements": [
                    {"type": "VCPU", "value": "1"},
                    {"type": "MEMORY", "value": "4096"},
                ],
            },
        )
        outputs = {
            **AWS_OUTPUTS,
            "scoringJobQueue": queue["jobQueueArn"],
            # The stack exports the ARN without revision (AWS: "the latest active revision");
            # moto 5.2.5 only finds a definition by its full ARN.
            "scoringJobDefinition": definition["jobDefinitionArn"],
        }
        yield client, outputs


def test_aws_submits_an_array_job_with_the_command_for_the_month(batch):
    client, outputs = batch
    argv, shards = run_scoring.command(outputs, args("--month", "2024-03", "--shards", "3"))
    arn = run_scoring.run_aws(outputs, "dev", argv, shards)
    [job] = client.describe_jobs(jobs=[arn.rsplit("/", 1)[-1]])["jobs"]
    assert job["arrayProperties"]["size"] == 3
    assert job["container"]["command"] == [
        "--input", AWS_OUTPUTS["scoringInput"], "--output", AWS_OUTPUTS["scoringOutput"],
        "--shards", "3", "--month=2024-03",
    ]  # fmt: skip
    assert job["jobQueue"] == outputs["scoringJobQueue"]


def test_aws_one_shard_is_submitted_without_an_array(batch):
    client, outputs = batch
    argv, shards = run_scoring.command(
        outputs, args("--input", "s3://tlc/y.parquet", "--output", "s3://o/x/", "--shards", "1")
    )
    arn = run_scoring.run_aws(outputs, "dev", argv, shards)
    [job] = client.describe_jobs(jobs=[arn.rsplit("/", 1)[-1]])["jobs"]
    assert "arrayProperties" not in job or not job["arrayProperties"].get("size")
    assert job["container"]["command"][:2] == ["--input", "s3://tlc/y.parquet"]


def test_gcp_runs_the_job_with_overrides(monkeypatch):
    import google.auth
    import google.auth.transport.requests as transport

    sent = {}

    class Session:
        def __init__(self, credentials):
            pass

        def post(self, url, json, timeout):
            sent.update(url=url, body=json)
            response = type("R", (), {"status_code": 200})()
            response.json = lambda: {"metadata": {"name": "projects/p/.../executions/e-1"}}
            return response

    monkeypatch.setattr(google.auth, "default", lambda scopes: (object(), "p"))
    monkeypatch.setattr(transport, "AuthorizedSession", Session)
    outputs = {
        "cloud": "gcp",
        "scoringJob": "projects/p/locations/europe-west1/jobs/mlops-scoring",
        "scoringInput": "gs://tlc/y_{month}.parquet",
        "scoringOutput": "gs://b/batch-predictions/{month}/",
        "scoringShards": 4,
    }
    argv, shards = run_scoring.command(outputs, args("--month=-2", "--model-version", "7"))
    assert run_scoring.run_gcp(outputs, argv, shards).endswith("executions/e-1")
    assert sent["url"] == f"https://run.googleapis.com/v2/{outputs['scoringJob']}:run"
    assert sent["body"] == {
        "overrides": {
            "containerOverrides": [
                {
                    "args": [
                        "--input", "gs://tlc/y_{month}.parquet",
                        "--output", "gs://b/batch-predictions/{month}/",
                        "--shards", "4", "--month=-2", "--model-version", "7",
                    ]
                }
            ],
            "taskCount": 4,
        }
    }  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --month"),
        (["--input", "s3://a/b.parquet", "--output", "s3://o/p/", "--month", "2024-01"], "neither"),
        (["--month", "2024-01", "--shards", "0"], "1-10000"),
    ],
)
def test_inconsistent_flags_are_errors(argv, message):
    with pytest.raises(run_scoring.RunError, match=message):
        run_scoring.command(AWS_OUTPUTS, args(*argv))
