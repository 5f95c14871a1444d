"""One CloudWatch dashboard per stack, `mlops-<stack>`: the model API's requests, 5xx and latency,
the monitor's drift share and realised RMSE over time (monitoring.metrics), failed jobs (the
alerts' rules, with alerts on), the stream handler's records and errors (streaming on), the
tracking server's CPU and the database's connections. The tracking server's memory is not on it:
the VM's CloudWatch agent ships logs only."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.mlflow_server import REGISTERED_MODEL
from monitoring import metrics
from services.deploy.components import NAME

DAY, FIVE_MINUTES = 86_400, 300


@dataclass(frozen=True)
class Charted:
    """What the dashboard shows, by the names CloudWatch gives it."""

    load_balancer: pulumi.Output[str]
    target_group: pulumi.Output[str]
    tracking_instance: pulumi.Output[str]
    """The tracking VM's ARN (platform output trackingInstance)."""
    db_endpoint: pulumi.Output[str]
    """The database's address:port (platform output dbEndpoint): its identifier is the first
    label of the address."""
    failure_rules: list[pulumi.Output[str]]
    function: pulumi.Output[str] | None = None
    events_stream: pulumi.Output[str] | None = None


def widget(
    title: str, rows: list[list], stat: str, period: int, region: str, y: int, x: int
) -> dict:
    return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": {"title": title, "region": region, "stat": stat, "period": period,
                           "view": "timeSeries", "metrics": rows}}  # fmt: skip


def body(stack: str, region: str, a: dict) -> str:
    """The dashboard's JSON, from resolved names (`a`)."""
    lb, tg = a["load_balancer"], a["target_group"]
    api = ["LoadBalancer", lb, "TargetGroup", tg]
    dims = [v for kv in metrics.dimensions(stack, REGISTERED_MODEL).items() for v in kv]
    charts = [
        ("Model API: requests and 5xx (5 min)", [
            ["AWS/ApplicationELB", "RequestCount", *api],
            ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *api],
            ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", lb],
        ], "Sum", FIVE_MINUTES),
        ("Model API: latency (s)", [
            ["AWS/ApplicationELB", "TargetResponseTime", *api, {"stat": "p50"}],
            ["AWS/ApplicationELB", "TargetResponseTime", *api, {"stat": "p95"}],
        ], "p95", FIVE_MINUTES),
        ("Monitor: drift share, realised RMSE, RMSE / validation", [
            [metrics.NAMESPACE, metrics.METRICS[m], *dims]
            for m in ("drift_share", "realised_rmse", "rmse_ratio")
        ], "Maximum", DAY),
        ("Tracking server: CPU %", [
            # One VM (an instance ARN), or replicas (their Auto Scaling group's ARN): by group.
            ["AWS/EC2", "CPUUtilization",
             "AutoScalingGroupName" if ":autoScalingGroup:" in a["tracking_instance"]
             else "InstanceId", a["tracking_instance"].rsplit("/", 1)[-1]],
        ], "Average", FIVE_MINUTES),
        ("Database: connections", [
            ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier",
             a["db_endpoint"].split(".", 1)[0]],
        ], "Maximum", FIVE_MINUTES),
    ]  # fmt: skip
    if a["failure_rules"]:
        charts.append(("Jobs failed", [["AWS/Events", "MatchedEvents", "RuleName", rule]
                                        for rule in a["failure_rules"]], "Sum", FIVE_MINUTES))  # fmt: skip
    if a["function"]:
        charts.append(("Stream handler: records in, invocations, errors", [
            ["AWS/Kinesis", "IncomingRecords", "StreamName", a["events_stream"]],
            ["AWS/Lambda", "Invocations", "FunctionName", a["function"]],
            ["AWS/Lambda", "Errors", "FunctionName", a["function"]],
        ], "Sum", FIVE_MINUTES))  # fmt: skip
    widgets = [widget(title, rows, stat, period, region, 6 * (i // 2), 12 * (i % 2))
               for i, (title, rows, stat, period) in enumerate(charts)]  # fmt: skip
    return json.dumps({"widgets": widgets})


class Dashboard(pulumi.ComponentResource):
    def __init__(self, stack: str, charted: Charted, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:services:aws:Dashboard", f"{NAME}-dashboard", None, opts)
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        names = pulumi.Output.all(
            region=region, load_balancer=charted.load_balancer,
            target_group=charted.target_group, tracking_instance=charted.tracking_instance,
            db_endpoint=charted.db_endpoint, failure_rules=pulumi.Output.all(*charted.failure_rules),
            function=charted.function, events_stream=charted.events_stream,
        )  # fmt: skip
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{NAME}-dashboard",
            dashboard_name=f"mlops-{stack}",
            dashboard_body=names.apply(lambda a: body(stack, a["region"], a)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.dashboard.dashboard_name})
