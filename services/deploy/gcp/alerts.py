"""Where the GCP service stack's alerts go and what raises them: the monitor's custom metrics
declared before anything writes or watches them (an alert policy on a metric that does not exist
yet is refused), a notification channel for alertEmail and alertWebhook, and an alert policy on
each metric the code emits (monitoring.metrics names them; a test ties the two). Without either
setting no channel or policy is made, and `pulumi up` says so; the metrics are still declared
(the monitor publishes them for the dashboards, and writes them from its first run).

    monitor-degraded   the monitor decided `degraded`
    monitor-drift      the monitor found the traffic drifted from the training reference
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.mlflow_server import REGISTERED_MODEL
from monitoring import metrics
from services.deploy.components import NAME
from services.deploy.config import ServicesConfig

MONITOR_ALERTS = {
    "monitor-degraded": ("degraded", "The monitor decided **degraded**: the champion's realised "
                         "RMSE is over its validation RMSE by more than maxRmseIncrease."),
    "monitor-drift": ("drift", "The monitor found the logged traffic **drifted** from the "
                      "champion's training reference."),
}  # fmt: skip
"""Alert policy -> (the monitoring.metrics metric it watches, what it means)."""


def metric_filter(metric: str, stack: str) -> str:
    """The series of one monitor metric of this stack and model, as a monitoring filter."""
    return (
        f'metric.type = "{metrics.PREFIX}{metric}" AND resource.type = "global" AND '
        f'metric.label.stack = "{stack}" AND metric.label.model = "{REGISTERED_MODEL}"'
    )


class Alerts(pulumi.ComponentResource):
    descriptors: dict[str, gcp.monitoring.MetricDescriptor]
    channels: list[gcp.monitoring.NotificationChannel]

    def __init__(self, cfg: ServicesConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:services:gcp:Alerts", f"{NAME}-alerts", None, opts)
        mine = pulumi.ResourceOptions(parent=self)
        labels = [gcp.monitoring.MetricDescriptorLabelArgs(key=k.lower(), value_type="STRING")
                  for k in metrics.DIMENSIONS]  # fmt: skip
        self.descriptors = {
            metric: gcp.monitoring.MetricDescriptor(
                f"{NAME}-metric-{metric.replace('_', '-')}",
                type=metrics.PREFIX + metric,
                metric_kind="GAUGE",
                value_type="DOUBLE",
                labels=labels,
                display_name=f"MLOps monitor: {metric}",
                description="Published by each monitoring run (monitoring/metrics.py).",
                opts=mine,
            )
            for metric in metrics.METRICS
        }
        self.channels = []
        if cfg.alertEmail:
            self.channels.append(gcp.monitoring.NotificationChannel(
                f"{NAME}-alerts-email", type="email", display_name=f"MLOps {cfg.stack} email",
                labels={"email_address": cfg.alertEmail}, opts=mine,
            ))  # fmt: skip
        if cfg.alertWebhook:
            self.channels.append(gcp.monitoring.NotificationChannel(
                f"{NAME}-alerts-webhook", type="webhook_tokenauth",
                display_name=f"MLOps {cfg.stack} webhook", labels={"url": cfg.alertWebhook},
                opts=mine,
            ))  # fmt: skip
        if self.channels:
            for name, (metric, meaning) in MONITOR_ALERTS.items():
                self.policy(cfg, name, metric, meaning)
        self.register_outputs({})

    def policy(self, cfg: ServicesConfig, name: str, metric: str, meaning: str) -> None:
        threshold = gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=metric_filter(metric, cfg.stack),
            comparison="COMPARISON_GT",
            threshold_value=0.5,  # the metric is 0 or 1
            duration="0s",
            aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                alignment_period="300s", per_series_aligner="ALIGN_MAX"
            )],
        )  # fmt: skip
        gcp.monitoring.AlertPolicy(
            f"{NAME}-{name}",
            display_name=f"MLOps {cfg.stack}: {name}",
            combiner="OR",
            conditions=[gcp.monitoring.AlertPolicyConditionArgs(
                display_name=name, condition_threshold=threshold
            )],
            notification_channels=[c.id for c in self.channels],
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                content=f"{cfg.stack}: {meaning}", mime_type="text/markdown"
            ),
            # The monitor writes one point a day: the incident closes itself after a day.
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close="86400s"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.descriptors.values())),
        )  # fmt: skip


def stack_alerts(cfg: ServicesConfig) -> Alerts:
    if not cfg.alerting:
        pulumi.log.warn(
            "no alerts: set mlops-services:alertEmail (or alertWebhook) to be told when the "
            "monitor decides degraded or finds drift"
        )
    return Alerts(cfg)
