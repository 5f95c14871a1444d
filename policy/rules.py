"""The security rules of the policy pack, as plain functions: (resource type, props) -> violations.

`__main__.py` wraps each as a Pulumi policy; the tests call them directly. Props are the engine's
camelCase inputs.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections.abc import Callable

OPEN = {"0.0.0.0/0", "::/0"}
SECRET_ENV = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY)", re.IGNORECASE)
# A secret value written into user-data as an assignment, e.g. PGPASSWORD=... or password: ...
SECRET_ASSIGNMENT = re.compile(
    r"(PGPASSWORD|MLFLOW_TRACKING_PASSWORD|MLFLOW_AUTH_ADMIN_PASSWORD|admin_password|AWS_SECRET_ACCESS_KEY)\s*[=:]\s*\S",
)


def _is_prod(props: dict) -> bool:
    labels: dict = {}
    # AWS tags and GCP labels are maps (a GCE instance's `tags` is a list of network tags).
    settings = props.get("settings")
    user_labels = settings.get("userLabels") if isinstance(settings, dict) else None
    for source in (props.get("tags"), props.get("labels"), user_labels):
        if isinstance(source, dict):
            labels |= source
    stack = str(labels.get("stack", ""))
    return stack == "prod" or stack.startswith("prod-")


def database_not_public(typ: str, props: dict) -> list[str]:
    if typ == "aws:rds/instance:Instance" and props.get("publiclyAccessible"):
        return ["RDS instance is publicly accessible"]
    if typ == "gcp:sql/databaseInstance:DatabaseInstance":
        ip = (props.get("settings") or {}).get("ipConfiguration") or {}
        if ip.get("ipv4Enabled", True):
            return ["Cloud SQL instance has a public IPv4 address"]
    return []


def no_open_ssh_or_postgres(typ: str, props: dict) -> list[str]:
    found = []
    if typ == "aws:ec2/securityGroup:SecurityGroup":
        for rule in props.get("ingress") or []:
            cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
            ports = range(int(rule.get("fromPort", 0)), int(rule.get("toPort", 65535)) + 1)
            everything = rule.get("protocol") == "-1"
            for port in (22, 5432):
                if cidrs & OPEN and (everything or port in ports):
                    found.append(f"port {port} is open to {sorted(cidrs & OPEN)}")
    if typ == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        if props.get("cidrIpv4") in OPEN or props.get("cidrIpv6") in OPEN:
            ports = range(int(props.get("fromPort", 0)), int(props.get("toPort", 65535)) + 1)
            found += [f"port {p} is open to the internet" for p in (22, 5432) if p in ports]
    if typ == "gcp:compute/firewall:Firewall" and set(props.get("sourceRanges") or []) & OPEN:
        for allow in props.get("allows") or []:
            ports = allow.get("ports") or []
            for port in ("22", "5432"):
                if not ports or port in ports:
                    found.append(f"port {port} is open to the internet")
    return found


def bucket_not_public(typ: str, props: dict) -> list[str]:
    if typ == "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        off = [k for k in keys if not props.get(k)]
        return [f"public access block leaves {', '.join(off)} off"] if off else []
    if typ == "gcp:storage/bucket:Bucket":
        problems = []
        if props.get("publicAccessPrevention") != "enforced":
            problems.append("public access prevention is not enforced")
        if not props.get("uniformBucketLevelAccess"):
            problems.append("uniform bucket-level access is off")
        return problems
    if typ in ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"):
        if str(props.get("acl", "")).startswith("public"):
            return [f"bucket ACL {props['acl']} is public"]
    return []


def prod_deletion_protection(typ: str, props: dict) -> list[str]:
    if not _is_prod(props):
        return []
    if typ == "aws:rds/instance:Instance":
        problems = []
        if not props.get("deletionProtection"):
            problems.append("prod RDS instance has no deletion protection")
        if props.get("skipFinalSnapshot"):
            problems.append("prod RDS instance skips its final snapshot")
        return problems
    if typ == "gcp:sql/databaseInstance:DatabaseInstance":
        if not (props.get("settings") or {}).get("deletionProtectionEnabled"):
            return ["prod Cloud SQL instance has no deletion protection"]
    if typ in ("aws:s3/bucket:Bucket", "gcp:storage/bucket:Bucket") and props.get("forceDestroy"):
        return ["prod bucket can be force-destroyed"]
    return []


def user_data_text(props: dict) -> str | None:
    """An EC2 instance's user-data as text: `userData`, or `userDataBase64` decoded (and
    gunzipped, as cloud-init does when it starts with gzip's magic); None if it cannot be read."""
    text = props.get("userData") or ""
    encoded = props.get("userDataBase64")
    if not encoded:
        return text
    try:
        raw = base64.b64decode(encoded, validate=True)
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return text + raw.decode("utf-8", "replace")
    except (binascii.Error, OSError, EOFError):
        return None


