"""The tracking server checked from outside its VM, on AWS: infra.tracking_probe as a Lambda
function in the platform's private subnets (with the MLflow clients' security group, so it
reaches the server as the workloads do, on the private URI), run every minute by an EventBridge
rule. Metric filters on its log turn each line into `MLOps/Tracking` metrics, dimension Stack:

    Healthy              1 or 0 each minute; no line in a minute (the function did not run or
                         timed out) counts as failing
    CertificateDaysLeft  days the certificate the server presents has left

and two alarms go to the platform's topic:

    tracking-health       Healthy below 1 in 2 of the last 3 minutes
    tracking-certificate  CertificateDaysLeft below 21 (the renewal workflow renews at 30)

The function needs no NAT or endpoint: it talks to the server only, and Lambda ships its log.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra import tracking_probe
from infra.aws.alerts import metric_alarm
from infra.aws.common import LAMBDA_VPC, assume, child, tags
from infra.config import PlatformConfig

NAMESPACE = "MLOps/Tracking"
HEALTHY, DAYS_LEFT = "Healthy", "CertificateDaysLeft"
CERTIFICATE_DAYS = 21
RUNTIME = "python3.12"
TIMEOUT_SECONDS = 15
"""The probe's own timeout (5 s) three times over: a slow start in a VPC still logs its line."""
FILTERS = {
    # A metric's value must be a field the pattern names (`= *` when any value will do): so a
    # failed handshake's line, which has no certificate to count, makes no CertificateDaysLeft.
    HEALTHY: ('{ $.probe = "tracking" && $.healthy = * }', "$.healthy"),
    DAYS_LEFT: ('{ $.probe = "tracking" && $.certificateDaysLeft = * }', "$.certificateDaysLeft"),
}


def probe_policy(log_group_arn: str) -> str:
    """Its log group's streams, and the network interfaces Lambda makes with its role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [f"{log_group_arn}:*"],
                },
                {"Effect": "Allow", "Action": LAMBDA_VPC, "Resource": "*"},
            ],
        }
    )


class TrackingProbe(pulumi.ComponentResource):
    function: aws.lambda_.Function
    health_alarm: aws.cloudwatch.MetricAlarm
    """Muted at night with a sleepSchedule (infra.aws.sleep)."""

    def __init__(
        self, name: str, cfg: PlatformConfig, private_uri: pulumi.Input[str],
        ca_pem: pulumi.Input[str], subnet_ids: list[pulumi.Input[str]],
        client_sg_id: pulumi.Input[str], topic: aws.sns.Topic,
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:aws:TrackingProbe", f"{name}-tracking-probe", None, opts)
        label = f"{name}-tracking-probe"
        probe_tags = tags(cfg.stack, label)
        logs = aws.cloudwatch.LogGroup(
            label, retention_in_days=cfg.logRetentionDays, tags=probe_tags, opts=child(self)
        )
        role = aws.iam.Role(
            label, assume_role_policy=assume("lambda.amazonaws.com"), tags=probe_tags,
            opts=child(self),
        )  # fmt: skip
        grants = aws.iam.RolePolicy(
            label, role=role.id, policy=logs.arn.apply(probe_policy), opts=child(self)
        )
        code = Path(tracking_probe.__file__)
        self.function = aws.lambda_.Function(
            label,
            runtime=RUNTIME,
            handler=f"{code.stem}.handler",
            code=pulumi.AssetArchive({code.name: pulumi.FileAsset(str(code))}),
            role=role.arn,
            timeout=TIMEOUT_SECONDS,
            memory_size=128,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    "TRACKING_PROBE_URI": private_uri,
                    "TRACKING_PROBE_CA": ca_pem,
                    "TRACKING_PROBE_STACK": cfg.stack,
                }
            ),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=subnet_ids, security_group_ids=[client_sg_id]
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=logs.name
            ),
            tags=probe_tags,
            # Lambda makes the function's network interfaces with its role, at creation.
            opts=child(self, depends_on=[grants]),
        )
        every_minute = aws.cloudwatch.EventRule(
            label, schedule_expression="rate(1 minute)", tags=probe_tags, opts=child(self)
        )
        allowed = aws.lambda_.Permission(
            label,
            action="lambda:InvokeFunction",
            function=self.function.name,
            principal="events.amazonaws.com",
            source_arn=every_minute.arn,
            opts=child(self),
        )
        aws.cloudwatch.EventTarget(
            label, rule=every_minute.name, arn=self.function.arn,
            opts=child(self, depends_on=[allowed]),
        )  # fmt: skip
        for metric, (pattern, value) in FILTERS.items():
            aws.cloudwatch.LogMetricFilter(
                f"{label}-{metric}",
                log_group_name=logs.name,
                pattern=pattern,
                metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                    name=metric,
                    namespace=NAMESPACE,
                    value=value,
                    dimensions={"Stack": "$.stack"},
                ),  # fmt: skip
                opts=child(self),
            )
        dims = {"Stack": cfg.stack}
        self.health_alarm = metric_alarm(
            f"{name}-tracking-health",
            f"{cfg.stack}: the tracking server's /health failed from outside its VM for 2 of "
            "the last 3 minutes",
            NAMESPACE, HEALTHY, dims, 60, topic, probe_tags, self, statistic="Minimum",
            operator="LessThanThreshold", threshold=1, periods=3, datapoints=2,
            treat_missing_data="breaching", muted_at_night=bool(cfg.sleepSchedule),
        )  # fmt: skip
        metric_alarm(
            f"{name}-tracking-certificate",
            f"{cfg.stack}: the tracking server's certificate ends within {CERTIFICATE_DAYS} "
            "days (scripts/renew-cert)",
            NAMESPACE, DAYS_LEFT, dims, 3600, topic, probe_tags, self, statistic="Minimum",
            operator="LessThanThreshold", threshold=CERTIFICATE_DAYS, treat_missing_data="missing",
        )  # fmt: skip
        self.register_outputs({"function": self.function.name})
