"""Where the AWS service stack's alerts go and what raises them: an SNS topic with the stack's
alertEmail and alertWebhook subscribed, and a CloudWatch alarm on each metric the code emits
(monitoring.metrics names them; a test ties the two). Without either setting nothing is made,
and `pulumi up` says so.

    monitor-degraded   the monitor decided `degraded` (Degraded >= 1 in a day)
    monitor-drift      the monitor found the traffic drifted from the training reference

The topic is not encrypted with a KMS key: CloudWatch cannot publish to a topic under the AWS
managed key (alias/aws/sns), and an alert says nothing secret.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.mlflow_server import REGISTERED_MODEL
from monitoring import metrics
from services.deploy.aws.common import tags
from services.deploy.components import NAME
from services.deploy.config import ServicesConfig

DAY = 86_400
MONITOR_ALARMS = {
    "monitor-degraded": ("degraded", "the monitor decided degraded: the champion's realised RMSE "
                         "is over its validation RMSE by more than maxRmseIncrease"),
    "monitor-drift": ("drift", "the monitor found the logged traffic drifted from the champion's "
                      "training reference"),
}  # fmt: skip
"""Alarm -> (the monitoring.metrics metric it watches, what it means)."""


class Alerts(pulumi.ComponentResource):
    topic: aws.sns.Topic

    def __init__(self, cfg: ServicesConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:services:aws:Alerts", f"{NAME}-alerts", None, opts)
        mine = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(f"{NAME}-alerts", tags=tags(cfg.stack), opts=mine)
        if cfg.alertEmail:
            aws.sns.TopicSubscription(
                f"{NAME}-alerts-email", topic=self.topic.arn, protocol="email",
                endpoint=cfg.alertEmail, opts=mine,
            )  # fmt: skip
        if cfg.alertWebhook:
            aws.sns.TopicSubscription(
                f"{NAME}-alerts-webhook", topic=self.topic.arn, protocol="https",
                endpoint=cfg.alertWebhook, endpoint_auto_confirms=False, opts=mine,
            )  # fmt: skip
        dims = metrics.dimensions(cfg.stack, REGISTERED_MODEL)  # the model the monitor watches
        for name, (metric, meaning) in MONITOR_ALARMS.items():
            aws.cloudwatch.MetricAlarm(
                f"{NAME}-{name}",
                alarm_description=f"{cfg.stack}: {meaning}",
                namespace=metrics.NAMESPACE,
                metric_name=metrics.METRICS[metric],
                dimensions=dims,
                statistic="Maximum",
                period=DAY,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
                treat_missing_data="notBreaching",  # the monitor runs daily; no run is no news
                alarm_actions=[self.topic.arn],
                tags=tags(cfg.stack),
                opts=mine,
            )
        self.register_outputs({"topic": self.topic.arn})


def stack_alerts(cfg: ServicesConfig) -> Alerts | None:
    """The stack's alerts, or None (said at `pulumi up`) without a place to send them."""
    if not cfg.alerting:
        pulumi.log.warn(
            "no alerts: set mlops-services:alertEmail (or alertWebhook) to be told when the "
            "monitor decides degraded or finds drift"
        )
        return None
    return Alerts(cfg)
