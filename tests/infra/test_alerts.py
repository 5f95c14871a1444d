"""Alerts in the service stacks, under mocks: where they go (alertEmail, alertWebhook), none
without either (and `pulumi up` says so), and each alert watching the metric the code emits
(monitoring.metrics: the names, the namespace or prefix, the dimensions the monitor's command
gives)."""

from __future__ import annotations

import json

import pytest

from infra.aws import probe
from infra.aws.common import LAMBDA_VPC
from infra.mlflow_server import REGISTERED_MODEL
from monitoring import metrics
from services.deploy.aws.alerts import MONITOR_ALARMS
from services.deploy.config import load
from services.deploy.gcp.alerts import MONITOR_ALERTS, metric_filter
from tests.infra.conftest import SERVICES_GCP_OVERRIDES, depends_on, of_type, run_services

ALERTS = {"mlops-services:alertEmail": "oncall@example.com",
          "mlops-services:alertWebhook": "https://hooks.example.com/mlops"}  # fmt: skip
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"


@pytest.fixture(scope="module")
def aws_alerting(tmp_path_factory):
    result = run_services(tmp_path_factory.mktemp("alerts-aws"), "dev", ALERTS)
    assert result["error"] is None, result["error"]
    return result


@pytest.fixture(scope="module")
def gcp_alerting(tmp_path_factory):
    result = run_services(tmp_path_factory.mktemp("alerts-gcp"), "dev",
                          {**SERVICES_GCP_OVERRIDES, **ALERTS})  # fmt: skip
    assert result["error"] is None, result["error"]
    return result


def monitor_command(result: dict) -> list[str]:
    import json

    for r in result["resources"]:
        if r["type"] == "aws:ecs/taskDefinition:TaskDefinition" and r["name"] == "mlops-monitoring":
            return json.loads(r["inputs"]["containerDefinitions"])[0]["command"]
        if r["type"] == "gcp:cloudrunv2/job:Job" and r["name"] == "mlops-monitoring":
            return r["inputs"]["template"]["template"]["containers"][0]["args"]
    raise AssertionError("no monitoring job")


def emitted(command: list[str]) -> dict[str, str]:
    """The dimensions the monitor publishes with, as its command gives them."""
    return metrics.dimensions(command[command.index("--metrics-stack") + 1], REGISTERED_MODEL)


def test_aws_alerts_go_to_the_topic_and_its_email_and_webhook(aws_alerting):
    [topic] = of_type(aws_alerting, "aws:sns/topic:Topic")
    subs = {s["inputs"]["protocol"]: s["inputs"] for s in
            of_type(aws_alerting, "aws:sns/topicSubscription:TopicSubscription")}  # fmt: skip
    assert subs["email"]["endpoint"] == "oncall@example.com"
    assert subs["https"]["endpoint"] == "https://hooks.example.com/mlops"
    assert all(s["topic"].endswith(":mlops-alerts") for s in subs.values())
    assert aws_alerting["outputs"]["alertsTopic"]["value"].endswith(":mlops-alerts")


def test_aws_each_alarm_watches_what_the_monitor_emits(aws_alerting):
    command = monitor_command(aws_alerting)
    assert command[command.index("--metrics") + 1] == "cloudwatch"
    alarms = {a["name"]: a["inputs"] for a in of_type(aws_alerting, ALARM)}
    assert set(alarms) == {f"mlops-{name}" for name in MONITOR_ALARMS} | {
        "mlops-api-5xx", "mlops-api-latency", "mlops-streaming-errors", "mlops-dead-letters",
    }  # fmt: skip
    for name, (metric, _) in MONITOR_ALARMS.items():
        alarm = alarms[f"mlops-{name}"]
        assert (alarm["namespace"], alarm["metricName"]) == (
            metrics.NAMESPACE,
            metrics.METRICS[metric],
        )
        assert alarm["dimensions"] == emitted(command)
        assert (alarm["comparisonOperator"], alarm["threshold"]) == (
            "GreaterThanOrEqualToThreshold",
            1,
        )
        assert alarm["alarmActions"] == [aws_alerting["outputs"]["alertsTopic"]["value"]]
        assert alarm["treatMissingData"] == "notBreaching"


