"""Alerts on GCP: notification channels for a stack's alertEmail and alertWebhook (both projects
make theirs with `notification_channels`), and the platform's own alert policies on its database
and, by a private uptime check (infra.gcp.probe, to the same channels), on the tracking server's
health and certificate.

    db-cpu       the Cloud SQL instance's CPU above 80% for 15 minutes
    db-storage   its disk above 80% full (autoresize grows it, up to dbMaxAllocatedStorageGb)

With monthlyBudget, a billing budget on billingAccount for this project's costs, at 80% and 100%,
actual and forecast, to the notification channels and the billing account's admins (the deployer
needs the billing account's costsManager role, and the Billing Budget API is turned on).
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


def alert_policy(
    resource_name: str, stack: str, alert: str, meaning: str,
    threshold: gcp.monitoring.AlertPolicyConditionConditionThresholdArgs,
    channels: list[gcp.monitoring.NotificationChannel], opts: pulumi.ResourceOptions,
    auto_close: str | None = None,
) -> gcp.monitoring.AlertPolicy:  # fmt: skip
    """One condition's policy, to the channels, saying what it means (both projects')."""
    return gcp.monitoring.AlertPolicy(
        resource_name,
        display_name=f"MLOps {stack}: {alert}",
        combiner="OR",
        conditions=[gcp.monitoring.AlertPolicyConditionArgs(
            display_name=alert, condition_threshold=threshold
        )],
        notification_channels=[c.id for c in channels],
        documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
            content=f"{stack}: {meaning}", mime_type="text/markdown"
        ),
        alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close=auto_close)
        if auto_close else None,
        opts=opts,
    )  # fmt: skip


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
            alert_policy(f"{name}-{alert}", cfg.stack, alert, meaning, condition, self.channels,
                         pulumi.ResourceOptions(parent=self))  # fmt: skip
        self.register_outputs({})


def platform_alerts(
    name: str, cfg: PlatformConfig, database: gcp.sql.DatabaseInstance
) -> PlatformAlerts | None:
    """The platform's alerts and its budget (with monthlyBudget); None without a place to send
    alerts (said at `pulumi up`)."""
    alerts = None
    if cfg.alertEmail or cfg.alertWebhook:
        alerts = PlatformAlerts(name, cfg, database)
    else:
        pulumi.log.warn(
            "no alerts: set mlops-platform:alertEmail (or alertWebhook) to be told when the "
            "database's CPU or storage runs high, or the tracking server is down"
        )
    budget(name, cfg, alerts.channels if alerts else [])
    return alerts


def budget(
    name: str, cfg: PlatformConfig, channels: list[gcp.monitoring.NotificationChannel]
) -> gcp.billing.Budget | None:
    """The project's monthly budget (monthlyBudget on billingAccount), or None without one."""
    if not cfg.monthlyBudget:
        return None
    project = gcp.organizations.get_project_output()
    return gcp.billing.Budget(
        f"{name}-budget",
        billing_account=cfg.billingAccount,
        display_name=f"mlops-{cfg.stack}",
        budget_filter=gcp.billing.BudgetBudgetFilterArgs(
            projects=[project.number.apply(lambda n: f"projects/{n}")]
        ),
        amount=gcp.billing.BudgetAmountArgs(
            specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                currency_code="USD", units=str(round(cfg.monthlyBudget))
            )
        ),
        threshold_rules=[
            gcp.billing.BudgetThresholdRuleArgs(threshold_percent=share, spend_basis=basis)
            for share in (0.8, 1.0)
            for basis in ("CURRENT_SPEND", "FORECASTED_SPEND")
        ],
        all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(
            monitoring_notification_channels=[c.id for c in channels]
        ),
    )
