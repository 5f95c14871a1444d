"""One test per policy of the pack: a compliant and a violating resource."""

from __future__ import annotations

import json

from policy.rules import (
    bucket_not_public,
    database_not_public,
    no_open_ssh_or_postgres,
    no_plaintext_secrets,
    prod_deletion_protection,
)


def test_database_not_public():
    assert database_not_public("aws:rds/instance:Instance", {"publiclyAccessible": False}) == []
    assert database_not_public("aws:rds/instance:Instance", {"publiclyAccessible": True})
    private = {"settings": {"ipConfiguration": {"ipv4Enabled": False}}}
    assert database_not_public("gcp:sql/databaseInstance:DatabaseInstance", private) == []
    assert database_not_public("gcp:sql/databaseInstance:DatabaseInstance", {"settings": {}})


def test_no_open_ssh_or_postgres():
    sg = "aws:ec2/securityGroup:SecurityGroup"
    rule = {"protocol": "tcp", "fromPort": 5000, "toPort": 5000, "cidrBlocks": ["0.0.0.0/0"]}
    assert no_open_ssh_or_postgres(sg, {"ingress": [rule]}) == []
    assert no_open_ssh_or_postgres(sg, {"ingress": [{**rule, "fromPort": 22, "toPort": 22}]}) == [
        "port 22 is open to ['0.0.0.0/0']"
    ]
    assert no_open_ssh_or_postgres(
        sg, {"ingress": [{**rule, "protocol": "-1", "fromPort": 0, "toPort": 0}]}
    )
    assert (
        no_open_ssh_or_postgres(
            sg,
            {"ingress": [{**rule, "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["10.0.0.0/8"]}]},
        )
        == []
    )
    fw = "gcp:compute/firewall:Firewall"
    iap = {"sourceRanges": ["35.235.240.0/20"], "allows": [{"protocol": "tcp", "ports": ["22"]}]}
    assert no_open_ssh_or_postgres(fw, iap) == []
    assert no_open_ssh_or_postgres(fw, {**iap, "sourceRanges": ["0.0.0.0/0"]})


def test_bucket_not_public():
    block = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
    all_on = dict.fromkeys(
        ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
    )
    assert bucket_not_public(block, all_on) == []
    assert bucket_not_public(block, {**all_on, "restrictPublicBuckets": False}) == [
        "public access block leaves restrictPublicBuckets off"
    ]
    gcs = "gcp:storage/bucket:Bucket"
    assert (
        bucket_not_public(
            gcs, {"publicAccessPrevention": "enforced", "uniformBucketLevelAccess": True}
        )
        == []
    )
    assert len(bucket_not_public(gcs, {"publicAccessPrevention": "inherited"})) == 2


def test_prod_deletion_protection():
    rds = "aws:rds/instance:Instance"
    prod = {"tags": {"stack": "prod"}, "deletionProtection": True, "skipFinalSnapshot": False}
    assert prod_deletion_protection(rds, prod) == []
    assert prod_deletion_protection(rds, {**prod, "deletionProtection": False})
    assert (
        prod_deletion_protection(
            rds, {**prod, "tags": {"stack": "dev"}, "deletionProtection": False}
        )
        == []
    )
    sql = "gcp:sql/databaseInstance:DatabaseInstance"
    assert prod_deletion_protection(sql, {"settings": {"userLabels": {"stack": "prod"}}})
    assert prod_deletion_protection(
        "gcp:storage/bucket:Bucket", {"labels": {"stack": "prod"}, "forceDestroy": True}
    )


def test_a_secret_in_gzipped_base64_user_data_is_found():
    """A stack may give EC2 its user-data as userDataBase64, gzipped: the rule reads what
    cloud-init reads (this platform sends plain userData)."""
    import base64
    import gzip

    vm = "aws:ec2/instance:Instance"

    def packed(text: str) -> str:
        return base64.b64encode(gzip.compress(text.encode())).decode()

    clean = packed("#cloud-config\nwrite_files: [{path: /etc/x, content: PGPASSFILE=/run/p}]\n")
    assert no_plaintext_secrets(vm, {"userDataBase64": clean}) == []
    planted = packed("#cloud-config\nruncmd: [[sh, -c, 'export PGPASSWORD=hunter2']]\n")
    assert no_plaintext_secrets(vm, {"userDataBase64": planted}) == [
        "user-data assigns a secret value"
    ]
    plain = base64.b64encode(b"MLFLOW_AUTH_ADMIN_PASSWORD: x").decode()  # base64, not gzipped
    assert no_plaintext_secrets(vm, {"userDataBase64": plain})
    assert no_plaintext_secrets(vm, {"userDataBase64": "%%% not base64"}) == [
        "user-data cannot be decoded (base64, then gzip) to be checked for secrets"
    ]


def test_no_plaintext_secrets():
    vm = "aws:ec2/instance:Instance"
    assert (
        no_plaintext_secrets(
            vm, {"userData": "#cloud-config\nruncmd: [[systemctl, start, mlflow]]"}
        )
        == []
    )
    assert no_plaintext_secrets(vm, {"userData": "export PGPASSWORD=hunter2"})
    for bundle in ("aws:s3/bucketObjectv2:BucketObjectv2", "gcp:storage/bucketObject:BucketObject"):
        clean = json.dumps({"files": {"/etc/mlflow/server.json": {"text": '{"argv": []}'}}})
        assert no_plaintext_secrets(bundle, {"content": clean}) == []
        planted = json.dumps({"files": {"/etc/mlflow/x.env": {"text": "PGPASSWORD=hunter2"}}})
        assert no_plaintext_secrets(bundle, {"content": planted}) == [
            "bucket object assigns a secret value"
        ]
    task = "aws:ecs/taskDefinition:TaskDefinition"
    ok = [{"name": "api", "environment": [{"name": "MLFLOW_TRACKING_URI", "value": "http://x"}]}]
    assert no_plaintext_secrets(task, {"containerDefinitions": json.dumps(ok)}) == []
    bad = [{"name": "api", "environment": [{"name": "MLFLOW_TRACKING_PASSWORD", "value": "x"}]}]
    assert no_plaintext_secrets(task, {"containerDefinitions": json.dumps(bad)}) == [
        "container api has MLFLOW_TRACKING_PASSWORD in plain environment"
    ]
    job = "aws:batch/jobDefinition:JobDefinition"
    assert no_plaintext_secrets(job, {"containerProperties": json.dumps(ok[0])}) == []
    assert no_plaintext_secrets(job, {"containerProperties": json.dumps(bad[0])}) == [
        "job definition has MLFLOW_TRACKING_PASSWORD in plain environment"
    ]
    run = "gcp:cloudrunv2/service:Service"
    ref = {"name": "MLFLOW_TRACKING_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "s"}}}
    assert no_plaintext_secrets(run, {"template": {"containers": [{"envs": [ref]}]}}) == []
    plain = {"name": "MLFLOW_TRACKING_PASSWORD", "value": "x"}
    assert no_plaintext_secrets(run, {"template": {"containers": [{"envs": [plain]}]}})
