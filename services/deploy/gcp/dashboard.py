"""One Cloud Monitoring dashboard per stack, `MLOps <stack>`: the model API's requests by response
class and its p50/p95 latency, the jobs' executions by result, the monitor's drift share and
realised RMSE over time (monitoring.metrics), the tracking server's CPU and memory (the Ops
Agent's), the project's Cloud SQL connections, and with streaming on the push subscription's
backlog and the dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.mlflow_server import REGISTERED_MODEL
from monitoring import metrics
from services.deploy.components import NAME

FIVE_MINUTES, DAY = "300s", "86400s"


@dataclass(frozen=True)
class Charted:
    api_service: pulumi.Output[str]
    jobs: list[pulumi.Output[str]]
    tracking_instance: pulumi.Output[str]
    """projects/P/zones/Z/instances/N (platform output trackingInstance)."""
    push_subscription: pulumi.Output[str] | None = None
    dead_letters: pulumi.Output[str] | None = None


def series(filter_: str, aligner: str, reducer: str | None = None, group_by=(),
           period: str = FIVE_MINUTES) -> dict:  # fmt: skip
    aggregation = {"alignmentPeriod": period, "perSeriesAligner": aligner}
    if reducer:
        aggregation |= {"crossSeriesReducer": reducer, "groupByFields": list(group_by)}
    return {"timeSeriesQuery": {"timeSeriesFilter": {"filter": filter_,
                                                     "aggregation": aggregation}},
            "plotType": "LINE"}  # fmt: skip


def chart(title: str, *data_sets: dict) -> dict:
    return {"title": title, "xyChart": {"dataSets": list(data_sets)}}


def body(stack: str, a: dict) -> str:
    run = f'resource.type = "cloud_run_revision" AND resource.label.service_name = "{a["api"]}"'
    jobs = ", ".join(json.dumps(j) for j in a["jobs"])
    vm = f'resource.type = "gce_instance" AND metadata.system_labels.name = {a["vm"]}'
    monitor = (f'resource.type = "global" AND metric.label.stack = "{stack}" AND '
               f'metric.label.model = "{REGISTERED_MODEL}"')  # fmt: skip
    widgets = [
        chart("Model API: requests/s by response class", series(
            f'{run} AND metric.type = "run.googleapis.com/request_count"', "ALIGN_RATE",
            "REDUCE_SUM", ["metric.label.response_code_class"])),
        chart("Model API: latency p50, p95 (ms)", *(series(
            f'{run} AND metric.type = "run.googleapis.com/request_latencies"', aligner)
            for aligner in ("ALIGN_PERCENTILE_50", "ALIGN_PERCENTILE_95"))),
        chart("Jobs: executions by result", series(
            f'resource.type = "cloud_run_job" AND resource.label.job_name = one_of({jobs}) AND '
            'metric.type = "run.googleapis.com/job/completed_execution_count"', "ALIGN_DELTA",
            "REDUCE_SUM", ["resource.label.job_name", "metric.label.result"])),
        chart("Monitor: drift share, realised RMSE, RMSE / validation", *(series(
            f'{monitor} AND metric.type = "{metrics.PREFIX}{m}"', "ALIGN_MAX", period=DAY)
            for m in ("drift_share", "realised_rmse", "rmse_ratio"))),
        chart("Tracking server: CPU, memory used", series(
            f'{vm} AND metric.type = "compute.googleapis.com/instance/cpu/utilization"',
            "ALIGN_MEAN"), series(
            f'{vm} AND metric.type = "agent.googleapis.com/memory/percent_used" AND '
            'metric.label.state = "used"', "ALIGN_MEAN")),
        chart("Databases of the project: connections", series(
            'resource.type = "cloudsql_database" AND '
            'metric.type = "cloudsql.googleapis.com/database/postgresql/num_backends"',
            "ALIGN_MEAN", "REDUCE_SUM", ["resource.label.database_id"])),
    ]  # fmt: skip
    if a["push"]:
        widgets.append(chart("Stream: backlog, dead letters", *(series(
            f'resource.type = "pubsub_subscription" AND resource.label.subscription_id = '
            f'"{name}" AND metric.type = '
            '"pubsub.googleapis.com/subscription/num_undelivered_messages"', "ALIGN_MAX")
            for name in (a["push"], a["letters"]))))  # fmt: skip
    return json.dumps({"displayName": f"MLOps {stack}",
                       "gridLayout": {"columns": "2", "widgets": widgets}})  # fmt: skip


class Dashboard(pulumi.ComponentResource):
    def __init__(self, stack: str, charted: Charted, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:services:gcp:Dashboard", f"{NAME}-dashboard", None, opts)
        names = pulumi.Output.all(
            api=charted.api_service, jobs=pulumi.Output.all(*charted.jobs),
            vm=charted.tracking_instance.apply(vm_names),
            push=charted.push_subscription, letters=charted.dead_letters,
        )  # fmt: skip
        self.dashboard = gcp.monitoring.Dashboard(
            f"{NAME}-dashboard",
            dashboard_json=names.apply(lambda a: body(stack, a)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})


def vm_names(path: str) -> str:
    """The tracking server's instance name in a Monitoring filter: one VM's
    (projects/P/zones/Z/instances/N), or a regional group's replicas, named after it
    (projects/P/regions/R/instanceGroupManagers/N: N-xxxx)."""
    name = path.rsplit("/", 1)[-1]
    return f'starts_with("{name}-")' if "/instanceGroupManagers/" in path else f'"{name}"'
