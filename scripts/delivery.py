"""Per-branch delivery: which stack a branch deploys, and deploy/destroy of both projects.

    python -m scripts.delivery stack-for BRANCH      # prints the stack, or exits 1
    python -m scripts.delivery deploy STACK          # platform, then services, then a model
                                                     # (scripts/deploy)
    python -m scripts.delivery preview STACK         # both projects, for pull requests
    python -m scripts.delivery destroy STACK [--confirm-destroy-prod]   # services, then platform
    python -m scripts.delivery renew-cert STACK      # the tracking server's certificate only
                                                     # (scripts/renew-cert; weekly workflow)

Every `pulumi up`/`preview` passes the policy pack in policy/. After `up`, deploy waits (bounded)
until the model API serves a model, running the training job once if the registry has none yet (a
first deploy), so the smoke test that follows finds a champion. `destroy prod` refuses unless
confirmed, before any Pulumi command runs. On GCP, destroy waits (up to the documented 1-2 hours)
for Cloud Run to release its addresses in the platform's subnet, and removes the network's
service-networking peering once the database is gone, so the network can go too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = {"platform": ROOT, "services": ROOT / "services"}
POLICY_PACK = ROOT / "policy"
# The one map from git branches to stacks (the workflows call `stack-for`).
BRANCH_TO_STACK = {"dev": "dev", "staging": "staging", "main": "prod"}
PROTECTED = {"prod"}


class DeliveryError(Exception):
    pass


def stack_for(branch: str) -> str:
    branch = branch.removeprefix("refs/heads/")
    if branch not in BRANCH_TO_STACK:
        raise DeliveryError(
            f"branch {branch!r} deploys no stack; mapped branches: "
            + ", ".join(f"{b} -> {s}" for b, s in BRANCH_TO_STACK.items())
        )
    return BRANCH_TO_STACK[branch]


def check_stack(stack: str) -> None:
    known = set(BRANCH_TO_STACK.values())
    missing = [p for p, d in PROJECTS.items() if not (d / f"Pulumi.{stack}.yaml").exists()]
    if stack not in known or missing:
        raise DeliveryError(f"unknown stack {stack!r}; allowed: {', '.join(sorted(known))}")


def check_tools() -> None:
    if shutil.which("pulumi") is None:
        raise DeliveryError("the Pulumi CLI is not installed: https://www.pulumi.com/docs/install/")
    whoami = subprocess.run(["pulumi", "whoami"], capture_output=True, text=True)
    if whoami.returncode != 0:
        raise DeliveryError(
            "not logged in to a Pulumi backend: run `pulumi login` (Pulumi Cloud, or s3://… / gs://… "
            "for a self-managed backend), or set PULUMI_ACCESS_TOKEN / PULUMI_BACKEND_URL"
        )


def pulumi(command: list[str], project: str, stack: str) -> None:
    argv = [
        "pulumi",
        *command,
        "--stack",
        stack,
        "--cwd",
        str(PROJECTS[project]),
        "--non-interactive",
    ]
    if command[0] in ("up", "destroy"):
        argv.append("--yes")
    if command[0] in ("up", "preview"):
        argv += ["--policy-pack", str(POLICY_PACK)]
    print(f"==> {project}: {' '.join(argv[:2])} --stack {stack}", flush=True)
    if subprocess.run(argv, env=os.environ).returncode != 0:
        raise DeliveryError(f"{project}: pulumi {command[0]} failed for stack {stack}")


def start_training(stack: str, outputs: dict) -> str:
    from scripts.run_training import run_aws, run_gcp

    return run_aws(outputs) if outputs.get("cloud") == "aws" else run_gcp(outputs)


def ensure_champion(
    api_url: str,
    train: Callable[[], str],
    timeout: float = 1800.0,
    poll: float = 10.0,
    tracking_vm: Callable[[], str] | None = None,
) -> str:
    """Wait (bounded) until the model API serves a model; if it says no version exists yet (a
    first deploy: an empty registry), start the training job once and keep waiting. A tracking
    VM whose bootstrap failed (`tracking_vm()` returns its verdict line) ends the wait at once."""
    deadline = time.monotonic() + timeout
    trained, reason = None, "no answer"
    while time.monotonic() < deadline:
        body: dict = {}
        try:
            resp = requests.get(f"{api_url.rstrip('/')}/ready", timeout=10)
            body = resp.json()
        except (requests.RequestException, ValueError) as exc:
            reason = f"{exc.__class__.__name__}"
        else:
            if resp.status_code == 200:
                return f"serving v{body.get('model_version')}" + (
                    f" (trained by {trained})" if trained else ""
                )
            reason = body.get("reason") or f"HTTP {resp.status_code}"
        verdict = tracking_vm() if tracking_vm else ""
        if verdict.startswith("MLFLOW BOOTSTRAP FAILED"):  # training could not reach it either
            raise DeliveryError(f"the tracking VM's bootstrap failed: {verdict}")
        if body.get("reason_code") == "no_model_version" and trained is None:
            print("==> no model version yet (first deploy): running the training job once",
                  flush=True)  # fmt: skip
            trained = train()
            print(f"    started {trained}", flush=True)
        time.sleep(poll)
    raise DeliveryError(f"the model API at {api_url} was not ready after {timeout:.0f}s: {reason}")


def deploy(stack: str) -> None:
    check_stack(stack)
    check_tools()
    for project in ("platform", "services"):
        # A first deploy (a fresh backend) has no stack yet: `up --stack` alone would refuse.
        pulumi(["stack", "select", "--create"], project, stack)
        pulumi(["up", "--skip-preview"], project, stack)
    from scripts.run_training import RunError, read_outputs
    from scripts.smoke import SmokeFailure, vm_says
    from scripts.smoke import outputs as platform_outputs

    try:
        outputs = read_outputs(stack, None, ["modelApiUrl"])
        vm = platform_outputs(ROOT, stack).get("trackingInstance")
    except (RunError, SmokeFailure) as exc:
        raise DeliveryError(f"stack outputs: {exc}") from None
    served = ensure_champion(
        outputs["modelApiUrl"],
        lambda: start_training(stack, outputs),
        tracking_vm=(lambda: vm_says(vm)) if vm else None,
    )
    print(f"==> {served}")


def preview(stack: str) -> None:
    """`pulumi preview --diff` of both projects, with the policy pack (for pull requests)."""
    check_stack(stack)
    check_tools()
    for project in ("platform", "services"):
        pulumi(["preview", "--diff"], project, stack)


def destroy(stack: str, confirmed: bool) -> None:
    # Checked first: nothing, not even `pulumi whoami`, runs for an unconfirmed prod destroy.
    if stack in PROTECTED and not confirmed:
        raise DeliveryError(
            f"refusing to destroy {stack!r}: it holds production data. If you really mean it, run "
            f"scripts/destroy {stack} --confirm-destroy-prod (and lift the resources' protection first)"
        )
    check_stack(stack)
    check_tools()
    pulumi(["destroy"], "services", stack)
    network = gcp_network(platform_outputs(stack))
    if network is None:  # AWS: nothing outlives its resources
        pulumi(["destroy"], "platform", stack)
        return
    wait_for_serverless_addresses(network)
    try:
        pulumi(["destroy"], "platform", stack)
    except DeliveryError:
        # ABANDON leaves the service-networking peering on the network (Cloud SQL's producer
        # side keeps the connection for days), and a network with a peering cannot be deleted.
        # Removed only once the database is gone from the stack, then destroy runs again.
        if not remove_sql_peering(network, remaining_types("platform", stack)):
            raise
        pulumi(["destroy"], "platform", stack)


# --- the tracking server's certificate ----------------------------------------------------------

# What a renewal may touch: the certificate (pulumi-tls replaces it within its early-renewal
# window, infra/tls.py) and the secret version holding it with its key. Nothing else, so the
# unattended weekly run can never replace the VM or the database.
RENEWAL_TARGETS = (
    "tls:index/locallySignedCert:LocallySignedCert::mlops-tls-cert",
    "aws:secretsmanager/secretVersion:SecretVersion::mlops-tls-key-value",
    "gcp:secretmanager/secretVersion:SecretVersion::mlops-tls-key-value",
)


def renewal_targets(stack: str) -> list[str]:
    argv = ["pulumi", "stack", "export", "--stack", stack, "--cwd", str(ROOT)]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeliveryError(f"platform: pulumi stack export: {result.stderr.strip()[-300:]}")
    urns = [
        r["urn"] for r in (json.loads(result.stdout).get("deployment") or {}).get("resources") or []
    ]
    found = [u for u in urns if u.split("$")[-1] in RENEWAL_TARGETS]
    if len(found) != 2:
        raise DeliveryError(
            f"platform stack {stack}: expected the certificate and its secret version, found "
            f"{len(found)} ({', '.join(found) or 'none'}); deploy the platform first"
        )
    return found


def renew_cert(stack: str) -> None:
    """`pulumi up` of the certificate and its secret version only: a no-op until the certificate
    is within 30 days of its end, then a new one in the secret store, which the VM's mlflow-tls
    timer installs with a restart (seconds; no new VM)."""
    check_stack(stack)
    check_tools()
    targets = renewal_targets(stack)
    pulumi(
        ["up", "--skip-preview", *(a for t in targets for a in ("--target", t))], "platform", stack
    )
    expiry = platform_outputs(stack).get("trackingCertExpiry")
    print(f"==> the tracking server's certificate ends {expiry or '(unknown)'}", flush=True)


# --- GCP: what outlives its resources ---------------------------------------------------------

SQL_PEERING = "servicenetworking-googleapis-com"
# Google: "wait 1-2 hours for Cloud Run to release the IP addresses before you delete the subnet"
# (Direct VPC egress); a quarter hour more before giving up.
SERVERLESS_RELEASE_SECONDS = 2 * 3600 + 900
FIRST_POLL_SECONDS, LONGEST_POLL_SECONDS = 15.0, 300.0


def platform_outputs(stack: str) -> dict:
    argv = ["pulumi", "stack", "output", "--json", "--stack", stack, "--cwd", str(ROOT)]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeliveryError(f"platform: pulumi stack output: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout or "{}")


def gcp_network(outputs: dict) -> dict | None:
    """project, region, network and subnet names of a GCP platform; None on AWS (or when the
    stack holds no platform any more)."""
    vpc, subnets = outputs.get("vpcId", ""), outputs.get("privateSubnetIds") or []
    network = re.fullmatch(r"projects/([^/]+)/global/networks/([^/]+)", vpc)
    subnet = re.fullmatch(r"projects/[^/]+/regions/([^/]+)/subnetworks/([^/]+)", subnets[0]) if subnets else None  # fmt: skip
    if not network or not subnet:
        return None
    return {"project": network[1], "network": network[2], "region": subnet[1], "subnet": subnet[2]}


def gcloud(args: list[str]) -> subprocess.CompletedProcess:
    if shutil.which("gcloud") is None:
        raise DeliveryError("gcloud is not installed: https://cloud.google.com/sdk/docs/install")
    return subprocess.run(["gcloud", *args], capture_output=True, text=True)


def serverless_addresses(net: dict) -> list[str]:
    """Addresses Cloud Run's Direct VPC egress still holds in the platform's subnet."""
    result = gcloud([
        "compute", "addresses", "list", f"--project={net['project']}",
        f"--regions={net['region']}", "--format=value(name)",
        f"--filter=purpose=SERVERLESS AND subnetwork~/subnetworks/{net['subnet']}$",
    ])  # fmt: skip
    if result.returncode != 0:
        raise DeliveryError(f"gcloud compute addresses list: {result.stderr.strip()[-300:]}")
    return result.stdout.split()


def wait_for_serverless_addresses(
    net: dict, timeout: float = SERVERLESS_RELEASE_SECONDS, sleep=None, clock=None
) -> None:
    """Until Cloud Run has released the subnet's addresses (the subnet cannot be deleted
    before), polling with backoff, saying what it waits for."""
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    start, pause = clock(), FIRST_POLL_SECONDS
    while held := serverless_addresses(net):
        waited = clock() - start
        if waited >= timeout:
            raise DeliveryError(
                f"Cloud Run still holds {len(held)} address(es) in subnet {net['subnet']} after "
                f"{waited / 60:.0f} min ({', '.join(held)}); run scripts/destroy again later"
            )
        pause = min(pause, timeout - waited)
        print(
            f"==> waiting for Cloud Run to release {len(held)} address(es) in subnet "
            f"{net['subnet']} ({', '.join(held)}): Google documents 1-2 hours after its services "
            f"and jobs are deleted; {waited / 60:.0f} min so far, next check in {pause:.0f} s",
            flush=True,
        )
        sleep(pause)
        pause = min(pause * 2, LONGEST_POLL_SECONDS)


def remaining_types(project: str, stack: str) -> list[str]:
    argv = ["pulumi", "stack", "export", "--stack", stack, "--cwd", str(PROJECTS[project])]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeliveryError(f"{project}: pulumi stack export: {result.stderr.strip()[-300:]}")
    deployment = json.loads(result.stdout).get("deployment") or {}
    return [r["type"] for r in deployment.get("resources") or []]


def remove_sql_peering(net: dict, remaining: list[str]) -> bool:
    """Remove the network's peering to Google's service producers, once no database is left to
    use it; False when it cannot help (a database remains, or there is no such peering)."""
    if "gcp:sql/databaseInstance:DatabaseInstance" in remaining:
        return False
    if "gcp:compute/network:Network" not in remaining:
        return False
    print(f"==> removing peering {SQL_PEERING} from network {net['network']} (the database is "
          "gone; the stack abandoned its connection)", flush=True)  # fmt: skip
    result = gcloud([
        "compute", "networks", "peerings", "delete", SQL_PEERING,
        f"--network={net['network']}", f"--project={net['project']}", "--quiet",
    ])  # fmt: skip
    if result.returncode != 0:
        if "not found" in result.stderr.lower():
            return False
        raise DeliveryError(
            f"gcloud compute networks peerings delete: {result.stderr.strip()[-300:]}"
        )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.delivery", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stack-for", help="the stack a branch deploys").add_argument("branch")
    sub.add_parser("deploy", help="pulumi up: platform, then services").add_argument("stack")
    sub.add_parser("preview", help="pulumi preview --diff of both projects").add_argument("stack")
    p_destroy = sub.add_parser("destroy", help="pulumi destroy: services, then platform")
    p_destroy.add_argument("stack")
    p_destroy.add_argument(
        "--confirm-destroy-prod", action="store_true", help="required to destroy prod"
    )
    sub.add_parser(
        "renew-cert", help="pulumi up of the tracking server's certificate and its secret only"
    ).add_argument("stack")
    args = parser.parse_args(argv)
    try:
        if args.command == "stack-for":
            print(stack_for(args.branch))
        elif args.command == "deploy":
            deploy(args.stack)
        elif args.command == "preview":
            preview(args.stack)
        elif args.command == "renew-cert":
            renew_cert(args.stack)
        else:
            destroy(args.stack, args.confirm_destroy_prod)
    except DeliveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