def no_plaintext_secrets(typ: str, props: dict) -> list[str]:
    if typ == "aws:ec2/instance:Instance":
        text = user_data_text(props)
        if text is None:  # what cannot be read cannot be shown to hold no secret
            return ["user-data cannot be decoded (base64, then gzip) to be checked for secrets"]
        return ["user-data assigns a secret value"] if SECRET_ASSIGNMENT.search(text) else []
    if typ == "gcp:compute/instance:Instance":
        text = (
            (props.get("metadata") or {}).get("user-data")
            or props.get("metadataStartupScript")
            or ""
        )
        return ["user-data assigns a secret value"] if SECRET_ASSIGNMENT.search(text) else []
    if typ in ("aws:s3/bucketObjectv2:BucketObjectv2", "gcp:storage/bucketObject:BucketObject"):
        # The tracking VM's bundle (infra.vm.ServerBundle) is the rest of its user-data.
        content = props.get("content")
        text = content if isinstance(content, str) else ""
        return ["bucket object assigns a secret value"] if SECRET_ASSIGNMENT.search(text) else []
    if typ == "aws:ecs/taskDefinition:TaskDefinition":
        definitions = props.get("containerDefinitions") or "[]"
        containers = json.loads(definitions) if isinstance(definitions, str) else definitions
        return [
            f"container {c.get('name')} has {e['name']} in plain environment"
            for c in containers
            for e in c.get("environment") or []
            if SECRET_ENV.search(e.get("name", ""))
        ]
    if typ == "aws:batch/jobDefinition:JobDefinition":
        properties = props.get("containerProperties") or "{}"
        container = json.loads(properties) if isinstance(properties, str) else properties
        return [
            f"job definition has {e['name']} in plain environment"
            for e in container.get("environment") or []
            if SECRET_ENV.search(e.get("name", ""))
        ]
    if typ in ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job"):
        template = props.get("template") or {}
        template = template.get("template", template)
        return [
            f"{e['name']} is a plain value, not a Secret Manager reference"
            for c in template.get("containers") or []
            for e in c.get("envs") or []
            if SECRET_ENV.search(e.get("name", "")) and "value" in e
        ]
    return []


RULES: dict[str, tuple[str, Callable[[str, dict], list[str]]]] = {
    "database-not-public": (
        "The database is never reachable from the internet.",
        database_not_public,
    ),
    "no-open-ssh-or-postgres": (
        "No SSH or PostgreSQL port open to 0.0.0.0/0.",
        no_open_ssh_or_postgres,
    ),
    "bucket-not-public": ("Artifact buckets block every kind of public access.", bucket_not_public),
    "prod-deletion-protection": (
        "prod databases and buckets survive `pulumi destroy`.",
        prod_deletion_protection,
    ),
    "no-plaintext-secrets": (
        "No secret in user-data or plain container env.",
        no_plaintext_secrets,
    ),
}
