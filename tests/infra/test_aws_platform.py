"""Security and protection properties of the AWS platform stack, checked on every stack file
under Pulumi mocks. One rule per test."""

from __future__ import annotations

import json
import re

import yaml

from infra import outputs as out
from tests.infra.conftest import PEM_KEY, ROOT
from tests.infra.harness import AMI_PREFIX, SECRET_SENTINEL

RDS = "aws:rds/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"
EC2 = "aws:ec2/instance:Instance"


SG = "aws:ec2/securityGroup:SecurityGroup"


def sg_named(declared, suffix: str) -> dict:
    [sg] = [r for r in declared.of_type(SG) if r["name"].endswith(suffix)]
    return sg


def test_database_is_never_publicly_accessible(declared):
    """The backend store is reachable only inside the VPC."""
    db = declared.one(RDS)["inputs"]
    assert db["publiclyAccessible"] is False
    group = declared.one("aws:rds/subnetGroup:SubnetGroup")["inputs"]
    assert all("private" in s for s in group["subnetIds"]) and len(group["subnetIds"]) == 2


def test_database_password_is_managed_by_rds_not_pulumi(declared):
    """No database password is ever in Pulumi state, config or user-data."""
    db = declared.one(RDS)["inputs"]
    assert db["manageMasterUserPassword"] is True
    assert "password" not in db


def test_database_storage_is_encrypted_and_current(declared):
    db = declared.one(RDS)["inputs"]
    assert db["storageEncrypted"] is True
    assert db["engine"] == "postgres" and int(db["engineVersion"].split(".")[0]) >= 16


def test_prod_database_is_protected_and_dev_is_destroyable(declared):
    """prod survives `pulumi destroy`; dev and staging can be torn down cleanly."""
    db = declared.one(RDS)
    if declared.stack.startswith("prod"):
        assert db["inputs"]["deletionProtection"] is True
        assert (
            db["inputs"]["skipFinalSnapshot"] is False and db["inputs"]["finalSnapshotIdentifier"]
        )
        assert db["inputs"]["backupRetentionPeriod"] >= 7
        assert db["inputs"]["multiAz"] is True
        assert db["options"]["protect"] is True
    else:
        assert db["inputs"]["deletionProtection"] is False
        assert db["inputs"]["skipFinalSnapshot"] is True
        assert db["options"]["protect"] is False


def test_bucket_blocks_every_kind_of_public_access(declared):
    block = declared.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["inputs"]
    for key in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block[key] is True, key
    ownership = declared.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")["inputs"]
    assert ownership["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def test_bucket_is_encrypted_versioned_and_expires_old_versions(declared):
    sse = declared.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )["inputs"]
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in (
        "aws:kms",
        "AES256",
    )
    versioning = declared.one("aws:s3/bucketVersioning:BucketVersioning")["inputs"]
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    rules = declared.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[
        "inputs"
    ]["rules"]
    assert any(r.get("noncurrentVersionExpiration", {}).get("noncurrentDays", 0) > 0 for r in rules)


def test_the_service_stacks_outputs_expire_as_the_stack_says(declared, tmp_path):
    """The prediction log and the batch outputs are kept predictionLogDays / scoringOutputDays
    (defaults 90 / 365), each by its prefix; a stack file's value is the rule's."""
    from tests.infra.conftest import run_stack

    def expiry(resources) -> dict[str, int]:
        (lifecycle,) = [r for r in resources if r["type"] == LIFECYCLE]
        return {r["filter"]["prefix"]: r["expiration"]["days"]
                for r in lifecycle["inputs"]["rules"] if "expiration" in r}  # fmt: skip

    assert expiry(declared.resources) == {"predictions/": 90, "batch-predictions/": 365}
    changed = run_stack(tmp_path, ROOT / f"Pulumi.{declared.stack}.yaml",
                        {"mlops-platform:predictionLogDays": 14, "mlops-platform:scoringOutputDays": 30})  # fmt: skip
    assert expiry(changed["resources"]) == {"predictions/": 14, "batch-predictions/": 30}


LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def test_bucket_policy_denies_plain_http(declared):
    policy = json.loads(declared.one("aws:s3/bucketPolicy:BucketPolicy")["inputs"]["policy"])
    [deny] = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"


