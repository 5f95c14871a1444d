"""Branch -> stack mapping and the deploy/destroy scripts, with a recording stand-in for the
Pulumi CLI on PATH (the real CLI cannot be installed here)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from scripts.delivery import DeliveryError, stack_for

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake_pulumi(tmp_path, fake_api) -> Path:
    """A `pulumi` that records its arguments and succeeds; `stack output` answers with a model
    API that already serves."""
    fake_api["ready"] = True
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"cloud": "aws", "modelApiUrl": fake_api["url"]}))
    script = bin_dir / "pulumi"
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\nif [ "$1 $2" = "stack output" ]; then cat {outputs}; fi\n'
    )
    script.chmod(0o755)
    return log


def run(script: str, *args: str, path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [str(ROOT / "scripts" / script), *args], capture_output=True, text=True, env=env
    )


def test_branches_map_to_stacks():
    assert [stack_for(b) for b in ("dev", "staging", "main", "refs/heads/main")] == [
        "dev",
        "staging",
        "prod",
        "prod",
    ]
    with pytest.raises(DeliveryError, match="branch 'feature-x' deploys no stack"):
        stack_for("feature-x")


# --- GCP destroy: Cloud Run's addresses and the abandoned peering -------------------------------

GCP_PLATFORM = {
    "vpcId": "projects/p1/global/networks/mlops-vpc-1",
    "privateSubnetIds": ["projects/p1/regions/europe-west1/subnetworks/mlops-subnet-1"],
}


@pytest.fixture
def fake_gcp(tmp_path, monkeypatch):
    """`pulumi` and `gcloud` stand-ins: the platform's first destroy fails on the network (its
    peering), `stack export` shows only the network left; Cloud Run holds an address for the
    first `holds` lists. Both log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    (state / "outputs.json").write_text(json.dumps(GCP_PLATFORM))
    (state / "export.json").write_text(json.dumps({"deployment": {"resources": [
        {"type": "pulumi:pulumi:Stack"}, {"type": "gcp:compute/network:Network"}]}}))  # fmt: skip
    (state / "holds").write_text("2")
    (bin_dir / "pulumi").write_text(f"""#!/bin/sh
echo "pulumi $*" >> {state}/calls
case "$1 $2" in
  "stack output") cat {state}/outputs.json ;;
  "stack export") cat {state}/export.json ;;
esac
if [ "$1" = destroy ] && [ "$5" = {ROOT} ] && [ ! -e {state}/peering-removed ]; then
  echo "error: The network resource is already being used by peering" >&2; exit 1
fi
""")
    (bin_dir / "gcloud").write_text(f"""#!/bin/sh
echo "gcloud $*" >> {state}/calls
if [ "$2 $3" = "addresses list" ]; then
  n=$(cat {state}/holds)
  if [ "$n" -gt 0 ]; then echo serverless-ipv4-7; echo $((n - 1)) > {state}/holds; fi
fi
if [ "$3 $4" = "peerings delete" ]; then touch {state}/peering-removed; fi
""")
    for tool in ("pulumi", "gcloud"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return state


def test_gcp_destroy_waits_for_cloud_run_then_removes_the_peering_and_retries(
    fake_gcp, monkeypatch, capsys
):
    from scripts import delivery

    pauses = []
    monkeypatch.setattr(delivery.time, "sleep", pauses.append)
    assert delivery.main(["destroy", "dev"]) == 0
    calls = (fake_gcp / "calls").read_text().splitlines()
    steps = [c.split(" --")[0] for c in calls if not c.startswith("pulumi whoami")]
    assert steps == [
        "pulumi destroy",  # services
        "pulumi stack output",
        "gcloud compute addresses list", "gcloud compute addresses list",
        "gcloud compute addresses list",  # released on the third look
        "pulumi destroy",  # platform: the network's peering stops it
        "pulumi stack export",
        "gcloud compute networks peerings delete servicenetworking-googleapis-com",
        "pulumi destroy",  # platform again: the network goes
    ]  # fmt: skip
    assert pauses == [15.0, 30.0]  # backoff
    listed = next(c for c in calls if "addresses list" in c)
    assert "--project=p1" in listed and "--regions=europe-west1" in listed
    assert "subnetwork~/subnetworks/mlops-subnet-1$" in listed
    peering = next(c for c in calls if "peerings delete" in c)
    assert "--network=mlops-vpc-1" in peering and "--project=p1" in peering
    out = capsys.readouterr().out
    assert "waiting for Cloud Run to release 1 address(es) in subnet mlops-subnet-1" in out
    assert "Google documents 1-2 hours" in out


def test_the_peering_stays_while_a_database_remains(fake_gcp, monkeypatch, capsys):
    from scripts import delivery

    (fake_gcp / "holds").write_text("0")
    (fake_gcp / "export.json").write_text(json.dumps({"deployment": {"resources": [
        {"type": "gcp:sql/databaseInstance:DatabaseInstance"},
        {"type": "gcp:compute/network:Network"}]}}))  # fmt: skip
    assert delivery.main(["destroy", "dev"]) == 1
    assert "platform: pulumi destroy failed for stack dev" in capsys.readouterr().err
    assert "peerings delete" not in (fake_gcp / "calls").read_text()


def test_addresses_never_released_end_the_wait_with_what_is_held(fake_gcp):
    from scripts import delivery

    (fake_gcp / "holds").write_text("1000")
    clock = iter(range(0, 100000, 1000))
    with pytest.raises(delivery.DeliveryError) as err:
        delivery.wait_for_serverless_addresses(
            delivery.gcp_network(GCP_PLATFORM), timeout=3000, sleep=lambda s: None,
            clock=lambda: next(clock),
        )  # fmt: skip
    assert "still holds 1 address(es) in subnet mlops-subnet-1 after 50 min" in str(err.value)
    assert "serverless-ipv4-7" in str(err.value)


def test_an_aws_platform_is_destroyed_once_with_no_gcloud(fake_gcp):
    from scripts import delivery

    (fake_gcp / "outputs.json").write_text(
        json.dumps({"vpcId": "vpc-0abc", "privateSubnetIds": ["subnet-1"]})
    )
    (fake_gcp / "peering-removed").touch()  # the fake's platform destroy succeeds
    assert delivery.main(["destroy", "dev"]) == 0
    calls = (fake_gcp / "calls").read_text()
    assert "gcloud" not in calls and calls.count("pulumi destroy") == 2


# --- certificate renewal: the certificate and its secret, nothing else ----------------------------

PARENT = "urn:pulumi:dev::mlops-platform::mlops:aws:TrackingServer$"
EXPORTED = [
    f"{PARENT}tls:index/locallySignedCert:LocallySignedCert::mlops-tls-cert",
    f"{PARENT}aws:secretsmanager/secretVersion:SecretVersion::mlops-tls-key-value",
    f"{PARENT}aws:ec2/instance:Instance::mlops-vm",
    f"{PARENT}aws:secretsmanager/secretVersion:SecretVersion::mlops-trainer-password-value",
]


def test_renewal_targets_the_certificate_and_its_secret_version_only(fake_gcp, capsys):
    from scripts import delivery

    (fake_gcp / "export.json").write_text(json.dumps({"deployment": {"resources": [
        {"urn": u} for u in EXPORTED]}}))  # fmt: skip
    (fake_gcp / "outputs.json").write_text(
        json.dumps({"trackingCertExpiry": "2027-12-06T05:50:00Z"})
    )
    assert delivery.main(["renew-cert", "dev"]) == 0
    (up,) = [c for c in (fake_gcp / "calls").read_text().splitlines() if c.startswith("pulumi up")]
    targets = up.split(" --target ")[1:]
    assert [t.split(" ")[0] for t in targets] == EXPORTED[:2]
    assert f"--cwd {ROOT} " in up and "--policy-pack" in up and "--yes" in up
    assert "--target-dependents" not in up
    assert "certificate ends 2027-12-06T05:50:00Z" in capsys.readouterr().out


def test_renewal_without_a_deployed_platform_says_so(fake_gcp, capsys):
    from scripts import delivery

    (fake_gcp / "export.json").write_text(json.dumps({"deployment": {"resources": []}}))
    assert delivery.main(["renew-cert", "staging"]) == 1
    err = capsys.readouterr().err
    assert "expected the certificate and its secret version, found 0" in err
    assert "pulumi up" not in (fake_gcp / "calls").read_text()
