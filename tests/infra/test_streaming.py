"""Streaming predictions in the service stacks, under mocks, every stack file: the resources,
their options (retries, dead letters, batch failure reporting, OIDC push), the dependencies the
engine receives, and the grants (nothing broader than the streams, topics and secrets used)."""

from __future__ import annotations

import json

from infra.aws.common import LAMBDA_VPC
from services.deploy.aws.policies import KINESIS_READ
from tests.infra.conftest import run_services
from tests.infra.harness import PLATFORM_OUTPUTS

STREAM = "aws:kinesis/stream:Stream"
FUNCTION = "aws:lambda/function:Function"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
AWS_SECRETS = PLATFORM_OUTPUTS["aws"]
# A P-256 CA's PEM, as infra/tls.py makes it, is about 600 characters; room for twice that.
CA_PEM_ROOM = 1300


def test_lambda_takes_the_image_by_digest_alone():
    from services.deploy.aws.streaming import lambda_image

    assert lambda_image("1.dkr.ecr.r.amazonaws.com/a/b:latest@sha256:ff") == (
        "1.dkr.ecr.r.amazonaws.com/a/b@sha256:ff"
    )
    assert lambda_image("host:5000/repo@sha256:ff") == "host:5000/repo@sha256:ff"
    assert lambda_image("host:5000/repo:v1") == "host:5000/repo:v1"


def depends_on(resource: dict, name: str) -> bool:
    return any(urn.endswith(f"::{name}") for urn in resource["options"]["dependencies"])


# --- AWS ---------------------------------------------------------------------------------------


def test_aws_streams_are_on_demand_and_encrypted_with_the_managed_key(services_aws):
    streams = {s["name"]: s["inputs"] for s in services_aws.of_type(STREAM)}
    assert set(streams) == {"mlops-ride-events", "mlops-ride-predictions"}
    for stream in streams.values():
        assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
        assert "shardCount" not in stream  # refused in on-demand mode
        assert (stream["encryptionType"], stream["kmsKeyId"]) == ("KMS", "alias/aws/kinesis")
        assert stream["retentionPeriod"] == 24
    assert services_aws.outputs["rideEventsStream"]["value"] == "mlops-ride-events"
    assert services_aws.outputs["ridePredictionsStream"]["value"] == "mlops-ride-predictions"


def test_aws_streamshards_provisions_the_input_stream(tmp_path):
    result = run_services(tmp_path, "dev", {"mlops-services:streamShards": "3"})
    assert result["error"] is None, result["error"]
    streams = {r["name"]: r["inputs"] for r in result["resources"] if r["type"] == STREAM}
    events = streams["mlops-ride-events"]
    assert (events["streamModeDetails"]["streamMode"], events["shardCount"]) == ("PROVISIONED", 3)
    assert streams["mlops-ride-predictions"]["streamModeDetails"]["streamMode"] == "ON_DEMAND"


