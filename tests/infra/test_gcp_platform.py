"""Security and protection properties of the GCP platform stack: every stack file run with
cloud=gcp (plus gcp:project/gcp:region) under Pulumi mocks. One rule per test."""

from __future__ import annotations

import json

import yaml

from infra import outputs as out
from tests.infra.conftest import ROOT
from tests.infra.harness import SECRET_SENTINEL

SQL = "gcp:sql/databaseInstance:DatabaseInstance"
BUCKET = "gcp:storage/bucket:Bucket"
VM = "gcp:compute/instance:Instance"
FIREWALL = "gcp:compute/firewall:Firewall"
IAP_RANGE = "35.235.240.0/20"


def test_database_has_a_private_ip_only_and_requires_tls(declared_gcp):
    ip = declared_gcp.one(SQL)["inputs"]["settings"]["ipConfiguration"]
    assert ip["ipv4Enabled"] is False
    assert ip["privateNetwork"] == "mlops-vpc-id"
    assert ip["sslMode"] == "ENCRYPTED_ONLY"
    assert not ip.get("authorizedNetworks")


def test_private_service_access_is_set_up(declared_gcp):
    reserved = declared_gcp.one("gcp:compute/globalAddress:GlobalAddress")["inputs"]
    assert (reserved["purpose"], reserved["addressType"]) == ("VPC_PEERING", "INTERNAL")
    peering = declared_gcp.one("gcp:servicenetworking/connection:Connection")["inputs"]
    assert peering["service"] == "servicenetworking.googleapis.com"


def test_database_backs_up_and_prod_is_protected_and_highly_available(declared_gcp):
    db = declared_gcp.one(SQL)
    settings = db["inputs"]["settings"]
    assert settings["backupConfiguration"]["enabled"] is True
    prod = declared_gcp.stack.startswith("prod")
    assert db["inputs"]["deletionProtection"] is prod
    assert settings["deletionProtectionEnabled"] is prod
    assert db["options"]["protect"] is prod
    assert (settings["availabilityType"] == "REGIONAL") is prod
    assert settings["backupConfiguration"]["pointInTimeRecoveryEnabled"] is prod


def test_database_password_is_generated_and_kept_in_secret_manager(declared_gcp):
    user = declared_gcp.one("gcp:sql/user:User")["inputs"]
    assert isinstance(user["password"], dict) and SECRET_SENTINEL in user["password"]["value"]
    versions = declared_gcp.of_type("gcp:secretmanager/secretVersion:SecretVersion")
    db_version = next(v for v in versions if v["name"].endswith("db-secret-value"))
    assert SECRET_SENTINEL in db_version["inputs"]["secretData"]["value"]


def test_bucket_has_uniform_access_and_enforced_public_access_prevention(declared_gcp):
    bucket = declared_gcp.one(BUCKET)["inputs"]
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"


def test_bucket_is_versioned_and_expires_old_versions(declared_gcp):
    bucket = declared_gcp.one(BUCKET)["inputs"]
    assert bucket["versioning"]["enabled"] is True
    deletes = [r for r in bucket["lifecycleRules"] if r["action"]["type"] == "Delete"]
    assert deletes and deletes[0]["condition"]["daysSinceNoncurrentTime"] > 0
    # The service stacks' outputs: live objects under their prefix deleted after their days
    # (then kept as noncurrent versions as long as the rule above says).
    expiring = {tuple(r["condition"]["matchesPrefixes"]): r["condition"]["age"] for r in deletes
                if r["condition"].get("matchesPrefixes")}  # fmt: skip
    assert expiring == {("predictions/",): 90, ("batch-predictions/",): 365}
    assert all(r["condition"]["withState"] == "LIVE" for r in deletes[1:])


def test_prod_bucket_is_retained_and_dev_can_be_force_destroyed(declared_gcp):
    bucket = declared_gcp.one(BUCKET)
    prod = declared_gcp.stack.startswith("prod")
    assert bucket["inputs"]["forceDestroy"] is not prod
    assert bucket["options"]["protect"] is prod and bucket["options"]["retainOnDelete"] is prod


def test_no_firewall_rule_is_open_to_the_internet(declared_gcp):
    for rule in declared_gcp.of_type(FIREWALL):
        assert "0.0.0.0/0" not in rule["inputs"].get("sourceRanges", []), rule["name"]
        assert rule["inputs"]["targetTags"] == ["mlflow-server"], rule["name"]