def test_gcp_each_policy_watches_what_the_monitor_emits(gcp_alerting):
    command = monitor_command(gcp_alerting)
    assert command[command.index("--metrics") + 1] == "cloud-monitoring"
    dims = emitted(command)
    descriptors = {d["inputs"]["type"] for d in
                   of_type(gcp_alerting, "gcp:monitoring/metricDescriptor:MetricDescriptor")}  # fmt: skip
    assert descriptors == {metrics.PREFIX + m for m in metrics.METRICS}
    # Shared by every stack of the project: a destroy leaves them.
    assert {
        d["inputs"]["deletionPolicy"]
        for d in of_type(gcp_alerting, "gcp:monitoring/metricDescriptor:MetricDescriptor")
    } == {"ABANDON"}
    channels = {c["inputs"]["type"]: c["inputs"]["labels"] for c in
                of_type(gcp_alerting, "gcp:monitoring/notificationChannel:NotificationChannel")}  # fmt: skip
    assert channels == {"email": {"email_address": "oncall@example.com"},
                        "webhook_tokenauth": {"url": "https://hooks.example.com/mlops"}}  # fmt: skip
    policies = {p["name"]: p for p in of_type(gcp_alerting, POLICY)}
    assert set(policies) == {f"mlops-{name}" for name in MONITOR_ALERTS} | {
        "mlops-api-5xx", "mlops-api-latency", "mlops-job-failed", "mlops-dead-letters",
    }  # fmt: skip
    for name, (metric, _) in MONITOR_ALERTS.items():
        policy = policies[f"mlops-{name}"]
        [condition] = policy["inputs"]["conditions"]
        expected = metric_filter(metric, dims["Stack"])
        assert condition["conditionThreshold"]["filter"] == expected
        assert f'metric.label.model = "{dims["Model"]}"' in expected
        assert len(policy["inputs"]["notificationChannels"]) == 2
        # A policy on a metric nobody wrote yet is refused: the descriptors come first.
        deps = policy["options"]["dependencies"]
        assert sum("MetricDescriptor::mlops-metric-" in d for d in deps) == len(metrics.METRICS)


def test_without_a_destination_there_are_no_alerts_and_up_says_so(
    services_aws, services_gcp, capsys
):
    assert not [r for r in services_aws.resources if r["type"].startswith(("aws:sns", ALARM))]
    assert not [r for r in services_gcp.resources if r["type"] in (
        POLICY, "gcp:monitoring/notificationChannel:NotificationChannel")]  # fmt: skip
    from services.deploy.aws.alerts import stack_alerts

    data = {"trainData": "s3://b/k/green_tripdata_2024-01.parquet",
            "valData": "s3://b/k/green_tripdata_2024-02.parquet"}  # fmt: skip
    assert stack_alerts(load({"cloud": "aws", **data}, "dev"), None) is None
    assert "no alerts: set mlops-services:alertEmail" in capsys.readouterr().err


def test_a_bad_alert_destination_names_the_key(tmp_path):
    result = run_services(tmp_path, "dev", {"mlops-services:alertEmail": "not-an-address"})
    assert "mlops-services:alertEmail" in result["error"]
    result = run_services(tmp_path, "dev", {"mlops-services:alertWebhook": "http://plain"})
    assert "mlops-services:alertWebhook" in result["error"]


