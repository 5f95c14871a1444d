"""AWS: ECR repositories and images, an ECS cluster, the model API as a Fargate service behind an
Application Load Balancer with autoscaling, the training job as a Fargate task run on a schedule
by EventBridge Scheduler, and the scoring job as an AWS Batch array job on Fargate, submitted
monthly by EventBridge Scheduler."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

import tracking_ca
from infra import outputs as platform_out
from infra.mlflow_server import user_for
from services.deploy import images
from services.deploy.config import (
    ServicesConfig,
    aws_cron,
    batch_job_name,
    monitoring_command,
    read_prefix,
    scoring_command,
)
from services.deploy.platform_ref import PlatformRef

API_PORT = 8000
# The bucket expires both (platform settings scoringOutputDays, predictionLogDays).
SCORING_PREFIX = platform_out.SCORING_PREFIX + "{month}/"
PREDICTIONS = platform_out.PREDICTIONS_PREFIX
TASK_EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


def assume(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


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
    """Read (and list) the prediction log and the months with actual durations; start training."""
    reads = [cfg.scoringInput]
    listed = [f"s3://{bucket}/{PREDICTIONS}{{month}}"] if bucket else []
    statements = read_statements(reads) + (read_statements(listed, listed=True) if listed else [])
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


def build(cfg: ServicesConfig) -> dict[str, object]:
    platform = PlatformRef(cfg)
    tracking_uri = platform.require(platform_out.TRACKING_PRIVATE_URI)
    vpc_id = platform.require(platform_out.VPC_ID)
    subnets = platform.require(platform_out.PUBLIC_SUBNET_IDS)
    client_sg = platform.require(platform_out.CLIENT_SECURITY_GROUP_ID)
    ca_pem = platform.require(platform_out.TRACKING_CA_CERT)
    password_secrets = pulumi.Output.all(
        **{user: platform.require(key) for user, key in platform_out.PASSWORD_SECRETS.items()}
    )
    artifact_bucket = platform.require(platform_out.ARTIFACT_BUCKET)
    name = "mlops"
    tags = {"project": "mlops-services", "stack": cfg.stack}

    # --- images ---------------------------------------------------------------------------
    if cfg.prebuilt:
        api_image: pulumi.Input[str] = cfg.modelApiImage
        training_image: pulumi.Input[str] = cfg.trainingImage
        scoring_image: pulumi.Input[str] = cfg.scoringImage
        monitoring_image: pulumi.Input[str] = cfg.monitoringImage
    else:
        refs = {}
        for image in ("model-api", "training", "scoring", "monitoring"):
            repo = aws.ecr.Repository(
                f"{name}-{image}",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                    scan_on_push=True
                ),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
                ],
                force_delete=cfg.kind != "prod",
                tags=tags,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{image}-lifecycle",
                repository=repo.name,
                policy=json.dumps(
                    {
                        "rules": [
                            {
                                "rulePriority": 1,
                                "description": f"keep the {cfg.imagesKept} newest images",
                                "selection": {
                                    "tagStatus": "any",
                                    "countType": "imageCountMoreThan",
                                    "countNumber": cfg.imagesKept,
                                },
                                "action": {"type": "expire"},
                            }
                        ]
                    }
                ),
            )
            token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id)
            registry = docker_build.RegistryArgs(
                address=repo.repository_url, username=token.user_name, password=token.password
            )
            refs[image] = images.build(image, repo.repository_url, registry)
        api_image, training_image = refs["model-api"], refs["training"]
        scoring_image, monitoring_image = refs["scoring"], refs["monitoring"]

    # --- shared ---------------------------------------------------------------------------
    cluster = aws.ecs.Cluster(
        f"{name}-cluster",
        settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
        tags=tags,
    )
    logs = {
        svc: aws.cloudwatch.LogGroup(
            f"{name}-{svc}-logs", retention_in_days=cfg.logRetentionDays, tags=tags
        )
        for svc in ("model-api", "training", "scoring", "monitoring")
    }
    execution_role = aws.iam.Role(
        f"{name}-execution", assume_role_policy=assume("ecs-tasks.amazonaws.com"), tags=tags
    )
    aws.iam.RolePolicyAttachment(
        f"{name}-execution-base", role=execution_role.name, policy_arn=TASK_EXECUTION_POLICY
    )
    aws.iam.RolePolicy(
        f"{name}-execution-secret",
        role=execution_role.id,
        # The workload users' passwords only; the admin's credentials stay with people.
        policy=password_secrets.apply(
            lambda arns: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["secretsmanager:GetSecretValue"],
                            "Resource": sorted(arns.values()),
                        }
                    ],
                }
            )
        ),
    )
    region = aws.get_region().region

    def fargate_task(
        svc, image, cpu, memory, task_role, env=(), more=None
    ) -> aws.ecs.TaskDefinition:
        """A Fargate task definition with one container `svc`, logging to its group, with the
        tracking URI, CA and `svc`'s MLflow user as plain env and its password as an ECS secret."""
        definitions = pulumi.Output.all(
            image,
            tracking_uri,
            password_secrets,
            logs[svc].name,
            pulumi.Output.from_input(more or {}),
            pulumi.Output.from_input(list(env)),
            ca_pem,
        ).apply(
            lambda a: json.dumps(
                [
                    {
                        "name": svc,
                        "image": a[0],
                        "essential": True,
                        "environment": [*mlflow_env(svc, a[1], a[6]), *a[5]],
                        "secrets": mlflow_secrets(svc, a[2]),
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": a[3],
                                "awslogs-region": region,
                                "awslogs-stream-prefix": svc,
                            },
                        },
                        **a[4],
                    }
                ]
            )
        )
        return aws.ecs.TaskDefinition(
            f"{name}-{svc}",
            family=f"{name}-{cfg.stack}-{svc}",
            cpu=str(cpu),
            memory=str(memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture="X86_64"
            ),
            container_definitions=definitions,
            tags=tags,
        )

    # --- model API ------------------------------------------------------------------------
    api_role = aws.iam.Role(
        f"{name}-api-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"), tags=tags
    )
    # The prediction log: the API may write under predictions/ in the artifact bucket, no more.
    prediction_log: pulumi.Input[str | None] = None
    if cfg.predictionLog:
        prediction_log = pulumi.Output.concat("s3://", artifact_bucket, "/", PREDICTIONS)
        aws.iam.RolePolicy(
            f"{name}-api-prediction-log",
            role=api_role.id,
            policy=artifact_bucket.apply(lambda b: write_policy(f"s3://{b}/{PREDICTIONS}")),
        )
    api_task = fargate_task(
        "model-api",
        api_image,
        cfg.apiCpu,
        cfg.apiMemoryMb,
        api_role,
        env=[
            {"name": "MODEL_API_REFRESH_SECONDS", "value": str(cfg.modelRefreshSeconds)},
            *(
                [{"name": "MODEL_API_PREDICTION_LOG", "value": prediction_log}]
                if prediction_log
                else []
            ),
        ],
        more={
            "portMappings": [{"containerPort": API_PORT, "protocol": "tcp"}],
            "healthCheck": {
                "command": [
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{API_PORT}/health', timeout=2)",
                ],
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 30,
            },
        },
    )
    alb_sg = aws.ec2.SecurityGroup(
        f"{name}-alb",
        vpc_id=vpc_id,
        description="Model API load balancer",
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=port, to_port=port, cidr_blocks=list(cfg.apiAllowedCidrs)
            )
            for port in ((80, 443) if cfg.certificateArn else (80,))
        ],
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                protocol="tcp", from_port=API_PORT, to_port=API_PORT, cidr_blocks=["0.0.0.0/0"]
            )
        ],
        tags=tags,
    )
    task_sg = aws.ec2.SecurityGroup(
        f"{name}-api-tasks",
        vpc_id=vpc_id,
        description="Model API tasks: from the load balancer only",
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=API_PORT, to_port=API_PORT, security_groups=[alb_sg.id]
            )
        ],
        egress=[
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"]
            )
        ],
        tags=tags,
    )
    alb = aws.lb.LoadBalancer(
        f"{name}-api",
        load_balancer_type="application",
        security_groups=[alb_sg.id],
        subnets=subnets,
        drop_invalid_header_fields=True,
        tags=tags,
    )
    target_group = aws.lb.TargetGroup(
        f"{name}-api",
        port=API_PORT,
        protocol="HTTP",
        target_type="ip",
        vpc_id=vpc_id,
        deregistration_delay=15,
        # Liveness, not /ready: on a first deploy no champion exists yet, and targets failing
        # /ready would be replaced in a loop until the circuit breaker rolled the deploy back.
        # /ready and /predict's 503 keep saying why there is no model (scripts/deploy trains).
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            path="/health", matcher="200", interval=15, healthy_threshold=2, unhealthy_threshold=3
        ),
        tags=tags,
    )
    forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)]
    if cfg.certificateArn:
        listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            certificate_arn=cfg.certificateArn,
            default_actions=forward,
        )
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        port="443", protocol="HTTPS", status_code="HTTP_301"
                    ),
                )
            ],
        )
        api_url = pulumi.Output.concat("https://", alb.dns_name)
    else:
        listener = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=forward,
        )
        api_url = pulumi.Output.concat("http://", alb.dns_name)

    # No NAT in the platform: tasks sit in the public subnets with a public address to pull
    # images; only the load balancer's group may reach them.
    network = aws.ecs.ServiceNetworkConfigurationArgs(
        subnets=subnets, security_groups=[task_sg.id, client_sg], assign_public_ip=True
    )
    service = aws.ecs.Service(
        f"{name}-model-api",
        cluster=cluster.arn,
        task_definition=api_task.arn,
        desired_count=cfg.apiMinTasks,
        launch_type="FARGATE",
        network_configuration=network,
        load_balancers=[
            aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=target_group.arn,
                container_name="model-api",
                container_port=API_PORT,
            )
        ],
        deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
            enable=True, rollback=True
        ),
        health_check_grace_period_seconds=120,
        propagate_tags="SERVICE",
        tags=tags,
        # Autoscaling owns the task count after creation.
        opts=pulumi.ResourceOptions(depends_on=[listener], ignore_changes=["desiredCount"]),
    )
    scaling = aws.appautoscaling.Target(
        f"{name}-api-scaling",
        min_capacity=cfg.apiMinTasks,
        max_capacity=cfg.apiMaxTasks,
        resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
        scalable_dimension="ecs:service:DesiredCount",
        service_namespace="ecs",
    )
    aws.appautoscaling.Policy(
        f"{name}-api-cpu",
        policy_type="TargetTrackingScaling",
        resource_id=scaling.resource_id,
        scalable_dimension=scaling.scalable_dimension,
        service_namespace=scaling.service_namespace,
        target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
            predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                predefined_metric_type="ECSServiceAverageCPUUtilization"
            ),
            target_value=60,
            scale_in_cooldown=120,
            scale_out_cooldown=60,
        ),
    )

    def scheduled_task(label: str, task: aws.ecs.TaskDefinition, task_role, cron: str) -> None:
        """Run a Fargate task on a cron (EventBridge Scheduler), in the public subnets with the
        platform's client group; the scheduler may start this task and pass its two roles."""
        role = aws.iam.Role(
            f"{name}-{label}-scheduler", assume_role_policy=assume("scheduler.amazonaws.com"),
            tags=tags,
        )  # fmt: skip
        aws.iam.RolePolicy(
            f"{name}-{label}-scheduler-run",
            role=role.id,
            policy=pulumi.Output.all(
                task.arn_without_revision, execution_role.arn, task_role.arn
            ).apply(lambda a: run_task_policy(a[0], [a[1], a[2]])),
        )
        aws.scheduler.Schedule(
            f"{name}-{label}",
            schedule_expression=aws_cron(cron),
            schedule_expression_timezone="UTC",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=cluster.arn,
                role_arn=role.arn,
                ecs_parameters=aws.scheduler.ScheduleTargetEcsParametersArgs(
                    task_definition_arn=task.arn_without_revision,
                    launch_type="FARGATE",
                    network_configuration=aws.scheduler.ScheduleTargetEcsParametersNetworkConfigurationArgs(
                        subnets=subnets, security_groups=[client_sg], assign_public_ip=True
                    ),
                ),
            ),
        )

    # --- training job ---------------------------------------------------------------------
    training_role = aws.iam.Role(
        f"{name}-training-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"), tags=tags
    )
    aws.iam.RolePolicy(
        f"{name}-training-data",
        role=training_role.id,
        policy=data_read_policy(cfg.training_data, listed=bool(cfg.trainingDataPrefix)),
    )
    training_task = fargate_task(
        "training",
        training_image,
        1024,
        4096,
        training_role,
        more={"command": cfg.training_command},
    )
    scheduled_task("training", training_task, training_role, cfg.trainingSchedule)

    # --- monitoring job -------------------------------------------------------------------
    # Daily: the logged traffic against the champion's reference, its RMSE on the month the
    # scoring job scores; on degraded it starts the training task above.
    monitoring_role = aws.iam.Role(
        f"{name}-monitoring-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"), tags=tags
    )
    aws.iam.RolePolicy(
        f"{name}-monitoring-access",
        role=monitoring_role.id,
        policy=pulumi.Output.all(
            artifact_bucket, training_task.arn_without_revision, execution_role.arn,
            training_role.arn,
        ).apply(
            lambda a: monitoring_policy(
                cfg, a[0] if cfg.predictionLog else None, a[1], [a[2], a[3]]
            )
        ),
    )  # fmt: skip
    retrain = (
        pulumi.Output.all(cluster.name, training_task.arn_without_revision, subnets, client_sg).apply(
            lambda a: [
                "--retrain", "ecs", "--ecs-cluster", a[0], "--ecs-task-definition", a[1],
                "--ecs-subnets", ",".join(a[2]), "--ecs-security-groups", a[3],
            ]
        )
        if cfg.retrainOnDegraded
        else []
    )  # fmt: skip
    monitoring_task = fargate_task(
        "monitoring",
        monitoring_image,
        1024,
        4096,
        monitoring_role,
        more={
            "command": pulumi.Output.all(prediction_log, retrain).apply(
                lambda a: [*monitoring_command(cfg, a[0]), *a[1]]
            )
        },
    )
    scheduled_task("monitoring", monitoring_task, monitoring_role, cfg.monitoringSchedule)

    # --- scoring job ----------------------------------------------------------------------
    # An AWS Batch array job on Fargate: one task per shard, each picking its shard from
    # AWS_BATCH_JOB_ARRAY_INDEX. Batch creates its service-linked role on first use.
    scoring_output: pulumi.Input[str] = cfg.scoringOutput or pulumi.Output.concat(
        "s3://", artifact_bucket, "/", SCORING_PREFIX
    )
    scoring_role = aws.iam.Role(
        f"{name}-scoring-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"), tags=tags
    )
    aws.iam.RolePolicy(
        f"{name}-scoring-data",
        role=scoring_role.id,
        policy=pulumi.Output.from_input(scoring_output).apply(
            lambda out: scoring_policy(cfg.scoringInput, out)
        ),
    )
    compute = aws.batch.ComputeEnvironment(
        f"{name}-scoring",
        type="MANAGED",
        compute_resources=aws.batch.ComputeEnvironmentComputeResourcesArgs(
            type="FARGATE",
            max_vcpus=cfg.scoringShards * cfg.scoringCpu,
            subnets=subnets,
            security_group_ids=[client_sg],
        ),
        tags=tags,
    )
    queue = aws.batch.JobQueue(
        f"{name}-scoring",
        priority=1,
        state="ENABLED",
        compute_environment_orders=[
            aws.batch.JobQueueComputeEnvironmentOrderArgs(order=1, compute_environment=compute.arn)
        ],
        # A job that can never be placed is cancelled after an hour rather than waiting for ever.
        # Batch acts only on these reasons; one that waits for the account's Fargate vCPU quota
        # shows no such reason and keeps waiting (docs/deploy-aws.md, Batch's caveats).
        job_state_time_limit_actions=[
            aws.batch.JobQueueJobStateTimeLimitActionArgs(
                action="CANCEL", state="RUNNABLE", max_time_seconds=3600, reason=reason
            )
            for reason in (
                "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
                "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
            )
        ],
        tags=tags,
    )
    scoring_args = scoring_command(cfg)
    job_definition = aws.batch.JobDefinition(
        f"{name}-scoring",
        type="container",
        platform_capabilities=["FARGATE"],
        container_properties=pulumi.Output.all(
            scoring_image,
            tracking_uri,
            password_secrets,
            logs["scoring"].name,
            scoring_role.arn,
            execution_role.arn,
            scoring_output,
            ca_pem,
        ).apply(
            lambda a: json.dumps(
                {
                    "image": a[0],
                    "command": [*scoring_args, "--output", a[6]],
                    "jobRoleArn": a[4],
                    "executionRoleArn": a[5],
                    "resourceRequirements": [
                        {"type": "VCPU", "value": str(cfg.scoringCpu)},
                        {"type": "MEMORY", "value": str(cfg.scoringMemoryMb)},
                    ],
                    # No NAT in the platform: a public address to pull the image.
                    "networkConfiguration": {"assignPublicIp": "ENABLED"},
                    "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
                    "environment": mlflow_env("scoring", a[1], a[7]),
                    "secrets": mlflow_secrets("scoring", a[2]),
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {"awslogs-group": a[3], "awslogs-stream-prefix": "scoring"},
                    },
                }
            )
        ),
        # A shard that failed for a passing reason runs once more; a usage or input error
        # (exit code 2) would fail again.
        retry_strategy=aws.batch.JobDefinitionRetryStrategyArgs(
            attempts=2,
            evaluate_on_exits=[
                aws.batch.JobDefinitionRetryStrategyEvaluateOnExitArgs(
                    action="exit", on_exit_code="2"
                )
            ],
        ),
        timeout=aws.batch.JobDefinitionTimeoutArgs(attempt_duration_seconds=3 * 3600),
        propagate_tags=True,
        tags=tags,
    )
    scoring_scheduler_role = aws.iam.Role(
        f"{name}-scoring-scheduler",
        assume_role_policy=assume("scheduler.amazonaws.com"),
        tags=tags,
    )
    aws.iam.RolePolicy(
        f"{name}-scoring-scheduler-submit",
        role=scoring_scheduler_role.id,
        policy=pulumi.Output.all(queue.arn, job_definition.arn_prefix).apply(
            lambda a: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["batch:SubmitJob"],
                            # The schedule names the definition without a revision (the
                            # latest); AWS's pages differ on which ARN is then checked.
                            "Resource": [a[0], a[1], f"{a[1]}:*"],
                        }
                    ],
                }
            )
        ),
    )
    aws.scheduler.Schedule(
        f"{name}-scoring",
        schedule_expression=aws_cron(cfg.scoringSchedule),
        schedule_expression_timezone="UTC",
        flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
        target=aws.scheduler.ScheduleTargetArgs(
            # Scheduler has no Batch target type; its universal target calls SubmitJob.
            arn="arn:aws:scheduler:::aws-sdk:batch:submitJob",
            role_arn=scoring_scheduler_role.arn,
            input=pulumi.Output.all(queue.arn, job_definition.arn_prefix).apply(
                lambda a: json.dumps(submit_job_input(cfg, a[0], a[1]))
            ),
            retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=3600, maximum_retry_attempts=3
            ),
        ),
    )
    return {
        "modelApiUrl": api_url,
        "trainingJob": training_task.arn_without_revision,
        "cluster": cluster.name,
        "trainingSubnets": subnets,
        "trainingSecurityGroups": pulumi.Output.all(client_sg).apply(list),
        "modelApiImage": api_image,
        "trainingImage": training_image,
        "scoringImage": scoring_image,
        "monitoringImage": monitoring_image,
        "monitoringJob": monitoring_task.arn_without_revision,
        "predictionLog": prediction_log,
        "scoringJobQueue": queue.arn,
        "scoringJobDefinition": job_definition.arn_prefix,
        "scoringInput": cfg.scoringInput,
        "scoringOutput": scoring_output,
        "scoringShards": cfg.scoringShards,
    }
