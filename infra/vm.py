"""The tracking VM's bootstrap, for AWS and GCP: a small user-data and one bundle of files.

The user-data is a cloud-config document that carries only the fetcher (infra/vm_fetch_bundle.py,
as in the repository) and the name and sha256 of the server's bundle, which the platform program
uploads to the artifact bucket (ServerBundle: one JSON object named by its sha256). At first boot
the fetcher reads it through the VM's own identity, checks its sha256 and writes its files: the
server's spec rendered by infra.mlflow_server (argv and non-secret env), the units, the
environment's requirements from uv.lock (infra.vm_requirements: every package pinned and
hash-checked), the launcher and the MLflow plugin; then the bootstrap script (infra/vm_bootstrap.sh)
installs the log agent, uv (its wheel checked against the lock), Python 3.11 and that environment
and starts the server under a systemd unit with Restart=always. A step that fails is retried, and
one that keeps failing stops the bootstrap with a line on the serial console (see scripts/smoke)
before the server is ever enabled. Neither carries a secret value: the launcher fetches the
secrets at every start through the VM's identity.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.mlflow_server import (
    IDENTITIES,
    ServerSettings,
    database_uri,
    render,
    site_files,
)
from infra.vm_paths import (
    ACME_DIR,
    ACME_HOOK_PATH,
    ACME_HOOK_SOURCE,
    AUTH_INI_PATH,
    BACKUP_PATH,
    BACKUP_SOURCE,
    BOOTSTRAP_ENV,
    BOOTSTRAP_LOG,
    BOOTSTRAP_PATH,
    BOOTSTRAP_SOURCE,
    BOOTSTRAP_STATUS,
    BUNDLE_PREFIX,
    DB_CA_PATH,
    FETCH_PATH,
    FETCH_SOURCE,
    LAUNCHER_PATH,
    LAUNCHER_SOURCE,
    PREFIX,
    REQUIREMENTS_PATH,
    SERVER_LOG,
    SITE_DIR,
    SPEC_PATH,
    TLS_CERT_PATH,
    TLS_KEY_PATH,
    TRACKING_CA_PATH,
    VENV,
)
from infra.vm_requirements import PYTHON, installer, requirements
from infra.vm_units import (
    GC_SERVICE,
    GC_TIMER,
    LOGROTATE,
    REFRESH_SERVICE,
    REFRESH_TIMER,
    SYSTEMD_UNIT,
    TLS_SERVICE,
    TLS_TIMER,
    acme_units,
)

USER_DATA_LIMIT = 8 * 1024
"""What the user-data may grow to: half of EC2's 16 KB (raw, before base64), uncompressed, so
the fetcher keeps its comments and docstrings and the VM runs the repository's text."""


@dataclass(frozen=True)
class SecretSource:
    """Where the launcher finds the secrets (ARNs on AWS, secret names on GCP)."""

    provider: str
    db_secret: str
    admin_secret: str
    tls_key_secret: str
    identity_secrets: dict[str, str]
    """username -> the secret holding that workload user's password."""
    region: str | None = None

    def __post_init__(self) -> None:
        if set(self.identity_secrets) != {i.username for i in IDENTITIES}:
            raise ValueError(f"identity_secrets must name {[i.username for i in IDENTITIES]}")

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "dbSecret": self.db_secret,
            "adminSecret": self.admin_secret,
            "tlsKeySecret": self.tls_key_secret,
            "identitySecrets": self.identity_secrets,
            "region": self.region,
        }


def server_spec(
    settings: ServerSettings,
    secrets: SecretSource,
    domain: str | None = None,
    backups: dict | None = None,
) -> dict:
    """Everything the launcher needs, none of it secret. `backups`: where the launcher backs the
    databases up before a migration ({"bucketUrl", "region", "rdsInstance"}: infra.db_backup)."""
    command = render(settings)
    return {
        "argv": command.argv,
        "env": command.env,
        "authIni": command.auth_ini,
        "secrets": secrets.as_dict(),
        "tls": {
            "certfile": settings.tls_certfile,
            "keyfile": settings.tls_keyfile,
            # Let's Encrypt's certificate, preferred once the hook has put it there.
            "acmeDir": ACME_DIR if domain else None,
            "domain": domain,
        },
        "identities": [identity.as_dict() for identity in IDENTITIES],
        "database": {
            "host": settings.db_host,
            "port": settings.db_port,
            "name": settings.db_name,
            "authName": settings.auth_db_name,
            "user": settings.db_user,
            "sslmode": settings.db_sslmode,
            "sslrootcert": settings.db_sslrootcert,
            "backendUri": database_uri(settings, settings.db_name),
            "authUri": database_uri(settings, settings.auth_db_name),
        },
        "backups": backups,
    }