def test_aws_the_api_alarms_on_its_5xx_share_and_p95_at_the_stack_s_thresholds(tmp_path):
    result = run_services(tmp_path, "dev", {**ALERTS, "mlops-services:alertApi5xxPercent": "2.5",
                                            "mlops-services:alertApiP95Ms": "250"})  # fmt: skip
    assert result["error"] is None, result["error"]
    alarms = {a["name"]: a["inputs"] for a in of_type(result, ALARM)}
    share = alarms["mlops-api-5xx"]
    assert (share["comparisonOperator"], share["threshold"]) == ("GreaterThanThreshold", 2.5)
    queries = {q["id"]: q for q in share["metricQueries"]}
    lb, tg = "app/mlops-api/0mock", "targetgroup/mlops-api/0mock"
    assert queries["target5xx"]["metric"]["metricName"] == "HTTPCode_Target_5XX_Count"
    assert queries["target5xx"]["metric"]["dimensions"] == {"LoadBalancer": lb, "TargetGroup": tg}
    assert queries["lb5xx"]["metric"]["dimensions"] == {"LoadBalancer": lb}
    assert queries["requests"]["metric"]["metricName"] == "RequestCount"
    assert [q["id"] for q in share["metricQueries"] if q.get("returnData")] == ["share"]
    assert {q["metric"]["period"] for q in queries.values() if "metric" in q} == {300}
    latency = alarms["mlops-api-latency"]
    assert (latency["metricName"], latency["extendedStatistic"]) == ("TargetResponseTime", "p95")
    assert latency["threshold"] == 0.25 and latency["dimensions"] == {
        "LoadBalancer": lb,
        "TargetGroup": tg,
    }


def test_aws_failed_jobs_and_the_stream_handler_s_failures_alert(aws_alerting):
    import json

    alarms = {a["name"]: a["inputs"] for a in of_type(aws_alerting, ALARM)}
    assert alarms["mlops-streaming-errors"]["dimensions"] == {"FunctionName": "mlops-streaming"}
    assert alarms["mlops-dead-letters"]["dimensions"] == {
        "QueueName": "mlops-ride-events-dead-letter"
    }
    rules = {r["name"]: json.loads(r["inputs"]["eventPattern"])
             for r in of_type(aws_alerting, "aws:cloudwatch/eventRule:EventRule")}  # fmt: skip
    tasks = rules["mlops-tasks-failed"]["detail"]
    assert tasks["lastStatus"] == ["STOPPED"]
    assert tasks["taskDefinitionArn"] == [
        {"prefix": "arn:aws:mock:us-east-1:123456789012:mlops-training:"},
        {"prefix": "arn:aws:mock:us-east-1:123456789012:mlops-monitoring:"},
    ]
    assert tasks["$or"] == [{"stopCode": ["TaskFailedToStart"]},
                            {"containers": {"exitCode": [{"anything-but": 0}]}}]  # fmt: skip
    assert rules["mlops-scoring-failed"]["detail"] == {
        "status": ["FAILED"],
        "jobQueue": ["arn:aws:batch:us-east-1:123456789012:job-queue/mlops-scoring-mock"],
    }
    targets = of_type(aws_alerting, "aws:cloudwatch/eventTarget:EventTarget")
    assert {t["inputs"]["arn"] for t in targets} == {
        aws_alerting["outputs"]["alertsTopic"]["value"]
    }
    [policy] = of_type(aws_alerting, "aws:sns/topicPolicy:TopicPolicy")
    statements = {s["Sid"]: s for s in json.loads(policy["inputs"]["policy"])["Statement"]}
    assert statements["Alarms"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statements["Rules"]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        "arn:aws:mock:us-east-1:123456789012:mlops-tasks-failed",
        "arn:aws:mock:us-east-1:123456789012:mlops-scoring-failed",
    ]


def test_gcp_the_api_jobs_and_dead_letters_alert_on_cloud_run_s_and_pub_sub_s_metrics(gcp_alerting):
    policies = {p["name"]: p["inputs"] for p in of_type(gcp_alerting, POLICY)}

    def threshold(name: str) -> dict:
        [condition] = policies[name]["conditions"]
        return condition["conditionThreshold"]

    api = ('resource.type = "cloud_run_revision" AND resource.label.service_name = '
           '"mlops-model-api-mock" AND metric.type = "run.googleapis.com/request_count"')  # fmt: skip
    share = threshold("mlops-api-5xx")
    assert share["filter"] == api + ' AND metric.label.response_code_class = "5xx"'
    assert share["denominatorFilter"] == api
    assert share["thresholdValue"] == 0.01  # alertApi5xxPercent 1
    for aggregations in (share["aggregations"], share["denominatorAggregations"]):
        assert aggregations == [{"alignmentPeriod": "300s", "perSeriesAligner": "ALIGN_RATE",
                                 "crossSeriesReducer": "REDUCE_SUM"}]  # fmt: skip
    latency = threshold("mlops-api-latency")
    assert "run.googleapis.com/request_latencies" in latency["filter"]
    assert latency["aggregations"][0]["perSeriesAligner"] == "ALIGN_PERCENTILE_95"
    assert latency["thresholdValue"] == 500
    jobs = threshold("mlops-job-failed")
    assert ('resource.label.job_name = one_of("mlops-training-mock", "mlops-monitoring-mock", '
            '"mlops-scoring-mock")') in jobs["filter"]  # fmt: skip
    assert 'metric.label.result = "failed"' in jobs["filter"]
    assert "run.googleapis.com/job/completed_execution_count" in jobs["filter"]
    letters = threshold("mlops-dead-letters")
    assert (
        'resource.label.subscription_id = "mlops-ride-events-dead-letter-mock"'
        in (letters["filter"])
    )
    assert all(len(p["notificationChannels"]) == 2 for p in policies.values())


