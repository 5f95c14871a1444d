"""Where the GCP service stack's alerts go and what raises them: the monitor's custom metrics
declared before anything writes or watches them (an alert policy on a metric that does not exist
yet is refused), a notification channel for alertEmail and alertWebhook, and an alert policy on
each metric the code emits (monitoring.metrics names them; a test ties the two). Without either
setting no channel or policy is made, and `pulumi up` says so; the metrics are still declared
(the monitor publishes them for the dashboards, and writes them from its first run).

    monitor-degraded   the monitor decided `degraded`
    monitor-drift      the monitor found the traffic drifted from the training reference
    api-5xx            over alertApi5xxPercent of the model API's requests in 5 minutes are 5xx
    api-latency        the API's p95 over 5 minutes is above alertApiP95Ms
    job-failed         an execution of the training, monitoring or scoring job failed
    dead-letters       the stream's dead-letter subscription holds a message (streaming on)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.gcp.alerts import alert_policy, notification_channels
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


@dataclass(frozen=True)
class Watched:
    """What the alerts watch, from the stack's other components (names as Cloud Monitoring's
    resource labels give them)."""

    api_service: pulumi.Output[str]
    jobs: list[pulumi.Output[str]]
    """The training, monitoring and scoring jobs' names."""
    dead_letters: pulumi.Output[str] | None = None
    """The dead-letter topic's pull subscription's name (streaming on)."""


FIVE_MINUTES = "300s"


def metric_filter(metric: str, stack: str) -> str:
    """The series of one monitor metric of this stack and model, as a monitoring filter."""
    return (
        f'metric.type = "{metrics.PREFIX}{metric}" AND resource.type = "global" AND '
        f'metric.label.stack = "{stack}" AND metric.label.model = "{REGISTERED_MODEL}"'
    )


class Alerts(pulumi.ComponentResource):
    descriptors: dict[str, gcp.monitoring.MetricDescriptor]
    channels: list[gcp.monitoring.NotificationChannel]

    def __init__(
        self, cfg: ServicesConfig, watched: Watched, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:services:gcp:Alerts", f"{NAME}-alerts", None, opts)
        mine = pulumi.ResourceOptions(parent=self)
        self.api_policies: dict[str, gcp.monitoring.AlertPolicy] = {}
        """Off at night with a sleepSchedule (services.deploy.gcp.night)."""
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
                # A metric type is the project's: every stack in it shares it (the stack label
                # tells them apart), and creating it again updates it. A destroy leaves it, with
                # the other stacks' points.
                deletion_policy="ABANDON",
                opts=mine,
            )
            for metric in metrics.METRICS
        }
        self.channels = notification_channels(
            f"{NAME}-alerts", cfg.stack, cfg.alertEmail, cfg.alertWebhook, self
        )
        if self.channels:
            self.cfg = cfg
            for name, (metric, meaning) in MONITOR_ALERTS.items():
                self.policy(name, meaning, gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                    filter=metric_filter(metric, cfg.stack),
                    comparison="COMPARISON_GT",
                    threshold_value=0.5,  # the metric is 0 or 1
                    duration="0s",
                    aggregations=[aligned("ALIGN_MAX")],
                ), auto_close="86400s")  # fmt: skip
            self.services(watched)
        self.register_outputs({})

    def services(self, watched: Watched) -> None:
        """The model API's 5xx share and p95, the jobs' failed executions, the dead letters."""
        cfg = self.cfg
        api = watched.api_service.apply(
            lambda n: f'resource.type = "cloud_run_revision" AND resource.label.service_name = "{n}"'
            ' AND metric.type = "run.googleapis.com/request_count"'
        )  # fmt: skip
        summed = aligned("ALIGN_RATE", "REDUCE_SUM")
        self.policy("api-5xx", f"over {cfg.alertApi5xxPercent:g}% of the model API's requests "
                    "in 5 minutes were 5xx",
                    gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=api.apply(lambda f: f + ' AND metric.label.response_code_class = "5xx"'),
                        denominator_filter=api, aggregations=[summed],
                        denominator_aggregations=[summed], comparison="COMPARISON_GT",
                        threshold_value=cfg.alertApi5xxPercent / 100, duration="0s",
                    ))  # fmt: skip
        latency = watched.api_service.apply(
            lambda n: f'resource.type = "cloud_run_revision" AND resource.label.service_name = "{n}"'
            ' AND metric.type = "run.googleapis.com/request_latencies"'
        )  # fmt: skip
        self.policy("api-latency", f"the model API's p95 over 5 minutes was above "
                    f"{cfg.alertApiP95Ms} ms",
                    gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=latency, aggregations=[aligned("ALIGN_PERCENTILE_95", "REDUCE_MAX")],
                        comparison="COMPARISON_GT", threshold_value=cfg.alertApiP95Ms,
                        duration="0s",
                    ))  # fmt: skip
        jobs = pulumi.Output.all(*watched.jobs).apply(
            lambda names: 'resource.type = "cloud_run_job" AND '
            f"resource.label.job_name = one_of({', '.join(json.dumps(n) for n in names)})"
            ' AND metric.type = "run.googleapis.com/job/completed_execution_count"'
            ' AND metric.label.result = "failed"'
        )  # fmt: skip
        self.policy("job-failed", "an execution of the training, monitoring or scoring job failed",
                    gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=jobs, aggregations=[aligned("ALIGN_DELTA")],
                        comparison="COMPARISON_GT", threshold_value=0, duration="0s",
                    ))  # fmt: skip
        if watched.dead_letters is not None:
            letters = watched.dead_letters.apply(
                lambda n: 'resource.type = "pubsub_subscription" AND '
                f'resource.label.subscription_id = "{n}" AND '
                'metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"'
            )  # fmt: skip
            self.policy("dead-letters", "the stream's dead-letter topic holds a bad record or a "
                        "message Pub/Sub gave up on",
                        gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                            filter=letters, aggregations=[aligned("ALIGN_MAX")],
                            comparison="COMPARISON_GT", threshold_value=0, duration="0s",
                        ))  # fmt: skip

    def policy(
        self, name: str, meaning: str,
        threshold: gcp.monitoring.AlertPolicyConditionConditionThresholdArgs,
        auto_close: str | None = None,
    ) -> gcp.monitoring.AlertPolicy:  # fmt: skip
        # After the monitor's metrics' descriptors: a policy on an unknown metric is refused.
        # The API's are off at night with a sleepSchedule (services.deploy.gcp.night): its jobs own
        # `enabled`, which an `up --refresh` at night leaves off.
        night = ["enabled"] if name.startswith("api-") and self.cfg.sleepSchedule else None
        opts = pulumi.ResourceOptions(parent=self, depends_on=list(self.descriptors.values()),
                                      ignore_changes=night)  # fmt: skip
        made = alert_policy(f"{NAME}-{name}", self.cfg.stack, name, meaning, threshold,
                            self.channels, opts, auto_close)  # fmt: skip
        if name.startswith("api-"):
            self.api_policies[name] = made
        return made


def aligned(aligner: str, reducer: str | None = None):
    """Five-minute windows, each series by `aligner`, then summed or maxed across series."""
    return gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
        alignment_period=FIVE_MINUTES, per_series_aligner=aligner, cross_series_reducer=reducer
    )


def stack_alerts(cfg: ServicesConfig, watched: Watched) -> Alerts:
    if not cfg.alerts_on:
        pulumi.log.warn(
            "no alerts: set mlops-services:alertEmail (or alertWebhook) to be told when a job "
            "fails, the model API errs or slows, or the monitor decides degraded"
        )
    return Alerts(cfg, watched)
