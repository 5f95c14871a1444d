"""Alerts on AWS: an SNS topic with a stack's alertEmail and alertWebhook subscribed (both
projects make theirs with `alert_topic`), and the platform's own alarms on its database and, by
the outside probe (infra.aws.probe, to the same topic), on the tracking server's health and
certificate.

    db-cpu       the database's CPU above 80% on average for 15 minutes
    db-storage   the database's free storage below 20% of the size it started with (storage
                 autoscaling grows it at 10% free, up to dbMaxAllocatedStorageGb: this says
                 the data is growing into it)

With monthlyBudget, an AWS Budgets cost budget on what carries this stack's `stack` tag (both
projects tag everything with it), emailing alertEmail at 80% and 100%, actual and forecast. AWS
counts a tag only once it is activated as a cost allocation tag (Billing, Cost allocation tags:
`stack`), which it offers a day after the tag first appears in the bill.

The topic is not encrypted with a KMS key: CloudWatch cannot publish to a topic under the AWS
managed key (alias/aws/sns), and an alert says nothing secret.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.config import PlatformConfig

FIVE_MINUTES = 300


def alert_topic(
    name: str, email: str | None, webhook: str | None, topic_tags: dict[str, str],
    parent: pulumi.Resource,
) -> aws.sns.Topic:  # fmt: skip
    """`name`'s topic, with the email address and the https:// URL subscribed (each confirms
    its subscription: the mail's link, the endpoint's answer)."""
    mine = pulumi.ResourceOptions(parent=parent)
    topic = aws.sns.Topic(name, tags=topic_tags, opts=mine)
    for label, protocol, endpoint in (("email", "email", email), ("webhook", "https", webhook)):
        if endpoint:
            aws.sns.TopicSubscription(
                f"{name}-{label}", topic=topic.arn, protocol=protocol, endpoint=endpoint, opts=mine
            )
    return topic


def metric_alarm(
    resource_name: str, description: str, namespace: str, metric: str, dims: dict,
    period: int, topic: aws.sns.Topic, alarm_tags: dict[str, str], parent: pulumi.Resource,
    statistic: str = "Maximum", operator: str = "GreaterThanOrEqualToThreshold",
    threshold: float = 1, periods: int = 1, treat_missing_data: str = "notBreaching",
    datapoints: int | None = None, muted_at_night: bool = False,
) -> aws.cloudwatch.MetricAlarm:  # fmt: skip
    """One metric's alarm, to the topic (both projects' alarms on a single metric): breaching in
    `datapoints` (all, unless given) of the last `periods` periods."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric,
        dimensions=dims,
        statistic=statistic,
        period=period,
        evaluation_periods=periods,
        datapoints_to_alarm=datapoints,
        comparison_operator=operator,
        threshold=threshold,
        treat_missing_data=treat_missing_data,
        alarm_actions=[topic.arn],
        tags=alarm_tags,
        # Muted at night (infra.aws.sleep): the night's schedules own actionsEnabled, and an
        # `up --refresh` at night leaves it off.
        opts=pulumi.ResourceOptions(
            parent=parent, ignore_changes=["actionsEnabled"] if muted_at_night else None
        ),
    )


class PlatformAlerts(pulumi.ComponentResource):
    topic: aws.sns.Topic

    def __init__(
        self, name: str, cfg: PlatformConfig, db_identifier: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:aws:PlatformAlerts", f"{name}-alerts", None, opts)
        topic_tags = {"Name": f"{name}-alerts", "project": "mlops-platform", "stack": cfg.stack}
        self.topic = alert_topic(f"{name}-alerts", cfg.alertEmail, cfg.alertWebhook, topic_tags,
                                 self)  # fmt: skip
        dims = {"DBInstanceIdentifier": db_identifier}
        low = 0.2 * cfg.dbAllocatedStorageGb * 1024**3  # bytes
        for alarm, metric, operator, threshold, periods, meaning in (
            ("db-cpu", "CPUUtilization", "GreaterThanThreshold", 80, 3,
             "the database's CPU was above 80% for 15 minutes"),
            ("db-storage", "FreeStorageSpace", "LessThanThreshold", low, 1,
             f"the database's free storage fell below 20% of {cfg.dbAllocatedStorageGb} GB"),
        ):  # fmt: skip
            metric_alarm(
                f"{name}-{alarm}", f"{cfg.stack}: {meaning}", "AWS/RDS", metric, dims,
                FIVE_MINUTES, self.topic, topic_tags, self, operator=operator,
                threshold=threshold, periods=periods, treat_missing_data="missing",
                statistic="Average" if metric == "CPUUtilization" else "Minimum",
            )  # fmt: skip
        self.register_outputs({"topic": self.topic.arn})


def platform_alerts(
    name: str, cfg: PlatformConfig, db_identifier: pulumi.Input[str]
) -> PlatformAlerts | None:
    """The platform's alarms and its budget (with monthlyBudget); None without a place to send
    alerts (said at `pulumi up`)."""
    budget(name, cfg)
    if not (cfg.alertEmail or cfg.alertWebhook):
        pulumi.log.warn(
            "no alerts: set mlops-platform:alertEmail (or alertWebhook) to be told when the "
            "database's CPU or storage runs high, or the tracking server is down"
        )
        return None
    return PlatformAlerts(name, cfg, db_identifier)


def budget(name: str, cfg: PlatformConfig) -> aws.budgets.Budget | None:
    """The stack's monthly budget (monthlyBudget), or None without one."""
    if not cfg.monthlyBudget:
        return None
    if not cfg.alertEmail:
        pulumi.log.warn(
            "monthlyBudget without alertEmail: the budget is kept but tells no one; set "
            "mlops-platform:alertEmail"
        )
    notify = [
        aws.budgets.BudgetNotificationArgs(
            comparison_operator="GREATER_THAN", threshold=percent, threshold_type="PERCENTAGE",
            notification_type=kind, subscriber_email_addresses=[cfg.alertEmail],
        )
        for percent in (80, 100)
        for kind in ("ACTUAL", "FORECASTED")
    ] if cfg.alertEmail else []  # fmt: skip
    return aws.budgets.Budget(
        f"{name}-budget",
        name=f"mlops-{cfg.stack}",
        budget_type="COST",
        limit_amount=f"{cfg.monthlyBudget:.2f}",
        limit_unit="USD",
        time_unit="MONTHLY",
        cost_filters=[aws.budgets.BudgetCostFilterArgs(
            name="TagKeyValue", values=[f"user:stack${cfg.stack}"]
        )],
        notifications=notify,
    )  # fmt: skip