# --- the platform ------------------------------------------------------------------------------

PLATFORM_ALERTS = {"mlops-platform:alertEmail": "dba@example.com"}


@pytest.fixture(scope="module")
def aws_platform_alerting(tmp_path_factory):
    from tests.infra.conftest import ROOT, run_stack

    result = run_stack(tmp_path_factory.mktemp("platform-alerts-aws"), ROOT / "Pulumi.dev.yaml",
                       PLATFORM_ALERTS)  # fmt: skip
    assert result["error"] is None, result["error"]
    return result


def test_aws_the_platform_alarms_on_the_database_s_cpu_and_storage(aws_platform_alerting):
    result = aws_platform_alerting
    [sub] = of_type(result, "aws:sns/topicSubscription:TopicSubscription")
    assert (sub["inputs"]["protocol"], sub["inputs"]["endpoint"]) == ("email", "dba@example.com")
    alarms = {a["name"]: a["inputs"] for a in of_type(result, ALARM)}
    assert set(alarms) == {"mlops-db-cpu", "mlops-db-storage", "mlops-tracking-health",
                           "mlops-tracking-certificate"}  # fmt: skip
    alarms = {name: alarms[name] for name in ("mlops-db-cpu", "mlops-db-storage")}
    [db] = of_type(result, "aws:rds/instance:Instance")
    for alarm in alarms.values():
        assert alarm["namespace"] == "AWS/RDS"
        assert alarm["dimensions"] == {"DBInstanceIdentifier": f"{db['name']}-mock"}
        assert alarm["alarmActions"] == [result["outputs"]["alertsTopic"]["value"]]
    cpu, storage = alarms["mlops-db-cpu"], alarms["mlops-db-storage"]
    assert (cpu["metricName"], cpu["threshold"], cpu["evaluationPeriods"]) == (
        "CPUUtilization",
        80,
        3,
    )
    assert storage["metricName"] == "FreeStorageSpace"
    assert storage["comparisonOperator"] == "LessThanThreshold"
    assert storage["threshold"] == 0.2 * 20 * 1024**3  # 20% of dev's 20 GB