def private_host_pattern(vpc_cidr: str) -> str:
    """An --allowed-hosts wildcard for the VPC's private addresses (e.g. 10.40.*)."""
    first_two = str(ipaddress.ip_network(vpc_cidr).network_address).split(".")[:2]
    return ".".join(first_two) + ".*"


def allowed_hosts(cfg, public_ip: str) -> tuple[str, ...]:
    """The Host headers the VM's server accepts: its static IP, its private addresses, and the
    domain when there is one (with and without the port)."""
    names = [public_ip, *([cfg.domain] if cfg.domain else [])]
    return (
        *(f"{n}:{cfg.mlflowPort}" for n in names),
        *names,
        private_host_pattern(cfg.vpcCidr),
    )


@dataclass(frozen=True)
class LogShipping:
    """Where the VM's log agent sends the server's and the bootstrap's logs: CloudWatch log
    groups `<group>/server` and `<group>/bootstrap` (aws), or Cloud Logging logs (gcp)."""

    provider: str
    group: str  # aws: the log groups' prefix, e.g. /mlflow/dev

    def config_path(self) -> str:
        return (
            "/etc/mlflow/log-agent.json" if self.provider == "aws" else "/etc/mlflow/ops-agent.yaml"
        )

    def config(self) -> str:
        if self.provider == "aws":
            files = [
                {"file_path": SERVER_LOG, "log_group_name": f"{self.group}/server",
                 "log_stream_name": "{instance_id}"},
                {"file_path": BOOTSTRAP_LOG, "log_group_name": f"{self.group}/bootstrap",
                 "log_stream_name": "{instance_id}"},
            ]  # fmt: skip
            return json.dumps({"logs": {"logs_collected": {"files": {"collect_list": files}}}})
        receivers = {
            "mlflow_server": {"type": "files", "include_paths": [SERVER_LOG]},
            "mlflow_bootstrap": {"type": "files", "include_paths": [BOOTSTRAP_LOG]},
        }
        pipelines = {"mlflow": {"receivers": list(receivers)}}
        return yaml.safe_dump(
            {"logging": {"receivers": receivers, "service": {"pipelines": pipelines}}},
            sort_keys=False,
        )

    def bootstrap_env(self) -> dict[str, str]:
        """What vm_bootstrap.sh needs to install and start this cloud's agent."""
        if self.provider == "aws":
            return {
                "CLOUDWATCH_AGENT_DEB": CLOUDWATCH_AGENT_DEB,
                "CLOUDWATCH_AGENT_CTL": CLOUDWATCH_AGENT_CTL,
            }
        return {"OPS_AGENT_SCRIPT": OPS_AGENT_SCRIPT, "OPS_AGENT_CONFIG": OPS_AGENT_CONFIG}


CLOUDWATCH_AGENT_DEB = "https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb"
CLOUDWATCH_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
OPS_AGENT_SCRIPT = "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"
OPS_AGENT_CONFIG = "/etc/google-cloud-ops-agent/config.yaml"


@dataclass(frozen=True)
class DatabaseCa:
    """The database's CA, for DB_CA_PATH: its PEM (in the server's bundle), or an HTTPS URL the
    VM fetches it from at boot (AWS's bundle of every region's RDS CAs, which AWS publishes)."""

    pem: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.pem is None) == (self.url is None):
            raise ValueError("DatabaseCa takes a pem or an https url, one of them")
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError(f"DatabaseCa url must be https, got {self.url!r}")


@dataclass(frozen=True)
class ServerBundle:
    """Every file the VM needs but the fetcher, as one JSON text: {"files": {absolute path:
    {"mode": "0644", "text": ...}}}: the stack's settings (the server's spec, the bootstrap's
    parameters, the CAs, the log agent's configuration) and the repository's files as they are
    (the bootstrap script, the lock's requirements, the units, the launcher, the MLflow plugin).
    Its key in the bucket is named by its sha256, which the user-data carries: a changed bundle is
    a new object and a new user-data (a new VM)."""

    text: str

    @classmethod
    def of(cls, files: list[tuple[str, str, str]]) -> ServerBundle:
        """The bundle of (path, mode, text) files, the same text for the same files."""
        entries = {path: {"mode": mode, "text": text} for path, mode, text in files}
        if len(entries) != len(files):
            raise ValueError("two files of the bundle have the same path")
        return cls(json.dumps({"files": entries}, sort_keys=True, indent=1) + "\n")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def key(self) -> str:
        return f"{BUNDLE_PREFIX}/{self.sha256}.json"

    def files(self) -> dict[str, str]:
        """Path -> text."""
        return {path: entry["text"] for path, entry in json.loads(self.text)["files"].items()}

    def modes(self) -> dict[str, str]:
        return {path: entry["mode"] for path, entry in json.loads(self.text)["files"].items()}


