"""Run a Pulumi program under `pulumi.runtime.set_mocks` for one stack file and dump what it
declared: every resource with its inputs and protection options, and the stack outputs.

    python tests/infra/harness.py <project dir> <Pulumi.STACK.yaml> <out.json> [<overrides.json>]

Overrides replace config keys (a null value removes one), e.g. to run a stack file with cloud=gcp.

It runs the program the way Pulumi does: `runpy.run_path(<main>)` from the project directory, with
the main folder first on sys.path. One process per stack, so every run starts clean.
"""

from __future__ import annotations

import fnmatch
import json
import os
import runpy
import sys
from pathlib import Path

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import resource_pb2

# Values the program must never leak: what the mocked random passwords "generate".
SECRET_SENTINEL = "SENTINEL-SECRET-"


# What the platform stack exports, for the service stacks' StackReference.
MOCK_CERT = "-----BEGIN CERTIFICATE-----\nMOCK {}\n-----END CERTIFICATE-----\n"
PLATFORM_OUTPUTS = {
    "aws": {
        "trackingUri": "https://198.51.100.7:5000",
        "trackingPrivateUri": "https://10.40.0.10:5000",
        "trackingCaCert": MOCK_CERT.format("platform CA"),
        "staticIp": "198.51.100.7",
        "artifactBucket": "mlflow-dev-mock",
        "dbEndpoint": "mlops-postgres-0mock.cmock.us-east-1.rds.amazonaws.com:5432",
        "trackingInstance": "arn:aws:ec2:us-east-1:123456789012:instance/i-0mock",
        "vpcId": "vpc-0mock",
        "publicSubnetIds": ["subnet-pub-a", "subnet-pub-b"],
        "privateSubnetIds": ["subnet-priv-a", "subnet-priv-b"],
        "clientSecurityGroupId": "sg-0clients",
        "credentialsSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-credentials-mock",
        "trainerPasswordSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-trainer-mock",
        "modelApiPasswordSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-model-api-mock",
        "streamingPasswordSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-streaming-mock",
        "adminUsername": "admin",
    },
    "gcp": {
        "trackingUri": "https://203.0.113.50:5000",
        "trackingPrivateUri": "https://10.40.0.5:5000",
        "trackingCaCert": MOCK_CERT.format("platform CA"),
        "staticIp": "203.0.113.50",
        "artifactBucket": "mlops-bucket-mock",
        "dbEndpoint": "10.50.0.3:5432",
        "trackingInstance": "projects/mlops-test/zones/europe-west1-d/instances/mlops-vm-0mock",
        "vpcId": "projects/mlops-test/global/networks/mlops-vpc",
        "publicSubnetIds": ["projects/mlops-test/regions/europe-west1/subnetworks/mlops-subnet"],
        "privateSubnetIds": ["projects/mlops-test/regions/europe-west1/subnetworks/mlops-subnet"],
        "credentialsSecret": "mlflow-dev-credentials",
        "trainerPasswordSecret": "mlflow-dev-trainer-password",
        "modelApiPasswordSecret": "mlflow-dev-model-api-password",
        "streamingPasswordSecret": "mlflow-dev-streaming-password",
        "adminUsername": "admin",
    },
}
STATE = {"cloud": "aws", "drop": None, "offered": ["us-east-1b", "us-east-1c"], "platform": {}}
# Canonical's AMIs in the mocked region, as EC2's DescribeImages would filter them.
AMI_PREFIX = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-"
STATE["amis"] = [
    {"name": f"{AMI_PREFIX}20251212", "id": "ami-0aaaaaaaaaaaaaaa1", "created": "2025-12-12"},
    {"name": f"{AMI_PREFIX}20251105", "id": "ami-0aaaaaaaaaaaaaaa0", "created": "2025-11-05"},
]


def find_ami(args: dict) -> dict:
    """getAmi over STATE["amis"]: owner Canonical, name filters as globs, most_recent."""
    names = [v for f in args.get("filters", []) if f["name"] == "name" for v in f["values"]]
    found = [
        a for a in STATE["amis"]
        if "099720109477" in args.get("owners", []) and all(fnmatch.fnmatchcase(a["name"], n) for n in names)
    ]  # fmt: skip
    if not found or (len(found) > 1 and not args.get("mostRecent")):
        raise Exception(f"Your query returned {'no' if not found else 'more than one'} result")
    best = max(found, key=lambda a: a["created"])
    return {"id": best["id"], "name": best["name"], "architecture": "x86_64"}