def test_aws_a_probe_outside_the_vm_checks_health_and_the_certificate_every_minute(
    aws_platform_alerting,
):
    result, outputs = aws_platform_alerting, aws_platform_alerting["outputs"]
    [function] = of_type(result, "aws:lambda/function:Function")
    inputs = function["inputs"]
    assert (inputs["runtime"], inputs["handler"]) == (probe.RUNTIME, "tracking_probe.handler")
    assert inputs["environment"]["variables"] == {
        "TRACKING_PROBE_URI": outputs["trackingPrivateUri"]["value"],
        "TRACKING_PROBE_CA": outputs["trackingCaCert"]["value"],
        "TRACKING_PROBE_STACK": "dev",
    }
    assert inputs["vpcConfig"]["subnetIds"] == outputs["privateSubnetIds"]["value"]
    assert inputs["vpcConfig"]["securityGroupIds"] == [outputs["clientSecurityGroupId"]["value"]]
    # Lambda makes the function's network interfaces with its role: the grant comes first.
    [grant] = [p for p in of_type(result, "aws:iam/rolePolicy:RolePolicy")
               if p["name"] == "mlops-tracking-probe"]  # fmt: skip
    assert depends_on(function, grant)
    statements = json.loads(grant["inputs"]["policy"])["Statement"]
    assert [s["Action"] for s in statements if s["Resource"] == "*"] == [LAMBDA_VPC]
    [rule] = of_type(result, "aws:cloudwatch/eventRule:EventRule")
    assert rule["inputs"]["scheduleExpression"] == "rate(1 minute)"
    [target] = of_type(result, "aws:cloudwatch/eventTarget:EventTarget")
    [permission] = of_type(result, "aws:lambda/permission:Permission")
    assert target["inputs"]["arn"] == function["state"]["arn"]
    assert permission["inputs"]["sourceArn"] == rule["state"]["arn"]
    assert permission["inputs"]["principal"] == "events.amazonaws.com"
    assert depends_on(target, permission)

    [logs] = [g for g in of_type(result, "aws:cloudwatch/logGroup:LogGroup")
              if g["name"] == "mlops-tracking-probe"]  # fmt: skip
    assert inputs["loggingConfig"]["logGroup"] == logs["state"]["name"]
    filters = {f["inputs"]["metricTransformation"]["name"]: f["inputs"]
               for f in of_type(result, "aws:cloudwatch/logMetricFilter:LogMetricFilter")}  # fmt: skip
    assert set(filters) == {probe.HEALTHY, probe.DAYS_LEFT}
    for metric, flt in filters.items():
        assert flt["logGroupName"] == logs["state"]["name"]
        assert flt["metricTransformation"]["namespace"] == probe.NAMESPACE
        assert flt["metricTransformation"]["dimensions"] == {"Stack": "$.stack"}
        assert flt["metricTransformation"]["value"] == probe.FILTERS[metric][1]

    alarms = {a["name"]: a["inputs"] for a in of_type(result, ALARM)}
    health, certificate = alarms["mlops-tracking-health"], alarms["mlops-tracking-certificate"]
    for alarm, metric in ((health, probe.HEALTHY), (certificate, probe.DAYS_LEFT)):
        assert (alarm["namespace"], alarm["metricName"]) == (probe.NAMESPACE, metric)
        assert alarm["dimensions"] == {"Stack": "dev"}  # what "$.stack" reads in the line
        assert alarm["alarmActions"] == [outputs["alertsTopic"]["value"]]
        assert alarm["statistic"] == "Minimum"
        assert alarm["comparisonOperator"] == "LessThanThreshold"
    # Failing (or not running: missing) in 2 of the last 3 minutes.
    assert (health["period"], health["evaluationPeriods"], health["datapointsToAlarm"]) == (
        60,
        3,
        2,
    )
    assert (health["threshold"], health["treatMissingData"]) == (1, "breaching")
    assert certificate["threshold"] == 21


@pytest.fixture(scope="module")
def gcp_platform_alerting(tmp_path_factory):
    from tests.infra.conftest import GCP_OVERRIDES, ROOT, run_stack

    result = run_stack(tmp_path_factory.mktemp("platform-alerts-gcp"), ROOT / "Pulumi.dev.yaml",
                       {**GCP_OVERRIDES, **PLATFORM_ALERTS})  # fmt: skip
    assert result["error"] is None, result["error"]
    return result


def test_gcp_the_platform_alerts_on_cloud_sql_cpu_and_disk(gcp_platform_alerting):
    result = gcp_platform_alerting
    policies = {p["name"]: p["inputs"] for p in of_type(result, POLICY)}
    assert set(policies) == {"mlops-db-cpu", "mlops-db-storage", "mlops-tracking-health",
                             "mlops-tracking-certificate"}  # fmt: skip
    [db] = of_type(result, "gcp:sql/databaseInstance:DatabaseInstance")
    for name, metric in (
        ("mlops-db-cpu", "cpu/utilization"),
        ("mlops-db-storage", "disk/utilization"),
    ):
        [condition] = policies[name]["conditions"]
        threshold = condition["conditionThreshold"]
        assert threshold["filter"] == (
            f'resource.type = "cloudsql_database" AND resource.label.database_id = '
            f'"mlops-test:{db["name"]}-mock" AND '
            f'metric.type = "cloudsql.googleapis.com/database/{metric}"'
        )
        assert threshold["thresholdValue"] == 0.8
        assert len(policies[name]["notificationChannels"]) == 1
    apis = {a["inputs"]["service"] for a in of_type(result, "gcp:projects/service:Service")}
    assert "monitoring.googleapis.com" in apis