def code_files() -> list[tuple[str, str, str]]:
    """The repository's code the server runs, byte for byte: the launcher, the backup module it
    imports, and the MLflow plugin (mlops_auth and its dist-info) on the server's PYTHONPATH."""
    return [
        (LAUNCHER_PATH, "0644", LAUNCHER_SOURCE.read_text()),
        (BACKUP_PATH, "0644", BACKUP_SOURCE.read_text()),
        *((f"{SITE_DIR}/{name}", "0644", text) for name, text in site_files().items()),
    ]


def server_bundle(
    settings: ServerSettings,
    secrets: SecretSource,
    db_ca: DatabaseCa,
    logs: LogShipping,
    bucket_url: str,
    domain: str | None = None,
    rds_instance: str | None = None,
    *,
    tracking_ca_pem: str,
    gc_days: int,
    private_ip: str,
) -> ServerBundle:
    """The tracking VM's files (the same for both clouds but the log agent and the lock's
    group). The server's key and certificate stay in the secret store until the launcher runs
    (a renewed certificate is a new secret version, never a new VM: the mlflow-tls timer restarts
    the server for it). With a `domain`, the VM also keeps a Let's Encrypt certificate for it
    (acme_units). Before a migration the launcher backs the databases up to `bucket_url`
    (s3://bucket or gs://bucket), and on AWS also snapshots `rds_instance` (infra.db_backup). A
    daily timer runs `mlflow gc` for runs deleted more than `gc_days` ago, through the server at
    `private_ip` (or the domain), verified with `tracking_ca_pem`."""
    if settings.mlflow_bin != f"{VENV}/bin/mlflow":
        raise ValueError(f"settings.mlflow_bin must be {VENV}/bin/mlflow on the VM")
    if settings.site_dir != SITE_DIR:
        raise ValueError(f"settings.site_dir must be {SITE_DIR} on the VM")
    if settings.auth_config_path != AUTH_INI_PATH:
        raise ValueError(f"settings.auth_config_path must be {AUTH_INI_PATH} on the VM")
    if settings.db_sslrootcert != DB_CA_PATH or settings.db_sslmode not in (
        "verify-ca",
        "verify-full",
    ):
        raise ValueError(f"the VM verifies the database: db_sslrootcert {DB_CA_PATH}, verify-*")
    if (settings.tls_certfile, settings.tls_keyfile) != (TLS_CERT_PATH, TLS_KEY_PATH):
        raise ValueError(f"the VM's TLS files are {TLS_CERT_PATH} and {TLS_KEY_PATH}")
    if secrets.provider != logs.provider:
        raise ValueError(f"secrets from {secrets.provider} but logs to {logs.provider}")
    if domain and domain not in settings.allowed_hosts:
        raise ValueError(f"settings.allowed_hosts must include the domain {domain}")
    check_bucket_url(bucket_url, secrets.provider)
    backups = {"bucketUrl": bucket_url, "region": secrets.region, "rdsInstance": rds_instance}
    spec = server_spec(settings, secrets, domain, backups)
    spec["gc"] = {
        "olderThanDays": gc_days,
        "trackingUri": f"https://{domain or private_ip}:{settings.port}",
        "caPath": None if domain else TRACKING_CA_PATH,
    }
    acme = []
    if domain:
        service, timer = acme_units(domain)
        acme = [
            (ACME_HOOK_PATH, "0755", ACME_HOOK_SOURCE.read_text()),
            ("/etc/systemd/system/mlflow-acme.service", "0644", service),
            ("/etc/systemd/system/mlflow-acme.timer", "0644", timer),
        ]
    return ServerBundle.of([
        (SPEC_PATH, "0644", json.dumps(spec, indent=2) + "\n"),
        (BOOTSTRAP_PATH, "0755", BOOTSTRAP_SOURCE.read_text()),
        (BOOTSTRAP_ENV, "0644", bootstrap_env(db_ca, logs, acme=bool(domain))),
        (REQUIREMENTS_PATH, "0644", requirements(f"server-{secrets.provider}")),
        ("/etc/systemd/system/mlflow.service", "0644", SYSTEMD_UNIT),
        ("/etc/systemd/system/mlflow-db-password.service", "0644", REFRESH_SERVICE),
        ("/etc/systemd/system/mlflow-db-password.timer", "0644", REFRESH_TIMER),
        ("/etc/systemd/system/mlflow-gc.service", "0644", GC_SERVICE),
        ("/etc/systemd/system/mlflow-gc.timer", "0644", GC_TIMER),
        ("/etc/systemd/system/mlflow-tls.service", "0644", TLS_SERVICE),
        ("/etc/systemd/system/mlflow-tls.timer", "0644", TLS_TIMER),
        (TRACKING_CA_PATH, "0644", tracking_ca_pem),
        *([(DB_CA_PATH, "0644", db_ca.pem)] if db_ca.pem else []),
        (logs.config_path(), "0644", logs.config()),
        ("/etc/logrotate.d/mlflow", "0644", LOGROTATE),
        *acme,
        *code_files(),
    ])  # fmt: skip


