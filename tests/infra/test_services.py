"""Properties of the service stacks on both clouds, every stack file, with the platform's
StackReference mocked. One rule per test."""

from __future__ import annotations

import json

from services.deploy.config import DEFAULTS
from tests.infra.conftest import run_services
from tests.infra.harness import PLATFORM_OUTPUTS

ECS_SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_JOB = "gcp:cloudrunv2/job:Job"


def containers(declared, name: str) -> dict:
    task = next(t for t in declared.of_type(TASK) if t["name"] == name)
    [container] = json.loads(task["inputs"]["containerDefinitions"])
    return container


def policy(declared, name: str) -> dict:
    role_policy = next(
        p for p in declared.of_type("aws:iam/rolePolicy:RolePolicy") if p["name"] == name
    )
    return json.loads(role_policy["inputs"]["policy"])


# --- AWS ---------------------------------------------------------------------------------------


def test_aws_reads_the_platform_stack_of_the_same_name(services_aws):
    [ref] = services_aws.of_type("pulumi:pulumi:StackReference")
    assert ref["name"] == f"acme/mlops-platform/{services_aws.stack}"


def test_aws_target_health_check_is_the_ready_endpoint(services_aws):
    check = services_aws.one("aws:lb/targetGroup:TargetGroup")["inputs"]["healthCheck"]
    assert (check["path"], check["matcher"]) == ("/ready", "200")


def test_aws_deployments_roll_back_on_failure(services_aws):
    breaker = services_aws.one(ECS_SERVICE)["inputs"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": True, "rollback": True}


def test_aws_autoscaling_bounds_follow_the_stack(services_aws):
    target = services_aws.one("aws:appautoscaling/target:Target")["inputs"]
    expected = DEFAULTS[services_aws.stack]
    assert (target["minCapacity"], target["maxCapacity"]) == (
        expected["apiMinTasks"],
        expected["apiMaxTasks"],
    )
    scaling = services_aws.one("aws:appautoscaling/policy:Policy")["inputs"]
    assert scaling["policyType"] == "TargetTrackingScaling"


def test_aws_training_runs_on_a_schedule(services_aws):
    schedule = services_aws.one("aws:scheduler/schedule:Schedule")["inputs"]
    assert schedule["scheduleExpression"].startswith("cron(")
    assert schedule["target"]["ecsParameters"]["launchType"] == "FARGATE"


def test_aws_mlflow_credentials_come_from_secrets_manager_never_plain_env(services_aws):
    secret = PLATFORM_OUTPUTS["aws"]["credentialsSecret"]
    for name in ("mlops-model-api", "mlops-training"):
        container = containers(services_aws, name)
        plain = {e["name"] for e in container["environment"]}
        assert not plain & {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
        assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
            "MLFLOW_TRACKING_USERNAME": f"{secret}:username::",
            "MLFLOW_TRACKING_PASSWORD": f"{secret}:password::",
        }
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert env["MLFLOW_TRACKING_URI"] == PLATFORM_OUTPUTS["aws"]["trackingPrivateUri"]


def test_aws_roles_are_least_privilege(services_aws):
    execution = policy(services_aws, "mlops-execution-secret")["Statement"]
    assert execution == [
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [PLATFORM_OUTPUTS["aws"]["credentialsSecret"]],
        }
    ]
    [data] = policy(services_aws, "mlops-training-data")["Statement"]
    assert data["Action"] == ["s3:GetObject"]
    assert all(r.startswith("arn:aws:s3:::my-tlc-data/green/") for r in data["Resource"])
    api_policies = [
        p for p in services_aws.of_type("aws:iam/rolePolicy:RolePolicy") if "api" in p["name"]
    ]
    assert api_policies == []  # the API's task role needs nothing


def test_aws_tasks_reach_mlflow_through_the_client_group_and_only_the_alb_reaches_the_api(
    services_aws,
):
    network = services_aws.one(ECS_SERVICE)["inputs"]["networkConfiguration"]
    assert PLATFORM_OUTPUTS["aws"]["clientSecurityGroupId"] in network["securityGroups"]
    tasks_sg = next(
        s
        for s in services_aws.of_type("aws:ec2/securityGroup:SecurityGroup")
        if s["name"] == "mlops-api-tasks"
    )
    [rule] = tasks_sg["inputs"]["ingress"]
    assert rule["securityGroups"] == ["mlops-alb-id"] and not rule.get("cidrBlocks")


def test_aws_log_retention_follows_the_stack(services_aws):
    groups = services_aws.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(groups) == 2
    assert {g["inputs"]["retentionInDays"] for g in groups} == {
        DEFAULTS[services_aws.stack]["logRetentionDays"]
    }


