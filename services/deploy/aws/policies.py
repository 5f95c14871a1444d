"""The AWS service stack's IAM policies and container settings, as plain functions of their
inputs (tested without Pulumi): who may read or write which objects, start which task, submit
which job; and the environment each workload's container gets."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import tracking_ca
from infra.aws.common import LAMBDA_VPC
from infra.mlflow_server import user_for
from monitoring import metrics
from services.deploy.components import PREDICTIONS
from services.deploy.config import ServicesConfig, batch_job_name, read_prefix

TASK_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


def s3_arn(uri: str) -> str:
    parsed = urlparse(uri)
    return f"arn:aws:s3:::{parsed.netloc}{parsed.path}"


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resources: list[str], **condition) -> dict:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    return {**statement, "Condition": condition} if condition else statement


def read_statements(uris: list[str], listed: bool = False) -> list[dict]:
    """GetObject on these keys (a {month} in one: every key where it varies); with `listed`,
    ListBucket limited to those prefixes too (to find the newest months, or the log's files)."""
    keys = sorted({s3_arn(read_prefix(u)) for u in uris})
    statements = [allow(["s3:GetObject"], keys)]
    if listed:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            parsed = urlparse(read_prefix(uri))
            by_bucket.setdefault(parsed.netloc, []).append(parsed.path.lstrip("/"))
        statements += [
            allow(["s3:ListBucket"], [f"arn:aws:s3:::{bucket}"],
                  StringLike={"s3:prefix": sorted(prefixes)})
            for bucket, prefixes in sorted(by_bucket.items())
        ]  # fmt: skip
    return statements


def data_read_policy(uris: list[str], listed: bool = False) -> str:
    """Read the training data objects only: GetObject on their keys (and listing, for a prefix)."""
    return policy(*read_statements(uris, listed))


def write_policy(prefix: str) -> str:
    """Create objects under one prefix (multipart uploads included), nothing else."""
    return policy(allow(["s3:PutObject", "s3:AbortMultipartUpload"],
                        [s3_arn(read_prefix(prefix.rstrip("/") + "/{month}"))]))  # fmt: skip


def run_task_policy(task_arn_without_revision: str, pass_roles: list[str]) -> str:
    """Start one task definition (any revision) and hand ECS its roles, nothing else."""
    return policy(
        allow(["ecs:RunTask"], [f"{task_arn_without_revision}:*"]),
        allow(["iam:PassRole"], pass_roles, StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"}),
    )  # fmt: skip


def monitoring_policy(
    cfg: ServicesConfig, bucket: str | None, training_task: str, pass_roles: list[str]
) -> str:
    """Read (and list) the prediction log and the months with actual durations; publish its
    metrics (PutMetricData takes no resource: its namespace only, by condition); start training."""
    reads = [cfg.scoringInput]
    listed = [f"s3://{bucket}/{PREDICTIONS}{{month}}"] if bucket else []
    statements = read_statements(reads) + (read_statements(listed, listed=True) if listed else [])
    statements.append(allow(["cloudwatch:PutMetricData"], ["*"],
                            StringEquals={"cloudwatch:namespace": metrics.NAMESPACE}))  # fmt: skip
    if cfg.retrainOnDegraded:
        statements += json.loads(run_task_policy(training_task, pass_roles))["Statement"]
    return policy(*statements)


def scoring_policy(input_uri: str, output_prefix: str) -> str:
    """Read the input files (every month where the URI has {month}), write under the output
    prefix (multipart uploads included), nothing else."""
    writes = json.loads(write_policy(output_prefix))["Statement"]
    return policy(*read_statements([input_uri]), *writes)


def submit_job_input(cfg: ServicesConfig, queue_arn: str, definition_arn: str) -> dict:
    """batch:SubmitJob's request, as the scheduler's universal target sends it (SDK names)."""
    request = {
        "JobName": batch_job_name(cfg.stack),
        "JobQueue": queue_arn,
        "JobDefinition": definition_arn,  # without a revision: the latest active one
    }
    if cfg.scoringShards > 1:  # Batch array jobs have 2 to 10,000 children
        request["ArrayProperties"] = {"Size": cfg.scoringShards}
    return request


def mlflow_env(workload: str, tracking_uri: str, ca_pem: str) -> list[dict]:
    """Where the tracking server is, how to trust it (the platform's CA: tracking_ca.trust()
    writes it to a file at start), and who this workload is (its own MLflow user)."""
    return [
        {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
        {"name": tracking_ca.CA_PEM_ENV, "value": ca_pem},
        {"name": "MLFLOW_TRACKING_USERNAME", "value": user_for(workload)},
    ]


def mlflow_secrets(workload: str, password_secrets: dict[str, str]) -> list[dict]:
    # ECS injects the password from Secrets Manager at start: never in the plain env.
    arn = password_secrets[user_for(workload)]
    return [{"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": arn}]


KINESIS_READ = [
    "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
    "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:SubscribeToShard",
]  # fmt: skip
"""What Lambda's event source mapping reads a stream with, as the function's role."""


def streaming_policy(
    input_arn: str, output_arn: str, queue_arn: str, secret_arn: str, log_group_arn: str,
    prediction_log: str | None,
) -> str:  # fmt: skip
    """The stream handler's function: read its input stream, put on its output stream, send to
    its dead-letter queue (its own letters and Lambda's on-failure records), read its MLflow
    password, write its log group and, with the log on, objects under the prediction log;
    its network interfaces."""
    statements = [
        allow(KINESIS_READ, [input_arn]),
        allow(["kinesis:PutRecord", "kinesis:PutRecords"], [output_arn]),
        allow(["sqs:SendMessage"], [queue_arn]),
        allow(["secretsmanager:GetSecretValue"], [secret_arn]),
        allow(["logs:CreateLogStream", "logs:PutLogEvents"], [f"{log_group_arn}:*"]),
        allow(LAMBDA_VPC, ["*"]),
    ]
    if prediction_log:
        statements += json.loads(write_policy(prediction_log))["Statement"]
    return policy(*statements)


def streaming_env(
    tracking_uri: str, ca_pem: str, output: str, queue_url: str, secret_arn: str,
    refresh_seconds: int, prediction_log: str | None,
) -> dict[str, str]:  # fmt: skip
    """The function's environment (Lambda's: 4 KB at most, the CA's PEM included): where the
    tracking server is and how to trust it, its MLflow user and where its password is (read by
    the function at start, never in the environment), its output and dead letters."""
    env = {entry["name"]: entry["value"] for entry in mlflow_env("streaming", tracking_uri, ca_pem)}
    env |= {
        "STREAMING_OUTPUT": output,
        "STREAMING_DEAD_LETTER": queue_url,
        "STREAMING_PASSWORD_SECRET": secret_arn,
        "STREAMING_REFRESH_SECONDS": str(refresh_seconds),
        # A function's file system is read-only but /tmp; MLflow's client keeps files in HOME.
        "HOME": "/tmp",  # noqa: S108 - Lambda's only writable place, the instance's own
    }
    if prediction_log:
        env["STREAMING_PREDICTION_LOG"] = prediction_log
    return env