def check_bucket_url(bucket_url: str, provider: str) -> None:
    scheme = {"aws": "s3://", "gcp": "gs://"}[provider]
    if not bucket_url.startswith(scheme) or "/" in bucket_url[len(scheme) :].strip("/"):
        raise ValueError(f"bucket_url must be {scheme}<bucket>, got {bucket_url!r}")


FETCH_END = "END_OF_FETCH_BUNDLE_PY"
"""The here-document's delimiter around the fetcher in the user-data."""


def user_data(bucket_url: str, bundle_key: str, bundle_sha256: str, region: str | None) -> str:
    """The tracking VM's user-data, the same for both clouds: a shell script cloud-init runs once,
    as root, at first boot. It writes the fetcher as in the repository, which fetches the bundle
    at `bucket_url`/`bundle_key` (s3://bucket or gs://bucket), checks it against `bundle_sha256`
    and writes its files; then the bundle's bootstrap script installs and starts the server."""
    check_bucket_url(bucket_url, "aws" if bucket_url.startswith("s3://") else "gcp")
    if len(bundle_sha256) != 64 or bundle_key != f"{BUNDLE_PREFIX}/{bundle_sha256}.json":
        raise ValueError(f"the bundle's key must be {BUNDLE_PREFIX}/<its sha256>.json")
    fetcher = FETCH_SOURCE.read_text()
    if FETCH_END in fetcher.splitlines():
        raise ValueError(f"the fetcher holds a line {FETCH_END}, which would end it early")
    fetch = ["python3", FETCH_PATH, f"{bucket_url.rstrip('/')}/{bundle_key}", bundle_sha256]
    text = f"""\
#!/bin/sh
# The tracking VM's user-data (infra/vm.py): the fetcher, then the bundle's bootstrap. The fetcher
# writes its own verdict line when it fails, and the bootstrap one for each of its steps.
set -eu
mkdir -p {PREFIX}
cat >{FETCH_PATH} <<'{FETCH_END}'
{fetcher}{FETCH_END}
{shlex.join(fetch + ([region] if region else []))}
exec bash {BOOTSTRAP_PATH} {BOOTSTRAP_ENV}
"""
    if len(text.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user-data is {len(text.encode())} bytes, over {USER_DATA_LIMIT}")
    return text


def bootstrap_env(
    db_ca: DatabaseCa, logs: LogShipping, acme: bool = False, **overrides: str
) -> str:
    """vm_bootstrap.sh's parameters as shell assignments (a test runs it with other paths)."""
    uv = installer()
    algorithm, digest = uv.hashes[0].split(":", 1)
    if algorithm != "sha256":
        raise ValueError(f"uv.lock gives uv a {algorithm} hash; the bootstrap checks sha256")
    values = {
        "PREFIX": PREFIX,
        "VENV": VENV,
        "REQUIREMENTS": REQUIREMENTS_PATH,
        "PYTHON_VERSION": PYTHON,
        "UV_WHEEL_URL": uv.wheel_url,
        "UV_WHEEL_SHA256": digest,
        "DB_CA_URL": db_ca.url or "",
        "DB_CA_PATH": DB_CA_PATH,
        "LOG_AGENT": logs.provider,
        "LOG_AGENT_CONFIG": logs.config_path(),
        **logs.bootstrap_env(),
        "LOG_DIR": str(Path(SERVER_LOG).parent),
        "SERVICE_USER": "mlflow",
        "APT_RETRIES_CONF": "/etc/apt/apt.conf.d/80mlflow-retries",
        "STATUS_FILE": BOOTSTRAP_STATUS,
        "CONSOLE": "/dev/console",  # the serial console: EC2 / GCE return it through their APIs
        "BOOTSTRAP_LOG": BOOTSTRAP_LOG,
        # "yes": install certbot and start mlflow-acme.timer (a domain's certificate).
        "ACME": "yes" if acme else "",
        **overrides,
    }
    header = (
        "# Sourced by vm_bootstrap.sh (rendered by infra/vm.py).\n# shellcheck disable=SC2034\n"
    )
    return header + "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