def test_gcp_a_private_uptime_check_reaches_the_vm_s_health_every_minute(gcp_platform_alerting):
    from tests.infra.harness import MONITORING_AGENT

    result = gcp_platform_alerting
    [vm] = of_type(result, "gcp:compute/instance:Instance")
    [namespace] = of_type(result, "gcp:servicedirectory/namespace:Namespace")
    [service] = of_type(result, "gcp:servicedirectory/service:Service")
    [endpoint] = of_type(result, "gcp:servicedirectory/endpoint:Endpoint")
    [vpc] = of_type(result, "gcp:compute/network:Network")
    assert namespace["inputs"]["location"] == "europe-west1"
    assert service["inputs"]["namespace"] == namespace["state"]["id"]
    assert endpoint["inputs"]["service"] == service["state"]["id"]
    # The address the workloads use, the MLflow port, the network by project number and name.
    [address] = [a for a in of_type(result, "gcp:compute/address:Address")
                 if a["inputs"].get("addressType") == "INTERNAL"]  # fmt: skip
    assert endpoint["inputs"]["address"] == address["state"]["address"]
    assert endpoint["inputs"]["port"] == 5000
    assert endpoint["inputs"]["network"] == (
        f"projects/123456789012/locations/global/networks/{vpc['state']['id'].split('/')[-1]}"
    )
    [rule] = [f for f in of_type(result, "gcp:compute/firewall:Firewall")
              if f["name"] == "mlops-tracking-probe"]  # fmt: skip
    assert rule["inputs"]["sourceRanges"] == ["35.199.192.0/19"]
    assert rule["inputs"]["allows"] == [{"protocol": "tcp", "ports": ["5000"]}]
    assert rule["inputs"]["targetTags"] == vm["inputs"]["tags"]
    # Google documents both roles on the project (the network's, for pscAuthorizedService); the
    # agent's address is built from the project number, the identity made first.
    grants = [g for g in of_type(result, "gcp:projects/iAMMember:IAMMember")
              if g["name"].startswith("mlops-tracking-probe-")]  # fmt: skip
    assert {
        (g["inputs"]["role"], g["inputs"]["member"], g["inputs"]["project"]) for g in grants
    } == {
        (role, f"serviceAccount:{MONITORING_AGENT}", "mlops-test")
        for role in ("roles/servicedirectory.viewer", "roles/servicedirectory.pscAuthorizedService")
    }
    [identity] = of_type(result, "gcp:projects/serviceIdentity:ServiceIdentity")
    assert identity["inputs"]["service"] == "monitoring.googleapis.com"
    assert all(depends_on(g, identity) for g in grants)
    [check] = of_type(result, "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
    inputs = check["inputs"]
    assert (inputs["checkerType"], inputs["period"]) == ("VPC_CHECKERS", "60s")
    assert inputs["monitoredResource"] == {
        "type": "servicedirectory_service",
        "labels": {"project_id": "mlops-test", "location": "europe-west1",
                   "namespace_name": namespace["inputs"]["namespaceId"],
                   "service_name": "tracking"},
    }  # fmt: skip
    assert inputs["httpCheck"] == {"path": "/health", "port": 5000, "useSsl": True,
                                   "validateSsl": False}  # fmt: skip
    # The check starts at once: the endpoint, the firewall rule and the grants come first.
    for needed in (endpoint, rule, *grants):
        assert depends_on(check, needed)
    policies = {p["name"]: p["inputs"] for p in of_type(result, POLICY)}
    check_id = check["state"]["uptimeCheckId"]
    [health] = policies["mlops-tracking-health"]["conditions"]
    threshold = health["conditionThreshold"]
    assert threshold["filter"] == (
        'metric.type = "monitoring.googleapis.com/uptime_check/check_passed" AND '
        f'metric.label.check_id = "{check_id}"'
    )
    assert threshold["duration"] == "120s"
    assert threshold["aggregations"][0]["crossSeriesReducer"] == "REDUCE_COUNT_FALSE"
    [certificate] = policies["mlops-tracking-certificate"]["conditions"]
    threshold = certificate["conditionThreshold"]
    assert "uptime_check/time_until_ssl_cert_expires" in threshold["filter"]
    assert check_id in threshold["filter"]
    assert (threshold["comparison"], threshold["thresholdValue"]) == ("COMPARISON_LT", 21)
    for policy in ("mlops-tracking-health", "mlops-tracking-certificate"):
        assert len(policies[policy]["notificationChannels"]) == 1
    apis = {a["inputs"]["service"] for a in of_type(result, "gcp:projects/service:Service")}
    assert "servicedirectory.googleapis.com" in apis


def test_the_platform_without_a_destination_has_no_alerts(declared, declared_gcp):
    assert not declared.of_type(ALARM) and not declared.of_type("aws:sns/topic:Topic")
    assert not declared_gcp.of_type(POLICY)
    assert "alertsTopic" not in declared.outputs


def test_aws_a_monthly_budget_on_the_stack_s_tag_emails_at_80_and_100_percent(tmp_path):
    from tests.infra.conftest import ROOT, run_stack

    result = run_stack(tmp_path, ROOT / "Pulumi.dev.yaml",
                       {**PLATFORM_ALERTS, "mlops-platform:monthlyBudget": "150"})  # fmt: skip
    assert result["error"] is None, result["error"]
    [budget] = of_type(result, "aws:budgets/budget:Budget")
    inputs = budget["inputs"]
    assert (inputs["limitAmount"], inputs["limitUnit"], inputs["timeUnit"]) == (
        "150.00",
        "USD",
        "MONTHLY",
    )
    assert inputs["costFilters"] == [{"name": "TagKeyValue", "values": ["user:stack$dev"]}]
    rules = {(n["threshold"], n["notificationType"]) for n in inputs["notifications"]}
    assert rules == {(80, "ACTUAL"), (80, "FORECASTED"), (100, "ACTUAL"), (100, "FORECASTED")}
    assert all(n["subscriberEmailAddresses"] == ["dba@example.com"]
               for n in inputs["notifications"])  # fmt: skip


def test_gcp_a_monthly_budget_needs_its_billing_account_and_watches_the_project(tmp_path):
    from tests.infra.conftest import GCP_OVERRIDES, ROOT, run_stack

    overrides = {**GCP_OVERRIDES, **PLATFORM_ALERTS, "mlops-platform:monthlyBudget": "150"}
    missing = run_stack(tmp_path, ROOT / "Pulumi.dev.yaml", overrides)
    assert "mlops-platform:billingAccount is required with monthlyBudget" in missing["error"]
    result = run_stack(tmp_path, ROOT / "Pulumi.dev.yaml",
                       {**overrides, "mlops-platform:billingAccount": "01ABCD-23EF45-6789AB"})  # fmt: skip
    assert result["error"] is None, result["error"]
    [budget] = of_type(result, "gcp:billing/budget:Budget")
    inputs = budget["inputs"]
    assert inputs["billingAccount"] == "01ABCD-23EF45-6789AB"
    assert inputs["budgetFilter"]["projects"] == ["projects/123456789012"]
    assert inputs["amount"]["specifiedAmount"] == {"currencyCode": "USD", "units": "150"}
    assert {(r["thresholdPercent"], r["spendBasis"]) for r in inputs["thresholdRules"]} == {
        (0.8, "CURRENT_SPEND"), (0.8, "FORECASTED_SPEND"),
        (1.0, "CURRENT_SPEND"), (1.0, "FORECASTED_SPEND"),
    }  # fmt: skip
    assert len(inputs["allUpdatesRule"]["monitoringNotificationChannels"]) == 1
    apis = {a["inputs"]["service"] for a in of_type(result, "gcp:projects/service:Service")}
    assert "billingbudgets.googleapis.com" in apis
