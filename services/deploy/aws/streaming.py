"""Streaming predictions on AWS: ride events on a Kinesis stream in, their predictions on another
out, the handler (streaming.aws_lambda) as a Lambda function from the streaming image.

    streams      input and output Kinesis streams: on-demand (or streamShards provisioned),
                 encrypted with the AWS managed key, 24 hours kept
    dead letters an SQS queue: bad records with their reasons (the handler), and the batches
                 Lambda gave up on (its on-failure destination: where in the stream, not the data)
    function     in the platform's public subnets, no public address: the tracking server over
                 its private address, AWS's APIs through VPC endpoints (Kinesis, SQS, Secrets
                 Manager: interface; S3, for the prediction log: gateway), as its own MLflow user
    mapping      the event source mapping: batches of streamBatchSize within
                 streamBatchWindowSeconds, from the stream's oldest record (no event is lost to a
                 late start), ReportBatchItemFailures, bisected on error, streamMaxAttempts
                 deliveries then the on-failure queue

Delivery is at least once: a retried batch is read again from its first failed record, so a
prediction after it may come out twice (same ride_id and model version).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.aws.common import assume
from services.deploy.aws.common import Platform, tags
from services.deploy.aws.policies import streaming_env, streaming_policy
from services.deploy.components import NAME, PREDICTIONS
from services.deploy.config import ServicesConfig

INTERFACE_ENDPOINTS = ("kinesis-streams", "sqs", "secretsmanager")
TIMEOUT_SECONDS = 120
"""A batch's longest run: the first one of an instance loads the model (tens of seconds)."""
RECORD_AGE_SECONDS = 86_400
"""Records older than the stream keeps them are gone anyway: given up after a day."""


def lambda_image(ref: str) -> str:
    """Lambda names an image by tag or by digest, not both (the docker-build provider's
    `repo:tag@sha256:…`): the digest, which changes the function when the image changes."""
    name, at, digest = ref.partition("@")
    if not at:
        return ref
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return f"{name}@{digest}"