PUBSUB_AGENT = "service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
MONITORING_AGENT = "service-123456789012@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
AGENTS = {"pubsub.googleapis.com": PUBSUB_AGENT, "monitoring.googleapis.com": MONITORING_AGENT}


def agent(service: str | None) -> str:
    """A Google service agent's address, as ServiceIdentity gives it."""
    short = (service or "none").split(".")[0]
    return AGENTS.get(service, f"service-123456789012@gcp-sa-{short}.iam.gserviceaccount.com")


# Resources whose id is their path, projects/P/<kind>/<name>, as the provider gives it.
PATH_IDS = {
    "gcp:pubsub/topic:Topic": "topics",
    "gcp:pubsub/subscription:Subscription": "subscriptions",
}


def computed(typ: str, name: str, inputs: dict) -> dict:
    """Provider-computed outputs, camelCase as the engine returns them."""
    arn = f"arn:aws:mock:us-east-1:123456789012:{name}"
    by_type = {
        "aws:ec2/eip:Eip": {"publicIp": "198.51.100.7", "allocationId": "eipalloc-0mock"},
        "aws:ec2/instance:Instance": {
            "privateIp": "10.40.0.10",
            "arn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0mock",
        },
        "aws:rds/instance:Instance": {
            "arn": f"arn:aws:rds:us-east-1:123456789012:db:{name}-mock",
            "identifier": f"{name}-mock",
            "address": f"{name}.cmock.us-east-1.rds.amazonaws.com",
            "port": 5432,
            "masterUserSecrets": [
                {
                    "secretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-mock",
                    "secretStatus": "active",
                    "kmsKeyId": "",
                }
            ],
        },
        "aws:s3/bucket:Bucket": {
            "bucket": f"{inputs.get('bucketPrefix', name)}mock",
            "arn": f"arn:aws:s3:::{inputs.get('bucketPrefix', name)}mock",
        },
        "random:index/randomPassword:RandomPassword": {"result": f"{SECRET_SENTINEL}{name}"},
        "aws:rds/subnetGroup:SubnetGroup": {"name": f"{name}-mock"},
        "aws:cloudwatch/logGroup:LogGroup": {
            "arn": f"arn:aws:logs:us-east-1:123456789012:log-group:{inputs.get('name', name)}"
        },
        "aws:iam/role:Role": {"name": f"{name}-mock"},
        # CloudWatch names a target group (and a load balancer, below) by its ARN's suffix.
        "aws:lb/targetGroup:TargetGroup": {"arnSuffix": f"targetgroup/{name}/0mock"},
        "aws:iam/instanceProfile:InstanceProfile": {"name": f"{name}-mock"},
        "gcp:compute/address:Address": {
            "address": "10.40.0.5" if inputs.get("addressType") == "INTERNAL" else "203.0.113.50"
        },
        "gcp:compute/instance:Instance": {
            "project": inputs.get("project", "mlops-test"),  # the provider's default project
            "name": inputs.get("name", f"{name}-0mock"),  # auto-named
            "networkInterfaces": [
                {**nic, "networkIp": "10.40.0.5"} for nic in inputs.get("networkInterfaces", [])
            ],
        },
        "gcp:sql/databaseInstance:DatabaseInstance": {
            "privateIpAddress": "10.50.0.3",
            "name": f"{name}-mock",
            "serverCaCerts": [
                {"cert": "-----BEGIN CERTIFICATE-----\nMOCKCA\n-----END CERTIFICATE-----\n"}
            ],
        },
        "gcp:secretmanager/secret:Secret": {
            "name": f"projects/mlops-test/secrets/{inputs.get('secretId')}"
        },
        "gcp:serviceaccount/account:Account": {
            "email": f"{inputs.get('accountId')}@mlops-test.iam.gserviceaccount.com",
            "name": f"projects/mlops-test/serviceAccounts/{inputs.get('accountId')}"
            "@mlops-test.iam.gserviceaccount.com",
        },
        # Auto-named by the provider; the id is the resource's path.
        "gcp:pubsub/topic:Topic": {"name": f"{name}-mock"},
        "gcp:pubsub/subscription:Subscription": {"name": f"{name}-mock"},
        "gcp:projects/serviceIdentity:ServiceIdentity": {
            "email": agent(inputs.get("service")),
            "member": f"serviceAccount:{agent(inputs.get('service'))}",
        },
        "aws:ec2/launchTemplate:LaunchTemplate": {"latestVersion": 3},
        "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate": {
            "selfLink": f"projects/mlops-test/regions/europe-west1/instanceTemplates/{name}-0mock"
        },
        "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager": {
            "instanceGroup": f"projects/mlops-test/regions/europe-west1/instanceGroups/{name}-0mock"
        },
        "gcp:compute/resourcePolicy:ResourcePolicy": {
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/mlops-test/regions/"
            f"{inputs.get('region')}/resourcePolicies/{name}-mock"
        },
        "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": {
            "uptimeCheckId": f"{name}-0mock",
            "name": f"projects/mlops-test/uptimeCheckConfigs/{name}-0mock",
        },
        "gcp:storage/bucket:Bucket": {"name": f"{name}-mock"},
        "gcp:compute/globalAddress:GlobalAddress": {"name": f"{name}-mock"},
        # pulumi-tls: PEMs that name what made them, so a test can tell them apart.
        "tls:index/privateKey:PrivateKey": {
            "privateKeyPem": f"-----BEGIN PRIVATE KEY-----\n{SECRET_SENTINEL}{name}\n"
            "-----END PRIVATE KEY-----\n",
            "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\n{name}\n-----END PUBLIC KEY-----\n",
        },
        "tls:index/selfSignedCert:SelfSignedCert": {"certPem": MOCK_CERT.format(name)},
        "tls:index/certRequest:CertRequest": {
            "certRequestPem": f"-----BEGIN CERTIFICATE REQUEST-----\n{name}\n"
            "-----END CERTIFICATE REQUEST-----\n"
        },
        "tls:index/locallySignedCert:LocallySignedCert": {
            "certPem": MOCK_CERT.format(name),
            "validityEndTime": "2027-12-06T05:50:00Z",
        },
    }
    if typ == "pulumi:pulumi:StackReference":
        outputs = {**PLATFORM_OUTPUTS[STATE["cloud"]], **STATE["platform"]}
        outputs.pop(STATE["drop"], None)
        return {"name": name, "outputs": outputs, "secretOutputNames": []}
    if typ == "aws:route53/zone:Zone":
        return {"zoneId": "Z0MOCK", "name": inputs["name"]}
    if typ == "gcp:dns/managedZone:ManagedZone":  # auto-named by the provider
        return {"name": f"{name}-0mock"}
    if typ == "docker-build:index:Image":
        return {"ref": f"{inputs['tags'][0]}@sha256:0mock", "digest": "sha256:0mock"}
    if typ == "gcp:cloudrunv2/service:Service":
        return {"uri": f"https://{name}-mock.a.run.app", "name": f"{name}-mock"}
    if typ == "gcp:cloudrunv2/job:Job":
        return {"name": f"{name}-mock"}
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        return {"arn": arn, "dnsName": f"{name}-mock.us-east-1.elb.amazonaws.com",
                "arnSuffix": f"app/{name}/0mock"}  # fmt: skip
    if typ == "aws:ecs/taskDefinition:TaskDefinition":
        return {"arn": f"{arn}:1", "arnWithoutRevision": arn}
    batch = "arn:aws:batch:us-east-1:123456789012"
    if typ == "aws:batch/jobDefinition:JobDefinition":
        prefix = f"{batch}:job-definition/{name}-mock"
        return {"arn": f"{prefix}:1", "arnPrefix": prefix, "revision": 1}
    if typ == "aws:batch/jobQueue:JobQueue":
        return {"arn": f"{batch}:job-queue/{name}-mock", "name": f"{name}-mock"}
    if typ == "aws:batch/computeEnvironment:ComputeEnvironment":
        return {"arn": f"{batch}:compute-environment/{name}-mock", "name": f"{name}-mock"}
    if typ == "aws:ecr/repository:Repository":
        return {
            "arn": arn,
            "repositoryUrl": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}",
            "registryId": "123456789012",
            "name": name,
        }
    # Providers auto-name what the program does not name.
    return {"arn": arn, "name": inputs.get("name", name), **by_type.get(typ, {})}


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[dict] = []
        self.calls: list[dict] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = {**args.inputs, **computed(args.typ, args.name, args.inputs)}
        kind = PATH_IDS.get(args.typ)
        rid = f"projects/mlops-test/{kind}/{state['name']}" if kind else f"{args.name}-id"
        # What the engine would hold: the outputs other resources read, and the id.
        self.resources.append({"type": args.typ, "name": args.name, "inputs": args.inputs,
                               "state": {**state, "id": rid}})  # fmt: skip
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append({"token": args.token, "args": args.args})
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": ["us-east-1a", "us-east-1b", "us-east-1c"],
                "zoneIds": ["a", "b", "c"],
                "id": "x",
            }
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            # The instance type is not offered in us-east-1a: the program must skip it.
            zones = STATE["offered"]
            return {"locations": zones, "locationTypes": ["availability-zone"] * len(zones),
                    "instanceTypes": ["t3.small"] * len(zones), "id": "x"}  # fmt: skip
        if args.token == "aws:rds/getOrderableDbInstance:getOrderableDbInstance":
            return {"availabilityZones": ["us-east-1a", "us-east-1b", "us-east-1c"],
                    "engine": "postgres", "id": "x"}  # fmt: skip
        if args.token == "aws:ec2/getAmi:getAmi":
            return find_ami(args.args)
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {
                "userName": "AWS",
                "password": "mock-token",
                "authorizationToken": "x",
                "proxyEndpoint": "x",
                "id": "x",
            }
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            return {
                "accessToken": "mock-token",
                "project": "mlops-test",
                "region": "europe-west1",
                "id": "x",
            }
        if args.token == "gcp:organizations/getProject:getProject":
            return {"projectId": "mlops-test", "number": "123456789012", "id": "x"}
        if args.token == "gcp:compute/getImage:getImage":
            return {
                "selfLink": "projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-mock",
                "id": "x",
            }
        if args.token == "gcp:compute/getZones:getZones":
            # As europe-west1 really is: no zone -a.
            return {"names": ["europe-west1-d", "europe-west1-b", "europe-west1-c"], "id": "x"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci",
                    "userId": "AIDAMOCK", "id": "123456789012"}  # fmt: skip
        if args.token == "aws:ec2/getVpcEndpointService:getVpcEndpointService":
            # As in some regions: an endpoint service missing from one of the zones.
            zones = ["us-east-1a", "us-east-1c"] if args.args["service"] == "sqs" else [
                "us-east-1a", "us-east-1b", "us-east-1c"]  # fmt: skip
            return {"availabilityZones": zones, "service": args.args["service"],
                    "serviceName": f"com.amazonaws.us-east-1.{args.args['service']}",
                    "id": "x"}  # fmt: skip
        if args.token == "aws:ec2/getSubnets:getSubnets":
            # The platform's public subnets: -a in us-east-1a, -b in us-east-1b.
            given = {f["name"]: f["values"] for f in args.args["filters"]}
            zone = {"subnet-pub-a": "us-east-1a", "subnet-pub-b": "us-east-1b"}
            ids = [i for i in given["subnet-id"] if zone.get(i) in given["availability-zone"]]
            return {"ids": ids, "id": "x"}
        if args.token == "aws:ec2/getRouteTable:getRouteTable":
            # The platform's public subnets share one route table (infra/aws/network.py).
            return {"routeTableId": "rtb-0public", "id": "rtb-0public",
                    "subnetId": args.args.get("subnetId"), "vpcId": "vpc-0mock"}  # fmt: skip
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": "us-east-1", "name": "us-east-1", "region": "us-east-1"}
        return {}


