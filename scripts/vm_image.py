"""The tracking VM's image: which one a stack pins, the newest of the same series, and the command
that bumps the pin.

    python -m scripts.vm_image STACK      (scripts/vm-image STACK)

The image is pinned (infra.config.PINNED_IMAGES, or the stack file's mlops-platform:vmImage) so a
new Ubuntu release does not replace the server at some unrelated `up`. Bumping it is a deliberate
change: the next `up` replaces the VM (minutes without a tracking server). Asks AWS (boto3, your
credentials) or GCP (`gcloud`), read-only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

from infra.config import NAMESPACE, PINNED_IMAGES

ROOT = Path(__file__).resolve().parent.parent
UBUNTU_OWNER = "099720109477"  # Canonical (infra.aws.tracking_server)
UBUNTU_PROJECT = "ubuntu-os-cloud"
# The serial at the end of an image name: 20251212 (aws), 20251217 after a v (gcp), maybe suffixed.
SERIAL = re.compile(r"\d{8}(?:\.\d+|[a-z])?$")


class ImageError(Exception):
    pass


def stack_settings(stack: str) -> dict:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        stacks = sorted(p.stem.removeprefix("Pulumi.") for p in ROOT.glob("Pulumi.*.yaml"))
        raise ImageError(f"no stack file {path.name}; stacks here: {', '.join(stacks)}")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    cloud = config.get(f"{NAMESPACE}:cloud", "aws")
    if cloud not in PINNED_IMAGES:
        raise ImageError(f"{NAMESPACE}:cloud is {cloud!r}; allowed: aws, gcp")
    return {
        "cloud": cloud,
        "pinned": config.get(f"{NAMESPACE}:vmImage") or PINNED_IMAGES[cloud],
        "where": config.get("aws:region") if cloud == "aws" else config.get("gcp:project"),
    }


def series(name: str) -> str:
    """The pinned name with its serial as a wildcard: the same release, any later build."""
    if not SERIAL.search(name):
        raise ImageError(f"{name!r} ends in no image serial (YYYYMMDD); cannot tell its series")
    return SERIAL.sub("*", name)


def newest_aws(pinned: str, region: str, ec2=None) -> tuple[str, str]:
    """(name, "ami-… created …") of Canonical's newest AMI in the pinned one's series."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    ec2 = ec2 or boto3.client("ec2", region_name=region)
    try:
        return _newest_aws(pinned, region, ec2)
    except (BotoCoreError, ClientError) as exc:
        raise ImageError(f"EC2 DescribeImages in {region}: {exc}") from None


def _newest_aws(pinned: str, region: str, ec2) -> tuple[str, str]:
    if pinned.startswith("ami-"):
        found = ec2.describe_images(ImageIds=[pinned], IncludeDeprecated=True)["Images"]
        if not found:
            raise ImageError(f"{pinned} is not an AMI in {region}")
        pinned = found[0]["Name"]
    images = ec2.describe_images(
        Owners=[UBUNTU_OWNER],
        Filters=[
            {"Name": "name", "Values": [series(pinned)]},
            {"Name": "architecture", "Values": ["x86_64"]},
        ],
    )["Images"]
    if not images:
        raise ImageError(f"Canonical publishes no AMI named {series(pinned)} in {region}")
    best = max(images, key=lambda i: i["CreationDate"])
    return best["Name"], f"{best['ImageId']}, created {best['CreationDate'][:10]}"


def newest_gcp(pinned: str) -> tuple[str, str]:
    """(name, "created …") of ubuntu-os-cloud's newest image in the pinned one's series."""
    prefix = series(pinned).removesuffix("*")
    argv = [
        "gcloud", "compute", "images", "list", f"--project={UBUNTU_PROJECT}",
        f"--filter=name~^{prefix}", "--sort-by=~creationTimestamp", "--limit=1",
        "--format=value(name,creationTimestamp)",
    ]  # fmt: skip
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ImageError(
            "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
        ) from None
    if out.returncode != 0:
        raise ImageError(f"gcloud compute images list failed: {out.stderr.strip()[-300:]}")
    fields = out.stdout.split()
    if not fields:
        raise ImageError(f"{UBUNTU_PROJECT} has no image named {prefix}*")
    return fields[0], f"created {fields[1][:10]}" if len(fields) > 1 else ""


def report(stack: str, ec2=None) -> str:
    s = stack_settings(stack)
    if s["cloud"] == "aws":
        if not s["where"]:
            raise ImageError(f"Pulumi.{stack}.yaml sets no aws:region")
        name, detail = newest_aws(s["pinned"], s["where"], ec2)
    else:
        name, detail = newest_gcp(s["pinned"])
    lines = [
        f"stack {stack} ({s['cloud']}, {s['where']})",
        f"pinned: {s['pinned']}",
        f"newest: {name} ({detail})",
    ]
    if name == s["pinned"]:
        lines.append("up to date: nothing to bump")
    else:
        lines += [
            "bump (the next `up` replaces the tracking VM: minutes without a tracking server;",
            "choose a quiet time, or wait for jobs in flight to finish):",
            f"  pulumi config set {NAMESPACE}:vmImage {name} --stack {stack}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/vm-image", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument(
        "stack", help="a platform stack with a Pulumi.<stack>.yaml (dev, staging, prod)"
    )
    args = parser.parse_args(argv)
    try:
        print(report(args.stack))
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
