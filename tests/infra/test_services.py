"""Properties of the service stacks on both clouds, every stack file, with the platform's
StackReference mocked. One rule per test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from services.deploy.config import DEFAULTS
from tests.infra.conftest import SERVICES_GCP_OVERRIDES, run_services
from tests.infra.harness import PLATFORM_OUTPUTS

ECS_SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_JOB = "gcp:cloudrunv2/job:Job"
ROOT = Path(__file__).resolve().parents[2]


def containers(declared, name: str) -> dict:
    task = next(t for t in declared.of_type(TASK) if t["name"] == name)
    [container] = json.loads(task["inputs"]["containerDefinitions"])
    return container


# Each image resource and its target of the root Dockerfile, which copies only what it runs.
IMAGE_TARGETS = {
    "model-api-image": "model-api",
    "training-image": "training",
    "scoring-image": "scoring",
    "monitoring-image": "monitoring",
    "streaming-image": "streaming",
}


def built_targets(declared) -> dict[str, str]:
    """Each docker-build Image's target; all are built from the one Dockerfile at the root."""
    images = declared.of_type("docker-build:index:Image")
    assert {i["inputs"]["dockerfile"]["location"] for i in images} == {str(ROOT / "Dockerfile")}
    return {i["name"]: i["inputs"]["target"] for i in images}


def policy(declared, name: str) -> dict:
    role_policy = next(
        p for p in declared.of_type("aws:iam/rolePolicy:RolePolicy") if p["name"] == name
    )
    return json.loads(role_policy["inputs"]["policy"])


# --- AWS ---------------------------------------------------------------------------------------


def test_aws_reads_the_platform_stack_of_the_same_name(services_aws):
    [ref] = services_aws.of_type("pulumi:pulumi:StackReference")
    assert ref["name"] == f"acme/mlops-platform/{services_aws.stack}"


def test_aws_target_health_check_is_liveness_so_a_first_deploy_survives_no_champion(
    services_aws,
):
    """With /ready, a registry without a champion would fail every target: ECS replaces them in
    a loop and the circuit breaker rolls the first deployment back."""
    check = services_aws.one("aws:lb/targetGroup:TargetGroup")["inputs"]["healthCheck"]
    assert (check["path"], check["matcher"]) == ("/health", "200")


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
    schedule = services_aws.named("aws:scheduler/schedule:Schedule", "mlops-training")["inputs"]
    assert schedule["scheduleExpression"].startswith("cron(")
    assert schedule["target"]["ecsParameters"]["launchType"] == "FARGATE"


AWS_USER_SECRETS = {
    "trainer": PLATFORM_OUTPUTS["aws"]["trainerPasswordSecret"],
    "model-api": PLATFORM_OUTPUTS["aws"]["modelApiPasswordSecret"],
}


def test_aws_each_workload_runs_as_its_own_mlflow_user_and_trusts_the_platform_ca(services_aws):
    """The API and scoring read as `model-api`, training and monitoring write as `trainer`; each
    gets only its own password (an ECS secret, never plain env) and the CA's PEM (public)."""
    for name, user in (("mlops-model-api", "model-api"), ("mlops-training", "trainer"),
                       ("mlops-monitoring", "trainer")):  # fmt: skip
        container = containers(services_aws, name)
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert "MLFLOW_TRACKING_PASSWORD" not in env
        assert env["MLFLOW_TRACKING_USERNAME"] == user
        assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
            "MLFLOW_TRACKING_PASSWORD": AWS_USER_SECRETS[user]
        }
        assert env["MLFLOW_TRACKING_URI"] == PLATFORM_OUTPUTS["aws"]["trackingPrivateUri"]
        assert env["MLFLOW_TRACKING_URI"].startswith("https://")
        assert env["MLFLOW_TRACKING_CA_PEM"] == PLATFORM_OUTPUTS["aws"]["trackingCaCert"]


def test_aws_roles_are_least_privilege(services_aws):
    execution = policy(services_aws, "mlops-execution-secret")["Statement"]
    assert execution == [
        {
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            # The workload users' passwords; never the admin's credentials.
            "Resource": sorted(AWS_USER_SECRETS.values()),
        }
    ]
    [data] = policy(services_aws, "mlops-training-data")["Statement"]
    assert data["Action"] == ["s3:GetObject"]
    assert all(r.startswith("arn:aws:s3:::my-tlc-data/green/") for r in data["Resource"])
    api_policies = [
        p for p in services_aws.of_type("aws:iam/rolePolicy:RolePolicy") if "api" in p["name"]
    ]
    # The API's task role may only write its prediction log.
    assert [p["name"] for p in api_policies] == ["mlops-api-prediction-log"]
    bucket = PLATFORM_OUTPUTS["aws"]["artifactBucket"]
    assert policy(services_aws, "mlops-api-prediction-log")["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": [f"arn:aws:s3:::{bucket}/predictions/*"],
        }
    ]


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
    assert len(groups) == 5  # the four tasks' and the stream handler function's
    assert {g["inputs"]["retentionInDays"] for g in groups} == {
        DEFAULTS[services_aws.stack]["logRetentionDays"]
    }


