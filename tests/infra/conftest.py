"""Run the platform program under mocks once per stack file (in its own process) and share it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
STACKS = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACK_FILES]
_cache: dict[str, dict] = {}


def replicas(stack: str) -> int:
    """The stack file's trackingReplicas (1 unless set)."""
    import yaml

    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return int(config.get("mlops-platform:trackingReplicas", 1))


SINGLE_VM_STACKS = [s for s in STACKS if replicas(s) == 1]
"""Stack files with one tracking VM (the single VM's own tests run on these)."""
REPLICATED_STACKS = [s for s in STACKS if replicas(s) > 1]


def of_type(result: dict, typ: str) -> list[dict]:
    """A harness result's resources of one type."""
    return [r for r in result["resources"] if r["type"] == typ]


def depends_on(resource: dict, other: dict) -> bool:
    """Whether the engine gets `other` among `resource`'s dependencies (by type and name: the
    URNs the SDK sends name the nearest component only)."""
    me = f"{other['type']}::{other['name']}"
    return any(urn.endswith(me) for urn in resource["options"]["dependencies"])


class Declared:
    """What one stack's program declared, with small lookups for the tests."""

    def __init__(self, data: dict, stack: str) -> None:
        self.stack = stack
        self.error = data["error"]
        self.resources = data["resources"]
        self.outputs = data["outputs"]
        self.invokes = data.get("invokes", [])
        self.registered = data.get("registered", [])

    def of_type(self, typ: str) -> list[dict]:
        return [r for r in self.resources if r["type"] == typ]

    def named(self, typ: str, name: str) -> dict:
        found = [r for r in self.of_type(typ) if r["name"] == name]
        assert len(found) == 1, f"{typ} {name}: {len(found)} declared"
        return found[0]

    def one(self, typ: str) -> dict:
        found = self.of_type(typ)
        assert len(found) == 1, f"{typ}: {len(found)} declared"
        return found[0]

    def vm(self) -> dict:
        """The tracking VM (either cloud)."""
        [vm] = self.of_type("aws:ec2/instance:Instance") or [
            self.one("gcp:compute/instance:Instance")
        ]
        return vm

    def user_data(self) -> str:
        """The tracking server's user-data, as a VM receives it: the single VM's, or with
        replicas the launch template's (base64) or the instance template's."""
        import base64

        [template] = self.of_type("aws:ec2/launchTemplate:LaunchTemplate") or self.of_type(
            "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate") or [None]  # fmt: skip
        if template:
            inputs = template["inputs"]
            if "userData" in inputs:
                return base64.b64decode(inputs["userData"]).decode()
            return inputs["metadata"]["user-data"]
        inputs = self.vm()["inputs"]
        return inputs.get("userData") or inputs["metadata"]["user-data"]

    def bundle(self) -> dict:
        """The inputs of the server's bundle object in the bucket (either cloud)."""
        [bundle] = [r["inputs"] for r in self.resources if r["type"] in BUNDLE_TYPES]
        content = bundle["content"]
        # GCP's provider keeps an object's content as a secret: {"value": ..., "secret": true}
        return {**bundle, "content": content["value"] if isinstance(content, dict) else content}

    def vm_files(self) -> dict[str, str]:
        """Path -> text of each file the VM writes from its bundle."""
        entries = json.loads(self.bundle()["content"])["files"]
        return {path: entry["text"] for path, entry in entries.items()}


PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
"""A private key's PEM block (the launcher's code names the marker, which is no key)."""

BUNDLE_TYPES = ("aws:s3/bucketObjectv2:BucketObjectv2", "gcp:storage/bucketObject:BucketObject")


# Any stack file runs on GCP with the cloud key, gcp:project/gcp:region and a GCE image, no code
# change.
GCP_OVERRIDES = {
    "mlops-platform:cloud": "gcp",
    "gcp:project": "mlops-test",
    "gcp:region": "europe-west1",
    "aws:region": None,
    "mlops-platform:vmImage": "ubuntu-2404-noble-amd64-v20251217",
}


