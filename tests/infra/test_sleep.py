"""sleepSchedule on the clouds, under mocks: what stops and starts at which time, in which time
zone, by what call on what resource, as a role or agent allowed only that; the alerts muted for
the night and listening again afterwards; and nothing of it without the setting."""

from __future__ import annotations

import json

import pytest

from infra.aws.sleep import SDK
from tests.infra.conftest import GCP_OVERRIDES, ROOT, depends_on, of_type, run_stack

NIGHT = {"wake": "07:00", "sleep": "20:00", "timeZone": "Europe/Berlin"}
PLATFORM = {"mlops-platform:sleepSchedule": json.dumps(NIGHT),
            "mlops-platform:alertEmail": "dba@example.com"}  # fmt: skip
SCHEDULE = "aws:scheduler/schedule:Schedule"


@pytest.fixture(scope="module")
def aws_night(tmp_path_factory):
    result = run_stack(tmp_path_factory.mktemp("night-aws"), ROOT / "Pulumi.dev.yaml", PLATFORM)
    assert result["error"] is None, result["error"]
    return result


def test_aws_the_vm_and_the_database_stop_at_sleep_and_start_at_wake(aws_night):
    schedules = {s["name"]: s["inputs"] for s in of_type(aws_night, SCHEDULE)}
    [vm] = of_type(aws_night, "aws:ec2/instance:Instance")
    [db] = of_type(aws_night, "aws:rds/instance:Instance")
    expected = {
        "mlops-vm-sleep": ("cron(0 20 ? * MON-FRI *)", "ec2:stopInstances",
                           {"InstanceIds": ["i-0mock"]}),
        "mlops-vm-wake": ("cron(0 7 ? * MON-FRI *)", "ec2:startInstances",
                          {"InstanceIds": ["i-0mock"]}),
        "mlops-db-sleep": ("cron(0 20 ? * MON-FRI *)", "rds:stopDBInstance",
                           {"DbInstanceIdentifier": db["state"]["identifier"]}),
        "mlops-db-wake": ("cron(0 7 ? * MON-FRI *)", "rds:startDBInstance",
                          {"DbInstanceIdentifier": db["state"]["identifier"]}),
    }  # fmt: skip
    assert vm["state"]["arn"].endswith("/i-0mock")
    for name, (cron, action, body) in expected.items():
        schedule = schedules[name]
        assert schedule["scheduleExpression"] == cron
        assert schedule["scheduleExpressionTimezone"] == "Europe/Berlin"
        assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
        assert schedule["target"]["arn"] == f"{SDK}:{action}"
        assert json.loads(schedule["target"]["input"]) == body
        assert schedule["target"]["retryPolicy"]["maximumRetryAttempts"] == 5