def test_aws_images_scan_on_push_and_expire(services_aws):
    repos = services_aws.of_type("aws:ecr/repository:Repository")
    assert len(repos) == 5 and all(
        r["inputs"]["imageScanningConfiguration"]["scanOnPush"] for r in repos
    )
    policies = services_aws.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert len(policies) == 5
    for policy in policies:  # imagesKept, as on GCP (default 20)
        (rule,) = json.loads(policy["inputs"]["policy"])["rules"]
        assert rule["selection"]["countNumber"] == 20 and rule["action"] == {"type": "expire"}
    images = services_aws.of_type("docker-build:index:Image")
    assert built_targets(services_aws) == IMAGE_TARGETS
    assert all(i["inputs"]["push"] is True for i in images)
    # Built from this commit: the training image tags its runs with it.
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert {i["inputs"]["buildArgs"]["GIT_COMMIT"] for i in images} == {head.strip()}


# --- AWS: scoring ------------------------------------------------------------------------------

BATCH_CE = "aws:batch/computeEnvironment:ComputeEnvironment"
BATCH_QUEUE = "aws:batch/jobQueue:JobQueue"
BATCH_JOB = "aws:batch/jobDefinition:JobDefinition"
SCORING_INPUT = "s3://my-tlc-data/green/green_tripdata_{month}.parquet"


def scoring_container(declared) -> dict:
    return json.loads(declared.one(BATCH_JOB)["inputs"]["containerProperties"])


def test_aws_scoring_runs_on_fargate_in_the_public_subnets_with_a_public_address(services_aws):
    """No NAT in the platform: without a public address the tasks could not pull the image."""
    resources = services_aws.one(BATCH_CE)["inputs"]["computeResources"]
    assert (resources["type"], resources["subnets"]) == (
        "FARGATE",
        PLATFORM_OUTPUTS["aws"]["publicSubnetIds"],
    )
    assert resources["securityGroupIds"] == [PLATFORM_OUTPUTS["aws"]["clientSecurityGroupId"]]
    shards = DEFAULTS[services_aws.stack]["scoringShards"]
    assert resources["maxVcpus"] == shards  # one vCPU per shard: all shards run at once
    container = scoring_container(services_aws)
    assert container["networkConfiguration"] == {"assignPublicIp": "ENABLED"}
    assert services_aws.one(BATCH_JOB)["inputs"]["platformCapabilities"] == ["FARGATE"]
    [order] = services_aws.one(BATCH_QUEUE)["inputs"]["computeEnvironmentOrders"]
    assert order["computeEnvironment"].endswith(":compute-environment/mlops-scoring-mock")


def test_aws_batch_resources_are_auto_named_and_use_the_service_linked_role(services_aws):
    """A pinned job definition name would make a replacement deregister its new revision, and a
    pinned compute environment name would collide with the old one; no service role to detach
    before the compute environment is gone."""
    for typ in (BATCH_CE, BATCH_QUEUE, BATCH_JOB):
        inputs = services_aws.one(typ)["inputs"]
        assert not {"name", "namePrefix"} & set(inputs), typ
    assert "serviceRole" not in services_aws.one(BATCH_CE)["inputs"]


def test_aws_scoring_job_scores_the_month_before_last_into_the_artifact_bucket(services_aws):
    container = scoring_container(services_aws)
    shards = DEFAULTS[services_aws.stack]["scoringShards"]
    bucket = PLATFORM_OUTPUTS["aws"]["artifactBucket"]
    assert container["command"] == [
        "--input", SCORING_INPUT, "--shards", str(shards), "--month=-2",
        "--output", f"s3://{bucket}/batch-predictions/{{month}}/",
    ]  # fmt: skip
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {
        "VCPU": "1",
        "MEMORY": "4096",
    }
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == {
        "MLFLOW_TRACKING_PASSWORD": AWS_USER_SECRETS["model-api"]  # scoring only reads
    }
    assert container["environment"] == [
        {"name": "MLFLOW_TRACKING_URI", "value": PLATFORM_OUTPUTS["aws"]["trackingPrivateUri"]},
        {"name": "MLFLOW_TRACKING_CA_PEM", "value": PLATFORM_OUTPUTS["aws"]["trackingCaCert"]},
        {"name": "MLFLOW_TRACKING_USERNAME", "value": "model-api"},
    ]
    retry = services_aws.one(BATCH_JOB)["inputs"]["retryStrategy"]
    assert retry["attempts"] == 2
    assert retry["evaluateOnExits"] == [{"action": "exit", "onExitCode": "2"}]


