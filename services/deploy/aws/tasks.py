"""Where the AWS workloads run: the ECS cluster, a log group per workload, the execution role
that pulls images and hands each task its MLflow password (TaskRuntime); a Fargate task
definition for one workload (task_definition); and a workload run on a cron by EventBridge
Scheduler (ScheduledTask: the training and monitoring jobs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.common import assume
from infra.mlflow_server import user_for
from services.deploy.aws.common import Platform, tags
from services.deploy.aws.policies import (
    TASK_EXECUTION_POLICY,
    mlflow_env,
    mlflow_secrets,
    run_task_policy,
)
from services.deploy.components import NAME, child
from services.deploy.config import ServicesConfig, aws_cron

WORKLOADS = ("model-api", "training", "scoring", "monitoring")


class TaskRuntime(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    logs: dict[str, aws.cloudwatch.LogGroup]
    execution_role: aws.iam.Role
    region: str

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:services:aws:TaskRuntime", f"{NAME}-tasks", None, opts)
        self.cluster = aws.ecs.Cluster(
            f"{NAME}-cluster",
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            tags=tags(cfg.stack),
            opts=child(self),
        )
        self.logs = {
            svc: aws.cloudwatch.LogGroup(
                f"{NAME}-{svc}-logs",
                retention_in_days=cfg.logRetentionDays,
                tags=tags(cfg.stack),
                opts=child(self),
            )  # fmt: skip
            for svc in WORKLOADS
        }
        self.execution_role = aws.iam.Role(
            f"{NAME}-execution", assume_role_policy=assume("ecs-tasks.amazonaws.com"),
            tags=tags(cfg.stack), opts=child(self),
        )  # fmt: skip
        aws.iam.RolePolicyAttachment(
            f"{NAME}-execution-base", role=self.execution_role.name,
            policy_arn=TASK_EXECUTION_POLICY, opts=child(self),
        )  # fmt: skip
        aws.iam.RolePolicy(
            f"{NAME}-execution-secret",
            role=self.execution_role.id,
            # The tasks' workload users' passwords only; the admin's credentials stay with people
            # (and the stream handler's, which its Lambda function reads itself).
            policy=platform.password_secrets.apply(
                lambda arns: json.dumps({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": sorted({arns[user_for(w)] for w in WORKLOADS}),
                }]})
            ),
            opts=child(self),
        )  # fmt: skip
        self.region = aws.get_region().region
        self.register_outputs({"cluster": self.cluster.name})


@dataclass(frozen=True)
class Task:
    """One workload's container: `svc` names its MLflow user, log group and container."""

    svc: str
    image: pulumi.Input[str]
    cpu: int
    memory: int
    env: Sequence[dict] = ()
    more: dict | None = None
    """More of the container definition (command, port mappings, health check)."""


def task_definition(
    cfg: ServicesConfig, platform: Platform, runtime: TaskRuntime, task: Task,
    task_role: aws.iam.Role, parent: pulumi.Resource,
) -> aws.ecs.TaskDefinition:  # fmt: skip
    """A Fargate task definition with one container, logging to its group, with the tracking URI,
    CA and the workload's MLflow user as plain env and its password as an ECS secret."""
    definitions = pulumi.Output.all(
        task.image,
        platform.tracking_uri,
        platform.password_secrets,
        runtime.logs[task.svc].name,
        pulumi.Output.from_input(task.more or {}),
        pulumi.Output.from_input(list(task.env)),
        platform.ca_pem,
    ).apply(
        lambda a: json.dumps([{
            "name": task.svc,
            "image": a[0],
            "essential": True,
            "environment": [*mlflow_env(task.svc, a[1], a[6]), *a[5]],
            "secrets": mlflow_secrets(task.svc, a[2]),
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": a[3],
                    "awslogs-region": runtime.region,
                    "awslogs-stream-prefix": task.svc,
                },
            },
            **a[4],
        }])
    )  # fmt: skip
    return aws.ecs.TaskDefinition(
        f"{NAME}-{task.svc}",
        family=f"{NAME}-{cfg.stack}-{task.svc}",
        cpu=str(task.cpu),
        memory=str(task.memory),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        execution_role_arn=runtime.execution_role.arn,
        task_role_arn=task_role.arn,
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture="X86_64"
        ),
        container_definitions=definitions,
        tags=tags(cfg.stack),
        opts=child(parent),
    )


class ScheduledTask(pulumi.ComponentResource):
    """A workload run on a cron (EventBridge Scheduler) as a Fargate task in the public subnets
    with the platform's client group: its task role with the one policy it needs (named
    `<label>-<policy_name>`), its task definition, and the scheduler's role, which may start
    this task and pass its two roles, nothing else."""

    role: aws.iam.Role
    task: aws.ecs.TaskDefinition

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, runtime: TaskRuntime, task: Task,
        cron: str, policy_name: str, policy: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        label = task.svc
        super().__init__("mlops:services:aws:ScheduledTask", f"{NAME}-{label}-job", None, opts)
        self.role = aws.iam.Role(
            f"{NAME}-{label}-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"),
            tags=tags(cfg.stack), opts=child(self),
        )  # fmt: skip
        if policy is not None:
            aws.iam.RolePolicy(
                f"{NAME}-{label}-{policy_name}", role=self.role.id, policy=policy,
                opts=child(self),
            )  # fmt: skip
        self.task = task_definition(cfg, platform, runtime, task, self.role, self)
        scheduler = aws.iam.Role(
            f"{NAME}-{label}-scheduler", assume_role_policy=assume("scheduler.amazonaws.com"),
            tags=tags(cfg.stack), opts=child(self),
        )  # fmt: skip
        aws.iam.RolePolicy(
            f"{NAME}-{label}-scheduler-run",
            role=scheduler.id,
            policy=pulumi.Output.all(
                self.task.arn_without_revision, runtime.execution_role.arn, self.role.arn
            ).apply(lambda a: run_task_policy(a[0], [a[1], a[2]])),
            opts=child(self),
        )
        aws.scheduler.Schedule(
            f"{NAME}-{label}",
            schedule_expression=aws_cron(cron),
            schedule_expression_timezone="UTC",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=runtime.cluster.arn,
                role_arn=scheduler.arn,
                ecs_parameters=aws.scheduler.ScheduleTargetEcsParametersArgs(
                    task_definition_arn=self.task.arn_without_revision,
                    launch_type="FARGATE",
                    network_configuration=aws.scheduler.ScheduleTargetEcsParametersNetworkConfigurationArgs(
                        subnets=platform.subnets, security_groups=[platform.client_sg],
                        assign_public_ip=True,
                    ),
                ),
            ),
            opts=child(self),
        )  # fmt: skip
        self.register_outputs({"task": self.task.arn_without_revision})
