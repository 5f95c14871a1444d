"""The service stack on AWS, one component per piece, each module saying what it creates:

    images      ECR repositories and the images built and pushed (unless prebuilt)
    tasks       the ECS cluster, log groups and execution role; scheduled Fargate tasks
    model_api   the model API: Fargate service, Application Load Balancer, autoscaling
    scoring     the batch scoring job: AWS Batch array job on Fargate, monthly
    streaming   streaming predictions: Kinesis streams, a Lambda function, SQS dead letters
    alerts      an SNS topic for alertEmail/alertWebhook, CloudWatch alarms, EventBridge rules
    dashboard   one CloudWatch dashboard per stack
    night       with a sleepSchedule: the model API at zero tasks at night, its alarms muted
    policies    the IAM policies and container environment, as plain functions

Training and monitoring run as Fargate tasks on EventBridge Scheduler crons; on `degraded` the
monitor starts the training task.
"""

from __future__ import annotations

import pulumi

from infra import outputs as platform_out
from services.deploy.aws.alerts import Watched, stack_alerts
from services.deploy.aws.common import Platform
from services.deploy.aws.dashboard import Charted, Dashboard
from services.deploy.aws.images import Images
from services.deploy.aws.model_api import ModelApiService
from services.deploy.aws.night import stack_night
from services.deploy.aws.policies import data_read_policy, monitoring_policy
from services.deploy.aws.scoring import BatchScoringJob
from services.deploy.aws.streaming import StreamingService
from services.deploy.aws.tasks import ScheduledTask, Task, TaskRuntime
from services.deploy.config import ServicesConfig, monitoring_command
from services.deploy.platform_ref import PlatformRef, password_secrets


def platform_of(cfg: ServicesConfig) -> Platform:
    ref = PlatformRef(cfg)
    ref.compare_nights(cfg)
    return Platform(
        tracking_uri=ref.require(platform_out.TRACKING_PRIVATE_URI),
        vpc_id=ref.require(platform_out.VPC_ID),
        subnets=ref.require(platform_out.PUBLIC_SUBNET_IDS),
        client_sg=ref.require(platform_out.CLIENT_SECURITY_GROUP_ID),
        ca_pem=ref.require(platform_out.TRACKING_CA_CERT),
        password_secrets=pulumi.Output.all(
            **{user: ref.require(key) for user, key in password_secrets(cfg).items()}
        ),
        artifact_bucket=ref.require(platform_out.ARTIFACT_BUCKET),
        tracking_instance=ref.require(platform_out.TRACKING_INSTANCE),
        db_endpoint=ref.require(platform_out.DB_ENDPOINT),
    )


def build(cfg: ServicesConfig) -> dict[str, object]:
    platform = platform_of(cfg)
    refs = cfg.prebuilt_refs() if cfg.prebuilt else Images(cfg).refs
    runtime = TaskRuntime(cfg, platform)
    api = ModelApiService(cfg, platform, runtime, refs["model-api"])
    training = ScheduledTask(
        cfg, platform, runtime,
        Task("training", refs["training"], 1024, 4096, more={"command": cfg.training_command}),
        cfg.trainingSchedule, "data",
        data_read_policy(cfg.training_data, listed=bool(cfg.trainingDataPrefix)),
    )  # fmt: skip
    monitoring = monitoring_job(cfg, platform, runtime, refs["monitoring"], training, api)
    scoring = BatchScoringJob(cfg, platform, runtime, refs["scoring"])
    outputs = {
        "modelApiUrl": api.url,
        "trainingJob": training.task.arn_without_revision,
        "cluster": runtime.cluster.name,
        "trainingSubnets": platform.subnets,
        "trainingSecurityGroups": pulumi.Output.all(platform.client_sg).apply(list),
        "modelApiImage": refs["model-api"],
        "trainingImage": refs["training"],
        "scoringImage": refs["scoring"],
        "monitoringImage": refs["monitoring"],
        "monitoringJob": monitoring.task.arn_without_revision,
        "predictionLog": api.prediction_log,
        "scoringJobQueue": scoring.queue.arn,
        "scoringJobDefinition": scoring.definition.arn_prefix,
        "scoringInput": cfg.scoringInput,
        "scoringOutput": scoring.output,
        "scoringShards": cfg.scoringShards,
    }
    streaming = StreamingService(cfg, platform, refs["streaming"]) if cfg.streaming else None
    watched = Watched(
        cluster=runtime.cluster.arn,
        tasks=[training.task.arn_without_revision, monitoring.task.arn_without_revision],
        scoring_queue=scoring.queue.arn,
        load_balancer=api.alb.arn_suffix,
        target_group=api.target_group.arn_suffix,
        function=streaming.function.name if streaming else None,
        dead_letters=streaming.dead_letters.name if streaming else None,
    )
    alerting = stack_alerts(cfg, watched)
    if alerting is not None:
        outputs["alertsTopic"] = alerting.topic.arn
    stack_night(cfg, api, alerting)
    dashboard = Dashboard(cfg.stack, Charted(
        load_balancer=api.alb.arn_suffix, target_group=api.target_group.arn_suffix,
        tracking_instance=platform.tracking_instance, db_endpoint=platform.db_endpoint,
        failure_rules=[r.name for r in alerting.rules] if alerting else [],
        function=watched.function, events_stream=streaming.events.name if streaming else None,
    ))  # fmt: skip
    outputs["dashboard"] = dashboard.dashboard.dashboard_name
    if streaming is not None:
        outputs |= {
            "rideEventsStream": streaming.events.name,
            "ridePredictionsStream": streaming.predictions.name,
            "streamingDeadLetterQueue": streaming.dead_letters.url,
            "streamingFunction": streaming.function.name,
            "streamingImage": refs["streaming"],
        }
    return outputs


def monitoring_job(
    cfg: ServicesConfig, platform: Platform, runtime: TaskRuntime, image: pulumi.Input[str],
    training: ScheduledTask, api: ModelApiService,
) -> ScheduledTask:  # fmt: skip
    """Daily: the logged traffic against the champion's reference, its RMSE on the month the
    scoring job scores; on degraded it starts the training task."""
    policy = pulumi.Output.all(
        platform.artifact_bucket, training.task.arn_without_revision,
        runtime.execution_role.arn, training.role.arn,
    ).apply(
        lambda a: monitoring_policy(cfg, a[0] if cfg.predictionLog else None, a[1], [a[2], a[3]])
    )  # fmt: skip
    retrain = (
        pulumi.Output.all(
            runtime.cluster.name, training.task.arn_without_revision, platform.subnets,
            platform.client_sg,
        ).apply(lambda a: [
            "--retrain", "ecs", "--ecs-cluster", a[0], "--ecs-task-definition", a[1],
            "--ecs-subnets", ",".join(a[2]), "--ecs-security-groups", a[3],
        ])
        if cfg.retrainOnDegraded
        else []
    )  # fmt: skip
    command = pulumi.Output.all(api.prediction_log, retrain).apply(
        lambda a: [*monitoring_command(cfg, a[0]), *a[1]]
    )
    task = Task("monitoring", image, 1024, 4096, more={"command": command})
    return ScheduledTask(cfg, platform, runtime, task, cfg.monitoringSchedule, "access", policy)
