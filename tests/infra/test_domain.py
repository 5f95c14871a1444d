"""The optional `domain`: a Let's Encrypt certificate kept on the VM, the domain as the tracking URI
inside and outside the network, port 80 open for HTTP-01 only then, and no private key anywhere
but the secret store (both clouds, under mocks)."""

from __future__ import annotations

import json

from infra import outputs as out
from tests.infra.conftest import DOMAIN, PEM_KEY

URI = f"https://{DOMAIN}:5000"


def written(declared) -> dict[str, str]:
    return declared.vm_files()


def test_clients_reach_the_domain_and_trust_the_system_cas(declared_domain):
    """Inside and outside the network the URI is the domain, whose certificate is Let's
    Encrypt's: no stack CA for clients to install (the output is empty, so the service stacks'
    containers fall back to the system's CAs)."""
    assert declared_domain.outputs[out.TRACKING_URI]["value"] == URI
    assert declared_domain.outputs[out.TRACKING_PRIVATE_URI]["value"] == URI
    assert declared_domain.outputs[out.TRACKING_CA_CERT]["value"] == ""
    # The VM's own `mlflow gc` goes the same way (the domain resolves to the private address).
    gc = json.loads(written(declared_domain)["/etc/mlflow/server.json"])["gc"]
    assert (gc["trackingUri"], gc["caPath"]) == (URI, None)


def test_inside_the_network_the_domain_names_the_private_address(declared_domain):
    """The services connect through the private network (the MLflow port is not open to them
    on the public address), so a private zone answers the domain with the fixed private IP."""
    if declared_domain.of_type("aws:route53/zone:Zone"):
        zone = declared_domain.one("aws:route53/zone:Zone")
        assert zone["inputs"]["name"] == DOMAIN
        assert zone["inputs"]["vpcs"] == [{"vpcId": "mlops-vpc-id"}]  # private: VPC-only
        assert zone["inputs"]["forceDestroy"] is True
        record = declared_domain.one("aws:route53/record:Record")["inputs"]
        assert record == {**record, "zoneId": "Z0MOCK", "name": DOMAIN, "type": "A"}
        assert record["records"] == ["10.40.0.10"]
    else:
        zone = declared_domain.one("gcp:dns/managedZone:ManagedZone")["inputs"]
        assert zone["dnsName"] == f"{DOMAIN}." and zone["visibility"] == "private"
        networks = zone["privateVisibilityConfig"]["networks"]
        assert networks == [{"networkUrl": "mlops-vpc-id"}]
        record = declared_domain.one("gcp:dns/recordSet:RecordSet")["inputs"]
        assert record["managedZone"] == "mlops-private-zone-0mock"
        assert record["name"] == f"{DOMAIN}." and record["type"] == "A"
        assert record["rrdatas"] == ["10.40.0.5"]  # the reserved internal address the VM holds
        apis = {
            r["inputs"]["service"] for r in declared_domain.of_type("gcp:projects/service:Service")
        }
        assert "dns.googleapis.com" in apis


def test_port_80_is_open_for_http_01_and_nothing_else_is(declared_domain):
    """Let's Encrypt validates from addresses it does not publish, so HTTP-01 needs port 80 from
    anywhere; the MLflow port stays as narrow as without a domain."""
    if declared_domain.of_type("aws:ec2/securityGroup:SecurityGroup"):
        [server] = [
            r for r in declared_domain.of_type("aws:ec2/securityGroup:SecurityGroup")
            if r["name"] == "mlops-mlflow-server"
        ]  # fmt: skip
        open_rules = [
            r for r in server["inputs"]["ingress"] if "0.0.0.0/0" in r.get("cidrBlocks", [])
        ]
        assert [(r["fromPort"], r["toPort"], r["protocol"]) for r in open_rules] == [
            (80, 80, "tcp")
        ]
    else:
        open_rules = [
            r["inputs"] for r in declared_domain.of_type("gcp:compute/firewall:Firewall")
            if "0.0.0.0/0" in r["inputs"]["sourceRanges"]
        ]  # fmt: skip
        assert [r["allows"] for r in open_rules] == [[{"protocol": "tcp", "ports": ["80"]}]]
        assert open_rules[0]["targetTags"] == ["mlflow-server"]


def test_the_vm_keeps_a_lets_encrypt_certificate_for_the_domain(declared_domain):
    files = written(declared_domain)
    service = files["/etc/systemd/system/mlflow-acme.service"]
    assert f"--domain {DOMAIN}" in service and "--standalone" in service
    assert (
        "--keep-until-expiring" in service
        and "--deploy-hook /opt/mlflow/acme-deploy-hook" in service
    )
    assert "OnUnitActiveSec=1h" in files["/etc/systemd/system/mlflow-acme.timer"]
    assert "RENEWED_LINEAGE" in files["/opt/mlflow/acme-deploy-hook"]
    assert "ACME=yes" in files["/etc/mlflow/bootstrap.env"]
    spec = json.loads(files["/etc/mlflow/server.json"])
    assert spec["tls"]["acmeDir"] == "/etc/mlflow/acme" and spec["tls"]["domain"] == DOMAIN
    hosts = spec["argv"][spec["argv"].index("--allowed-hosts") + 1].split(",")
    assert DOMAIN in hosts and f"{DOMAIN}:5000" in hosts
    # Until the first certificate is issued the server presents the stack's, which names the
    # domain too; its key is in the secret store, never in the user-data.
    request = declared_domain.one("tls:index/certRequest:CertRequest")["inputs"]
    assert request["dnsNames"] == [DOMAIN]
    assert not PEM_KEY.search(declared_domain.user_data())
    assert not PEM_KEY.search(declared_domain.bundle()["content"])
    public = {k: v for k, v in declared_domain.outputs.items() if not v["secret"]}
    assert "PRIVATE KEY" not in json.dumps(public)


def test_without_a_domain_there_is_no_acme_and_no_port_80(declared, declared_gcp):
    for stack in (declared, declared_gcp):
        files = written(stack)
        assert not any("acme" in path for path in files)
        assert "ACME=''" in files["/etc/mlflow/bootstrap.env"]
        assert not stack.of_type("aws:route53/zone:Zone")
        assert not stack.of_type("gcp:dns/managedZone:ManagedZone")


def test_the_domain_s_files_come_in_the_bundle_and_the_user_data_stays_small(declared_domain):
    files = written(declared_domain)
    assert "/etc/systemd/system/mlflow-acme.timer" in files
    assert "ACME=yes" in files["/etc/mlflow/bootstrap.env"]
    assert len(declared_domain.user_data().encode()) <= 8 * 1024


def test_the_private_zone_waits_for_the_dns_api_and_the_network(declared_domain):
    """A fresh project has dns.googleapis.com off: the zone and its record are created after the
    stack enables it; the zone names the network, so a destroy removes it before the network."""
    zones = declared_domain.of_type("gcp:dns/managedZone:ManagedZone")
    if not zones:  # AWS: the zone is tied to the VPC by its vpcs input
        [zone] = declared_domain.of_type("aws:route53/zone:Zone")
        assert any(d.endswith("::mlops-vpc") for d in zone["options"]["dependencies"])
        return
    record = declared_domain.one("gcp:dns/recordSet:RecordSet")
    for resource in (zones[0], record):
        depends = resource["options"]["dependencies"]
        assert any(d.endswith("::api-dns") for d in depends), resource["name"]
    assert any(d.endswith("::mlops-vpc") for d in zones[0]["options"]["dependencies"])
    assert any(d.endswith("::mlops-private-zone") for d in record["options"]["dependencies"])
