"""Where the AWS service stack's alerts go and what raises them: an SNS topic with the stack's
alertEmail and alertWebhook subscribed, CloudWatch alarms on the metrics the code and AWS emit,
and EventBridge rules on the jobs' failures. Without either setting nothing is made, and
`pulumi up` says so.

    monitor-degraded   the monitor decided `degraded` (its Degraded metric, monitoring.metrics)
    monitor-drift      the monitor found the traffic drifted from the training reference
    api-5xx            over alertApi5xxPercent of the model API's answers in 5 minutes are 5xx
                       (the tasks' and the load balancer's own, e.g. no healthy task)
    api-latency        the API's p95 over 5 minutes is above alertApiP95Ms
    job-failed         a training or monitoring task stopped with a non-zero exit code or never
                       started; a scoring job failed (EventBridge rules: the event is the message)
    streaming-errors   the stream handler's function failed an invocation
    dead-letters       the dead-letter queue holds a bad record or a batch Lambda gave up on

The topic is not encrypted with a KMS key: CloudWatch cannot publish to a topic under the AWS
managed key (alias/aws/sns), and an alert says nothing secret. Its policy lets this account's
alarms and these rules publish, nothing else from outside the account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.alerts import alert_topic, metric_alarm
from infra.mlflow_server import REGISTERED_MODEL
from monitoring import metrics
from services.deploy.aws.common import tags
from services.deploy.components import NAME
from services.deploy.config import ServicesConfig

DAY, FIVE_MINUTES = 86_400, 300
MONITOR_ALARMS = {
    "monitor-degraded": ("degraded", "the monitor decided degraded: the champion's realised RMSE "
                         "is over its validation RMSE by more than maxRmseIncrease"),
    "monitor-drift": ("drift", "the monitor found the logged traffic drifted from the champion's "
                      "training reference"),
}  # fmt: skip
"""Alarm -> (the monitoring.metrics metric it watches, what it means)."""


@dataclass(frozen=True)
class Watched:
    """What the alerts watch, from the stack's other components."""

    cluster: pulumi.Output[str]
    """The ECS cluster's ARN."""
    tasks: list[pulumi.Output[str]]
    """The scheduled tasks' definitions (ARN without revision): training, monitoring."""
    scoring_queue: pulumi.Output[str]
    load_balancer: pulumi.Output[str]
    """The model API's load balancer and target group, as CloudWatch names them (ARN suffixes)."""
    target_group: pulumi.Output[str]
    function: pulumi.Output[str] | None = None
    """The stream handler's function name and dead-letter queue name (streaming on)."""
    dead_letters: pulumi.Output[str] | None = None


def failed_task_pattern(cluster: str, tasks: list[str]) -> str:
    """A standalone task of these definitions (any revision) that stopped failing: it never
    started, or a container exited non-zero (a job that succeeds exits 0)."""
    return json.dumps({
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [cluster],
            "lastStatus": ["STOPPED"],
            "taskDefinitionArn": [{"prefix": f"{task}:"} for task in tasks],
            "$or": [
                {"stopCode": ["TaskFailedToStart"]},
                {"containers": {"exitCode": [{"anything-but": 0}]}},
            ],
        },
    })  # fmt: skip


def failed_batch_pattern(queue: str) -> str:
    return json.dumps({"source": ["aws.batch"], "detail-type": ["Batch Job State Change"],
                       "detail": {"status": ["FAILED"], "jobQueue": [queue]}})  # fmt: skip


def topic_policy(topic: str, account: str, rules: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Alarms", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic,
         "Condition": {"StringEquals": {"aws:SourceAccount": account}}},
        {"Sid": "Rules", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic,
         "Condition": {"ArnEquals": {"aws:SourceArn": rules}}},
    ]})  # fmt: skip


