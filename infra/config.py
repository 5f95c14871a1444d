"""The platform stack's configuration, validated before any resource is declared.

Keys live under the `mlops-platform:` namespace in Pulumi.<stack>.yaml. Every stack-dependent choice
has a default per stack kind (dev, staging, prod) that the stack file can override; a bad value
fails with a message naming the key and what is allowed. Tested without Pulumi.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra import alerting
from infra.sleep import SleepSchedule

NAMESPACE = "mlops-platform"
# Read as a Pulumi secret by the program, never validated or held here.
SECRET_KEYS = ("adminPassword",)
STACK_KINDS = ("dev", "staging", "prod")


class ConfigError(ValueError):
    """Invalid stack configuration; the message names the key(s)."""


def stack_kind(stack: str) -> str:
    """dev, staging or prod: the stack name itself, or its prefix (e.g. "dev-alice" -> dev)."""
    for kind in STACK_KINDS:
        if stack == kind or stack.startswith(f"{kind}-"):
            return kind
    raise ConfigError(
        f"stack name {stack!r}: must be one of {', '.join(STACK_KINDS)}, "
        "or start with one of them and a dash (e.g. dev-alice)"
    )


# Per stack kind: the sizes and protections a stack gets unless its file says otherwise.
# Sizes are per cloud: SIZES[cloud][kind] overrides these for instanceType and dbInstanceClass.
DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {
        "dbAllocatedStorageGb": 20,
        "backupRetentionDays": 1,
        "multiAz": False,
        "protect": False,
        "logRetentionDays": 7,
    },
    "staging": {
        "dbAllocatedStorageGb": 20,
        "backupRetentionDays": 7,
        "multiAz": False,
        "protect": False,
        "logRetentionDays": 30,
    },
    "prod": {
        "dbAllocatedStorageGb": 50,
        "backupRetentionDays": 14,
        "multiAz": True,
        "protect": True,
        "logRetentionDays": 90,
    },
}


SIZES: dict[str, dict[str, dict[str, str]]] = {
    "aws": {
        "dev": {"instanceType": "t3.small", "dbInstanceClass": "db.t4g.micro"},
        "staging": {"instanceType": "t3.medium", "dbInstanceClass": "db.t4g.small"},
        "prod": {"instanceType": "t3.large", "dbInstanceClass": "db.t4g.medium"},
    },
    "gcp": {
        "dev": {"instanceType": "e2-small", "dbInstanceClass": "db-g1-small"},
        "staging": {"instanceType": "e2-medium", "dbInstanceClass": "db-custom-1-3840"},
        "prod": {"instanceType": "e2-standard-2", "dbInstanceClass": "db-custom-2-7680"},
    },
}
# The managed database's default max_connections, which bounds the tracking server's pools
# (infra.mlflow_server.pool_for). RDS: LEAST(DBInstanceClassMemory/9531392, 5000), where
# DBInstanceClassMemory is the class's memory less what RDS keeps (observed ~12% less on small
# classes), so 75% of the nominal memory here. Cloud SQL: by the tier's memory, from its quotas
# page (0.6 GB 25, 1.7 GB 50, 3.75-6 GB 100, 6-7.5 GB 200, 7.5-15 GB 400, 15-30 GB 500, 30-60 GB
# 600, 60-120 GB 800, more 1,000). A class not listed needs dbMaxConnections in the stack file.
RDS_MEMORY_GIB = {
    **{f"db.{family}.{size}": gib for family in ("t3", "t4g")
       for size, gib in (("micro", 1), ("small", 2), ("medium", 4), ("large", 8), ("xlarge", 16),
                         ("2xlarge", 32))},
    **{f"db.{family}.{size}": gib for family in ("m5", "m6g", "m6i", "m7g", "m7i")
       for size, gib in (("large", 8), ("xlarge", 16), ("2xlarge", 32), ("4xlarge", 64))},
    **{f"db.{family}.{size}": gib for family in ("r5", "r6g", "r6i", "r7g", "r7i")
       for size, gib in (("large", 16), ("xlarge", 32), ("2xlarge", 64), ("4xlarge", 128))},
}  # fmt: skip
CLOUD_SQL_SHARED = {"db-f1-micro": 25, "db-g1-small": 50}
CLOUD_SQL_BY_MEMORY_GB = ((6, 100), (7.5, 200), (15, 400), (30, 500), (60, 600), (120, 800))


def default_max_connections(cloud: str, db_class: str) -> int | None:
    """The provider's default max_connections for this class or tier; None if not known here."""
    if cloud == "aws":
        gib = RDS_MEMORY_GIB.get(db_class)
        return None if gib is None else min(int(gib * 2**30 * 0.75) // 9531392, 5000)
    if db_class in CLOUD_SQL_SHARED:
        return CLOUD_SQL_SHARED[db_class]
    custom = re.fullmatch(r"db-custom-\d+-(\d+)", db_class)
    if not custom:
        return None
    gb = int(custom[1]) / 1024
    return next((limit for below, limit in CLOUD_SQL_BY_MEMORY_GB if gb < below), 1000)


# The tracking server's memory, measured here (scripts/benchmark_tracking.py and a 16-client run
# at 1, 2 and 4 workers: 529, 816-1,035 and 1,365 MB resident): about 250 MB for the master and
# 280 MB per worker, a quarter more at peaks. The VM keeps SYSTEM_MIB for the OS, the launcher and
# the timers; a stack whose workers would not fit its instance type is a config error.
SERVER_BASE_MIB, SERVER_PER_WORKER_MIB, SERVER_PEAK = 250, 280, 1.25
SYSTEM_MIB = 512
INSTANCE_MEMORY_MIB = {
    **{f"t3.{size}": mib for size, mib in (("micro", 1024), ("small", 2048), ("medium", 4096),
                                           ("large", 8192), ("xlarge", 16384))},
    **{f"t3a.{size}": mib for size, mib in (("small", 2048), ("medium", 4096), ("large", 8192))},
    **{f"m5.{size}": mib for size, mib in (("large", 8192), ("xlarge", 16384))},
    "e2-micro": 1024, "e2-small": 2048, "e2-medium": 4096,
    **{f"e2-standard-{n}": n * 4096 for n in (2, 4, 8)},
}  # fmt: skip


def server_memory_mib(workers: int) -> int:
    return int((SERVER_BASE_MIB + SERVER_PER_WORKER_MIB * workers) * SERVER_PEAK)


# The tracking VM's image, pinned: a lookup by family or `most_recent` would replace the VM (minutes
# down) at the first `up` after each Canonical release. A stack file's vmImage overrides these;
# `scripts/vm-image STACK` prints the newest image and the command that bumps the setting.
PINNED_IMAGES = {
    "aws": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251212",
    "gcp": "ubuntu-2404-noble-amd64-v20251217",
}
# One image, never a pattern: an AMI id or a Canonical AMI name (aws), an image name of
# ubuntu-os-cloud (gcp). Both are x86-64 images: the instance types here are.
IMAGE_SHAPES = {
    "aws": re.compile(
        r"ami-[0-9a-f]{8,17}"
        r"|ubuntu/images/hvm-ssd(?:-gp3)?/ubuntu-[a-z]+-\d\d\.\d\d-amd64-server-\d{8}(?:\.\d+)?"
    ),
    "gcp": re.compile(r"ubuntu-(?:minimal-)?\d{4}-[a-z]+-amd64-v\d{8}[a-z]?"),
}
IMAGE_EXAMPLES = {
    "aws": "ami-0123456789abcdef0, or "
    "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-YYYYMMDD (Canonical's)",
    "gcp": "ubuntu-2404-noble-amd64-vYYYYMMDD (an image of the ubuntu-os-cloud project)",
}

# Size names look different per cloud; a mix-up is caught before anything is declared.
SIZE_PREFIX = {"aws": {"dbInstanceClass": "db."}, "gcp": {"dbInstanceClass": "db-"}}
GCP_REGION_KEYS = ("gcp:project", "gcp:region")
# A fully qualified name Let's Encrypt can issue for: labels of 1-63 characters, a top-level label
# of letters (so never an IP address), 253 characters at most.
DOMAIN = re.compile(r"(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class PlatformConfig(BaseModel):
    """One stack's validated configuration (camelCase keys, as in the stack file)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    stack: str
    kind: Literal["dev", "staging", "prod"]
    cloud: Literal["aws", "gcp"]
    allowedCidrs: tuple[str, ...] = Field(default=())
    """Networks that may reach the MLflow port (besides the services' security group)."""
    vpcCidr: str = "10.40.0.0/16"
    instanceType: str
    """EC2 instance type (aws) or GCE machine type (gcp)."""
    dbInstanceClass: str
    """RDS instance class, db.* (aws), or Cloud SQL tier, db-* (gcp)."""
    dbAllocatedStorageGb: int = Field(ge=20, le=16384)
    dbMaxAllocatedStorageGb: int = Field(default=200, ge=20, le=65536)
    dbEngineVersion: str = "17"
    backupRetentionDays: int = Field(ge=0, le=35)
    multiAz: bool
    """RDS Multi-AZ (aws) / Cloud SQL regional high availability (gcp)."""
    protect: bool
    """Deletion protection, final snapshot, retained bucket. Default: on for prod only."""
    logRetentionDays: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365]
    """Days the tracking server's logs are kept (AWS CloudWatch log groups; GCP: the project's
    _Default bucket keeps them 30 days whatever this says)."""
    noncurrentVersionDays: int = Field(default=30, ge=1, le=3650)
    """Days before old versions of artifacts are deleted."""
    gcDays: int = Field(default=30, ge=1, le=3650)
    """Runs deleted more than this many days ago lose their artifacts and database rows (`mlflow
    gc`, daily on the tracking VM); until then a deleted run can be restored."""
    predictionLogDays: int = Field(default=90, ge=1, le=3650)
    """Days the model API's prediction log (predictions/ in the artifact bucket) is kept; the
    monitor reads the last monitoringDays of it (services stack), so keep it at least that long."""
    scoringOutputDays: int = Field(default=365, ge=1, le=3650)
    """Days the batch scoring job's part files (batch-predictions/ in the artifact bucket, the
    default scoringOutput) are kept."""
    authCacheSeconds: int = Field(default=60, ge=0, le=300)
    """How long a server worker trusts a checked password and what it read of users and grants
    (0: check every request, a password hash each). A change counts at once in the worker that
    made it and in the others within this long: a revoked grant or password works that long."""
    maxRequestBytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024**3)
    """The largest request body the tracking server reads (413 above it, before it is buffered,
    signed in or not); artifact uploads stream and are not bounded by it."""
    aiGateway: bool = False
    """MLflow's AI gateway (LLM endpoints and provider keys kept by the server): nothing in this
    bundle uses it, and any signed-in user could create gateway secrets and endpoints."""
    mlflowWorkers: int = Field(default=2, ge=1, le=8)
    dbMaxConnections: int | None = Field(default=None, ge=25, le=262143)
    """The database's max_connections, when not the provider's default for dbInstanceClass (a
    parameter group or database flag of yours), or for a class not in infra.config's table. The
    tracking server's connection pools are sized to fit it."""
    mlflowPort: int = Field(default=5000, ge=1024, le=65535)
    trackingReplicas: int = Field(default=1, ge=1, le=10)
    """Tracking servers. 1: one VM holding the static address (a change replaces it: minutes
    down). 2 or more: replicas behind a network load balancer holding the address, replaced one
    at a time (docs/operations.md#replicas)."""
    alertEmail: str | None = None
    """Where the platform's alerts go (the database's CPU and storage): an email address (AWS: an
    SNS subscription to confirm from the mail; GCP: a notification channel). Neither this nor
    alertWebhook: no alerts (said at `pulumi up`)."""
    alertWebhook: str | None = None
    """Also or instead: an https:// URL (an SNS subscription the endpoint confirms; a webhook
    notification channel)."""
    monthlyBudget: float | None = Field(default=None, gt=0, le=1_000_000)
    """A monthly budget in USD for everything tagged (AWS) or in the project (GCP) of this stack,
    alerting at 80% and 100% of it, actual and forecast (by alertEmail; on GCP also the
    billing account's admins)."""
    billingAccount: str | None = Field(
        default=None, pattern=r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$"
    )
    """GCP: the billing account (XXXXXX-XXXXXX-XXXXXX) a monthlyBudget is made on."""
    sleepSchedule: SleepSchedule | None = None
    """dev and staging: stop the tracking VM and the database at night, start them in the
    morning (infra.sleep; set it alike on the service stack)."""
    schedulerRegion: str | None = Field(default=None, pattern=r"^[a-z]+-[a-z]+[0-9]+$")
    """gcp, with sleepSchedule: where its Cloud Scheduler jobs live (default: gcp:region; Cloud
    Scheduler is not offered in every region)."""
    adminUsername: str = Field(default="admin", pattern=r"^[a-z][a-z0-9_-]{2,31}$")
    domain: str | None = None
    """A DNS name of yours for the tracking server (e.g. mlflow.example.com): a Let's Encrypt
    certificate for it instead of the stack's CA, renewed on the VM. Its A record (the staticIp
    output) is yours to create; inside the network the stack resolves it to the private address."""
    vmImage: str | None = None
    """The tracking VM's image: an AMI id or Canonical AMI name (aws), an ubuntu-os-cloud image
    name (gcp). Default: infra.config.PINNED_IMAGES. A new value replaces the VM at the next `up`
    (minutes down); `scripts/vm-image STACK` prints the newest image and the bump command."""
    zone: str | None = None
    """gcp: the VM's zone (default: the region's first zone that is UP, looked up)."""
    gcpProject: str | None = Field(default=None, exclude=True)
    gcpRegion: str | None = Field(default=None, exclude=True)

    @field_validator("allowedCidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(
                    f"{cidr!r} is not a CIDR block like 203.0.113.0/24 ({exc})"
                ) from exc
            if net.prefixlen == 0:
                raise ValueError(
                    f"{cidr} would open the tracking server to the whole internet; "
                    "list the networks of your team and CI instead"
                )
        return value

    _alert_email = field_validator("alertEmail")(staticmethod(alerting.email))
    _alert_webhook = field_validator("alertWebhook")(staticmethod(alerting.webhook))

    @field_validator("adminUsername")
    @classmethod
    def _admin(cls, value: str) -> str:
        from infra.mlflow_server import IDENTITIES

        taken = [i.username for i in IDENTITIES]
        if value in taken:
            raise ValueError(f"{value!r} is a workload user's name; not one of {', '.join(taken)}")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not DOMAIN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a DNS name like mlflow.example.com (lowercase letters, digits "
                "and dashes, two labels or more, no trailing dot, no IP address)"
            )
        return value

    @field_validator("vpcCidr")
    @classmethod
    def _vpc(cls, value: str) -> str:
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR block ({exc})") from exc
        if not net.is_private or not 16 <= net.prefixlen <= 20:
            raise ValueError(f"{value} must be a private range from /16 to /20")
        return value

    @field_validator("dbEngineVersion", mode="before")
    @classmethod
    def _engine(cls, value: object) -> str:
        value = str(value)  # `dbEngineVersion: 17` in YAML arrives as a number
        if value.split(".")[0] not in ("16", "17"):
            raise ValueError(f"PostgreSQL {value}: supported major versions are 16 and 17")
        return value

    @property
    def vm_image(self) -> str:
        return self.vmImage or PINNED_IMAGES[self.cloud]

    def check_cloud(self) -> None:
        if self.vmImage and not IMAGE_SHAPES[self.cloud].fullmatch(self.vmImage):
            raise ConfigError(
                f"{NAMESPACE}:vmImage: {self.vmImage!r} is not one {self.cloud} image; allowed: "
                f"{IMAGE_EXAMPLES[self.cloud]} (no wildcards: the image is pinned; "
                "scripts/vm-image prints the newest)"
            )
        for key, prefix in SIZE_PREFIX[self.cloud].items():
            if not getattr(self, key).startswith(prefix):
                raise ConfigError(
                    f"{NAMESPACE}:{key}: {getattr(self, key)!r} is not a {self.cloud} size; "
                    f"allowed: names starting with {prefix!r} (e.g. {SIZES[self.cloud][self.kind][key]})"
                )
        if self.cloud == "gcp":
            for key, value in (("gcp:project", self.gcpProject), ("gcp:region", self.gcpRegion)):
                if not value:
                    raise ConfigError(
                        f"{key} is required when {NAMESPACE}:cloud is gcp "
                        f"(pulumi config set {key} ...)"
                    )
            if self.zone and not self.zone.startswith(f"{self.gcpRegion}-"):
                raise ConfigError(
                    f"{NAMESPACE}:zone: {self.zone} is not in gcp:region {self.gcpRegion}; "
                    f"allowed: {self.gcpRegion}-a, {self.gcpRegion}-b, ..."
                )
        elif self.zone:
            raise ConfigError(
                f"{NAMESPACE}:zone applies to gcp only; on aws the zones are looked up"
            )
        if self.monthlyBudget and self.cloud == "gcp" and not self.billingAccount:
            raise ConfigError(
                f"{NAMESPACE}:billingAccount is required with monthlyBudget on gcp: the billing "
                "account the budget is made on (XXXXXX-XXXXXX-XXXXXX)"
            )
        if self.billingAccount and self.cloud == "aws":
            raise ConfigError(f"{NAMESPACE}:billingAccount applies to gcp only")
        if self.domain and self.trackingReplicas > 1:
            # Each VM obtains Let's Encrypt's certificate for itself, by an HTTP-01 challenge a
            # load balancer would send to any one of them.
            raise ConfigError(
                f"{NAMESPACE}:trackingReplicas: {self.trackingReplicas} with a domain is not "
                "supported (each server obtains its Let's Encrypt certificate itself); allowed "
                "with a domain: 1"
            )
        if self.sleepSchedule and self.trackingReplicas > 1:
            raise ConfigError(
                f"{NAMESPACE}:sleepSchedule: a night for replicated servers is not supported "
                "(it stops one VM); allowed with trackingReplicas: 1"
            )
        if self.schedulerRegion and self.cloud == "aws":
            raise ConfigError(f"{NAMESPACE}:schedulerRegion applies to gcp only")

    @property
    def max_connections(self) -> int:
        """The database's max_connections: dbMaxConnections, else the class's default."""
        found = self.dbMaxConnections or default_max_connections(self.cloud, self.dbInstanceClass)
        if found is None:
            raise ConfigError(
                f"{NAMESPACE}:dbMaxConnections: required for dbInstanceClass "
                f"{self.dbInstanceClass!r}, whose max_connections is not known here; set it to "
                "the database's `SHOW max_connections` (allowed: 25-262143)"
            )
        return found

    def check_connections(self) -> None:
        """The tracking server's worst case fits the database (infra.mlflow_server.pool_for)."""
        from infra.mlflow_server import ServerConfigError, pool_for

        try:
            pool_for(self.max_connections, self.mlflowWorkers, self.servers_at_once)
        except ServerConfigError as exc:
            replicas = (
                f", trackingReplicas {self.trackingReplicas}" if self.trackingReplicas > 1 else ""
            )
            raise ConfigError(
                f"{NAMESPACE}:mlflowWorkers: {exc} (dbInstanceClass {self.dbInstanceClass}"
                f"{replicas})"
            ) from None

    @property
    def servers_at_once(self) -> int:
        """Servers sharing the database at worst: one (replaced after the old one is gone), or
        the replicas and those a rolling update adds before it removes one: one on AWS, one per
        zone (two) on GCP, a regional group's least surge."""
        if self.trackingReplicas == 1:
            return 1
        return self.trackingReplicas + (2 if self.cloud == "gcp" else 1)

    def check_memory(self) -> None:
        """The server's workers fit the VM (measured per worker; types not in the table are not
        checked)."""
        total = INSTANCE_MEMORY_MIB.get(self.instanceType)
        if total is None or server_memory_mib(self.mlflowWorkers) <= total - SYSTEM_MIB:
            return
        fits = [w for w in range(1, 9) if server_memory_mib(w) <= total - SYSTEM_MIB]
        if not fits:
            raise ConfigError(
                f"{NAMESPACE}:instanceType: {self.instanceType} ({total} MB) is too small for "
                f"the tracking server (one worker needs about {server_memory_mib(1)} MB)"
            )
        raise ConfigError(
            f"{NAMESPACE}:mlflowWorkers: {self.mlflowWorkers} workers need about "
            f"{server_memory_mib(self.mlflowWorkers)} MB ({SERVER_BASE_MIB} MB + "
            f"{SERVER_PER_WORKER_MIB} MB per worker, +25% at peaks) and instanceType "
            f"{self.instanceType} has {total} MB with {SYSTEM_MIB} MB kept for the system; "
            f"allowed here: 1-{fits[-1]} workers, or a larger instanceType"
        )

    def check_protection(self) -> None:
        if self.kind == "prod" and self.sleepSchedule:
            raise ConfigError(
                f"{NAMESPACE}:sleepSchedule: prod stacks stay up; allowed on dev and staging"
            )
        if self.kind == "prod" and not self.protect:
            raise ConfigError(
                f"{NAMESPACE}:protect: prod stacks must keep protection on (got false); "
                "allowed: true"
            )
        if self.kind == "prod" and self.backupRetentionDays < 7:
            raise ConfigError(
                f"{NAMESPACE}:backupRetentionDays: prod keeps backups at least 7 days "
                f"(got {self.backupRetentionDays}); allowed: 7-35"
            )


def decode(value: Any) -> Any:
    # Pulumi hands structured config values (lists, numbers, booleans) over as JSON text.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load(raw: dict[str, Any], stack: str) -> PlatformConfig:
    """Validate `raw` (keys with or without the namespace) for `stack`."""
    kind = stack_kind(stack)
    values: dict[str, Any] = {}
    gcp = {k: raw[k] for k in GCP_REGION_KEYS if raw.get(k)}
    for key, value in raw.items():
        name = key.split(":", 1)[1] if key.startswith(f"{NAMESPACE}:") else key
        if ":" in name or name in SECRET_KEYS:
            continue  # another namespace (aws:region, gcp:project, ...) or a secret
        values[name] = decode(value)
    if "cloud" not in values:
        raise ConfigError(f"{NAMESPACE}:cloud is required; allowed: aws, gcp")
    for derived in ("stack", "kind", "gcpProject", "gcpRegion"):
        if derived in values:
            raise ConfigError(
                f"{NAMESPACE}:{derived} is not a setting (it comes from the stack name or "
                "gcp:project/gcp:region); remove it"
            )
    cloud = values["cloud"] if values["cloud"] in SIZES else "aws"
    try:
        config = PlatformConfig(
            **{**DEFAULTS[kind], **SIZES[cloud][kind], **values},
            stack=stack,
            kind=kind,
            gcpProject=gcp.get("gcp:project"),
            gcpRegion=gcp.get("gcp:region"),
        )
    except ValidationError as exc:
        raise ConfigError(
            explain(exc, NAMESPACE, PlatformConfig, {"stack", "kind", "gcpProject", "gcpRegion"})
        ) from None
    config.check_cloud()
    config.check_protection()
    config.check_connections()
    config.check_memory()
    return config


def explain(exc: ValidationError, namespace: str, model: type[BaseModel], hidden: set[str]) -> str:
    """Pydantic's errors as one line per key: `namespace:key: what is wrong / what is allowed`."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(set(model.model_fields) - hidden))
            msg = f"unknown key; allowed keys: {allowed}"
        lines.append(f"{namespace}:{key}: {msg}")
    return "invalid stack configuration:\n  " + "\n  ".join(lines)


def from_pulumi() -> PlatformConfig:
    """Read this stack's config from the Pulumi engine (explicit config and PULUMI_CONFIG)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    mine = {k: v for k, v in raw.items() if k.startswith(f"{NAMESPACE}:") or k in GCP_REGION_KEYS}
    return load(mine, pulumi.get_stack())