def test_aws_the_mapping_reports_batch_failures_retries_boundedly_then_dead_letters(
    services_aws,
):
    mapping = services_aws.one(MAPPING)
    inputs = mapping["inputs"]
    assert inputs["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert inputs["bisectBatchOnFunctionError"] is True
    assert inputs["maximumRetryAttempts"] == 4  # streamMaxAttempts 5: the first and 4 more
    assert inputs["maximumRecordAgeInSeconds"] == 86_400
    assert inputs["startingPosition"] == "TRIM_HORIZON"
    assert (inputs["batchSize"], inputs["maximumBatchingWindowInSeconds"]) == (100, 1)
    queue = services_aws.one("aws:sqs/queue:Queue")
    assert queue["inputs"]["sqsManagedSseEnabled"] is True
    assert inputs["destinationConfig"]["onFailure"]["destinationArn"].endswith(
        ":mlops-ride-events-dead-letter"
    )
    assert inputs["eventSourceArn"].endswith(":mlops-ride-events")
    # Lambda checks the role's grants when the mapping is created: they come first.
    assert depends_on(mapping, "mlops-streaming") and any(
        "aws:iam/rolePolicy:RolePolicy::mlops-streaming" in urn
        for urn in mapping["options"]["dependencies"]
    )


def test_aws_the_function_runs_the_streaming_image_in_the_vpc_as_its_own_user(services_aws):
    function = services_aws.one(FUNCTION)
    inputs = function["inputs"]
    assert inputs["packageType"] == "Image"
    # By digest alone: Lambda takes a tag or a digest, not both as the built reference has them.
    assert services_aws.outputs["streamingImage"]["value"].endswith(
        "/mlops-streaming:latest@sha256:0mock"
    )
    assert inputs["imageUri"].endswith("/mlops-streaming@sha256:0mock")
    assert inputs["vpcConfig"]["subnetIds"] == AWS_SECRETS["publicSubnetIds"]
    assert AWS_SECRETS["clientSecurityGroupId"] in inputs["vpcConfig"]["securityGroupIds"]
    env = inputs["environment"]["variables"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "streaming"
    assert env["MLFLOW_TRACKING_URI"] == AWS_SECRETS["trackingPrivateUri"]
    assert env["STREAMING_PASSWORD_SECRET"] == AWS_SECRETS["streamingPasswordSecret"]
    assert "MLFLOW_TRACKING_PASSWORD" not in env  # read from its secret at start
    assert env["STREAMING_OUTPUT"] == "mlops-ride-predictions"
    assert env["STREAMING_PREDICTION_LOG"] == f"s3://{AWS_SECRETS['artifactBucket']}/predictions/"
    # Lambda's 4 KB for the whole environment, with a real CA's PEM in it.
    size = sum(len(k) + len(v) for k, v in env.items() if k != "MLFLOW_TRACKING_CA_PEM")
    assert size + len("MLFLOW_TRACKING_CA_PEM") + CA_PEM_ROOM < 4096
    # Its network interfaces need the role's grants, its first batch the endpoints.
    urns = function["options"]["dependencies"]
    assert any("aws:iam/rolePolicy:RolePolicy::mlops-streaming" in u for u in urns)
    for endpoint in ("kinesis-streams", "sqs", "secretsmanager", "s3"):
        assert any(u.endswith(f"{ENDPOINT}::mlops-streaming-{endpoint}") for u in urns), endpoint


def test_aws_the_function_reaches_aws_apis_through_endpoints_only_it_may_use(services_aws):
    endpoints = {e["name"]: e["inputs"] for e in services_aws.of_type(ENDPOINT)}
    for service in ("kinesis-streams", "sqs", "secretsmanager"):
        endpoint = endpoints[f"mlops-streaming-{service}"]
        assert endpoint["serviceName"] == f"com.amazonaws.us-east-1.{service}"
        assert (endpoint["vpcEndpointType"], endpoint["privateDnsEnabled"]) == ("Interface", True)
        # In the subnets whose zones offer it: SQS's is missing from the -b subnet's zone here.
        offered = ["subnet-pub-a"] if service == "sqs" else AWS_SECRETS["publicSubnetIds"]
        assert endpoint["subnetIds"] == offered
    s3 = endpoints["mlops-streaming-s3"]
    assert (s3["vpcEndpointType"], s3["routeTableIds"]) == ("Gateway", ["rtb-0public"])
    group = services_aws.named("aws:ec2/securityGroup:SecurityGroup", "mlops-streaming-endpoints")
    [rule] = group["inputs"]["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (443, 443, "tcp")
    assert "cidrBlocks" not in rule and len(rule["securityGroups"]) == 1


def test_aws_the_function_s_grants_name_its_streams_queue_secret_and_prefix_only(services_aws):
    [policy] = [
        json.loads(p["inputs"]["policy"])
        for p in services_aws.of_type("aws:iam/rolePolicy:RolePolicy")
        if p["name"] == "mlops-streaming"
    ]
    grants = {tuple(s["Action"]): s["Resource"] for s in policy["Statement"]}
    arn = "arn:aws:mock:us-east-1:123456789012:"  # the mocks' ARN of each resource by name
    assert grants[tuple(KINESIS_READ)] == [f"{arn}mlops-ride-events"]
    assert grants[("kinesis:PutRecord", "kinesis:PutRecords")] == [f"{arn}mlops-ride-predictions"]
    assert grants[("sqs:SendMessage",)] == [f"{arn}mlops-ride-events-dead-letter"]
    assert grants[("secretsmanager:GetSecretValue",)] == [AWS_SECRETS["streamingPasswordSecret"]]
    bucket = AWS_SECRETS["artifactBucket"]
    assert grants[("s3:PutObject", "s3:AbortMultipartUpload")] == [
        f"arn:aws:s3:::{bucket}/predictions/*"
    ]
    # Only the network interfaces' actions, which take no narrower resource, name *.
    wide = [s for s in policy["Statement"] if "*" in s["Resource"]]
    assert [s["Action"] for s in wide] == [LAMBDA_VPC]
    assert all(":*" not in a for s in policy["Statement"] for a in s["Action"])
    # The ECS tasks' execution role no longer hands out the stream handler's password.
    execution = next(
        json.loads(p["inputs"]["policy"])
        for p in services_aws.of_type("aws:iam/rolePolicy:RolePolicy")
        if p["name"] == "mlops-execution-secret"
    )
    assert AWS_SECRETS["streamingPasswordSecret"] not in execution["Statement"][0]["Resource"]


def test_aws_lambda_may_pull_the_streaming_image_for_this_account_s_functions(services_aws):
    [policy] = services_aws.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    # Before the function exists: its image (whose reference it is created from) waits for it.
    image = services_aws.named("docker-build:index:Image", "streaming-image")
    assert depends_on(image, "mlops-streaming-lambda-pull")
    [statement] = json.loads(policy["inputs"]["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert statement["Condition"]["StringLike"]["aws:sourceArn"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:*"
    )


# --- GCP ---------------------------------------------------------------------------------------

TOPIC = "gcp:pubsub/topic:Topic"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC_MEMBER = "gcp:pubsub/topicIAMMember:TopicIAMMember"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
GCP = PLATFORM_OUTPUTS["gcp"]
AGENT = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"


def account(declared, role: str) -> str:
    return f"mlops-{declared.stack}-{role}@mlops-test.iam.gserviceaccount.com"


def test_gcp_topics_and_a_subscription_for_each_topic_someone_reads(services_gcp):
    topics = {t["name"] for t in services_gcp.of_type(TOPIC)}
    assert topics == {
        "mlops-ride-events",
        "mlops-ride-predictions",
        "mlops-ride-events-dead-letter",
    }
    readers = {s["name"]: s["inputs"] for s in services_gcp.of_type(SUBSCRIPTION)}
    for name in ("mlops-ride-predictions", "mlops-ride-events-dead-letter"):
        assert readers[name]["topic"] == f"projects/mlops-test/topics/{name}-mock"
        assert readers[name]["expirationPolicy"] == {"ttl": ""}  # never expires when idle
        assert "pushConfig" not in readers[name]
    assert services_gcp.outputs["rideEventsTopic"]["value"] == (
        "projects/mlops-test/topics/mlops-ride-events-mock"
    )
    apis = {a["inputs"]["service"] for a in services_gcp.of_type("gcp:projects/service:Service")}
    assert "pubsub.googleapis.com" in apis


def test_gcp_pushes_with_an_oidc_token_retries_boundedly_then_dead_letters(services_gcp):
    push = services_gcp.named(SUBSCRIPTION, "mlops-ride-events-push")
    inputs = push["inputs"]
    uri = "https://mlops-streaming-mock.a.run.app"
    assert inputs["topic"] == "projects/mlops-test/topics/mlops-ride-events-mock"
    assert inputs["pushConfig"]["pushEndpoint"] == f"{uri}/pubsub/push"
    assert inputs["pushConfig"]["oidcToken"] == {
        "serviceAccountEmail": account(services_gcp, "push"), "audience": uri,
    }  # fmt: skip
    assert inputs["deadLetterPolicy"] == {
        "deadLetterTopic": "projects/mlops-test/topics/mlops-ride-events-dead-letter-mock",
        "maxDeliveryAttempts": 5,
    }
    assert inputs["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert inputs["ackDeadlineSeconds"] == 120 and inputs["expirationPolicy"] == {"ttl": ""}
    # Deliveries start only once the push account may invoke, its token can be signed, and the
    # agent may forward to the dead letters.
    for grant in ("mlops-streaming-invoker", "mlops-push-token", "mlops-pubsub-agent-dead-letters"):
        assert depends_on(push, grant), grant


def test_gcp_cloud_run_gets_the_cpus_its_memory_needs():
    from services.deploy.gcp.streaming import cpus_for

    assert [cpus_for(m) for m in (512, 4096, 4097, 8192, 8193, 10_240)] == [
        "1", "1", "2", "2", "4", "4",
    ]  # fmt: skip


def test_gcp_only_the_push_account_invokes_the_internal_service(services_gcp):
    service = services_gcp.named(RUN_SERVICE, "mlops-streaming")
    inputs = service["inputs"]
    assert inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert not inputs.get("invokerIamDisabled")  # Cloud Run checks the token
    invokers = services_gcp.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    [invoker] = [i["inputs"] for i in invokers if i["inputs"]["name"] == "mlops-streaming-mock"]
    assert (invoker["role"], invoker["member"]) == (
        "roles/run.invoker",
        f"serviceAccount:{account(services_gcp, 'push')}",
    )
    assert not [i for i in invokers if "allUsers" in i["inputs"]["member"]]
    template = inputs["template"]
    assert template["serviceAccount"] == account(services_gcp, "streaming")
    [container] = template["containers"]
    assert container["commands"] == ["python", "-m", "streaming.push"]
    envs = {e["name"]: e for e in container["envs"]}
    assert envs["MLFLOW_TRACKING_USERNAME"]["value"] == "streaming"
    assert (
        envs["MLFLOW_TRACKING_PASSWORD"]["valueSource"]["secretKeyRef"]["secret"]
        == (GCP["streamingPasswordSecret"])
    )
    assert envs["STREAMING_OUTPUT"]["value"].endswith("/topics/mlops-ride-predictions-mock")
    assert envs["STREAMING_DEAD_LETTER"]["value"].endswith(
        "/topics/mlops-ride-events-dead-letter-mock"
    )
    assert template["vpcAccess"]["egress"] == "PRIVATE_RANGES_ONLY"
    for grant in ("mlops-streaming-password-access", "mlops-streaming-publishes-predictions",
                  "mlops-streaming-publishes-dead-letters", "mlops-streaming-prediction-log"):  # fmt: skip
        assert depends_on(service, grant), grant


def test_gcp_grants_name_the_topics_subscription_and_prefix_used_only(services_gcp):
    members = {m["name"]: m["inputs"] for m in services_gcp.of_type(TOPIC_MEMBER)}
    streaming = f"serviceAccount:{account(services_gcp, 'streaming')}"
    assert {(m["topic"], m["role"], m["member"]) for m in members.values()} == {
        ("mlops-ride-predictions-mock", "roles/pubsub.publisher", streaming),
        ("mlops-ride-events-dead-letter-mock", "roles/pubsub.publisher", streaming),
        ("mlops-ride-events-dead-letter-mock", "roles/pubsub.publisher", AGENT),
    }
    [ack] = services_gcp.of_type("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember")
    assert (ack["inputs"]["subscription"], ack["inputs"]["role"], ack["inputs"]["member"]) == (
        "mlops-ride-events-push-mock", "roles/pubsub.subscriber", AGENT,
    )  # fmt: skip
    [token] = services_gcp.of_type("gcp:serviceaccount/iAMMember:IAMMember")
    assert token["inputs"]["serviceAccountId"].endswith(account(services_gcp, "push"))
    assert (token["inputs"]["role"], token["inputs"]["member"]) == (
        "roles/iam.serviceAccountTokenCreator", AGENT,
    )  # fmt: skip
    log = services_gcp.named("gcp:storage/bucketIAMMember:BucketIAMMember",
                             "mlops-streaming-prediction-log")["inputs"]  # fmt: skip
    assert (log["role"], log["member"]) == ("roles/storage.objectCreator", streaming)
    assert log["condition"]["expression"] == (
        f'resource.name.startsWith("projects/_/buckets/{GCP["artifactBucket"]}/objects/predictions/")'
    )


def test_gcp_streaming_off_declares_none_of_it(tmp_path):
    from tests.infra.conftest import SERVICES_GCP_OVERRIDES

    result = run_services(tmp_path, "dev", {
        **SERVICES_GCP_OVERRIDES, "mlops-services:streaming": "false",
        "__dropPlatformOutput": "streamingPasswordSecret",
    })  # fmt: skip
    assert result["error"] is None, result["error"]
    types = {r["type"] for r in result["resources"]}
    assert not {t for t in types if t.startswith("gcp:pubsub")}
    accounts = {r["name"] for r in result["resources"]
                if r["type"] == "gcp:serviceaccount/account:Account"}  # fmt: skip
    assert accounts.isdisjoint({"mlops-streaming", "mlops-push"})
    apis = {r["inputs"]["service"] for r in result["resources"]
            if r["type"] == "gcp:projects/service:Service"}  # fmt: skip
    assert "pubsub.googleapis.com" not in apis
    assert "rideEventsTopic" not in result["outputs"]
