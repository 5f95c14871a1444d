"""Alerts on GCP: notification channels for a stack's alertEmail and alertWebhook (both projects
make theirs with `notification_channels`), and the platform's own alert policies on its database.

    db-cpu       the Cloud SQL instance's CPU above 80% for 15 minutes
    db-storage   its disk above 80% full (autoresize grows it, up to dbMaxAllocatedStorageGb)
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import PlatformConfig


def notification_channels(
    name: str, stack: str, email: str | None, webhook: str | None, parent: pulumi.Resource
) -> list[gcp.monitoring.NotificationChannel]:
    mine = pulumi.ResourceOptions(parent=parent)
    channels = []
    if email:
        channels.append(gcp.monitoring.NotificationChannel(
            f"{name}-email", type="email", display_name=f"MLOps {stack} email",
            labels={"email_address": email}, opts=mine,
        ))  # fmt: skip
    if webhook:
        channels.append(gcp.monitoring.NotificationChannel(
            f"{name}-webhook", type="webhook_tokenauth", display_name=f"MLOps {stack} webhook",
            labels={"url": webhook}, opts=mine,
        ))  # fmt: skip
    return channels


class PlatformAlerts(pulumi.ComponentResource):
    def __init__(
        self, name: str, cfg: PlatformConfig, database: gcp.sql.DatabaseInstance,
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:gcp:PlatformAlerts", f"{name}-alerts", None, opts)
        self.channels = notification_channels(
            f"{name}-alerts", cfg.stack, cfg.alertEmail, cfg.alertWebhook, self
        )
        # Cloud SQL's metrics name an instance "PROJECT:INSTANCE".
        project = pulumi.Config("gcp").require("project")
        database_id = database.name.apply(lambda n: f"{project}:{n}")
        for alert, metric, duration, meaning in (
            ("db-cpu", "cpu/utilization", "900s", "the database's CPU was above 80% for 15 "
             "minutes"),
            ("db-storage", "disk/utilization", "0s", "the database's disk is over 80% full"),
        ):  # fmt: skip
            condition = gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                filter=database_id.apply(
                    lambda d, m=metric: 'resource.type = "cloudsql_database" AND '
                    f'resource.label.database_id = "{d}" AND '
                    f'metric.type = "cloudsql.googleapis.com/database/{m}"'
                ),
                comparison="COMPARISON_GT",
                threshold_value=0.8,
                duration=duration,
                aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                    alignment_period="300s", per_series_aligner="ALIGN_MEAN"
                )],
            )  # fmt: skip
            gcp.monitoring.AlertPolicy(
                f"{name}-{alert}",
                display_name=f"MLOps {cfg.stack}: {alert}",
                combiner="OR",
                conditions=[gcp.monitoring.AlertPolicyConditionArgs(
                    display_name=alert, condition_threshold=condition
                )],
                notification_channels=[c.id for c in self.channels],
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                    content=f"{cfg.stack}: {meaning}", mime_type="text/markdown"
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )  # fmt: skip
        self.register_outputs({})


def platform_alerts(
    name: str, cfg: PlatformConfig, database: gcp.sql.DatabaseInstance
) -> PlatformAlerts | None:
    if not (cfg.alertEmail or cfg.alertWebhook):
        pulumi.log.warn(
            "no alerts: set mlops-platform:alertEmail (or alertWebhook) to be told when the "
            "database's CPU or storage runs high"
        )
        return None
    return PlatformAlerts(name, cfg, database)