def test_prod_bucket_is_retained_and_dev_can_be_force_destroyed(declared):
    bucket = declared.one(BUCKET)
    if declared.stack.startswith("prod"):
        assert bucket["inputs"]["forceDestroy"] is False
        assert bucket["options"]["protect"] and bucket["options"]["retainOnDelete"]
    else:
        assert bucket["inputs"]["forceDestroy"] is True
        assert not bucket["options"]["protect"]


def test_no_ssh_and_no_postgres_from_anywhere(declared):
    """Ports 22 and 5432 are never open to a CIDR; the database admits only the server's group."""
    for sg in declared.of_type(SG):
        for rule in sg["inputs"].get("ingress", []):
            ports = range(int(rule["fromPort"]), int(rule["toPort"]) + 1)
            assert 22 not in ports or rule["protocol"] not in ("tcp", "-1"), sg["name"]
            if 5432 in ports:
                assert not rule.get("cidrBlocks"), sg["name"]
    db_rules = sg_named(declared, "-db")["inputs"]["ingress"]
    assert db_rules == [
        {
            **db_rules[0],
            "securityGroups": ["mlops-mlflow-server-id"],
            "fromPort": 5432,
            "toPort": 5432,
        }
    ]


def test_mlflow_port_only_from_allowed_cidrs_and_the_client_group(declared_vm):
    config = yaml.safe_load((ROOT / f"Pulumi.{declared_vm.stack}.yaml").read_text())["config"]
    allowed = config.get("mlops-platform:allowedCidrs", [])
    rules = sg_named(declared_vm, "-mlflow-server")["inputs"]["ingress"]
    cidrs = [c for r in rules for c in r.get("cidrBlocks", [])]
    groups = [g for r in rules for g in r.get("securityGroups", [])]
    assert sorted(cidrs) == sorted(allowed)
    assert "0.0.0.0/0" not in cidrs
    assert groups == ["mlops-mlflow-clients-id"]
    assert {(r["fromPort"], r["toPort"]) for r in rules} == {(5000, 5000)}