def run_stack(tmp_dir: Path, stack_file: Path, overrides: dict | None = None) -> dict:
    out = tmp_dir / f"{stack_file.stem}.json"
    extra = []
    if overrides:
        (tmp_dir / "overrides.json").write_text(json.dumps(overrides))
        extra = [str(tmp_dir / "overrides.json")]
    harness = str(ROOT / "tests/infra/harness.py")
    proc = subprocess.run(
        [sys.executable, harness, str(ROOT), str(stack_file), str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _platform(stack: str, cloud: str, tmp_path_factory) -> Declared:
    key = stack if cloud == "aws" else f"gcp:{stack}"
    if key not in _cache:
        overrides = GCP_OVERRIDES if cloud == "gcp" else None
        _cache[key] = run_stack(tmp_path_factory.mktemp("stacks"), ROOT / f"Pulumi.{stack}.yaml",
                                overrides)  # fmt: skip
    data = _cache[key]
    assert data["error"] is None, data["error"]
    return Declared(data, stack)


@pytest.fixture(scope="session", params=STACKS)
def declared(request, tmp_path_factory) -> Declared:
    return _platform(request.param, "aws", tmp_path_factory)


@pytest.fixture(scope="session", params=STACKS)
def declared_gcp(request, tmp_path_factory) -> Declared:
    return _platform(request.param, "gcp", tmp_path_factory)


@pytest.fixture(scope="session", params=SINGLE_VM_STACKS)
def declared_vm(request, tmp_path_factory) -> Declared:
    """A stack file with one tracking VM, on AWS."""
    return _platform(request.param, "aws", tmp_path_factory)


@pytest.fixture(scope="session", params=SINGLE_VM_STACKS)
def declared_gcp_vm(request, tmp_path_factory) -> Declared:
    """A stack file with one tracking VM, on GCP."""
    return _platform(request.param, "gcp", tmp_path_factory)


@pytest.fixture(scope="session", params=REPLICATED_STACKS)
def declared_replicated(request, tmp_path_factory) -> Declared:
    """A stack file with replicated tracking servers, on AWS."""
    return _platform(request.param, "aws", tmp_path_factory)


@pytest.fixture(scope="session", params=REPLICATED_STACKS)
def declared_gcp_replicated(request, tmp_path_factory) -> Declared:
    """A stack file with replicated tracking servers, on GCP."""
    return _platform(request.param, "gcp", tmp_path_factory)


DOMAIN = "mlflow.example.com"


@pytest.fixture(scope="session", params=["aws", "gcp"])
def declared_domain(request, tmp_path_factory) -> Declared:
    """The dev stack with `domain` set, on each cloud."""
    key = f"domain:{request.param}"
    if key not in _cache:
        overrides = {
            **(GCP_OVERRIDES if request.param == "gcp" else {}),
            "mlops-platform:domain": DOMAIN,
        }
        _cache[key] = run_stack(
            tmp_path_factory.mktemp("domain"), ROOT / "Pulumi.dev.yaml", overrides
        )
    data = _cache[key]
    assert data["error"] is None, data["error"]
    return Declared(data, "dev")


SERVICES = ROOT / "services"
SERVICES_GCP_OVERRIDES = {
    "mlops-services:cloud": "gcp",
    "gcp:project": "mlops-test",
    "gcp:region": "europe-west1",
    "aws:region": None,
    "mlops-services:trainData": "gs://tlc-data/green/green_tripdata_2024-01.parquet",
    "mlops-services:valData": "gs://tlc-data/green/green_tripdata_2024-02.parquet",
}


def run_services(tmp_dir: Path, stack: str, overrides: dict | None = None) -> dict:
    out = tmp_dir / f"services-{stack}.json"
    args = [
        sys.executable,
        str(ROOT / "tests/infra/harness.py"),
        str(SERVICES),
        str(SERVICES / f"Pulumi.{stack}.yaml"),
        str(out),
    ]
    if overrides:
        (tmp_dir / "overrides.json").write_text(json.dumps(overrides))
        args.append(str(tmp_dir / "overrides.json"))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _services(request, tmp_path_factory, cloud: str) -> Declared:
    key = f"services:{cloud}:{request.param}"
    if key not in _cache:
        overrides = SERVICES_GCP_OVERRIDES if cloud == "gcp" else None
        _cache[key] = run_services(tmp_path_factory.mktemp("services"), request.param, overrides)
    data = _cache[key]
    assert data["error"] is None, data["error"]
    return Declared(data, request.param)


@pytest.fixture(scope="session", params=STACKS)
def services_aws(request, tmp_path_factory) -> Declared:
    return _services(request, tmp_path_factory, "aws")


@pytest.fixture(scope="session", params=STACKS)
def services_gcp(request, tmp_path_factory) -> Declared:
    return _services(request, tmp_path_factory, "gcp")