def test_ssh_only_from_google_iap(declared_gcp):
    for rule in declared_gcp.of_type(FIREWALL):
        ports = [p for allow in rule["inputs"]["allows"] for p in allow.get("ports", [])]
        if "22" in ports:
            assert rule["inputs"]["sourceRanges"] == [IAP_RANGE]


def test_mlflow_port_only_from_allowed_cidrs_and_the_services_range(declared_gcp_vm):
    config = yaml.safe_load((ROOT / f"Pulumi.{declared_gcp_vm.stack}.yaml").read_text())["config"]
    sources = set()
    for rule in declared_gcp_vm.of_type(FIREWALL):
        ports = [p for allow in rule["inputs"]["allows"] for p in allow.get("ports", [])]
        if "5000" in ports:
            sources |= set(rule["inputs"]["sourceRanges"])
    subnet = declared_gcp_vm.one("gcp:compute/subnetwork:Subnetwork")["inputs"]["ipCidrRange"]
    assert sources == {subnet, *config.get("mlops-platform:allowedCidrs", [])}


def test_service_account_reaches_this_bucket_and_these_secrets_only(declared_gcp):
    """A bucket-level binding and per-secret bindings; the project-wide roles write logs and
    the Ops Agent's metrics (neither has a narrower resource to grant it on)."""
    project_wide = [r for r in declared_gcp.resources if r["type"].startswith("gcp:projects/")
                    and r["type"] != "gcp:projects/service:Service"]  # fmt: skip
    assert sorted((r["type"], r["inputs"]["role"]) for r in project_wide) == [
        ("gcp:projects/iAMMember:IAMMember", "roles/logging.logWriter"),
        ("gcp:projects/iAMMember:IAMMember", "roles/monitoring.metricWriter"),
    ]
    [binding] = declared_gcp.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    account = declared_gcp.one("gcp:serviceaccount/account:Account")["inputs"]["accountId"]
    member = f"serviceAccount:{account}@mlops-test.iam.gserviceaccount.com"
    assert binding["inputs"]["bucket"] == declared_gcp.outputs[out.ARTIFACT_BUCKET]["value"]
    assert (
        binding["inputs"]["role"] == "roles/storage.objectAdmin"
        and binding["inputs"]["member"] == member
    )
    secrets = declared_gcp.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    stack = declared_gcp.stack
    assert sorted(s["inputs"]["secretId"] for s in secrets) == [
        f"mlflow-{stack}-credentials",
        f"mlflow-{stack}-db",
        f"mlflow-{stack}-model-api-password",
        f"mlflow-{stack}-streaming-password",
        f"mlflow-{stack}-tls-key",
        f"mlflow-{stack}-trainer-password",
    ]
    assert {(s["inputs"]["role"], s["inputs"]["member"]) for s in secrets} == {
        ("roles/secretmanager.secretAccessor", member)
    }


def test_vm_is_shielded_and_runs_as_its_own_service_account(declared_gcp_vm):
    vm = declared_gcp_vm.one(VM)["inputs"]
    shielded = vm["shieldedInstanceConfig"]
    assert shielded["enableSecureBoot"] is True and shielded["enableVtpm"] is True
    assert vm["serviceAccount"]["email"].startswith("mlflow-")
    assert "compute@developer" not in vm["serviceAccount"]["email"]
    assert vm["bootDisk"]["initializeParams"]["image"] == (
        "projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20251217"
    )
    assert vm["metadata"]["block-project-ssh-keys"] == "true"


def test_vm_uses_the_reserved_static_ip(declared_gcp_vm):
    address = declared_gcp_vm.named("gcp:compute/address:Address", "mlops-ip")["inputs"]
    assert address["addressType"] == "EXTERNAL"
    nic = declared_gcp_vm.one(VM)["inputs"]["networkInterfaces"][0]
    assert nic["accessConfigs"][0]["natIp"] == "203.0.113.50"
    assert declared_gcp_vm.outputs[out.STATIC_IP]["value"] == "203.0.113.50"


