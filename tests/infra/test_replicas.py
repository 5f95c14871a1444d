"""trackingReplicas under mocks: with 2, the servers are replicas behind load balancers holding
the static and the private address, checked on /health over HTTPS and replaced one at a time
(launch before terminate); with 1, exactly today's single VM (tests/infra/test_urns.py keeps its
URNs)."""

from __future__ import annotations

import base64

import pytest

from tests.infra.conftest import ROOT, run_stack

REPLICAS = {"mlops-platform:trackingReplicas": "2",
            "mlops-platform:dbInstanceClass": "db.t4g.small"}  # fmt: skip
NLB = "aws:lb/loadBalancer:LoadBalancer"


def of_type(result: dict, typ: str) -> list[dict]:
    return [r for r in result["resources"] if r["type"] == typ]


def named(result: dict, typ: str, name: str) -> dict:
    [found] = [r for r in of_type(result, typ) if r["name"] == name]
    return found


def depends_on(resource: dict, other: dict) -> bool:
    me = f"{other['type']}::{other['name']}"
    return any(urn.endswith(me) for urn in resource["options"]["dependencies"])


@pytest.fixture(scope="module")
def aws_replicas(tmp_path_factory):
    result = run_stack(tmp_path_factory.mktemp("replicas-aws"), ROOT / "Pulumi.dev.yaml", REPLICAS)
    assert result["error"] is None, result["error"]
    return result


@pytest.mark.parametrize("declared", ["dev"], indirect=True)
def test_aws_replicas_replace_the_single_vm_with_a_group_across_two_zones(aws_replicas, declared):
    assert not of_type(aws_replicas, "aws:ec2/instance:Instance")
    assert not of_type(aws_replicas, "aws:ec2/eipAssociation:EipAssociation")
    [template] = of_type(aws_replicas, "aws:ec2/launchTemplate:LaunchTemplate")
    [group] = of_type(aws_replicas, "aws:autoscaling/group:Group")
    inputs = group["inputs"]
    assert (inputs["minSize"], inputs["desiredCapacity"], inputs["maxSize"]) == (2, 2, 3)
    outputs = aws_replicas["outputs"]
    assert inputs["vpcZoneIdentifiers"] == outputs["publicSubnetIds"]["value"]
    assert len(inputs["vpcZoneIdentifiers"]) == 2
    assert inputs["launchTemplate"] == {"id": template["state"]["id"], "version": "3"}
    assert (inputs["healthCheckType"], inputs["waitForElbCapacity"]) == ("ELB", 2)
    # Launch before terminate: every healthy server stays until its replacement is healthy.
    refresh = inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert (refresh["preferences"]["minHealthyPercentage"],
            refresh["preferences"]["maxHealthyPercentage"]) == (100, 200)  # fmt: skip
    # The bootstrap reads the bundle and its secrets at first boot.
    bundle = of_type(aws_replicas, "aws:s3/bucketObjectv2:BucketObjectv2")[0]
    access = named(aws_replicas, "aws:iam/rolePolicy:RolePolicy", "mlops-access")
    assert depends_on(group, bundle) and depends_on(group, access)
    # The same bootstrap as the single VM: the fetcher and the bundle's name, base64 here.
    user_data = base64.b64decode(template["inputs"]["userData"]).decode()
    assert user_data.startswith("#!") and bundle["inputs"]["key"] in user_data
    single = declared.user_data()  # the dev stack's single VM: the same but the bundle's name
    assert [line for line in user_data.splitlines() if "-bundles/" not in line] == [
        line for line in single.splitlines() if "-bundles/" not in line
    ]
    [nic] = template["inputs"]["networkInterfaces"]
    server_sg = named(aws_replicas, "aws:ec2/securityGroup:SecurityGroup", "mlops-mlflow-server")
    assert nic["securityGroups"] == [server_sg["state"]["id"]]
    assert template["inputs"]["metadataOptions"]["httpTokens"] == "required"
    assert outputs["trackingInstance"]["value"] == group["state"]["arn"]


@pytest.mark.parametrize("label", ["public", "internal"])
def test_aws_load_balancers_hold_the_addresses_and_check_health_over_https(aws_replicas, label):
    outputs = aws_replicas["outputs"]
    [group] = of_type(aws_replicas, "aws:autoscaling/group:Group")
    balancer = named(aws_replicas, NLB, f"mlops-{label}")
    target = named(aws_replicas, "aws:lb/targetGroup:TargetGroup", f"mlops-{label}")
    listener = named(aws_replicas, "aws:lb/listener:Listener", f"mlops-{label}")
    inputs = balancer["inputs"]
    assert inputs["loadBalancerType"] == "network"
    assert inputs["internal"] is (label == "internal")
    assert inputs["enableCrossZoneLoadBalancing"] is True
    [mapping] = inputs["subnetMappings"]
    if label == "public":
        [eip] = of_type(aws_replicas, "aws:ec2/eip:Eip")
        assert mapping["allocationId"] == eip["state"]["allocationId"]
        assert outputs["staticIp"]["value"] == eip["state"]["publicIp"]
    else:
        private = outputs["trackingPrivateUri"]["value"].split("//")[1].split(":")[0]
        assert mapping["privateIpv4Address"] == private  # the services' URI, unchanged
    # TLS passes through: TCP in, TCP to the servers; health over HTTPS on /health.
    assert (listener["inputs"]["protocol"], listener["inputs"]["port"]) == ("TCP", 5000)
    assert listener["inputs"]["defaultActions"][0]["targetGroupArn"] == target["state"]["arn"]
    check = target["inputs"]["healthCheck"]
    assert (check["protocol"], check["path"], check["matcher"]) == ("HTTPS", "/health", "200")
    assert (target["inputs"]["protocol"], target["inputs"]["port"]) == ("TCP", 5000)
    assert target["state"]["arn"] in group["inputs"]["targetGroupArns"]


def test_aws_only_the_load_balancers_reach_the_servers(aws_replicas):
    groups = {g["name"]: g for g in of_type(aws_replicas, "aws:ec2/securityGroup:SecurityGroup")}
    server, clients = groups["mlops-mlflow-server"], groups["mlops-mlflow-clients"]
    public, internal = groups["mlops-mlflow-public-lb"], groups["mlops-mlflow-internal-lb"]
    mlflow = [r for r in server["inputs"]["ingress"] if r["fromPort"] == 5000]
    assert [r.get("securityGroups") for r in mlflow] == [
        [public["state"]["id"], internal["state"]["id"]]
    ]
    assert not any(r.get("cidrBlocks") for r in mlflow)
    assert internal["inputs"]["ingress"][0]["securityGroups"] == [clients["state"]["id"]]
    assert public["inputs"]["ingress"][0]["cidrBlocks"] == ["203.0.113.0/24"]  # allowedCidrs
    for label, group in (("public", public), ("internal", internal)):
        assert named(aws_replicas, NLB, f"mlops-{label}")["inputs"]["securityGroups"] == [
            group["state"]["id"]
        ]


def test_one_replica_is_today_s_single_vm(declared):
    assert len(declared.of_type("aws:ec2/instance:Instance")) == 1
    assert not declared.of_type("aws:autoscaling/group:Group")
    assert not declared.of_type(NLB)