class StreamingService(pulumi.ComponentResource):
    events: aws.kinesis.Stream
    predictions: aws.kinesis.Stream
    dead_letters: aws.sqs.Queue
    function: aws.lambda_.Function

    def __init__(
        self, cfg: ServicesConfig, platform: Platform, image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:services:aws:StreamingService", f"{NAME}-streaming", None, opts)
        self.events = self.stream(cfg, "ride-events")
        self.predictions = self.stream(cfg, "ride-predictions")
        self.dead_letters = aws.sqs.Queue(
            f"{NAME}-ride-events-dead-letter",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=14 * 86_400,  # SQS's longest
            tags=tags(cfg.stack),
            opts=pulumi.ResourceOptions(parent=self),
        )
        logs = aws.cloudwatch.LogGroup(
            f"{NAME}-streaming-logs", retention_in_days=cfg.logRetentionDays,
            tags=tags(cfg.stack), opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        self.prediction_log = (
            platform.artifact_bucket.apply(lambda b: f"s3://{b}/{PREDICTIONS}")
            if cfg.predictionLog
            else None
        )
        secret = platform.password_secrets.apply(lambda arns: arns["streaming"])
        role = aws.iam.Role(
            f"{NAME}-streaming", assume_role_policy=assume("lambda.amazonaws.com"),
            tags=tags(cfg.stack), opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        grants = aws.iam.RolePolicy(
            f"{NAME}-streaming",
            role=role.id,
            policy=pulumi.Output.all(
                self.events.arn, self.predictions.arn, self.dead_letters.arn, secret, logs.arn,
                self.prediction_log,
            ).apply(lambda a: streaming_policy(*a)),
            opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        function_sg, endpoints = self.network(cfg, platform)
        env = pulumi.Output.all(
            platform.tracking_uri, platform.ca_pem, self.predictions.name,
            self.dead_letters.url, secret, cfg.modelRefreshSeconds, self.prediction_log,
        ).apply(lambda a: streaming_env(*a))  # fmt: skip
        self.function = aws.lambda_.Function(
            f"{NAME}-streaming",
            package_type="Image",
            image_uri=pulumi.Output.from_input(image).apply(lambda_image),
            role=role.arn,
            timeout=TIMEOUT_SECONDS,
            memory_size=cfg.streamMemoryMb,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=env),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=platform.subnets,
                security_group_ids=[function_sg.id, platform.client_sg],
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=logs.name
            ),
            tags=tags(cfg.stack),
            # Its role may make its network interfaces before it is created (and until it is
            # gone); its first batch reaches AWS's APIs.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grants, *endpoints]),
        )
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{NAME}-ride-events",
            event_source_arn=self.events.arn,
            function_name=self.function.arn,
            starting_position="TRIM_HORIZON",
            batch_size=cfg.streamBatchSize,
            maximum_batching_window_in_seconds=cfg.streamBatchWindowSeconds,
            function_response_types=["ReportBatchItemFailures"],
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=cfg.streamMaxAttempts - 1,
            maximum_record_age_in_seconds=RECORD_AGE_SECONDS,
            destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
                on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(
                    destination_arn=self.dead_letters.arn
                )
            ),
            # Lambda checks at creation that the role may read the stream and send to the queue.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grants]),
        )
        self.register_outputs({"events": self.events.name, "predictions": self.predictions.name})

    def stream(self, cfg: ServicesConfig, label: str) -> aws.kinesis.Stream:
        provisioned = cfg.streamShards is not None and label == "ride-events"
        return aws.kinesis.Stream(
            f"{NAME}-{label}",
            stream_mode_details=aws.kinesis.StreamStreamModeDetailsArgs(
                stream_mode="PROVISIONED" if provisioned else "ON_DEMAND"
            ),
            shard_count=cfg.streamShards if provisioned else None,
            encryption_type="KMS",
            kms_key_id="alias/aws/kinesis",  # the AWS managed key: no grants to use it
            retention_period=24,
            tags=tags(cfg.stack),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def offered(self, platform: Platform, service: str) -> pulumi.Output[list[str]]:
        """The platform's subnets in zones where AWS offers `service`'s endpoint (not every zone
        has every one; an endpoint in a subnet of another zone fails to create). Clients in the
        other zones reach it across zones."""
        invoke = pulumi.InvokeOutputOptions(parent=self)
        zones = aws.ec2.get_vpc_endpoint_service_output(
            service=service, service_type="Interface", opts=invoke
        ).availability_zones
        found = aws.ec2.get_subnets_output(
            filters=[
                aws.ec2.GetSubnetsFilterArgs(name="subnet-id", values=platform.subnets),
                aws.ec2.GetSubnetsFilterArgs(name="availability-zone", values=zones),
            ],
            opts=invoke,
        ).ids

        def some(ids: list[str]) -> list[str]:
            if not ids:
                raise ValueError(
                    f"streaming: no subnet of the platform is in a zone that offers {service} "
                    "endpoints; set mlops-services:streaming false, or the platform's vpcCidr "
                    "zones elsewhere"
                )
            return sorted(ids)

        return found.apply(some)

    def network(
        self, cfg: ServicesConfig, platform: Platform
    ) -> tuple[aws.ec2.SecurityGroup, list[aws.ec2.VpcEndpoint]]:
        """The function's security group, and the endpoints it reaches AWS's APIs through (the
        platform has no NAT, and a function in a VPC gets no public address)."""
        function_sg = aws.ec2.SecurityGroup(
            f"{NAME}-streaming",
            vpc_id=platform.vpc_id,
            description="Stream handler function: no inbound",
            egress=[aws.ec2.SecurityGroupEgressArgs(
                protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"]
            )],
            tags=tags(cfg.stack),
            opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{NAME}-streaming-endpoints",
            vpc_id=platform.vpc_id,
            description="VPC endpoints: HTTPS from the stream handler function only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=443, to_port=443, security_groups=[function_sg.id]
            )],
            tags=tags(cfg.stack),
            opts=pulumi.ResourceOptions(parent=self),
        )  # fmt: skip
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        endpoints = [
            aws.ec2.VpcEndpoint(
                f"{NAME}-streaming-{service}",
                vpc_id=platform.vpc_id,
                service_name=pulumi.Output.concat("com.amazonaws.", region, f".{service}"),
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,  # the SDK's default names resolve to it
                subnet_ids=self.offered(platform, service),
                security_group_ids=[endpoint_sg.id],
                tags=tags(cfg.stack),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for service in INTERFACE_ENDPOINTS
        ]
        if cfg.predictionLog:
            route_table = aws.ec2.get_route_table_output(
                subnet_id=platform.subnets.apply(lambda s: s[0]),
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            endpoints.append(aws.ec2.VpcEndpoint(
                f"{NAME}-streaming-s3",
                vpc_id=platform.vpc_id,
                service_name=pulumi.Output.concat("com.amazonaws.", region, ".s3"),
                vpc_endpoint_type="Gateway",
                route_table_ids=[route_table.route_table_id],
                tags=tags(cfg.stack),
                opts=pulumi.ResourceOptions(parent=self),
            ))  # fmt: skip
        return function_sg, endpoints