class Monitor(pulumi_mocks.MockMonitor):
    """Records the resource options the engine receives, which the plain mocks do not show."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.options: dict[str, dict] = {}
        self.engine_urns: dict[str, str] = {}

    def engine_urn(self, request) -> str:
        """The URN the engine gives: the type qualified by every ancestor's type but the root
        stack's (the mock qualifies by the parent's last type, the stack's included)."""
        parent = self.engine_urns.get(request.parent, "")
        parent_type = parent.split("::")[2] if parent else ""
        qualified = request.type
        if parent_type and parent_type != "pulumi:pulumi:Stack":
            qualified = f"{parent_type}${request.type}"
        return "::".join(["urn:pulumi:" + pulumi.get_stack(), pulumi.get_project(), qualified,
                          request.name])  # fmt: skip

    def GetDeploymentInfo(self, request):  # noqa: N802 - gRPC method name
        # No alias specs: the SDK then resolves each alias to the URN it stands for (as the
        # engine does with a spec), which the record keeps next to the resource's own URN.
        info = super().GetDeploymentInfo(request)
        features = [f for f in info.supportedFeatures
                    if f != resource_pb2.RESOURCE_MONITOR_FEATURE_ALIAS_SPECS]  # fmt: skip
        del info.supportedFeatures[:]
        info.supportedFeatures.extend(features)
        return info

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        urn = self.engine_urns[response.urn] = self.engine_urn(request)
        self.options[f"{request.type}::{request.name}"] = {
            "urn": urn,
            "aliases": sorted(request.aliasURNs),
            "protect": bool(request.protect),
            "retainOnDelete": bool(request.retainOnDelete),
            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
            "ignoreChanges": list(request.ignoreChanges),
            "replaceOnChanges": list(request.replaceOnChanges),
            # URNs: explicit depends_on and the resources its inputs came from.
            "dependencies": sorted(request.dependencies),
        }
        return response