def test_user_data_holds_no_secret_and_fetches_from_secret_manager(declared_gcp):
    for text in (declared_gcp.user_data(), declared_gcp.bundle()["content"]):
        assert isinstance(text, str) and SECRET_SENTINEL not in text
    files = declared_gcp.vm_files()
    spec = json.loads(files["/etc/mlflow/server.json"])
    assert spec["secrets"]["provider"] == "gcp"
    assert (
        spec["secrets"]["dbSecret"] == f"projects/mlops-test/secrets/mlflow-{declared_gcp.stack}-db"
    )
    argv = spec["argv"]
    bucket = declared_gcp.outputs[out.ARTIFACT_BUCKET]["value"]
    assert argv[argv.index("--artifacts-destination") + 1] == f"gs://{bucket}/mlflow"
    assert "--default-artifact-root" not in argv
    from infra.vm import REQUIREMENTS_PATH
    from infra.vm_requirements import requirements

    assert files[REQUIREMENTS_PATH] == requirements("server-gcp")
    assert "\ngoogle-cloud-storage==" in files[REQUIREMENTS_PATH]
    assert "\nboto3==" not in files[REQUIREMENTS_PATH]


def test_outputs_have_the_shared_names(declared_gcp_vm):
    assert set(declared_gcp_vm.outputs) == set(out.GCP)
    assert declared_gcp_vm.outputs[out.TRACKING_URI]["value"] == "https://203.0.113.50:5000"
    zone = declared_gcp_vm.one(VM)["inputs"]["zone"]
    assert declared_gcp_vm.outputs[out.TRACKING_INSTANCE]["value"] == (
        f"projects/mlops-test/zones/{zone}/instances/mlops-vm-0mock"
    )
    assert declared_gcp_vm.outputs[out.ADMIN_PASSWORD]["secret"] is True
    assert (
        declared_gcp_vm.outputs[out.CREDENTIALS_SECRET]["value"]
        == f"mlflow-{declared_gcp_vm.stack}-credentials"
    )


# --- lifecycle: first deploy, replacement, destroy ---------------------------------------------

API = "gcp:projects/service:Service"


def test_a_fresh_project_gets_its_apis_before_anything_that_needs_them(declared_gcp):
    """Most APIs are off in a new project; a resource created before its API fails."""
    apis = {r["inputs"]["service"]: r for r in declared_gcp.of_type(API)}
    assert set(apis) == {
        "compute.googleapis.com", "sqladmin.googleapis.com", "servicenetworking.googleapis.com",
        "secretmanager.googleapis.com", "iam.googleapis.com",
    }  # fmt: skip
    assert all(api["inputs"]["disableOnDestroy"] is False for api in apis.values())
    api_urns = {f"::{api['name']}" for api in apis.values()}
    for resource in declared_gcp.resources:
        if resource["type"] == API or resource["type"].startswith("mlops:"):
            continue
        depends = resource["options"]["dependencies"]
        missing = [u for u in api_urns if not any(d.endswith(u) for d in depends)]
        assert not missing, (resource["name"], missing)


def test_the_vm_zone_is_looked_up_not_guessed(declared_gcp_vm, tmp_path):
    """europe-west1 has no zone -a: the region's zones are looked up (or the stack names one)."""
    assert declared_gcp_vm.one(VM)["inputs"]["zone"] == "europe-west1-b"
    from tests.infra.conftest import GCP_OVERRIDES, run_stack

    chosen = run_stack(
        tmp_path,
        ROOT / "Pulumi.dev.yaml",
        {**GCP_OVERRIDES, "mlops-platform:zone": "europe-west1-d"},
    )
    [vm] = [r for r in chosen["resources"] if r["type"] == VM]
    assert vm["inputs"]["zone"] == "europe-west1-d"


def test_a_replaced_vm_keeps_both_addresses(declared_gcp_vm):
    """A new VM needs the old one's static addresses, which two VMs cannot hold at once: the
    engine must delete first. The private address is reserved, so the services' URI holds."""
    vm = declared_gcp_vm.one(VM)
    assert vm["options"]["deleteBeforeReplace"] is True
    assert vm["options"]["replaceOnChanges"] == ["metadata"]
    private = declared_gcp_vm.named("gcp:compute/address:Address", "mlops-private-ip")["inputs"]
    assert (private["addressType"], private["purpose"]) == ("INTERNAL", "GCE_ENDPOINT")
    assert vm["inputs"]["networkInterfaces"][0]["networkIp"] == "10.40.0.5"
    assert declared_gcp_vm.outputs[out.TRACKING_PRIVATE_URI]["value"] == "https://10.40.0.5:5000"


def test_a_grown_database_disk_does_not_make_the_next_up_replace_it(declared_gcp):
    sql = declared_gcp.one(SQL)
    assert sql["inputs"]["settings"]["diskAutoresize"] is True
    assert "settings.diskSize" in sql["options"]["ignoreChanges"]