def test_aws_the_night_s_role_may_make_only_these_calls_on_these_resources(aws_night):
    [role] = [r for r in of_type(aws_night, "aws:iam/role:Role") if r["name"] == "mlops-night"]
    trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    [policy] = [p for p in of_type(aws_night, "aws:iam/rolePolicy:RolePolicy")
                if p["name"] == "mlops-night"]  # fmt: skip
    granted = {(s["Action"], tuple(s["Resource"]))
               for s in json.loads(policy["inputs"]["policy"])["Statement"]}  # fmt: skip
    [vm] = of_type(aws_night, "aws:ec2/instance:Instance")
    [db] = of_type(aws_night, "aws:rds/instance:Instance")
    alarms = {a["name"]: a for a in of_type(aws_night, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    health = alarms["mlops-tracking-health"]["state"]["arn"]
    assert granted == {
        ("ec2:StopInstances", (vm["state"]["arn"],)),
        ("ec2:StartInstances", (vm["state"]["arn"],)),
        ("rds:StopDBInstance", (db["state"]["arn"],)),
        ("rds:StartDBInstance", (db["state"]["arn"],)),
        ("cloudwatch:DisableAlarmActions", (health,)),
        ("cloudwatch:EnableAlarmActions", (health,)),
        ("cloudwatch:SetAlarmState", (health,)),
    }
    for schedule in of_type(aws_night, SCHEDULE):
        assert depends_on(schedule, policy)
        assert schedule["inputs"]["target"]["roleArn"] == role["state"]["arn"]


def test_aws_the_health_alarm_sleeps_too_and_listens_again_after_the_database_starts(aws_night):
    schedules = {s["name"]: s["inputs"] for s in of_type(aws_night, SCHEDULE)}
    name = {a["name"]: a for a in of_type(aws_night, "aws:cloudwatch/metricAlarm:MetricAlarm")}[
        "mlops-tracking-health"
    ]["state"]["name"]
    mute, unmute = schedules["mlops-mute"], schedules["mlops-unmute"]
    reset = schedules["mlops-reset-tracking-health"]
    assert (mute["scheduleExpression"], mute["target"]["arn"]) == (
        "cron(0 20 ? * MON-FRI *)",
        f"{SDK}:cloudwatch:disableAlarmActions",
    )
    assert (unmute["scheduleExpression"], unmute["target"]["arn"]) == (
        "cron(15 7 ? * MON-FRI *)",
        f"{SDK}:cloudwatch:enableAlarmActions",
    )
    assert json.loads(mute["target"]["input"]) == {"AlarmNames": [name]}
    # The schedules own the alarm's actions: an `up --refresh` at night leaves them off.
    health = {a["name"]: a for a in of_type(aws_night, "aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert health["mlops-tracking-health"]["options"]["ignoreChanges"] == ["actionsEnabled"]
    assert health["mlops-db-cpu"]["options"]["ignoreChanges"] == []
    assert json.loads(unmute["target"]["input"]) == {"AlarmNames": [name]}
    # A minute after it listens: OK, so a server still down alarms (and notifies) again.
    assert reset["scheduleExpression"] == "cron(16 7 ? * MON-FRI *)"
    body = json.loads(reset["target"]["input"])
    assert (body["AlarmName"], body["StateValue"]) == (name, "OK")


def test_aws_the_platform_outputs_its_night_for_the_service_stack(aws_night):
    assert aws_night["outputs"]["sleepSchedule"]["value"] == {**NIGHT, "days": "weekdays"}


def test_without_a_sleep_schedule_nothing_sleeps(declared, declared_gcp):
    assert not declared.of_type(SCHEDULE)
    assert "sleepSchedule" not in declared.outputs
    assert not declared_gcp.of_type("gcp:compute/resourcePolicy:ResourcePolicy")
    assert not declared_gcp.of_type("gcp:cloudscheduler/job:Job")


@pytest.fixture(scope="module")
def gcp_night(tmp_path_factory):
    result = run_stack(tmp_path_factory.mktemp("night-gcp"), ROOT / "Pulumi.dev.yaml",
                       {**GCP_OVERRIDES, **PLATFORM})  # fmt: skip
    assert result["error"] is None, result["error"]
    return result


def test_gcp_the_vm_follows_an_instance_schedule_its_agent_may_carry_out(gcp_night):
    [policy] = of_type(gcp_night, "gcp:compute/resourcePolicy:ResourcePolicy")
    schedule = policy["inputs"]["instanceSchedulePolicy"]
    assert schedule == {
        "vmStartSchedule": {"schedule": "0 7 * * 1-5"},
        "vmStopSchedule": {"schedule": "0 20 * * 1-5"},
        "timeZone": "Europe/Berlin",
    }
    assert policy["inputs"]["region"] == "europe-west1"  # the VM's region
    [vm] = of_type(gcp_night, "gcp:compute/instance:Instance")
    assert vm["inputs"]["resourcePolicies"] == policy["state"]["selfLink"]
    [agent] = [m for m in of_type(gcp_night, "gcp:projects/iAMMember:IAMMember")
               if m["name"] == "mlops-night-compute-agent"]  # fmt: skip
    assert agent["inputs"]["role"] == "roles/compute.instanceAdmin.v1"
    assert agent["inputs"]["member"] == (
        "serviceAccount:service-123456789012@compute-system.iam.gserviceaccount.com"
    )
    # Attaching the schedule fails (412) unless the agent may already start and stop VMs.
    assert depends_on(vm, agent)


def test_gcp_the_database_sleeps_by_cloud_scheduler_as_an_account_allowed_only_that(gcp_night):
    import base64

    jobs = {j["name"]: j["inputs"] for j in of_type(gcp_night, "gcp:cloudscheduler/job:Job")}
    [db] = of_type(gcp_night, "gcp:sql/databaseInstance:DatabaseInstance")
    uri = f"https://sqladmin.googleapis.com/v1/projects/mlops-test/instances/{db['state']['name']}"
    for name, cron, policy in (("mlops-db-sleep", "0 20 * * 1-5", "NEVER"),
                               ("mlops-db-wake", "0 7 * * 1-5", "ALWAYS")):  # fmt: skip
        job = jobs[name]
        assert (job["schedule"], job["timeZone"], job["region"]) == (
            cron,
            "Europe/Berlin",
            "europe-west1",
        )
        target = job["httpTarget"]
        assert (target["httpMethod"], target["uri"]) == ("PATCH", uri)
        assert json.loads(base64.b64decode(target["body"])) == {
            "settings": {"activationPolicy": policy}
        }
    [account] = [a for a in of_type(gcp_night, "gcp:serviceaccount/account:Account")
                 if a["name"] == "mlops-night"]  # fmt: skip
    email = account["state"]["email"]
    assert {j["httpTarget"]["oauthToken"]["serviceAccountEmail"] for j in jobs.values()} == {email}
    grants = {m["name"]: m["inputs"] for m in of_type(gcp_night, "gcp:projects/iAMMember:IAMMember")
              if m["inputs"]["member"] == f"serviceAccount:{email}"}  # fmt: skip
    database = grants["mlops-night-database"]
    assert database["role"] == "roles/cloudsql.editor"
    assert database["condition"]["expression"] == (
        f'resource.name == "projects/mlops-test/instances/{db["state"]["name"]}" && '
        'resource.service == "sqladmin.googleapis.com"'
    )
    # A call refused for a passing state (a backup, maintenance) is tried again.
    assert all(j["retryConfig"]["retryCount"] == 5 for j in jobs.values())
    assert grants["mlops-night-alerts"]["role"] == "roles/monitoring.alertPolicyEditor"
    assert set(grants) == {"mlops-night-database", "mlops-night-alerts"}
    # The night's jobs own the activation policy: an `up --refresh` at night leaves it.
    [db] = of_type(gcp_night, "gcp:sql/databaseInstance:DatabaseInstance")
    assert "settings.activationPolicy" in db["options"]["ignoreChanges"]
    apis = {a["inputs"]["service"] for a in of_type(gcp_night, "gcp:projects/service:Service")}
    assert "cloudscheduler.googleapis.com" in apis


def test_gcp_the_health_policy_is_off_at_night_and_on_once_the_stack_listens(gcp_night):
    import base64

    jobs = {j["name"]: j["inputs"] for j in of_type(gcp_night, "gcp:cloudscheduler/job:Job")}
    [health] = [p for p in of_type(gcp_night, "gcp:monitoring/alertPolicy:AlertPolicy")
                if p["name"] == "mlops-tracking-health"]  # fmt: skip
    uri = f"https://monitoring.googleapis.com/v3/{health['state']['name']}?updateMask=enabled"
    for name, cron, enabled in (("mlops-mute-tracking-health", "0 20 * * 1-5", False),
                                ("mlops-unmute-tracking-health", "15 7 * * 1-5", True)):  # fmt: skip
        target = jobs[name]["httpTarget"]
        assert jobs[name]["schedule"] == cron
        assert (target["httpMethod"], target["uri"]) == ("PATCH", uri)
        assert json.loads(base64.b64decode(target["body"])) == {"enabled": enabled}
    # The jobs own `enabled`: an `up --refresh` at night leaves the policy off.
    assert health["options"]["ignoreChanges"] == ["enabled"]


SERVICES_NIGHT = {
    "mlops-services:sleepSchedule": json.dumps(NIGHT),
    "mlops-services:alertEmail": "oncall@example.com",
    "mlops-services:streaming": "false",
    "mlops-services:trainingSchedule": "0 9 * * 1",
    "mlops-services:monitoringSchedule": "0 10 * * 1-5",
    "mlops-services:scoringSchedule": "0 11 * * 3",
    "__platformOutputs": {"sleepSchedule": {**NIGHT, "days": "weekdays"}},
}


@pytest.fixture(scope="module")
def aws_services_night(tmp_path_factory):
    from tests.infra.conftest import run_services

    result = run_services(tmp_path_factory.mktemp("services-night-aws"), "dev", SERVICES_NIGHT)
    assert result["error"] is None, result["error"]
    return result


def test_aws_the_api_has_no_task_from_sleep_until_the_stack_listens(aws_services_night):
    actions = {a["name"]: a for a in
               of_type(aws_services_night, "aws:appautoscaling/scheduledAction:ScheduledAction")}  # fmt: skip
    [target] = of_type(aws_services_night, "aws:appautoscaling/target:Target")
    asleep, awake = actions["mlops-api-sleep"], actions["mlops-api-wake"]
    assert (asleep["inputs"]["schedule"], asleep["inputs"]["timezone"]) == (
        "cron(0 20 ? * MON-FRI *)",
        "Europe/Berlin",
    )
    assert asleep["inputs"]["scalableTargetAction"] == {"minCapacity": 0, "maxCapacity": 0}
    assert awake["inputs"]["schedule"] == "cron(15 7 ? * MON-FRI *)"
    assert awake["inputs"]["scalableTargetAction"] == {"minCapacity": 1, "maxCapacity": 2}
    for action in (asleep, awake):
        assert action["inputs"]["resourceId"] == target["state"]["resourceId"]
        assert action["inputs"]["scalableDimension"] == "ecs:service:DesiredCount"
    assert depends_on(awake, asleep)  # one target's updates made at once collide
    [policy] = of_type(aws_services_night, "aws:appautoscaling/policy:Policy")
    assert depends_on(asleep, policy)
    alarms_ = {a["name"]: a for a in
               of_type(aws_services_night, "aws:cloudwatch/metricAlarm:MetricAlarm")}  # fmt: skip
    for muted in ("mlops-api-5xx", "mlops-api-latency"):
        assert alarms_[muted]["options"]["ignoreChanges"] == ["actionsEnabled"]
    # The night's actions own the bounds: an `up --refresh` at night leaves the API asleep.
    assert target["options"]["ignoreChanges"] == ["minCapacity", "maxCapacity"]
    schedules = {s["name"]: s["inputs"] for s in of_type(aws_services_night, SCHEDULE)}
    alarms = {a["name"]: a["state"]["name"] for a in
              of_type(aws_services_night, "aws:cloudwatch/metricAlarm:MetricAlarm")}  # fmt: skip
    api = sorted([alarms["mlops-api-5xx"], alarms["mlops-api-latency"]])
    assert sorted(json.loads(schedules["mlops-mute"]["target"]["input"])["AlarmNames"]) == api
    assert set(schedules) - {"mlops-training", "mlops-monitoring", "mlops-scoring"} == {
        "mlops-mute",
        "mlops-unmute",
        "mlops-reset-api-5xx",
        "mlops-reset-api-latency",
    }
    assert not aws_services_night["warnings"] or all(
        "sleepSchedule" not in w for w in aws_services_night["warnings"]
    )


def test_gcp_the_api_keeps_no_warm_instance_and_its_policies_are_off_at_night(tmp_path):
    import base64

    from tests.infra.conftest import SERVICES_GCP_OVERRIDES, run_services

    result = run_services(tmp_path, "dev", {**SERVICES_GCP_OVERRIDES, **SERVICES_NIGHT})
    assert result["error"] is None, result["error"]
    [api] = [s for s in of_type(result, "gcp:cloudrunv2/service:Service")
             if s["name"] == "mlops-model-api"]  # fmt: skip
    assert api["inputs"]["template"]["scaling"]["minInstanceCount"] == 0
    jobs = {j["name"]: j["inputs"] for j in of_type(result, "gcp:cloudscheduler/job:Job")}
    policies = {p["name"]: p["state"]["name"]
                for p in of_type(result, "gcp:monitoring/alertPolicy:AlertPolicy")}  # fmt: skip
    for label in ("api-5xx", "api-latency"):
        mute, unmute = jobs[f"mlops-mute-{label}"], jobs[f"mlops-unmute-{label}"]
        assert mute["httpTarget"]["uri"] == (
            f"https://monitoring.googleapis.com/v3/{policies[f'mlops-{label}']}?updateMask=enabled"
        )
        assert (mute["schedule"], unmute["schedule"]) == ("0 20 * * 1-5", "15 7 * * 1-5")
        assert json.loads(base64.b64decode(unmute["httpTarget"]["body"])) == {"enabled": True}
    [grant] = [m for m in of_type(result, "gcp:projects/iAMMember:IAMMember")
               if m["name"] == "mlops-night-alerts"]  # fmt: skip
    assert grant["inputs"]["role"] == "roles/monitoring.alertPolicyEditor"
    for policy in of_type(result, "gcp:monitoring/alertPolicy:AlertPolicy"):
        muted = policy["name"] in ("mlops-api-5xx", "mlops-api-latency")
        assert policy["options"]["ignoreChanges"] == (["enabled"] if muted else [])


def test_a_service_stack_whose_night_is_not_its_platform_s_is_warned(tmp_path):
    from tests.infra.conftest import run_services

    result = run_services(tmp_path, "dev", {**SERVICES_NIGHT, "__platformOutputs": {}})
    assert result["error"] is None, result["error"]
    [warning] = [w for w in result["warnings"] if "sleepSchedule" in w]
    assert "but platform stack acme/mlops-platform/dev has none: set them alike" in warning