def test_aws_scoring_role_reads_the_input_and_writes_only_the_output_prefix(services_aws):
    bucket = PLATFORM_OUTPUTS["aws"]["artifactBucket"]
    assert policy(services_aws, "mlops-scoring-data")["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": ["arn:aws:s3:::my-tlc-data/green/green_tripdata_*"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": [f"arn:aws:s3:::{bucket}/batch-predictions/*"],
        },
    ]


def test_aws_scoring_is_submitted_monthly_as_an_array_of_the_stack_s_shards(services_aws):
    schedule = services_aws.named("aws:scheduler/schedule:Schedule", "mlops-scoring")["inputs"]
    assert schedule["scheduleExpression"] == "cron(0 6 25 * ? *)"
    target = schedule["target"]
    assert target["arn"] == "arn:aws:scheduler:::aws-sdk:batch:submitJob"
    request = json.loads(target["input"])
    queue = "arn:aws:batch:us-east-1:123456789012:job-queue/mlops-scoring-mock"
    definition = "arn:aws:batch:us-east-1:123456789012:job-definition/mlops-scoring-mock"
    assert request == {
        "JobName": f"mlops-{services_aws.stack}-scoring",
        "JobQueue": queue,
        "JobDefinition": definition,  # no revision: the latest active one
        "ArrayProperties": {"Size": DEFAULTS[services_aws.stack]["scoringShards"]},
    }
    [statement] = policy(services_aws, "mlops-scoring-scheduler-submit")["Statement"]
    assert statement["Action"] == ["batch:SubmitJob"]
    assert statement["Resource"] == [queue, definition, f"{definition}:*"]


def test_aws_a_scoring_job_that_can_never_be_placed_is_cancelled(services_aws):
    """Only these status reasons trigger Batch's time-limit actions on a Fargate queue."""
    actions = services_aws.one(BATCH_QUEUE)["inputs"]["jobStateTimeLimitActions"]
    assert {(a["action"], a["state"], a["maxTimeSeconds"]) for a in actions} == {
        ("CANCEL", "RUNNABLE", 3600)
    }
    assert sorted(a["reason"] for a in actions) == [
        "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
    ]


def test_aws_one_shard_is_a_plain_job_not_an_array(tmp_path):
    """Batch array jobs have 2 to 10,000 children; one shard is submitted without an array."""
    result = run_services(tmp_path, "dev", {"mlops-services:scoringShards": "1"})
    assert result["error"] is None, result["error"]
    [schedule] = [r for r in result["resources"] if r["name"] == "mlops-scoring"
                  and r["type"] == "aws:scheduler/schedule:Schedule"]  # fmt: skip
    assert "ArrayProperties" not in json.loads(schedule["inputs"]["target"]["input"])


# --- AWS: prediction log, monitoring, continuous training -------------------------------------


def test_aws_the_api_logs_its_predictions_to_the_artifact_bucket(services_aws):
    env = {
        e["name"]: e["value"] for e in containers(services_aws, "mlops-model-api")["environment"]
    }
    bucket = PLATFORM_OUTPUTS["aws"]["artifactBucket"]
    assert env["MODEL_API_PREDICTION_LOG"] == f"s3://{bucket}/predictions/"


def test_aws_the_monitor_runs_daily_and_retrains_through_the_training_task(services_aws):
    schedule = services_aws.named("aws:scheduler/schedule:Schedule", "mlops-monitoring")["inputs"]
    assert schedule["scheduleExpression"] == "cron(0 7 * * ? *)"
    command = containers(services_aws, "mlops-monitoring")["command"]
    bucket = PLATFORM_OUTPUTS["aws"]["artifactBucket"]
    training = "arn:aws:mock:us-east-1:123456789012:mlops-training"
    assert command[:6] == ["--prediction-log", f"s3://{bucket}/predictions/", "--metrics",
                           "cloudwatch", "--metrics-stack", services_aws.stack]  # fmt: skip
    assert command[command.index("--retrain") :] == [
        "--retrain", "ecs", "--ecs-cluster", "mlops-cluster", "--ecs-task-definition", training,
        "--ecs-subnets", "subnet-pub-a,subnet-pub-b", "--ecs-security-groups", "sg-0clients",
    ]  # fmt: skip
    assert command[command.index("--actuals") + 1] == SCORING_INPUT
    assert "--month=-2" in command


def test_aws_the_monitor_may_read_the_log_and_start_training_only(services_aws):
    bucket = PLATFORM_OUTPUTS["aws"]["artifactBucket"]
    statements = policy(services_aws, "mlops-monitoring-access")["Statement"]
    by_action = {tuple(s["Action"]): s for s in statements}
    assert set(by_action) == {
        ("s3:GetObject",), ("s3:ListBucket",), ("ecs:RunTask",), ("iam:PassRole",),
        ("cloudwatch:PutMetricData",),
    }  # fmt: skip
    # Its metrics: PutMetricData takes no resource, so its namespace only, by condition.
    assert by_action[("cloudwatch:PutMetricData",)]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "MLOps/Monitoring"}
    }
    reads = [r for s in statements if s["Action"] == ["s3:GetObject"] for r in s["Resource"]]
    assert sorted(reads) == sorted(
        ["arn:aws:s3:::my-tlc-data/green/green_tripdata_*", f"arn:aws:s3:::{bucket}/predictions/*"]
    )
    assert by_action[("s3:ListBucket",)]["Condition"] == {
        "StringLike": {"s3:prefix": ["predictions/*"]}
    }
    assert by_action[("ecs:RunTask",)]["Resource"] == [
        "arn:aws:mock:us-east-1:123456789012:mlops-training:*"
    ]
    assert by_action[("iam:PassRole",)]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_aws_continuous_training_reads_and_lists_its_prefix(tmp_path):
    result = run_services(
        tmp_path,
        "dev",
        {
            "mlops-services:trainingDataPrefix": "s3://tlc-feed/green/",
            "mlops-services:trainingMonths": "3",
            "mlops-services:trainData": None,
            "mlops-services:valData": None,
            "mlops-services:scoringInput": "s3://tlc-feed/green/green_tripdata_{month}.parquet",
            "mlops-services:predictionLog": "false",
            "mlops-services:retrainOnDegraded": "false",
        },
    )
    assert result["error"] is None, result["error"]
    by_name = {r["name"]: r for r in result["resources"] if r["type"] != TASK}
    tasks = {r["name"]: r for r in result["resources"] if r["type"] == TASK}
    [container] = json.loads(tasks["mlops-training"]["inputs"]["containerDefinitions"])
    assert container["command"] == ["--data-prefix", "s3://tlc-feed/green/", "--months", "3"]
    statements = json.loads(by_name["mlops-training-data"]["inputs"]["policy"])["Statement"]
    assert statements == [
        {"Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::tlc-feed/green/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::tlc-feed"],
         "Condition": {"StringLike": {"s3:prefix": ["green/*"]}}},
    ]  # fmt: skip
    # Log off: no log, no write grant; retraining off: the monitor cannot start tasks.
    assert "mlops-api-prediction-log" not in by_name
    [monitor] = json.loads(tasks["mlops-monitoring"]["inputs"]["containerDefinitions"])
    assert "--prediction-log" not in monitor["command"] and "--retrain" not in monitor["command"]
    access = json.loads(by_name["mlops-monitoring-access"]["inputs"]["policy"])["Statement"]
    assert [s["Action"] for s in access] == [["s3:GetObject"], ["cloudwatch:PutMetricData"]]


# --- GCP ---------------------------------------------------------------------------------------


def test_gcp_probes_check_the_process(services_gcp):
    [container] = services_gcp.named(RUN_SERVICE, "mlops-model-api")["inputs"]["template"][
        "containers"
    ]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_gcp_instance_bounds_follow_the_stack(services_gcp):
    scaling = services_gcp.named(RUN_SERVICE, "mlops-model-api")["inputs"]["template"]["scaling"]
    expected = DEFAULTS[services_gcp.stack]
    assert (scaling["minInstanceCount"], scaling["maxInstanceCount"]) == (
        expected["apiMinTasks"],
        expected["apiMaxTasks"],
    )


def run_templates(declared) -> list[dict]:
    """The Cloud Run service's template and each job's task template (one level deeper)."""
    service = declared.named(RUN_SERVICE, "mlops-model-api")["inputs"]["template"]
    jobs = [j["inputs"]["template"]["template"] for j in declared.of_type(RUN_JOB)]
    assert len(jobs) == 3  # training, scoring, monitoring
    return [service, *jobs]


def test_gcp_reaches_the_tracking_server_through_direct_vpc_egress(services_gcp):
    for template in run_templates(services_gcp):
        [nic] = template["vpcAccess"]["networkInterfaces"]
        assert nic["network"] == PLATFORM_OUTPUTS["gcp"]["vpcId"]
        assert template["vpcAccess"]["egress"] == "PRIVATE_RANGES_ONLY"


GCP_USER_SECRETS = {
    "trainer": PLATFORM_OUTPUTS["gcp"]["trainerPasswordSecret"],
    "model-api": PLATFORM_OUTPUTS["gcp"]["modelApiPasswordSecret"],
    "streaming": PLATFORM_OUTPUTS["gcp"]["streamingPasswordSecret"],
}


def test_gcp_each_workload_runs_as_its_own_mlflow_user_and_trusts_the_platform_ca(services_gcp):
    users = {"mlops-model-api": "model-api", "mlops-scoring": "model-api",
             "mlops-training": "trainer", "mlops-monitoring": "trainer",
             "mlops-streaming": "streaming"}  # fmt: skip
    services = services_gcp.of_type("gcp:cloudrunv2/service:Service")
    jobs = services_gcp.of_type("gcp:cloudrunv2/job:Job")
    assert {r["name"] for r in [*services, *jobs]} == set(users)
    for resource in (*services, *jobs):
        template = resource["inputs"]["template"]
        template = template.get("template", template)  # a job's task template
        envs = {e["name"]: e for e in template["containers"][0]["envs"]}
        user = users[resource["name"]]
        assert envs["MLFLOW_TRACKING_USERNAME"]["value"] == user
        password = envs["MLFLOW_TRACKING_PASSWORD"]
        assert "value" not in password
        assert password["valueSource"]["secretKeyRef"]["secret"] == GCP_USER_SECRETS[user]
        assert envs["MLFLOW_TRACKING_CA_PEM"]["value"] == PLATFORM_OUTPUTS["gcp"]["trackingCaCert"]
        assert envs["MLFLOW_TRACKING_URI"]["value"].startswith("https://")


def test_gcp_service_accounts_are_least_privilege(services_gcp):
    # Of the project's resources, the APIs and Pub/Sub's service agent, and one project-wide
    # grant: the monitor may write metrics (time series are granted per project only).
    assert {r["type"] for r in services_gcp.resources if r["type"].startswith("gcp:projects/")} == {
        "gcp:projects/service:Service", "gcp:projects/serviceIdentity:ServiceIdentity",
        "gcp:projects/iAMMember:IAMMember",
    }  # fmt: skip
    [project_grant] = services_gcp.of_type("gcp:projects/iAMMember:IAMMember")
    assert project_grant["inputs"]["role"] == "roles/monitoring.metricWriter"
    assert "-monitoring@" in project_grant["inputs"]["member"]
    secrets = services_gcp.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    # api, training, scoring, monitoring, streaming: each its own workload user's password only.
    assert {s["name"]: s["inputs"]["secretId"] for s in secrets} == {
        "mlops-streaming-password-access": GCP_USER_SECRETS["streaming"],
        "mlops-api-password-access": GCP_USER_SECRETS["model-api"],
        "mlops-scoring-password-access": GCP_USER_SECRETS["model-api"],
        "mlops-training-password-access": GCP_USER_SECRETS["trainer"],
        "mlops-monitoring-password-access": GCP_USER_SECRETS["trainer"],
    }
    data = services_gcp.named(
        "gcp:storage/bucketIAMMember:BucketIAMMember", "mlops-training-data-0"
    )
    assert "condition" not in data["inputs"]
    assert (data["inputs"]["bucket"], data["inputs"]["role"]) == (
        "tlc-data",
        "roles/storage.objectViewer",
    )
    assert (
        data["inputs"]["member"].startswith("serviceAccount:mlops-")
        and "-training@" in data["inputs"]["member"]
    )


def test_gcp_training_runs_on_a_schedule(services_gcp):
    job = services_gcp.named("gcp:cloudscheduler/job:Job", "mlops-training-schedule")["inputs"]
    assert job["schedule"] == DEFAULTS[services_gcp.stack]["trainingSchedule"]
    assert (
        job["httpTarget"]["uri"].endswith(":run")
        and job["httpTarget"]["oauthToken"]["serviceAccountEmail"]
    )


def test_gcp_invocation_is_public_only_when_configured_and_binds_no_all_users(
    services_gcp, tmp_path
):
    """Cloud Run's invoker check off is its documented way to a public service: an allUsers
    binding is refused where an organisation policy restricts member domains."""
    service = services_gcp.named("gcp:cloudrunv2/service:Service", "mlops-model-api")["inputs"]
    assert service["invokerIamDisabled"] is True
    members = [r["inputs"]["member"] for r in services_gcp.resources if "member" in r["inputs"]]
    assert "allUsers" not in members and "allAuthenticatedUsers" not in members
    from tests.infra.conftest import SERVICES_GCP_OVERRIDES

    private = run_services(
        tmp_path,
        services_gcp.stack,
        {**SERVICES_GCP_OVERRIDES, "mlops-services:apiPublic": "false"},
    )
    [service] = [r for r in private["resources"] if r["name"] == "mlops-model-api"]
    assert service["inputs"]["invokerIamDisabled"] is False


def test_gcp_images_are_their_targets_of_the_root_dockerfile(services_gcp):
    """Without a target the build would produce the Dockerfile's last stage for every image: the
    jobs would run the model API."""
    assert built_targets(services_gcp) == IMAGE_TARGETS


def test_gcp_the_registry_deletes_old_images_but_the_newest(services_gcp):
    """A KEEP rule alone deletes nothing: a DELETE rule for what is older than 30 days, and the
    newest imagesKept kept whatever their age (a version both match is kept)."""
    repo = services_gcp.one("gcp:artifactregistry/repository:Repository")["inputs"]
    rules = {rule["action"]: rule for rule in repo["cleanupPolicies"]}
    assert rules["DELETE"]["condition"] == {"tagState": "ANY", "olderThan": "2592000s"}
    assert rules["KEEP"]["mostRecentVersions"]["keepCount"] == 20
    assert repo["cleanupPolicyDryRun"] is False


def test_gcp_the_schedules_live_where_the_stack_says(services_gcp, tmp_path):
    """Cloud Scheduler is not offered in every region: the stack may name its own."""
    from tests.infra.conftest import SERVICES_GCP_OVERRIDES

    jobs = services_gcp.of_type("gcp:cloudscheduler/job:Job")
    assert {j["inputs"]["region"] for j in jobs} == {"europe-west1"}  # gcp:region by default
    moved = run_services(tmp_path, services_gcp.stack,
                         {**SERVICES_GCP_OVERRIDES, "mlops-services:schedulerRegion": "us-central1"})  # fmt: skip
    regions = {r["inputs"]["region"] for r in moved["resources"]
               if r["type"] == "gcp:cloudscheduler/job:Job"}  # fmt: skip
    assert regions == {"us-central1"}


# --- GCP: scoring ------------------------------------------------------------------------------

BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"


def test_gcp_scoring_job_runs_a_task_per_shard_on_the_month_before_last(services_gcp):
    job = services_gcp.named(RUN_JOB, "mlops-scoring")["inputs"]["template"]
    shards = DEFAULTS[services_gcp.stack]["scoringShards"]
    assert (job["taskCount"], job["parallelism"]) == (shards, shards)
    [container] = job["template"]["containers"]
    bucket = PLATFORM_OUTPUTS["gcp"]["artifactBucket"]
    assert container["args"] == [
        "--input", "gs://tlc-data/green/green_tripdata_{month}.parquet",
        "--shards", str(shards), "--month=-2",
        "--output", f"gs://{bucket}/batch-predictions/{{month}}/",
    ]  # fmt: skip
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "4096Mi"}
    assert job["template"]["serviceAccount"].startswith(f"mlops-{services_gcp.stack}-scoring@")


def test_gcp_scoring_reads_the_input_and_writes_the_output_prefix_only(services_gcp):
    """Bucket roles narrowed to object-name prefixes by IAM conditions."""
    read = services_gcp.named(BUCKET_MEMBER, "mlops-scoring-input")["inputs"]
    assert (read["bucket"], read["role"]) == ("tlc-data", "roles/storage.objectViewer")
    assert read["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/tlc-data/objects/green/green_tripdata_")'
    )
    write = services_gcp.named(BUCKET_MEMBER, "mlops-scoring-output")["inputs"]
    bucket = PLATFORM_OUTPUTS["gcp"]["artifactBucket"]
    assert (write["bucket"], write["role"]) == (bucket, "roles/storage.objectUser")
    assert write["condition"]["expression"] == (
        f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/batch-predictions/")'
    )
    for binding in (read, write):
        assert "-scoring@" in binding["member"]


def test_gcp_a_fresh_project_gets_the_services_apis_first(services_gcp):
    apis = {r["inputs"]["service"] for r in services_gcp.of_type("gcp:projects/service:Service")}
    assert {"run.googleapis.com", "artifactregistry.googleapis.com",
            "cloudscheduler.googleapis.com"} <= apis  # fmt: skip
    for typ in (RUN_SERVICE, RUN_JOB, "gcp:cloudscheduler/job:Job"):
        for resource in services_gcp.of_type(typ):
            depends = resource["options"]["dependencies"]
            assert any(d.endswith("::api-run") for d in depends), resource["name"]
            assert typ != "gcp:cloudscheduler/job:Job" or any(
                d.endswith("::api-cloudscheduler") for d in depends
            )


def test_gcp_the_api_service_waits_for_its_secret_grant(services_gcp):
    depends = services_gcp.named(RUN_SERVICE, "mlops-model-api")["options"]["dependencies"]
    assert any(d.endswith("::mlops-api-password-access") for d in depends)


def test_gcp_jobs_are_created_after_their_permissions(services_gcp):
    """A run right after the first deploy must not meet a grant that does not exist yet."""
    for job, grants in (
        ("mlops-scoring", ["mlops-scoring-password-access", "mlops-scoring-input",
                           "mlops-scoring-output"]),
        ("mlops-training", ["mlops-training-password-access", "mlops-training-data-0"]),
    ):  # fmt: skip
        depends = services_gcp.named(RUN_JOB, job)["options"]["dependencies"]
        for grant in grants:
            assert any(urn.endswith(f"::{grant}") for urn in depends), (job, grant, depends)


def test_gcp_scoring_runs_monthly(services_gcp):
    job = services_gcp.named("gcp:cloudscheduler/job:Job", "mlops-scoring-schedule")["inputs"]
    assert job["schedule"] == "0 6 25 * *"
    assert job["httpTarget"]["uri"] == (
        "https://run.googleapis.com/v2/projects/mlops-test/locations/europe-west1/jobs/"
        "mlops-scoring-mock:run"
    )
    invoker = services_gcp.named(
        "gcp:cloudrunv2/jobIamMember:JobIamMember", "mlops-scoring-scheduler-run"
    )["inputs"]
    assert invoker["role"] == "roles/run.invoker" and invoker["name"] == "mlops-scoring-mock"


def test_gcp_a_chosen_scoring_output_is_the_one_granted(tmp_path):
    from tests.infra.conftest import SERVICES_GCP_OVERRIDES

    result = run_services(
        tmp_path,
        "dev",
        {**SERVICES_GCP_OVERRIDES, "mlops-services:scoringOutput": "gs://scores/taxi/{month}/"},
    )
    assert result["error"] is None, result["error"]
    [write] = [r for r in result["resources"] if r["name"] == "mlops-scoring-output"]
    assert write["inputs"]["bucket"] == "scores"
    assert write["inputs"]["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/scores/objects/taxi/")'
    )
    assert result["outputs"]["scoringOutput"]["value"] == "gs://scores/taxi/{month}/"


# --- GCP: prediction log, monitoring ----------------------------------------------------------


def test_gcp_the_api_may_only_create_its_prediction_log(services_gcp):
    bucket = PLATFORM_OUTPUTS["gcp"]["artifactBucket"]
    [container] = services_gcp.named(RUN_SERVICE, "mlops-model-api")["inputs"]["template"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["envs"]}
    assert env["MODEL_API_PREDICTION_LOG"] == f"gs://{bucket}/predictions/"
    grant = services_gcp.named(BUCKET_MEMBER, "mlops-api-prediction-log")["inputs"]
    assert (grant["bucket"], grant["role"]) == (bucket, "roles/storage.objectCreator")
    assert grant["condition"]["expression"] == (
        f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/predictions/")'
    )
    depends = services_gcp.named(RUN_SERVICE, "mlops-model-api")["options"]["dependencies"]
    assert any(urn.endswith("::mlops-api-prediction-log") for urn in depends)


def test_gcp_the_monitor_runs_daily_and_may_execute_the_training_job(services_gcp):
    job = services_gcp.named(RUN_JOB, "mlops-monitoring")["inputs"]["template"]["template"]
    [container] = job["containers"]
    args = container["args"]
    assert args[args.index("--retrain") :] == [
        "--retrain", "cloud-run", "--cloud-run-job",
        "projects/mlops-test/locations/europe-west1/jobs/mlops-training-mock",
    ]  # fmt: skip
    schedule = services_gcp.named("gcp:cloudscheduler/job:Job", "mlops-monitoring-schedule")
    assert schedule["inputs"]["schedule"] == "0 7 * * *"
    invoker = services_gcp.named(
        "gcp:cloudrunv2/jobIamMember:JobIamMember", "mlops-monitoring-runs-training"
    )["inputs"]
    assert (invoker["name"], invoker["role"]) == ("mlops-training-mock", "roles/run.invoker")
    assert "-monitoring@" in invoker["member"]
    actuals = services_gcp.named(BUCKET_MEMBER, "mlops-monitoring-actuals")["inputs"]
    assert actuals["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/tlc-data/objects/green/green_tripdata_")'
    )
    depends = services_gcp.named(RUN_JOB, "mlops-monitoring")["options"]["dependencies"]
    for grant in ("mlops-monitoring-log", "mlops-monitoring-actuals",
                  "mlops-monitoring-runs-training", "mlops-monitoring-password-access"):  # fmt: skip
        assert any(urn.endswith(f"::{grant}") for urn in depends), grant


# --- both --------------------------------------------------------------------------------------


def test_prebuilt_images_are_used_and_nothing_is_built(tmp_path):
    result = run_services(
        tmp_path,
        "dev",
        {
            "mlops-services:modelApiImage": "example.org/api:1",
            "mlops-services:trainingImage": "example.org/train:1",
            "mlops-services:scoringImage": "example.org/score:1",
            "mlops-services:monitoringImage": "example.org/monitor:1",
            "mlops-services:streamingImage": "example.org/stream:1",
        },
    )
    assert result["error"] is None, result["error"]
    assert result["outputs"]["streamingImage"]["value"] == "example.org/stream:1"
    assert not [
        r
        for r in result["resources"]
        if r["type"] in ("docker-build:index:Image", "aws:ecr/repository:Repository")
    ]
    assert result["outputs"]["modelApiImage"]["value"] == "example.org/api:1"
    assert result["outputs"]["scoringImage"]["value"] == "example.org/score:1"


def test_prebuilt_images_name_the_streaming_one_only_with_streaming_on(tmp_path):
    four = {
        f"mlops-services:{key}": "example.org/x:1"
        for key in ("modelApiImage", "trainingImage", "scoringImage", "monitoringImage")
    }
    result = run_services(tmp_path, "dev", four)
    assert "mlops-services:streamingImage: set all 5 (prebuilt) or none" in result["error"]
    # Nor does it need a platform that has the stream handler's user.
    result = run_services(tmp_path, "dev", {**four, "mlops-services:streaming": "false",
                                            "__dropPlatformOutput": "streamingPasswordSecret"})  # fmt: skip
    assert result["error"] is None, result["error"]
    assert "streamingImage" not in result["outputs"]
    assert not [
        r for r in result["resources"] if r["type"].startswith(("aws:kinesis", "aws:lambda"))
    ]


def test_a_missing_platform_output_is_an_error_naming_it(tmp_path):
    result = run_services(tmp_path, "dev", {"__dropPlatformOutput": "trackingPrivateUri"})
    assert "has no output 'trackingPrivateUri'" in result["error"]
    assert "acme/mlops-platform/dev" in result["error"]


def test_a_config_error_names_the_key(tmp_path):
    result = run_services(
        tmp_path, "prod", {"mlops-services:apiMinTasks": "5", "mlops-services:apiMaxTasks": "2"}
    )
    assert "mlops-services:apiMinTasks (5) must not exceed apiMaxTasks (2)" in result["error"]


def test_with_a_platform_domain_every_workload_uses_it_and_the_system_cas(tmp_path):
    """A platform with `domain` exports the domain as its private URI (a private zone names the
    private address) and no CA: each container gets an empty CA PEM, so tracking_ca.trust()
    leaves MLflow's client on the system's CAs, which verify Let's Encrypt."""
    domain = {"trackingPrivateUri": "https://mlflow.example.com:5000", "trackingCaCert": ""}
    for cloud, extra in (("aws", {}), ("gcp", SERVICES_GCP_OVERRIDES)):
        (tmp_path / cloud).mkdir()
        result = run_services(tmp_path / cloud, "dev", {**extra, "__platformOutputs": domain})
        assert result["error"] is None, result["error"]
        envs = []
        for resource in result["resources"]:
            if resource["type"] == TASK:
                [container] = json.loads(resource["inputs"]["containerDefinitions"])
                envs.append({e["name"]: e["value"] for e in container["environment"]})
            elif resource["type"] == BATCH_JOB:
                container = json.loads(resource["inputs"]["containerProperties"])
                envs.append({e["name"]: e["value"] for e in container["environment"]})
            elif resource["type"] in (RUN_SERVICE, RUN_JOB):
                template = resource["inputs"]["template"]
                template = template.get("template", template)
                envs.append({e["name"]: e.get("value") for e in template["containers"][0]["envs"]})
            elif resource["type"] == "aws:lambda/function:Function":
                envs.append(resource["inputs"]["environment"]["variables"])
        mlflow_envs = [env for env in envs if "MLFLOW_TRACKING_URI" in env]
        assert len(mlflow_envs) == 5, cloud  # API, training, monitoring, scoring, streaming
        for env in mlflow_envs:
            assert env["MLFLOW_TRACKING_URI"] == domain["trackingPrivateUri"]
            assert env["MLFLOW_TRACKING_CA_PEM"] == ""