def test_a_destroy_is_not_blocked_by_what_mlflow_created(declared_gcp_vm):
    """A role owning MLflow's objects cannot be dropped, and Cloud SQL holds the peering for a
    while after its instance is gone: those go with their parents instead."""
    for typ in ("gcp:sql/database:Database", "gcp:sql/user:User",
                "gcp:servicenetworking/connection:Connection"):  # fmt: skip
        assert {r["inputs"]["deletionPolicy"] for r in declared_gcp_vm.of_type(typ)} == {"ABANDON"}
    # The VM connects to the database: created after it, so destroyed before it.
    depends = declared_gcp_vm.one(VM)["options"]["dependencies"]
    assert any(d.endswith(f"{SQL}::mlops-postgres") for d in depends)
    # The launcher reads its secrets at first boot: every secret grant exists before the VM.
    grants = declared_gcp_vm.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert len(grants) == 6
    assert all(any(d.endswith(f"SecretIamMember::{g['name']}") for d in depends) for g in grants)
    # The bootstrap fetches the server's code bundle at first boot with the VM's account: the
    # object and the account's access to the bucket exist before the VM.
    assert any(d.endswith("gcp:storage/bucketObject:BucketObject::mlops-bundle") for d in depends)
    assert any(d.endswith("BucketIAMMember::mlops-bucket-access") for d in depends)


def test_the_server_verifies_the_database_with_the_instance_s_own_ca(declared_gcp):
    """Cloud SQL's certificate names the instance, not the private IP: verify-ca against a CA
    that signs this instance only, pinned by its mode and written into the user-data."""
    from infra.vm import DB_CA_PATH

    ip = declared_gcp.one(SQL)["inputs"]["settings"]["ipConfiguration"]
    assert ip["serverCaMode"] == "GOOGLE_MANAGED_INTERNAL_CA"
    files = declared_gcp.vm_files()
    assert "MOCKCA" in files[DB_CA_PATH]
    spec = json.loads(files["/etc/mlflow/server.json"])
    assert (spec["database"]["sslmode"], spec["database"]["sslrootcert"]) == (
        "verify-ca",
        DB_CA_PATH,
    )


def test_server_and_bootstrap_logs_go_to_cloud_logging(declared_gcp):
    from infra.vm import BOOTSTRAP_LOG, SERVER_LOG

    files = declared_gcp.vm_files()
    agent = yaml.safe_load(files["/etc/mlflow/ops-agent.yaml"])
    receivers = agent["logging"]["receivers"]
    assert {p for r in receivers.values() for p in r["include_paths"]} == {
        SERVER_LOG,
        BOOTSTRAP_LOG,
    }
    assert set(agent["logging"]["service"]["pipelines"]["mlflow"]["receivers"]) == set(receivers)
    from tests.infra.test_user_data import bootstrap_env

    env = bootstrap_env(files)  # the script installs it first, then the server
    assert env["LOG_AGENT"] == "gcp" and env["LOG_AGENT_CONFIG"] == "/etc/mlflow/ops-agent.yaml"
    assert env["OPS_AGENT_SCRIPT"] == (
        "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"
    )
    assert env["DB_CA_URL"] == ""  # the CA is in the bundle itself
    account = declared_gcp.one("gcp:serviceaccount/account:Account")["inputs"]["accountId"]
    for writer in declared_gcp.of_type("gcp:projects/iAMMember:IAMMember"):
        member = f"serviceAccount:{account}@mlops-test.iam.gserviceaccount.com"
        assert writer["inputs"]["member"] == member


