"""One dashboard per stack, under mocks: it charts the metrics the code and the clouds emit, by
the names the alerts use (monitoring.metrics for the monitor's)."""

from __future__ import annotations

import json

from monitoring import metrics
from tests.infra.conftest import run_services
from tests.infra.test_alerts import ALERTS, of_type


def charted(body: dict) -> dict[str, list]:
    return {w["properties"]["title"]: w["properties"]["metrics"] for w in body["widgets"]}


def test_aws_the_dashboard_charts_the_api_monitor_server_database_jobs_and_stream(tmp_path):
    result = run_services(tmp_path, "dev", ALERTS)
    assert result["error"] is None, result["error"]
    [dashboard] = of_type(result, "aws:cloudwatch/dashboard:Dashboard")
    assert dashboard["inputs"]["dashboardName"] == "mlops-dev"
    assert result["outputs"]["dashboard"]["value"] == "mlops-dev"
    charts = charted(json.loads(dashboard["inputs"]["dashboardBody"]))
    api = ["LoadBalancer", "app/mlops-api/0mock", "TargetGroup", "targetgroup/mlops-api/0mock"]
    assert ["AWS/ApplicationELB", "RequestCount", *api] in charts[
        "Model API: requests and 5xx (5 min)"
    ]
    monitor = charts["Monitor: drift share, realised RMSE, RMSE / validation"]
    dims = ["Stack", "dev", "Model", "nyc-taxi-duration"]
    assert monitor == [[metrics.NAMESPACE, metrics.METRICS[m], *dims]
                       for m in ("drift_share", "realised_rmse", "rmse_ratio")]  # fmt: skip
    assert charts["Tracking server: CPU %"] == [
        ["AWS/EC2", "CPUUtilization", "InstanceId", "i-0mock"]
    ]
    assert charts["Database: connections"] == [
        ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", "mlops-postgres-0mock"]
    ]
    assert charts["Jobs failed"] == [
        ["AWS/Events", "MatchedEvents", "RuleName", "mlops-tasks-failed"],
        ["AWS/Events", "MatchedEvents", "RuleName", "mlops-scoring-failed"],
    ]
    assert ["AWS/Lambda", "Errors", "FunctionName", "mlops-streaming"] in charts[
        "Stream handler: records in, invocations, errors"
    ]


def test_aws_without_alerts_the_dashboard_has_no_failed_jobs_chart(services_aws):
    [dashboard] = services_aws.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert "Jobs failed" not in charted(json.loads(dashboard["inputs"]["dashboardBody"]))


def test_gcp_the_dashboard_charts_the_api_jobs_monitor_server_and_stream(services_gcp):
    [dashboard] = services_gcp.of_type("gcp:monitoring/dashboard:Dashboard")
    body = json.loads(dashboard["inputs"]["dashboardJson"])
    assert body["displayName"] == f"MLOps {services_gcp.stack}"
    charts = {w["title"]: [d["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
                           for d in w["xyChart"]["dataSets"]]
              for w in body["gridLayout"]["widgets"]}  # fmt: skip
    [requests] = charts["Model API: requests/s by response class"]
    assert 'resource.label.service_name = "mlops-model-api-mock"' in requests
    [jobs] = charts["Jobs: executions by result"]
    assert 'one_of("mlops-training-mock", "mlops-monitoring-mock", "mlops-scoring-mock")' in jobs
    monitor = charts["Monitor: drift share, realised RMSE, RMSE / validation"]
    assert [f.rsplit('metric.type = "', 1)[1].rstrip('"') for f in monitor] == [
        metrics.PREFIX + m for m in ("drift_share", "realised_rmse", "rmse_ratio")
    ]
    assert all(f'metric.label.stack = "{services_gcp.stack}"' in f for f in monitor)
    cpu, memory = charts["Tracking server: CPU, memory used"]
    assert 'metadata.system_labels.name = "mlops-vm-0mock"' in cpu
    assert "agent.googleapis.com/memory/percent_used" in memory
    backlog, letters = charts["Stream: backlog, dead letters"]
    assert '"mlops-ride-events-push-mock"' in backlog
    assert '"mlops-ride-events-dead-letter-mock"' in letters


def test_aws_replicated_servers_are_charted_by_their_group(tmp_path):
    group = ("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:0mock:"
             "autoScalingGroupName/mlops-servers-0mock")  # fmt: skip
    result = run_services(tmp_path, "dev", {"__platformOutputs": {"trackingInstance": group}})
    assert result["error"] is None, result["error"]
    [dashboard] = of_type(result, "aws:cloudwatch/dashboard:Dashboard")
    charts = charted(json.loads(dashboard["inputs"]["dashboardBody"]))
    assert charts["Tracking server: CPU %"] == [
        ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", "mlops-servers-0mock"]
    ]


def test_gcp_replicated_servers_are_charted_by_their_group_s_names(tmp_path):
    from tests.infra.conftest import SERVICES_GCP_OVERRIDES

    group = "projects/mlops-test/regions/europe-west1/instanceGroupManagers/mlflow-dev"
    result = run_services(tmp_path, "dev", {**SERVICES_GCP_OVERRIDES,
                                            "__platformOutputs": {"trackingInstance": group}})  # fmt: skip
    assert result["error"] is None, result["error"]
    [dashboard] = of_type(result, "gcp:monitoring/dashboard:Dashboard")
    body = dashboard["inputs"]["dashboardJson"]
    assert 'metadata.system_labels.name = starts_with(\\"mlflow-dev-\\")' in body