def test_instance_role_is_scoped_to_this_bucket_and_these_secrets(declared):
    policy = json.loads(declared.one("aws:iam/rolePolicy:RolePolicy")["inputs"]["policy"])
    bucket_arn = declared.outputs[out.ARTIFACT_BUCKET]["value"]
    for statement in policy["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        assert "*" not in resources and not any(a.endswith(":*") or a == "*" for a in actions)
        if any(a.startswith("s3:") for a in actions):
            assert all(r.startswith(f"arn:aws:s3:::{bucket_arn}") for r in resources), resources
        if any(a.startswith("secretsmanager:") for a in actions):
            # The database's, the admin's, the TLS key, and the three workload users' passwords.
            assert actions == ["secretsmanager:GetSecretValue"] and len(resources) == 6
            secrets = {r["name"]: r for r in declared.of_type(SECRET)}
            assert set(resources) == {
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-mock",
                *(f"arn:aws:mock:us-east-1:123456789012:{n}" for n in secrets),
            }
        if any(a.startswith("rds:") for a in actions):
            # Snapshots of this database before an upgrade, named for it, and nothing else.
            snapshots = "arn:aws:rds:us-east-1:123456789012:snapshot:mlflow-pre-upgrade-*"
            assert (actions, resources) in (
                (["rds:CreateDBSnapshot"], ["arn:aws:rds:us-east-1:123456789012:db:mlops-postgres-mock", snapshots]),
                (["rds:AddTagsToResource"], [snapshots]),
            ), statement  # fmt: skip
    assert {s["Sid"] for s in policy["Statement"]} >= {"SnapshotBeforeUpgrade", "TagThoseSnapshots"}
    attached = [
        r["inputs"]["policyArn"]
        for r in declared.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    ]
    assert attached == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
    assert not any("FullAccess" in a for a in attached)


def test_instance_requires_imdsv2_and_encrypts_its_disk(declared_vm):
    vm = declared_vm.one(EC2)["inputs"]
    assert vm["metadataOptions"]["httpTokens"] == "required"
    assert (
        vm["rootBlockDevice"]["encrypted"] is True and vm["rootBlockDevice"]["volumeType"] == "gp3"
    )
    assert vm["userDataReplaceOnChange"] is True
    assert vm["ami"] == "ami-0aaaaaaaaaaaaaaa1"


def test_user_data_holds_no_secret_value(declared_vm):
    """Secrets are fetched on the VM at start; user-data is readable from the EC2 console, the
    bundle by whoever may read the bucket's server-bundles/."""
    assert isinstance(declared_vm.one(EC2)["inputs"]["userData"], str)  # no secret flowed in
    assert isinstance(declared_vm.bundle()["content"], str)
    for text in (declared_vm.user_data(), declared_vm.bundle()["content"]):
        assert SECRET_SENTINEL not in text
        assert "PGPASSWORD=" not in text
    auth_ini = json.loads(_written(declared_vm, "/etc/mlflow/server.json"))["authIni"]
    assert not re.search(r"^\s*admin_password\s*=", auth_ini, re.MULTILINE)
    secret_value = declared_vm.named(
        "aws:secretsmanager/secretVersion:SecretVersion", "mlops-credentials-value"
    )["inputs"]["secretString"]
    # The generated values went to Secrets Manager instead, marked secret in Pulumi's state.
    assert isinstance(secret_value, dict) and SECRET_SENTINEL in secret_value["value"]


def test_server_command_is_the_shared_rendering(declared):
    spec = json.loads(_written(declared, "/etc/mlflow/server.json"))
    argv = spec["argv"]
    assert argv[:2] == ["/opt/mlflow/venv/bin/mlflow", "server"]
    assert argv[argv.index("--backend-store-uri") + 1].startswith(
        "postgresql+psycopg2://mlflow@mlops-postgres."
    )
    bucket = declared.outputs[out.ARTIFACT_BUCKET]["value"]
    assert argv[argv.index("--artifacts-destination") + 1] == f"s3://{bucket}/mlflow"
    assert "--default-artifact-root" not in argv
    assert argv[argv.index("--app-name") + 1] == "mlops-auth"  # MLflow's basic auth, hardened
    assert "198.51.100.7:5000" in argv[argv.index("--allowed-hosts") + 1].split(",")


def test_outputs_are_the_contract(declared_vm):
    assert set(declared_vm.outputs) == set(out.AWS)
    assert declared_vm.outputs[out.TRACKING_URI]["value"] == "https://198.51.100.7:5000"
    assert declared_vm.outputs[out.STATIC_IP]["value"] == "198.51.100.7"
    assert declared_vm.outputs[out.TRACKING_INSTANCE]["value"] == (
        "arn:aws:ec2:us-east-1:123456789012:instance/i-0mock"
    )
    assert declared_vm.outputs[out.ADMIN_PASSWORD]["secret"] is True
    public = {k for k, v in declared_vm.outputs.items() if not v["secret"]}
    assert not any(SECRET_SENTINEL in json.dumps(declared_vm.outputs[k]["value"]) for k in public)


def _written(declared, path: str) -> str:
    return declared.vm_files()[path]


def test_a_config_error_stops_the_program_naming_the_key(tmp_path):
    """Under `pulumi up` the same validation runs before any resource is declared."""
    from tests.infra.conftest import run_stack

    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text(
        "config:\n  mlops-platform:cloud: aws\n  mlops-platform:allowedCidrs: ['0.0.0.0/0']\n"
    )
    result = run_stack(tmp_path, bad)
    assert "mlops-platform:allowedCidrs" in result["error"]
    assert [r for r in result["resources"] if not r["type"].startswith("pulumi:")] == []


# --- lifecycle: first deploy, replacement -------------------------------------------------------


def test_zones_without_the_instance_type_are_skipped(declared, tmp_path):
    """Not every zone offers every type: the mocked region lacks t3.small in us-east-1a."""
    subnets = declared.of_type("aws:ec2/subnet:Subnet")
    assert {s["inputs"]["availabilityZone"] for s in subnets} == {"us-east-1b", "us-east-1c"}
    from tests.infra.conftest import run_stack

    result = run_stack(tmp_path, ROOT / "Pulumi.dev.yaml", {"__offeredZones": ["us-east-1c"]})
    assert (
        "offered together in 1 availability zone(s) of this region (us-east-1c)"
        in (result["error"])
    )
    assert "mlops-platform:instanceType" in result["error"]


def test_a_replaced_server_keeps_its_addresses(declared_vm):
    """A new bootstrap replaces the instance; the new one takes over the fixed private address
    (the services read trackingPrivateUri once) and the Elastic IP, so the old one goes first."""
    ec2 = declared_vm.one(EC2)
    assert ec2["inputs"]["userDataReplaceOnChange"] is True
    assert ec2["options"]["deleteBeforeReplace"] is True
    assert ec2["inputs"]["privateIp"] == "10.40.0.10"
    assert declared_vm.outputs[out.TRACKING_PRIVATE_URI]["value"] == "https://10.40.0.10:5000"
    # The launcher reads its secrets at first boot: the role's policy exists before the VM.
    assert any(d.endswith("aws:iam/rolePolicy:RolePolicy::mlops-access")
               for d in ec2["options"]["dependencies"])  # fmt: skip
    # The bootstrap fetches the server's code bundle at first boot: it is in the bucket first,
    # itself only once the bucket is versioned and encrypted.
    assert any(d.endswith("aws:s3/bucketObjectv2:BucketObjectv2::mlops-bundle")
               for d in ec2["options"]["dependencies"])  # fmt: skip
    bundle = declared_vm.one("aws:s3/bucketObjectv2:BucketObjectv2")
    for configured in ("bucketVersioning:BucketVersioning::mlops-versioning",
                       "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration::mlops-encryption"):  # fmt: skip
        assert any(d.endswith(configured) for d in bundle["options"]["dependencies"]), configured


def test_a_newer_ubuntu_image_changes_nothing_until_the_pin_is_bumped(declared_vm, tmp_path):
    """Canonical publishes a new AMI: the instance's inputs stay as they were (a changed `ami`
    would replace the VM); bumping vmImage is what moves it."""
    from tests.infra.conftest import run_stack
    from tests.infra.harness import STATE

    stack_file = ROOT / f"Pulumi.{declared_vm.stack}.yaml"
    pinned = yaml.safe_load(stack_file.read_text())["config"]["mlops-platform:vmImage"]
    assert pinned == f"{AMI_PREFIX}20251212"
    assert declared_vm.one(EC2)["inputs"]["ami"] == "ami-0aaaaaaaaaaaaaaa1"
    newer = {
        "name": f"{AMI_PREFIX}20261130",
        "id": "ami-0bbbbbbbbbbbbbbb2",
        "created": "2026-11-30",
    }
    catalogue = [newer, *STATE["amis"]]
    after = run_stack(tmp_path, stack_file, {"__amiCatalogue": catalogue})
    assert after["error"] is None, after["error"]
    (ec2_after,) = [r for r in after["resources"] if r["type"] == EC2]
    assert ec2_after["inputs"] == declared_vm.one(EC2)["inputs"]
    # The lookup asks for the pinned name only, Canonical's, deprecated ones included.
    (lookup,) = [c["args"] for c in after["calls"] if c["token"] == "aws:ec2/getAmi:getAmi"]
    assert lookup["owners"] == ["099720109477"] and lookup["includeDeprecated"] is True
    assert [f["values"] for f in lookup["filters"] if f["name"] == "name"] == [[pinned]]
    # The unpinned lookup this replaces would have moved to the new image: the test can fail.
    bumped = run_stack(
        tmp_path, stack_file, {"__amiCatalogue": catalogue, "mlops-platform:vmImage": newer["name"]}
    )
    (ec2_bumped,) = [r for r in bumped["resources"] if r["type"] == EC2]
    assert ec2_bumped["inputs"]["ami"] == newer["id"]


def test_an_ami_id_is_used_as_it_is_and_a_pattern_is_refused(tmp_path):
    from tests.infra.conftest import run_stack

    stack_file = ROOT / "Pulumi.dev.yaml"
    by_id = run_stack(tmp_path, stack_file, {"mlops-platform:vmImage": "ami-0123456789abcdef0"})
    assert [r["inputs"]["ami"] for r in by_id["resources"] if r["type"] == EC2] == [
        "ami-0123456789abcdef0"
    ]
    assert not [c for c in by_id["calls"] if c["token"] == "aws:ec2/getAmi:getAmi"]
    pattern = run_stack(tmp_path, stack_file, {"mlops-platform:vmImage": f"{AMI_PREFIX}*"})
    assert "mlops-platform:vmImage" in pattern["error"] and "no wildcards" in pattern["error"]


# --- TLS and the workload users -----------------------------------------------------------------

SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VALUE = "aws:secretsmanager/secretVersion:SecretVersion"


def test_the_stack_ca_signs_a_certificate_for_both_addresses(declared):
    """No domain needed: the certificate names the Elastic IP and the fixed private address, so
    clients outside and inside the VPC verify the host; the CA's PEM is a public output."""
    request = declared.one("tls:index/certRequest:CertRequest")["inputs"]
    assert request["ipAddresses"] == ["198.51.100.7", "10.40.0.10"]
    cert = declared.one("tls:index/locallySignedCert:LocallySignedCert")["inputs"]
    assert cert["allowedUses"] == ["digital_signature", "key_encipherment", "server_auth"]
    assert cert["validityPeriodHours"] == 8760 and cert["earlyRenewalHours"] == 720
    ca = declared.one("tls:index/selfSignedCert:SelfSignedCert")["inputs"]
    assert ca["isCaCertificate"] is True and "cert_signing" in ca["allowedUses"]
    assert cert["caCertPem"] == declared.outputs[out.TRACKING_CA_CERT]["value"]
    assert declared.outputs[out.TRACKING_CA_CERT]["secret"] is False
    assert declared.outputs[out.TRACKING_CA_CERT]["value"].startswith("-----BEGIN CERTIFICATE")
    assert declared.outputs[out.TRACKING_URI]["value"].startswith("https://")


def test_no_private_key_in_user_data_or_plain_outputs_only_in_its_secret(declared):
    """The key and the certificate live in one secret: a renewed certificate is a new secret
    version, and the user-data (whose change would replace the VM) holds neither."""
    for text in (declared.user_data(), declared.bundle()["content"]):
        assert not PEM_KEY.search(text) and "MOCK mlops-tls-cert" not in text
    files = declared.vm_files()
    spec = json.loads(files["/etc/mlflow/server.json"])
    # The launcher presents the stack's certificate and key it fetched, from the tmpfs.
    assert spec["tls"] == {
        "certfile": "/run/mlflow/tls.crt",
        "keyfile": "/run/mlflow/tls.key",
        "acmeDir": None,
        "domain": None,
    }
    argv = spec["argv"]
    assert argv[argv.index("--uvicorn-opts") + 1] == (
        "--ssl-certfile /run/mlflow/tls.crt --ssl-keyfile /run/mlflow/tls.key"
    )
    public = {k: v for k, v in declared.outputs.items() if not v["secret"]}
    assert "PRIVATE KEY" not in json.dumps(public)
    [key_value] = [v for v in declared.of_type(SECRET_VALUE) if v["name"] == "mlops-tls-key-value"]
    assert isinstance(key_value["inputs"]["secretString"], dict)  # a Pulumi secret
    from infra.vm_launcher import split_pem

    key, cert = split_pem(key_value["inputs"]["secretString"]["value"])
    assert "PRIVATE KEY" in key and "MOCK mlops-tls-cert" in cert
    assert spec["secrets"]["tlsKeySecret"].endswith(":mlops-tls-key")
    # When it ends, for people and alerts: renewal is automatic 30 days before (infra/tls.py).
    assert declared.outputs["trackingCertExpiry"] == {
        "value": "2027-12-06T05:50:00Z",
        "secret": False,
    }


def test_each_workload_user_has_a_password_secret_the_vm_reads(declared):
    spec = json.loads(_written(declared, "/etc/mlflow/server.json"))
    assert [i["username"] for i in spec["identities"]] == ["trainer", "model-api", "streaming"]
    refs = spec["secrets"]["identitySecrets"]
    assert refs == {
        "trainer": "arn:aws:mock:us-east-1:123456789012:mlops-trainer-password",
        "model-api": "arn:aws:mock:us-east-1:123456789012:mlops-model-api-password",
        "streaming": "arn:aws:mock:us-east-1:123456789012:mlops-streaming-password",
    }
    assert {declared.outputs[out.PASSWORD_SECRETS[u]]["value"] for u in refs} == set(refs.values())
    values = {v["name"]: v["inputs"]["secretString"] for v in declared.of_type(SECRET_VALUE)}
    for user in refs:
        value = values[f"mlops-{user}-password-value"]
        assert isinstance(value, dict) and SECRET_SENTINEL in value["value"]  # secret, generated


def test_a_renewed_certificate_replaces_no_vm(declared_vm):
    """A renewal (scripts/renew-cert) replaces the certificate and writes its secret version:
    the instance must not depend on either, through its inputs (the user-data) or explicitly, or
    the weekly run would replace the VM."""
    vm = declared_vm.one(EC2)
    touched = ("locallySignedCert:LocallySignedCert::mlops-tls-cert",
               "secretVersion:SecretVersion::mlops-tls-key-value")  # fmt: skip
    assert not [d for d in vm["options"]["dependencies"] if d.endswith(touched)]
    version = declared_vm.named(SECRET_VALUE, "mlops-tls-key-value")
    assert any(d.endswith(touched[0]) for d in version["options"]["dependencies"])