def test_aws_images_scan_on_push_and_expire(services_aws):
    repos = services_aws.of_type("aws:ecr/repository:Repository")
    assert len(repos) == 2 and all(
        r["inputs"]["imageScanningConfiguration"]["scanOnPush"] for r in repos
    )
    assert len(services_aws.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")) == 2
    images = services_aws.of_type("docker-build:index:Image")
    dockerfiles = {i["inputs"]["dockerfile"]["location"] for i in images}
    assert {tuple(d.split("/")[-2:]) for d in dockerfiles} == {
        ("model_api", "Dockerfile"),
        ("training", "Dockerfile"),
    }
    assert all(i["inputs"]["push"] is True for i in images)


# --- GCP ---------------------------------------------------------------------------------------


def test_gcp_probes_check_the_process(services_gcp):
    [container] = services_gcp.one(RUN_SERVICE)["inputs"]["template"]["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_gcp_instance_bounds_follow_the_stack(services_gcp):
    scaling = services_gcp.one(RUN_SERVICE)["inputs"]["template"]["scaling"]
    expected = DEFAULTS[services_gcp.stack]
    assert (scaling["minInstanceCount"], scaling["maxInstanceCount"]) == (
        expected["apiMinTasks"],
        expected["apiMaxTasks"],
    )


def test_gcp_reaches_the_tracking_server_through_direct_vpc_egress(services_gcp):
    for typ in (RUN_SERVICE, RUN_JOB):
        template = services_gcp.one(typ)["inputs"]["template"]
        template = template.get("template", template)  # jobs nest one level deeper
        [nic] = template["vpcAccess"]["networkInterfaces"]
        assert nic["network"] == PLATFORM_OUTPUTS["gcp"]["vpcId"]
        assert template["vpcAccess"]["egress"] == "PRIVATE_RANGES_ONLY"


def test_gcp_password_comes_from_secret_manager_never_plain_env(services_gcp):
    for typ in (RUN_SERVICE, RUN_JOB):
        template = services_gcp.one(typ)["inputs"]["template"]
        template = template.get("template", template)
        envs = {e["name"]: e for e in template["containers"][0]["envs"]}
        password = envs["MLFLOW_TRACKING_PASSWORD"]
        assert "value" not in password
        assert (
            password["valueSource"]["secretKeyRef"]["secret"]
            == PLATFORM_OUTPUTS["gcp"]["clientPasswordSecret"]
        )


def test_gcp_service_accounts_are_least_privilege(services_gcp):
    assert not [r for r in services_gcp.resources if r["type"].startswith("gcp:projects/")]
    secrets = services_gcp.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {s["inputs"]["secretId"] for s in secrets} == {
        PLATFORM_OUTPUTS["gcp"]["clientPasswordSecret"]
    }
    [data] = services_gcp.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert (data["inputs"]["bucket"], data["inputs"]["role"]) == (
        "tlc-data",
        "roles/storage.objectViewer",
    )
    assert (
        data["inputs"]["member"].startswith("serviceAccount:mlops-")
        and "-training@" in data["inputs"]["member"]
    )


def test_gcp_training_runs_on_a_schedule(services_gcp):
    job = services_gcp.one("gcp:cloudscheduler/job:Job")["inputs"]
    assert job["schedule"] == DEFAULTS[services_gcp.stack]["trainingSchedule"]
    assert (
        job["httpTarget"]["uri"].endswith(":run")
        and job["httpTarget"]["oauthToken"]["serviceAccountEmail"]
    )


def test_gcp_invocation_is_public_only_when_configured(services_gcp, tmp_path):
    assert (
        services_gcp.one("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")["inputs"]["member"]
        == "allUsers"
    )
    from tests.infra.conftest import SERVICES_GCP_OVERRIDES

    private = run_services(
        tmp_path,
        services_gcp.stack,
        {**SERVICES_GCP_OVERRIDES, "mlops-services:apiPublic": "false"},
    )
    assert not [
        r
        for r in private["resources"]
        if r["type"] == "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
    ]


# --- both --------------------------------------------------------------------------------------


def test_prebuilt_images_are_used_and_nothing_is_built(tmp_path):
    result = run_services(
        tmp_path,
        "dev",
        {
            "mlops-services:modelApiImage": "example.org/api:1",
            "mlops-services:trainingImage": "example.org/train:1",
        },
    )
    assert result["error"] is None, result["error"]
    assert not [
        r
        for r in result["resources"]
        if r["type"] in ("docker-build:index:Image", "aws:ecr/repository:Repository")
    ]
    assert result["outputs"]["modelApiImage"]["value"] == "example.org/api:1"


def test_a_missing_platform_output_is_an_error_naming_it(tmp_path):
    result = run_services(tmp_path, "dev", {"__dropPlatformOutput": "trackingPrivateUri"})
    assert "has no output 'trackingPrivateUri'" in result["error"]
    assert "acme/mlops-platform/dev" in result["error"]


def test_a_config_error_names_the_key(tmp_path):
    result = run_services(
        tmp_path, "prod", {"mlops-services:apiMinTasks": "5", "mlops-services:apiMaxTasks": "2"}
    )
    assert "mlops-services:apiMinTasks (5) must not exceed apiMaxTasks (2)" in result["error"]
