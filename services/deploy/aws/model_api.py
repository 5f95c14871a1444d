"""The model API on AWS: a Fargate service behind an Application Load Balancer (HTTP, or HTTPS
with a certificate and HTTP redirected), its tasks reachable from the load balancer only, the
task count scaled on CPU between the stack's bounds, and, with the prediction log on, the one
grant it needs: writing under predictions/ in the artifact bucket."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.aws.common import assume
from services.deploy.aws.common import Platform, tags
from services.deploy.aws.policies import write_policy
from services.deploy.aws.tasks import Task, TaskRuntime, task_definition
from services.deploy.components import API_PORT, NAME, PREDICTIONS, child
from services.deploy.config import ServicesConfig

HEALTH_CHECK = {
    "command": ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen("
                f"'http://127.0.0.1:{API_PORT}/health', timeout=2)"],
    "interval": 15, "timeout": 5, "retries": 3, "startPeriod": 30,
}  # fmt: skip


class ModelApiService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    prediction_log: pulumi.Output[str] | None
    """Where the API logs its predictions (s3://bucket/predictions/), None with the log off."""

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, runtime: TaskRuntime,
        image: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:aws:ModelApiService", f"{NAME}-model-api-service", None,
                         opts)  # fmt: skip
        role = aws.iam.Role(
            f"{NAME}-api-task", assume_role_policy=assume("ecs-tasks.amazonaws.com"),
            tags=tags(cfg.stack), opts=child(self),
        )  # fmt: skip
        self.prediction_log = None
        if cfg.predictionLog:
            bucket = platform.artifact_bucket
            self.prediction_log = pulumi.Output.concat("s3://", bucket, "/", PREDICTIONS)
            aws.iam.RolePolicy(
                f"{NAME}-api-prediction-log",
                role=role.id,
                policy=bucket.apply(lambda b: write_policy(f"s3://{b}/{PREDICTIONS}")),
                opts=child(self),
            )
        env = [{"name": "MODEL_API_REFRESH_SECONDS", "value": str(cfg.modelRefreshSeconds)}]
        if self.prediction_log is not None:
            env.append({"name": "MODEL_API_PREDICTION_LOG", "value": self.prediction_log})
        more = {"portMappings": [{"containerPort": API_PORT, "protocol": "tcp"}],
                "healthCheck": HEALTH_CHECK}  # fmt: skip
        task = Task("model-api", image, cfg.apiCpu, cfg.apiMemoryMb, env, more)
        definition = task_definition(cfg, platform, runtime, task, role, self)
        target_group, listener = self.load_balancer(cfg, platform)
        self.target_group = target_group
        self.service(cfg, platform, runtime, definition, target_group, listener)
        self.register_outputs({"url": self.url})

    def load_balancer(
        self, cfg: ServicesConfig, platform: Platform
    ) -> tuple[aws.lb.TargetGroup, aws.lb.Listener]:
        """The load balancer, its target group and listeners; sets self.url."""
        self.alb_sg = aws.ec2.SecurityGroup(
            f"{NAME}-alb",
            vpc_id=platform.vpc_id,
            description="Model API load balancer",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=port, to_port=port,
                    cidr_blocks=list(cfg.apiAllowedCidrs),
                )
                for port in ((80, 443) if cfg.certificateArn else (80,))
            ],
            egress=[aws.ec2.SecurityGroupEgressArgs(
                protocol="tcp", from_port=API_PORT, to_port=API_PORT, cidr_blocks=["0.0.0.0/0"]
            )],
            tags=tags(cfg.stack),
            opts=child(self),
        )  # fmt: skip
        self.alb = alb = aws.lb.LoadBalancer(
            f"{NAME}-api",
            load_balancer_type="application",
            security_groups=[self.alb_sg.id],
            subnets=platform.subnets,
            drop_invalid_header_fields=True,
            tags=tags(cfg.stack),
            opts=child(self),
        )
        target_group = aws.lb.TargetGroup(
            f"{NAME}-api",
            port=API_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=platform.vpc_id,
            deregistration_delay=15,
            # Liveness, not /ready: on a first deploy no champion exists yet, and targets failing
            # /ready would be replaced in a loop until the circuit breaker rolled the deploy back.
            # /ready and /predict's 503 keep saying why there is no model (scripts/deploy trains).
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                path="/health", matcher="200", interval=15, healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            tags=tags(cfg.stack),
            opts=child(self),
        )  # fmt: skip
        forward = [
            aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)
        ]
        if not cfg.certificateArn:
            self.url = pulumi.Output.concat("http://", alb.dns_name)
            listener = aws.lb.Listener(
                f"{NAME}-http", load_balancer_arn=alb.arn, port=80, protocol="HTTP",
                default_actions=forward, opts=child(self),
            )  # fmt: skip
            return target_group, listener
        self.url = pulumi.Output.concat("https://", alb.dns_name)
        listener = aws.lb.Listener(
            f"{NAME}-https",
            load_balancer_arn=alb.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            certificate_arn=cfg.certificateArn,
            default_actions=forward,
            opts=child(self),
        )
        redirect = aws.lb.ListenerDefaultActionRedirectArgs(
            port="443", protocol="HTTPS", status_code="HTTP_301"
        )
        aws.lb.Listener(
            f"{NAME}-http", load_balancer_arn=alb.arn, port=80, protocol="HTTP",
            default_actions=[aws.lb.ListenerDefaultActionArgs(type="redirect", redirect=redirect)],
            opts=child(self),
        )  # fmt: skip
        return target_group, listener

    def service(
        self, cfg: ServicesConfig, platform: Platform, runtime: TaskRuntime,
        definition: aws.ecs.TaskDefinition, target_group: aws.lb.TargetGroup,
        listener: aws.lb.Listener,
    ) -> None:  # fmt: skip
        """The ECS service, its tasks' security group and its CPU autoscaling."""
        task_sg = aws.ec2.SecurityGroup(
            f"{NAME}-api-tasks",
            vpc_id=platform.vpc_id,
            description="Model API tasks: from the load balancer only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=API_PORT, to_port=API_PORT,
                security_groups=[self.alb_sg.id],
            )],
            egress=[aws.ec2.SecurityGroupEgressArgs(
                protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"]
            )],
            tags=tags(cfg.stack),
            opts=child(self),
        )  # fmt: skip
        # No NAT in the platform: tasks sit in the public subnets with a public address to pull
        # images; only the load balancer's group may reach them.
        network = aws.ecs.ServiceNetworkConfigurationArgs(
            subnets=platform.subnets, security_groups=[task_sg.id, platform.client_sg],
            assign_public_ip=True,
        )  # fmt: skip
        service = aws.ecs.Service(
            f"{NAME}-model-api",
            cluster=runtime.cluster.arn,
            task_definition=definition.arn,
            desired_count=cfg.apiMinTasks,
            launch_type="FARGATE",
            network_configuration=network,
            load_balancers=[aws.ecs.ServiceLoadBalancerArgs(
                target_group_arn=target_group.arn, container_name="model-api",
                container_port=API_PORT,
            )],
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(
                enable=True, rollback=True
            ),
            health_check_grace_period_seconds=120,
            propagate_tags="SERVICE",
            tags=tags(cfg.stack),
            # Autoscaling owns the task count after creation.
            opts=child(self, depends_on=[listener], ignore_changes=["desiredCount"]),
        )  # fmt: skip
        self.scaling = scaling = aws.appautoscaling.Target(
            f"{NAME}-api-scaling",
            min_capacity=cfg.apiMinTasks,
            max_capacity=cfg.apiMaxTasks,
            resource_id=pulumi.Output.concat("service/", runtime.cluster.name, "/", service.name),
            scalable_dimension="ecs:service:DesiredCount",
            service_namespace="ecs",
            # With a sleepSchedule the night's scheduled actions own the bounds (they set these
            # every morning): an `up --refresh` at night leaves the API asleep.
            opts=child(self, ignore_changes=["minCapacity", "maxCapacity"] if cfg.sleepSchedule
                       else None),
        )  # fmt: skip
        metric = aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
            predefined_metric_type="ECSServiceAverageCPUUtilization"
        )  # fmt: skip
        self.scaling_policy = aws.appautoscaling.Policy(
            f"{NAME}-api-cpu",
            policy_type="TargetTrackingScaling",
            resource_id=scaling.resource_id,
            scalable_dimension=scaling.scalable_dimension,
            service_namespace=scaling.service_namespace,
            target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                predefined_metric_specification=metric,
                target_value=60,
                scale_in_cooldown=120,
                scale_out_cooldown=60,
            ),
            opts=child(self),
        )  # fmt: skip