class Alerts(pulumi.ComponentResource):
    topic: aws.sns.Topic

    def __init__(
        self, cfg: ServicesConfig, watched: Watched, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlops:services:aws:Alerts", f"{NAME}-alerts", None, opts)
        self.cfg = cfg
        self.api_alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        """Muted at night with a sleepSchedule (services.deploy.aws.night)."""
        mine = pulumi.ResourceOptions(parent=self)
        self.topic = alert_topic(f"{NAME}-alerts", cfg.alertEmail, cfg.alertWebhook,
                                 tags(cfg.stack), self)  # fmt: skip
        dims = metrics.dimensions(cfg.stack, REGISTERED_MODEL)  # the model the monitor watches
        for name, (metric, meaning) in MONITOR_ALARMS.items():
            self.alarm(name, meaning, metrics.NAMESPACE, metrics.METRICS[metric], dims, DAY,
                       treat_missing_data="notBreaching")  # the monitor runs daily  # fmt: skip
        self.api(watched)
        if watched.function is not None:
            self.alarm("streaming-errors", "the stream handler's function failed an invocation",
                       "AWS/Lambda", "Errors", {"FunctionName": watched.function}, FIVE_MINUTES,
                       statistic="Sum")  # fmt: skip
        if watched.dead_letters is not None:
            self.alarm("dead-letters", "the stream's dead-letter queue holds a bad record or a "
                       "batch Lambda gave up on", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                       {"QueueName": watched.dead_letters}, FIVE_MINUTES)  # fmt: skip
        self.rules = rules = [
            self.rule("tasks-failed", "a training or monitoring task failed",
                      pulumi.Output.all(watched.cluster, *watched.tasks).apply(
                          lambda a: failed_task_pattern(a[0], list(a[1:])))),
            self.rule("scoring-failed", "a scoring job failed",
                      watched.scoring_queue.apply(failed_batch_pattern)),
        ]  # fmt: skip
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        aws.sns.TopicPolicy(
            f"{NAME}-alerts",
            arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, account.account_id, *[r.arn for r in rules])
            .apply(lambda a: topic_policy(a[0], a[1], list(a[2:]))),
            opts=mine,
        )  # fmt: skip
        self.register_outputs({"topic": self.topic.arn})

    def alarm(
        self, name: str, meaning: str, namespace: str, metric: str, dims: dict, period: int,
        statistic: str = "Maximum", treat_missing_data: str = "notBreaching",
    ) -> aws.cloudwatch.MetricAlarm:  # fmt: skip
        return metric_alarm(
            f"{NAME}-{name}", f"{self.cfg.stack}: {meaning}", namespace, metric, dims, period,
            self.topic, tags(self.cfg.stack), self, statistic=statistic,
            treat_missing_data=treat_missing_data,
        )  # fmt: skip

    def api(self, watched: Watched) -> None:
        """The model API's 5xx share (its tasks' and the load balancer's own) and p95 latency."""
        both = {"LoadBalancer": watched.load_balancer, "TargetGroup": watched.target_group}

        def count(metric: str, dims: dict) -> aws.cloudwatch.MetricAlarmMetricQueryMetricArgs:
            return aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace="AWS/ApplicationELB", metric_name=metric, dimensions=dims,
                period=FIVE_MINUTES, stat="Sum",
            )  # fmt: skip

        query = aws.cloudwatch.MetricAlarmMetricQueryArgs
        self.api_alarms["api-5xx"] = aws.cloudwatch.MetricAlarm(
            f"{NAME}-api-5xx",
            alarm_description=f"{self.cfg.stack}: over {self.cfg.alertApi5xxPercent:g}% of the "
            "model API's answers in 5 minutes were 5xx",
            metric_queries=[
                query(id="target5xx", metric=count("HTTPCode_Target_5XX_Count", both)),
                query(id="lb5xx", metric=count("HTTPCode_ELB_5XX_Count",
                                               {"LoadBalancer": watched.load_balancer})),
                query(id="requests", metric=count("RequestCount", both)),
                query(id="share", return_data=True, label="5xx share (%)",
                      expression="100 * (FILL(target5xx, 0) + FILL(lb5xx, 0)) / "
                                 "MAX([FILL(requests, 0) + FILL(lb5xx, 0), 1])"),
            ],
            evaluation_periods=1,
            comparison_operator="GreaterThanThreshold",
            threshold=self.cfg.alertApi5xxPercent,
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            tags=tags(self.cfg.stack),
            opts=self.muted_at_night(),
        )  # fmt: skip
        self.api_alarms["api-latency"] = aws.cloudwatch.MetricAlarm(
            f"{NAME}-api-latency",
            alarm_description=f"{self.cfg.stack}: the model API's p95 over 5 minutes was above "
            f"{self.cfg.alertApiP95Ms} ms",
            namespace="AWS/ApplicationELB",
            metric_name="TargetResponseTime",  # seconds
            dimensions=both,
            extended_statistic="p95",
            period=FIVE_MINUTES,
            evaluation_periods=1,
            comparison_operator="GreaterThanThreshold",
            threshold=self.cfg.alertApiP95Ms / 1000,
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            tags=tags(self.cfg.stack),
            opts=self.muted_at_night(),
        )

    def muted_at_night(self) -> pulumi.ResourceOptions:
        """The API's alarms are muted at night with a sleepSchedule (services.deploy.aws.night):
        its schedules own actionsEnabled, which an `up --refresh` at night leaves off."""
        night = ["actionsEnabled"] if self.cfg.sleepSchedule else None
        return pulumi.ResourceOptions(parent=self, ignore_changes=night)

    def rule(self, name: str, meaning: str, pattern: pulumi.Input[str]) -> aws.cloudwatch.EventRule:
        mine = pulumi.ResourceOptions(parent=self)
        rule = aws.cloudwatch.EventRule(
            f"{NAME}-{name}", description=f"{self.cfg.stack}: {meaning}", event_pattern=pattern,
            tags=tags(self.cfg.stack), opts=mine,
        )  # fmt: skip
        aws.cloudwatch.EventTarget(f"{NAME}-{name}", rule=rule.name, arn=self.topic.arn, opts=mine)
        return rule


def stack_alerts(cfg: ServicesConfig, watched: Watched) -> Alerts | None:
    """The stack's alerts, or None (said at `pulumi up`) without a place to send them."""
    if not cfg.alerts_on:
        pulumi.log.warn(
            "no alerts: set mlops-services:alertEmail (or alertWebhook) to be told when a job "
            "fails, the model API errs or slows, or the monitor decides degraded"
        )
        return None
    return Alerts(cfg, watched)