def test_tls_without_a_domain_and_the_key_only_in_secret_manager(declared_gcp_vm):
    request = declared_gcp_vm.one("tls:index/certRequest:CertRequest")["inputs"]
    assert request["ipAddresses"] == ["203.0.113.50", "10.40.0.5"]  # static IP, fixed private
    assert declared_gcp_vm.outputs[out.TRACKING_URI]["value"].startswith("https://")
    ca = declared_gcp_vm.outputs[out.TRACKING_CA_CERT]
    assert ca["secret"] is False and ca["value"].startswith("-----BEGIN CERTIFICATE")
    metadata = declared_gcp_vm.one(VM)["inputs"]["metadata"]
    assert "PRIVATE KEY" not in json.dumps(metadata)
    files = declared_gcp_vm.vm_files()
    assert (
        "/etc/mlflow/tls.crt" not in files
        and "BEGIN CERTIFICATE-----\nMOCK mlops-tls-cert" not in json.dumps(files)
    )
    spec = json.loads(files["/etc/mlflow/server.json"])
    stack = declared_gcp_vm.stack
    assert spec["secrets"]["tlsKeySecret"] == f"projects/mlops-test/secrets/mlflow-{stack}-tls-key"
    assert spec["secrets"]["identitySecrets"] == {
        user: f"projects/mlops-test/secrets/mlflow-{stack}-{user}-password"
        for user in ("trainer", "model-api", "streaming")
    }
    [key] = [v for v in declared_gcp_vm.of_type("gcp:secretmanager/secretVersion:SecretVersion")
             if v["name"] == "mlops-tls-key-value"]  # fmt: skip
    assert isinstance(key["inputs"]["secretData"], dict)  # a Pulumi secret
    assert "MOCK mlops-tls-cert" in key["inputs"]["secretData"]["value"]  # with its certificate
    assert declared_gcp_vm.outputs[out.TRACKING_CERT_EXPIRY]["value"] == "2027-12-06T05:50:00Z"
    public = {k: v for k, v in declared_gcp_vm.outputs.items() if not v["secret"]}
    assert "PRIVATE KEY" not in json.dumps(public)
    assert declared_gcp_vm.outputs[out.PASSWORD_SECRETS["trainer"]]["value"] == (
        f"mlflow-{stack}-trainer-password"
    )


def test_the_vm_fetches_its_bundle_from_the_bucket_by_its_sha256(declared_gcp_vm):
    """As on AWS: every file but the fetcher is one object of the artifact bucket, named and
    checked by its sha256, which the user-data carries; the VM is replaced when it changes."""
    import hashlib

    from infra.vm import FETCH_PATH

    bundle = declared_gcp_vm.bundle()
    sha256 = hashlib.sha256(bundle["content"].encode()).hexdigest()
    assert bundle["name"] == f"server-bundles/{sha256}.json"
    assert bundle["bucket"] == declared_gcp_vm.outputs[out.ARTIFACT_BUCKET]["value"]
    command = f"python3 {FETCH_PATH} gs://{bundle['bucket']}/{bundle['name']} {sha256}\n"
    assert command in declared_gcp_vm.user_data()
    assert len(declared_gcp_vm.user_data().encode()) <= 8 * 1024
    vm = declared_gcp_vm.vm()
    assert vm["options"]["replaceOnChanges"] == ["metadata"]
    assert vm["options"]["deleteBeforeReplace"] is True
    assert any(d.endswith("gcp:storage/bucketObject:BucketObject::mlops-bundle")
               for d in vm["options"]["dependencies"])  # fmt: skip


def test_the_zone_lookup_waits_for_the_apis_and_the_image_is_no_lookup(declared_gcp_vm):
    """In a fresh project Compute's API is off until the stack turns it on; the zone lookup is
    no resource, so it waits for every enabled API explicitly. The image is pinned by name (a
    family lookup would follow each release and replace the VM)."""
    apis = {r["name"] for r in declared_gcp_vm.of_type("gcp:projects/service:Service")}
    assert "api-compute" in apis
    tokens = [i["token"] for i in declared_gcp_vm.invokes]
    assert "gcp:compute/getImage:getImage" not in tokens
    (zones,) = [i for i in declared_gcp_vm.invokes if i["token"] == "gcp:compute/getZones:getZones"]
    assert {u.rsplit("::", 1)[1] for u in zones["dependsOn"]} == apis


def test_the_ops_agent_may_write_logs_and_metrics_and_nothing_more(declared_gcp):
    roles = {r["inputs"]["role"] for r in declared_gcp.of_type("gcp:projects/iAMMember:IAMMember")}
    assert roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter"}


def test_a_renewed_certificate_replaces_no_vm(declared_gcp_vm):
    """As on AWS: the VM depends on the TLS secret (the launcher reads it) but neither on the
    certificate nor on the version a renewal writes."""
    depends = declared_gcp_vm.one(VM)["options"]["dependencies"]
    touched = ("locallySignedCert:LocallySignedCert::mlops-tls-cert",
               "secretVersion:SecretVersion::mlops-tls-key-value")  # fmt: skip
    assert not [d for d in depends if d.endswith(touched)]
