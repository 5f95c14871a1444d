"""The batch scoring job on AWS: an AWS Batch array job on Fargate, one task per shard (each
picks its shard from AWS_BATCH_JOB_ARRAY_INDEX), its compute environment and queue, its task
role (read the input months, write under the output prefix), and the monthly schedule that
submits it. Batch creates its service-linked role on first use."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.aws.common import assume
from services.deploy.aws.common import Platform, tags
from services.deploy.aws.policies import (
    mlflow_env,
    mlflow_secrets,
    scoring_policy,
    submit_job_input,
)
from services.deploy.aws.tasks import TaskRuntime
from services.deploy.components import NAME, SCORING_PREFIX, child
from services.deploy.config import ServicesConfig, aws_cron, scoring_command

# A job that can never be placed is cancelled after an hour rather than waiting for ever. Batch
# acts only on these reasons; one that waits for the account's Fargate vCPU quota shows no such
# reason and keeps waiting (docs/deploy-aws.md, Batch's caveats).
UNPLACEABLE = (
    "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
    "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
)


def container_properties(cfg: ServicesConfig, a: list) -> str:
    """The job definition's container: image, command with its output, roles, size, MLflow."""
    image, tracking_uri, passwords, log_group, job_role, execution_role, output, ca_pem = a
    return json.dumps({
        "image": image,
        "command": [*scoring_command(cfg), "--output", output],
        "jobRoleArn": job_role,
        "executionRoleArn": execution_role,
        "resourceRequirements": [
            {"type": "VCPU", "value": str(cfg.scoringCpu)},
            {"type": "MEMORY", "value": str(cfg.scoringMemoryMb)},
        ],
        # No NAT in the platform: a public address to pull the image.
        "networkConfiguration": {"assignPublicIp": "ENABLED"},
        "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
        "environment": mlflow_env("scoring", tracking_uri, ca_pem),
        "secrets": mlflow_secrets("scoring", passwords),
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": log_group, "awslogs-stream-prefix": "scoring"},
        },
    })  # fmt: skip


def submit_policy(queue_arn: str, definition_arn_prefix: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": ["batch:SubmitJob"],
        # The schedule names the definition without a revision (the latest); AWS's pages
        # differ on which ARN is then checked.
        "Resource": [queue_arn, definition_arn_prefix, f"{definition_arn_prefix}:*"],
    }]})  # fmt: skip


class BatchScoringJob(pulumi.ComponentResource):
    queue: aws.batch.JobQueue
    definition: aws.batch.JobDefinition
    output: pulumi.Output[str]
    """Where the shards write (the stack's scoringOutput, or the artifact bucket's scoring/)."""

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, runtime: TaskRuntime,
        image: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:aws:BatchScoringJob", f"{NAME}-scoring-job", None, opts)
        self.output = pulumi.Output.from_input(
            cfg.scoringOutput
            or pulumi.Output.concat("s3://", platform.artifact_bucket, "/", SCORING_PREFIX)
        )
        role = aws.iam.Role(
            f"{NAME}-scoring-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"),
            tags=tags(cfg.stack), opts=child(self),
        )  # fmt: skip
        aws.iam.RolePolicy(
            f"{NAME}-scoring-data",
            role=role.id,
            policy=self.output.apply(lambda out: scoring_policy(cfg.scoringInput, out)),
            opts=child(self),
        )
        compute = aws.batch.ComputeEnvironment(
            f"{NAME}-scoring",
            type="MANAGED",
            compute_resources=aws.batch.ComputeEnvironmentComputeResourcesArgs(
                type="FARGATE",
                max_vcpus=cfg.scoringShards * cfg.scoringCpu,
                subnets=platform.subnets,
                security_group_ids=[platform.client_sg],
            ),
            tags=tags(cfg.stack),
            opts=child(self),
        )
        self.queue = aws.batch.JobQueue(
            f"{NAME}-scoring",
            priority=1,
            state="ENABLED",
            compute_environment_orders=[aws.batch.JobQueueComputeEnvironmentOrderArgs(
                order=1, compute_environment=compute.arn
            )],
            job_state_time_limit_actions=[
                aws.batch.JobQueueJobStateTimeLimitActionArgs(
                    action="CANCEL", state="RUNNABLE", max_time_seconds=3600, reason=reason
                )
                for reason in UNPLACEABLE
            ],
            tags=tags(cfg.stack),
            opts=child(self),
        )  # fmt: skip
        self.definition = aws.batch.JobDefinition(
            f"{NAME}-scoring",
            type="container",
            platform_capabilities=["FARGATE"],
            container_properties=pulumi.Output.all(
                image, platform.tracking_uri, platform.password_secrets,
                runtime.logs["scoring"].name, role.arn, runtime.execution_role.arn, self.output,
                platform.ca_pem,
            ).apply(lambda a: container_properties(cfg, a)),
            # A shard that failed for a passing reason runs once more; a usage or input error
            # (exit code 2) would fail again.
            retry_strategy=aws.batch.JobDefinitionRetryStrategyArgs(
                attempts=2,
                evaluate_on_exits=[aws.batch.JobDefinitionRetryStrategyEvaluateOnExitArgs(
                    action="exit", on_exit_code="2"
                )],
            ),
            timeout=aws.batch.JobDefinitionTimeoutArgs(attempt_duration_seconds=3 * 3600),
            propagate_tags=True,
            tags=tags(cfg.stack),
            opts=child(self),
        )  # fmt: skip
        self.schedule(cfg)
        self.register_outputs({"queue": self.queue.arn})

    def schedule(self, cfg: ServicesConfig) -> None:
        """EventBridge Scheduler submits the job monthly; its role may submit this job only."""
        role = aws.iam.Role(
            f"{NAME}-scoring-scheduler", assume_role_policy=assume("scheduler.amazonaws.com"),
            tags=tags(cfg.stack), opts=child(self),
        )  # fmt: skip
        job = pulumi.Output.all(self.queue.arn, self.definition.arn_prefix)
        aws.iam.RolePolicy(
            f"{NAME}-scoring-scheduler-submit",
            role=role.id,
            policy=job.apply(lambda a: submit_policy(a[0], a[1])),
            opts=child(self),
        )
        aws.scheduler.Schedule(
            f"{NAME}-scoring",
            schedule_expression=aws_cron(cfg.scoringSchedule),
            schedule_expression_timezone="UTC",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                # Scheduler has no Batch target type; its universal target calls SubmitJob.
                arn="arn:aws:scheduler:::aws-sdk:batch:submitJob",
                role_arn=role.arn,
                input=job.apply(lambda a: json.dumps(submit_job_input(cfg, a[0], a[1]))),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_event_age_in_seconds=3600, maximum_retry_attempts=3
                ),
            ),
            opts=child(self),
        )
