"""The tracking VM's bootstrap: one cloud-init document for AWS and GCP.

It installs a virtualenv with pinned `mlflow[auth]`, `psycopg2-binary` and the cloud SDK, writes the
server spec rendered by infra.mlflow_server (argv and non-secret env) and the launcher, and runs
them under a systemd unit with Restart=always. It carries no secret value: the launcher fetches the
secrets at every start through the VM's identity.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from infra.mlflow_server import ServerSettings, database_uri, render

PREFIX = "/opt/mlflow"
VENV = f"{PREFIX}/venv"
SPEC_PATH = "/etc/mlflow/server.json"
LAUNCHER_PATH = f"{PREFIX}/vm_launcher.py"
AUTH_INI_PATH = "/run/mlflow/basic_auth.ini"
DB_CA_PATH = "/etc/mlflow/db-ca.pem"
SERVER_LOG = "/var/log/mlflow/server.log"
BOOTSTRAP_LOG = "/var/log/cloud-init-output.log"
"""The CA that verifies the database's certificate: written from user-data, or fetched at boot."""
LAUNCHER_SOURCE = Path(__file__).with_name("vm_launcher.py")


@dataclass(frozen=True)
class SecretSource:
    """Where the launcher finds the secrets (ARNs on AWS, secret names on GCP)."""

    provider: str
    db_secret: str
    admin_secret: str
    region: str | None = None

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "dbSecret": self.db_secret,
            "adminSecret": self.admin_secret,
            "region": self.region,
        }


def server_spec(settings: ServerSettings, secrets: SecretSource) -> dict:
    """Everything the launcher needs, none of it secret."""
    command = render(settings)
    return {
        "argv": command.argv,
        "env": command.env,
        "authIni": command.auth_ini,
        "secrets": secrets.as_dict(),
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
    }


def private_host_pattern(vpc_cidr: str) -> str:
    """An --allowed-hosts wildcard for the VPC's private addresses (e.g. 10.40.*)."""
    first_two = str(ipaddress.ip_network(vpc_cidr).network_address).split(".")[:2]
    return ".".join(first_two) + ".*"


def pinned(*names: str) -> list[str]:
    """Requirement pins from this environment, so the VM runs the server the clients were tested
    with (mlflow[auth] gets the auth extra's dependencies)."""
    pins = []
    for name in names:
        extra = "[auth]" if name == "mlflow" else ""
        pins.append(f"{name}{extra}=={metadata.version(name)}")
    return pins


SYSTEMD_UNIT = f"""\
[Unit]
Description=MLflow tracking server
Wants=network-online.target
After=network-online.target

[Service]
User=mlflow
Group=mlflow
ExecStart={VENV}/bin/python {LAUNCHER_PATH} {SPEC_PATH}
Restart=always
RestartSec=5
RuntimeDirectory=mlflow
RuntimeDirectoryMode=0700
StateDirectory=mlflow
LogsDirectory=mlflow
# A file the log agent ships (the CloudWatch agent does not read the journal).
StandardOutput=append:{SERVER_LOG}
StandardError=inherit
WorkingDirectory=/var/lib/mlflow
Environment=HOME=/var/lib/mlflow
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""


LOGROTATE = f"""\
{SERVER_LOG} {{
    daily
    rotate 7
    compress
    missingok
    notifempty
    copytruncate
}}
"""


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

    def install(self) -> list[list[str]]:
        """runcmd steps that install and start the agent (first: the bootstrap's own log too)."""
        fetch = ["curl", "--fail", "--silent", "--show-error", "--location", "--retry", "5",
                 "--retry-all-errors", "--output"]  # fmt: skip
        if self.provider == "aws":
            deb = f"{PREFIX}/amazon-cloudwatch-agent.deb"  # root-owned, unlike /tmp
            return [
                [*fetch, deb, CLOUDWATCH_AGENT_DEB],
                ["dpkg", "-i", "-E", deb],
                ["/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl", "-a",
                 "fetch-config", "-m", "ec2", "-s", "-c", f"file:{self.config_path()}"],
            ]  # fmt: skip
        script = f"{PREFIX}/add-google-cloud-ops-agent-repo.sh"
        return [
            [*fetch, script, OPS_AGENT_SCRIPT],
            ["bash", script, "--also-install"],
            ["cp", self.config_path(), "/etc/google-cloud-ops-agent/config.yaml"],
            ["systemctl", "restart", "google-cloud-ops-agent"],
        ]


CLOUDWATCH_AGENT_DEB = "https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb"
OPS_AGENT_SCRIPT = "https://dl.google.com/cloudagents/add-google-cloud-ops-agent-repo.sh"


REFRESH_SERVICE = f"""\
[Unit]
Description=Refresh the MLflow server's database password (rotated by the cloud)

[Service]
Type=oneshot
User=mlflow
Group=mlflow
ExecStart={VENV}/bin/python {LAUNCHER_PATH} --refresh {SPEC_PATH}
NoNewPrivileges=true
ProtectSystem=strict
ReadWritePaths=/run/mlflow
"""

REFRESH_TIMER = """\
[Unit]
Description=Refresh the MLflow server's database password every 10 minutes

[Timer]
OnBootSec=10min
OnUnitActiveSec=10min

[Install]
WantedBy=timers.target
"""


# What the server needs besides mlflow and psycopg2: its artifact store's and secret store's SDKs.
CLOUD_PACKAGES = {
    "aws": ("boto3",),
    "gcp": ("google-cloud-storage", "google-cloud-secret-manager"),
}


@dataclass(frozen=True)
class DatabaseCa:
    """The database's CA, for DB_CA_PATH: its PEM (small, in the user-data), or an HTTPS URL the
    VM fetches it from at boot (a bundle too large for EC2's 16 KB of user-data)."""

    pem: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.pem is None) == (self.url is None):
            raise ValueError("DatabaseCa takes a pem or an https url, one of them")
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError(f"DatabaseCa url must be https, got {self.url!r}")


