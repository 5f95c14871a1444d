"""trackingReplicas under mocks: with 2, the servers are replicas behind load balancers holding
the static and the private address, checked on /health over HTTPS and replaced one at a time
(launch before terminate); with 1, exactly today's single VM (tests/infra/test_urns.py keeps its
URNs)."""

from __future__ import annotations

import base64

import pytest

from tests.infra.conftest import ROOT, depends_on, of_type, run_stack

REPLICAS = {"mlops-platform:trackingReplicas": "2",
            "mlops-platform:dbInstanceClass": "db.t4g.small"}  # fmt: skip
NLB = "aws:lb/loadBalancer:LoadBalancer"


def named(result: dict, typ: str, name: str) -> dict:
    [found] = [r for r in of_type(result, typ) if r["name"] == name]
    return found


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
    # one more server at a time (max 150% of 2), as the database's budget counts
    assert (refresh["preferences"]["minHealthyPercentage"],
            refresh["preferences"]["maxHealthyPercentage"]) == (100, 150)  # fmt: skip
    # The bootstrap reads the bundle and its secrets at first boot.
    bundle = of_type(aws_replicas, "aws:s3/bucketObjectv2:BucketObjectv2")[0]
    access = named(aws_replicas, "aws:iam/rolePolicy:RolePolicy", "mlops-access")
    assert depends_on(group, bundle) and depends_on(group, access)
    # The internal load balancer takes the fixed private address before any server could.
    for balancer in of_type(aws_replicas, NLB):
        assert depends_on(group, balancer)
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
    # In both zones the group's servers are in (a zone it is not in sends its targets nothing).
    mapping, other = inputs["subnetMappings"]
    assert [mapping["subnetId"], other["subnetId"]] == outputs["publicSubnetIds"]["value"]
    assert set(other) == {"subnetId"}  # the second zone's address is AWS's to choose
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
    # Inside, servers call themselves through it: their own address would come back to them.
    assert target["inputs"]["preserveClientIp"] == ("false" if label == "internal" else "true")
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
    assert "ingress" not in internal["inputs"]  # its rules stand apart: they name the servers
    rules = {r["inputs"]["referencedSecurityGroupId"]: r["inputs"] for r in
             of_type(aws_replicas, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")}  # fmt: skip
    assert set(rules) == {clients["state"]["id"], server["state"]["id"]}
    assert all(r["securityGroupId"] == internal["state"]["id"] and r["fromPort"] == 5000
               for r in rules.values())  # fmt: skip
    assert public["inputs"]["ingress"][0]["cidrBlocks"] == ["203.0.113.0/24"]  # allowedCidrs
    for label, group in (("public", public), ("internal", internal)):
        assert named(aws_replicas, NLB, f"mlops-{label}")["inputs"]["securityGroups"] == [
            group["state"]["id"]
        ]


def test_one_replica_is_today_s_single_vm(declared_vm):
    assert len(declared_vm.of_type("aws:ec2/instance:Instance")) == 1
    assert not declared_vm.of_type("aws:autoscaling/group:Group")
    assert not declared_vm.of_type(NLB)


@pytest.fixture(scope="module")
def gcp_replicas(tmp_path_factory):
    from tests.infra.conftest import GCP_OVERRIDES

    overrides = {**GCP_OVERRIDES, "mlops-platform:trackingReplicas": "2",
                 "mlops-platform:dbInstanceClass": "db-custom-1-3840"}  # fmt: skip
    result = run_stack(tmp_path_factory.mktemp("replicas-gcp"), ROOT / "Pulumi.dev.yaml", overrides)
    assert result["error"] is None, result["error"]
    return result


def test_gcp_replicas_are_a_regional_group_rolled_with_no_server_unavailable(gcp_replicas):
    assert not of_type(gcp_replicas, "gcp:compute/instance:Instance")
    [template] = of_type(gcp_replicas, "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate")
    [group] = of_type(gcp_replicas,
                      "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")  # fmt: skip
    [health] = of_type(gcp_replicas, "gcp:compute/regionHealthCheck:RegionHealthCheck")
    inputs = group["inputs"]
    assert inputs["targetSize"] == 2
    assert len(inputs["distributionPolicyZones"]) == 2
    assert inputs["versions"] == [{"instanceTemplate": template["state"]["selfLink"],
                                   "name": "server"}]  # fmt: skip
    policy = inputs["updatePolicy"]
    assert (policy["type"], policy["minimalAction"], policy["maxUnavailableFixed"]) == (
        "PROACTIVE",
        "REPLACE",
        0,
    )
    assert policy["maxSurgeFixed"] == 2  # one per zone: a regional group's least
    options = group["options"]
    assert (
        options["ignoreChanges"] == ["distributionPolicyZones"] and options["deleteBeforeReplace"]
    )
    assert inputs["autoHealingPolicies"]["healthCheck"] == health["state"]["id"]
    check = health["inputs"]["httpsHealthCheck"]
    assert (check["requestPath"], check["port"]) == ("/health", 5000)
    # The template is the single VM's: user-data, tag, account, shielded boot.
    metadata = template["inputs"]["metadata"]
    assert metadata["user-data"].startswith("#!") and metadata["enable-oslogin"] == "TRUE"
    assert template["inputs"]["tags"] == ["mlflow-server"]
    bundle = of_type(gcp_replicas, "gcp:storage/bucketObject:BucketObject")[0]
    assert depends_on(template, bundle)
    assert gcp_replicas["outputs"]["trackingInstance"]["value"] == group["state"]["id"]


@pytest.mark.parametrize(("label", "scheme"), [("external", "EXTERNAL"), ("internal", "INTERNAL")])
def test_gcp_passthrough_load_balancers_hold_the_reserved_addresses(gcp_replicas, label, scheme):
    outputs = gcp_replicas["outputs"]
    rule = named(gcp_replicas, "gcp:compute/forwardingRule:ForwardingRule", f"mlops-{label}")
    backend = named(gcp_replicas, "gcp:compute/regionBackendService:RegionBackendService",
                    f"mlops-{label}")  # fmt: skip
    [group] = of_type(gcp_replicas,
                      "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")  # fmt: skip
    [health] = of_type(gcp_replicas, "gcp:compute/regionHealthCheck:RegionHealthCheck")
    address = outputs["staticIp" if label == "external" else "trackingPrivateUri"]["value"]
    assert rule["inputs"]["ipAddress"] == address.split("//")[-1].split(":")[0]
    assert (rule["inputs"]["loadBalancingScheme"], rule["inputs"]["ports"]) == (scheme, ["5000"])
    assert rule["inputs"]["backendService"] == backend["state"]["id"]
    assert backend["inputs"]["loadBalancingScheme"] == scheme
    assert backend["inputs"]["protocol"] == "TCP"  # TLS passes through
    assert backend["inputs"]["healthChecks"] == health["state"]["id"]
    [server_group] = backend["inputs"]["backends"]
    assert server_group["group"] == group["state"]["instanceGroup"]


def test_gcp_health_checks_reach_the_servers(gcp_replicas):
    rule = named(gcp_replicas, "gcp:compute/firewall:Firewall", "mlops-health-checks")
    assert "35.191.0.0/16" in rule["inputs"]["sourceRanges"]
    assert rule["inputs"]["targetTags"] == ["mlflow-server"]
    assert rule["inputs"]["allows"] == [{"protocol": "tcp", "ports": ["5000"]}]


def test_replicas_with_a_domain_or_a_night_are_refused():
    from infra.config import ConfigError, load

    with pytest.raises(ConfigError, match="trackingReplicas: 2 with a domain is not supported"):
        load({"cloud": "aws", "trackingReplicas": "2", "domain": "mlflow.example.com",
              "dbInstanceClass": "db.t4g.small"}, "dev")  # fmt: skip
    with pytest.raises(ConfigError, match="sleepSchedule: a night for replicated servers"):
        load({"cloud": "aws", "trackingReplicas": "2", "dbInstanceClass": "db.t4g.small",
              "sleepSchedule": '{"wake": "07:00", "sleep": "20:00"}'}, "dev")  # fmt: skip


def test_aws_a_replicated_stack_file_keeps_the_outputs_and_hardens_its_servers(declared_replicated):
    from infra import outputs as out

    d = declared_replicated
    assert set(out.AWS) <= set(d.outputs)
    [group] = d.of_type("aws:autoscaling/group:Group")
    assert d.outputs["trackingInstance"]["value"] == group["state"]["arn"]
    assert group["inputs"]["desiredCapacity"] == 2  # the stack file's trackingReplicas
    [template] = d.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert template["inputs"]["metadataOptions"]["httpTokens"] == "required"  # IMDSv2
    [disk] = template["inputs"]["blockDeviceMappings"]
    assert disk["ebs"]["encrypted"] == "true"
    for label in ("public", "internal"):  # prod keeps its load balancers from a destroy
        balancer = [b for b in d.of_type(NLB) if b["name"] == f"mlops-{label}"][0]
        assert balancer["inputs"]["enableDeletionProtection"] is True


def test_gcp_a_replicated_stack_file_keeps_the_outputs_and_hardens_its_servers(
    declared_gcp_replicated,
):
    from infra import outputs as out

    d = declared_gcp_replicated
    assert set(out.GCP) <= set(d.outputs)
    [group] = d.of_type("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")
    assert d.outputs["trackingInstance"]["value"] == group["state"]["id"]
    assert group["inputs"]["targetSize"] == 2
    [template] = d.of_type("gcp:compute/regionInstanceTemplate:RegionInstanceTemplate")
    shielded = template["inputs"]["shieldedInstanceConfig"]
    assert shielded == {"enableSecureBoot": True, "enableVtpm": True,
                        "enableIntegrityMonitoring": True}  # fmt: skip
    assert template["inputs"]["metadata"]["block-project-ssh-keys"] == "true"