def config_from(stack_file: Path) -> dict[str, str]:
    raw = (yaml.safe_load(stack_file.read_text()) or {}).get("config", {}) or {}
    # The engine hands structured values over as JSON text.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def main(project_dir: str, stack_file: str, out_path: str, overrides: str | None = None) -> int:
    project_dir_p = Path(project_dir).resolve()
    stack_file = str(Path(stack_file).resolve())
    project = yaml.safe_load((project_dir_p / "Pulumi.yaml").read_text())
    stack = Path(stack_file).name.removeprefix("Pulumi.").removesuffix(".yaml")
    main_path = project_dir_p / project.get("main", ".") / "__main__.py"

    os.chdir(project_dir_p)
    sys.path[0] = str(main_path.parent)
    config = config_from(Path(stack_file))
    for key, value in json.loads(Path(overrides).read_text() if overrides else "{}").items():
        if key == "__dropPlatformOutput":
            STATE["drop"] = value
        elif key == "__amiCatalogue":  # Canonical published more images
            STATE["amis"] = value
        elif key == "__offeredZones":
            STATE["offered"] = value
        elif key == "__platformOutputs":  # what the StackReference answers, changed
            STATE["platform"] = value
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value if isinstance(value, str) else json.dumps(value)
    set_all_config(config)
    STATE["cloud"] = json.loads(json.dumps(config.get(f"{project['name']}:cloud", "aws")))
    mocks = Mocks()
    monitor = Monitor(mocks)
    pulumi.runtime.set_mocks(
        mocks,
        project=project["name"],
        stack=stack,
        preview=False,
        monitor=monitor,
        organization="acme",
    )

    exported: dict[str, object] = {}
    pulumi.export = lambda name, value: exported.__setitem__(name, value)
    result: dict = {"outputs": {}, "error": None, "invokes": [], "warnings": []}
    # What `pulumi up` would print as warnings.
    pulumi.log.warn = lambda message, *_, **__: result["warnings"].append(message)
    # What each output invoke was told to wait for (InvokeOutputOptions.depends_on): the engine
    # gets no dependency list for an invoke, the SDK waits before it asks.
    waits: list[tuple[str, list]] = []
    invoke_output = pulumi.runtime.invoke_output

    def recording_invoke_output(tok, props, opts=None, typ=None, package_ref=None):
        waits.append((tok, list(getattr(opts, "depends_on", None) or [])))
        return invoke_output(tok, props, opts=opts, typ=typ, package_ref=package_ref)

    pulumi.runtime.invoke_output = recording_invoke_output

    async def collect() -> None:
        for key, value in exported.items():
            output = pulumi.Output.from_input(value)
            result["outputs"][key] = {
                "value": await output.future(),
                "secret": await output.is_secret(),
            }
        for tok, depends_on in waits:
            urns = [await resource.urn.future() for resource in depends_on]
            result["invokes"].append({"token": tok, "dependsOn": sorted(urns)})

    @pulumi.runtime.test
    def run():
        runpy.run_path(str(main_path), run_name="__main__")
        import asyncio

        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    try:
        run()
    except Exception as exc:  # the program's own error, reported to the test
        result["error"] = f"{exc.__class__.__name__}: {exc}"
    for resource in mocks.resources:
        resource["options"] = monitor.options.get(f"{resource['type']}::{resource['name']}", {})
    result["resources"] = mocks.resources
    # Every registration the engine got, components included: its URN and its aliases' URNs.
    result["registered"] = [
        {"urn": o["urn"], "aliases": o["aliases"]} for o in monitor.options.values()
    ]
    result["calls"] = mocks.calls
    Path(out_path).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