def user_data(
    settings: ServerSettings, secrets: SecretSource, db_ca: DatabaseCa, logs: LogShipping
) -> str:
    """The cloud-config document for the tracking VM (the same for both clouds)."""
    if settings.mlflow_bin != f"{VENV}/bin/mlflow":
        raise ValueError(f"settings.mlflow_bin must be {VENV}/bin/mlflow on the VM")
    if settings.auth_config_path != AUTH_INI_PATH:
        raise ValueError(f"settings.auth_config_path must be {AUTH_INI_PATH} on the VM")
    if settings.db_sslrootcert != DB_CA_PATH or settings.db_sslmode not in (
        "verify-ca",
        "verify-full",
    ):
        raise ValueError(f"the VM verifies the database: db_sslrootcert {DB_CA_PATH}, verify-*")
    spec = server_spec(settings, secrets)
    document = {
        "package_update": True,
        "packages": ["python3-venv"],
        "users": [
            "default",
            {
                "name": "mlflow",
                "system": True,
                "shell": "/usr/sbin/nologin",
                "homedir": "/var/lib/mlflow",
                "no_create_home": True,
            },
        ],
        "write_files": [
            {
                "path": SPEC_PATH,
                "permissions": "0644",
                "content": json.dumps(spec, indent=2) + "\n",
            },
            {"path": LAUNCHER_PATH, "permissions": "0755", "content": LAUNCHER_SOURCE.read_text()},
            {
                "path": "/etc/systemd/system/mlflow.service",
                "permissions": "0644",
                "content": SYSTEMD_UNIT,
            },
            {
                "path": "/etc/systemd/system/mlflow-db-password.service",
                "permissions": "0644",
                "content": REFRESH_SERVICE,
            },
            {
                "path": "/etc/systemd/system/mlflow-db-password.timer",
                "permissions": "0644",
                "content": REFRESH_TIMER,
            },
            *(
                [{"path": DB_CA_PATH, "permissions": "0644", "content": db_ca.pem}]
                if db_ca.pem
                else []
            ),
            {"path": logs.config_path(), "permissions": "0644", "content": logs.config()},
            {"path": "/etc/logrotate.d/mlflow", "permissions": "0644", "content": LOGROTATE},
        ],
        "runcmd": [
            *logs.install(),
            *(
                [
                    [
                        "curl",
                        "--fail",
                        "--silent",
                        "--show-error",
                        "--location",
                        "--retry",
                        "5",
                        "--retry-all-errors",
                        "--output",
                        DB_CA_PATH,
                        db_ca.url,
                    ]
                ]
                if db_ca.url
                else []
            ),
            ["python3", "-m", "venv", VENV],
            [
                f"{VENV}/bin/pip",
                "install",
                "--no-cache-dir",
                *pinned("mlflow", "psycopg2-binary", *CLOUD_PACKAGES[secrets.provider]),
            ],
            ["install", "-d", "-o", "mlflow", "-g", "mlflow", "-m", "0750", "/var/log/mlflow"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "mlflow.service", "mlflow-db-password.timer"],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, width=1000)
