"""The one rendering of the `mlflow server` command, shared by the local platform and the VM bootstrap.

The server speaks HTTPS only (uvicorn with the certificate and key named here); plain HTTP to its
port gets no MLflow answer. The auth app denies by default: besides the admin (people, break-glass),
each kind of workload has its own MLflow user with only the grants of IDENTITIES.

The command carries no secret. The PostgreSQL password reaches libpq through PGPASSWORD (locally) or
a PGPASSFILE (on the VM, see infra/vm_launcher.py, so a rotated password needs no restart); the
admin credentials reach MLflow's basic-auth app through MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD, and its
CSRF key through MLFLOW_FLASK_SERVER_SECRET_KEY. Whoever starts the server sets them: the local
launcher, or the VM's launcher after fetching them from the cloud's secret store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Names of the environment variables the starter must fill from its secret store.
# MLFLOW_FLASK_SERVER_SECRET_KEY signs the auth app's CSRF tokens; it must be stable across restarts.
SECRET_ENV = (
    "PGPASSWORD",
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
ARTIFACT_SCHEMES = ("s3://", "gs://")
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


SSLMODES = (None, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Database connections. Each process of the server (every worker, and the master that starts
# them) opens SQLAlchemy engines of its own, each with its own pool: the tracking store, the
# model registry store and the auth app's store (the job runner and workspaces are off). A pool
# holds up to pool_size + max_overflow connections. MLflow passes its pool settings on only when
# they are non-zero, so max_overflow is at least 1 (0 would mean SQLAlchemy's default, 10).
ENGINES_PER_PROCESS = 3
# Kept free of the server's pools: PostgreSQL's superuser_reserved_connections (3), the provider's
# own (RDS's rdsadmin, Cloud SQL's cloudsqladmin) and a person with psql or a migration.
RESERVED_CONNECTIONS = 10
MAX_POOL_SIZE, MAX_OVERFLOW = 5, 10  # SQLAlchemy's defaults: more buys nothing here

# The server's MLflow app plugin (infra/server_site/mlops_auth, see its docstring): MLflow finds it
# under its `mlflow.app` entry point through the dist-info beside it, on the server's PYTHONPATH.
LOCAL_SITE_DIR = Path(__file__).with_name("server_site")
AUTH_APP = "mlops-auth"
OPEN_APP = "mlops-open"  # MLflow without auth: the tracking benchmark's baseline only
# Model versions may come only from MLflow's own sources, which its handlers check against the
# caller's runs and logged models; a bucket URL (s3://, gs://) would be read with the server's
# role, which reaches every experiment's files.
VERSION_SOURCES = r"^(models|runs|mlflow-artifacts):/"
MAX_AUTH_CACHE_SECONDS = 300


def site_files(site_dir: Path = LOCAL_SITE_DIR) -> dict[str, str]:
    """The plugin's files (its package's modules and its dist-info) by path under the site
    directory, as the VM's copy of it holds them; nothing else that lies there (bytecode, an
    editor's files) goes into the VM's bundle."""
    return {
        str(path.relative_to(site_dir)): path.read_text()
        for path in sorted(site_dir.rglob("*"))
        if path.is_file()
        and (path.suffix == ".py" or path.parent.name.endswith(".dist-info"))
        and "__pycache__" not in path.parts
    }


def connections_used(workers: int, pool_size: int, max_overflow: int) -> int:
    """The most connections the server can hold open at once."""
    return (workers + 1) * ENGINES_PER_PROCESS * (pool_size + max_overflow)


def request_threads(pool_size: int, max_overflow: int) -> int:
    """How many requests a worker runs at once (mlops_auth.threads): each can hold
    two of a pool's connections (MLflow's log_batch nests a session), so half a pool's worth.
    More would let the pool run dry with every request waiting for its second connection."""
    return max(1, (pool_size + max_overflow) // 2)


def pool_for(max_connections: int, workers: int, servers: int = 1) -> tuple[int, int]:
    """(pool_size, max_overflow) per engine so the worst case of `servers` servers at once (the
    replicas, and during a rolling update one more) fits the database's max_connections with
    RESERVED_CONNECTIONS to spare."""
    processes = servers * (workers + 1)
    per_engine = (max_connections - RESERVED_CONNECTIONS) // (processes * ENGINES_PER_PROCESS)
    if per_engine < 2:
        on = f"{servers} servers x " if servers > 1 else ""
        raise ServerConfigError(
            f"workers={workers}: the database allows {max_connections} connections, too few for "
            f"{on}{workers + 1} processes x {ENGINES_PER_PROCESS} pools of 2 with "
            f"{RESERVED_CONNECTIONS} reserved; use fewer workers{', fewer replicas' if servers > 1 else ''} "
            "or a larger database"
        )
    # All of the budget: MLflow's log_batch holds two of a pool's connections at once (a session
    # for the run, another for its metrics), so a pool of n stalls for its 30 s timeout once n
    # such requests reach one worker (seen as 30 s requests; docs/architecture.md).
    pool_size = min(MAX_POOL_SIZE, per_engine - 1)
    return pool_size, min(MAX_OVERFLOW, per_engine - pool_size)


@dataclass(frozen=True)
class Identity:
    """An MLflow user for one kind of workload and what it may touch; the launcher creates it,
    keeps its password in sync with its secret, and grants exactly these (experiments and
    registered models are created if missing, so grants can name them before the first run)."""

    username: str
    experiments: dict[str, str]
    registered_models: dict[str, str]
    workloads: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "username": self.username,
            "experiments": self.experiments,
            "registeredModels": self.registered_models,
        }


TRAINING_EXPERIMENT = "nyc-taxi-duration"
MONITORING_EXPERIMENT = "nyc-taxi-duration-monitoring"
REGISTERED_MODEL = "nyc-taxi-duration"
TRAINER = Identity(
    "trainer",
    experiments={TRAINING_EXPERIMENT: "EDIT", MONITORING_EXPERIMENT: "EDIT"},
    registered_models={REGISTERED_MODEL: "EDIT"},  # new versions, aliases; no delete, no grants
    workloads=("training", "monitoring"),
)
MODEL_API = Identity(
    "model-api",
    experiments={TRAINING_EXPERIMENT: "READ"},  # the model's artifacts live in its runs
    registered_models={REGISTERED_MODEL: "READ"},
    workloads=("model-api", "scoring"),
)
STREAMING = Identity(
    "streaming",
    experiments={TRAINING_EXPERIMENT: "READ"},  # the model API's grants: a user of its own
    registered_models={REGISTERED_MODEL: "READ"},
    workloads=("streaming",),
)
IDENTITIES = (TRAINER, MODEL_API, STREAMING)


def user_for(workload: str) -> str:
    """The MLflow user a workload of the service stacks runs as (training, monitoring, model-api,
    scoring); people use the admin."""
    for identity in IDENTITIES:
        if workload in identity.workloads:
            return identity.username
    raise ValueError(f"no MLflow user for workload {workload!r}")


class ServerConfigError(ValueError):
    """A server setting is invalid; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class ServerSettings:
    db_host: str
    """PostgreSQL host (the RDS/Cloud SQL private address, or 127.0.0.1 locally)."""
    artifacts_destination: str
    """Where the server stores artifacts: s3://bucket/prefix or gs://bucket/prefix."""
    auth_config_path: str
    """Where the rendered basic-auth ini file is written on the server's machine."""
    db_port: int = 5432
    db_name: str = "mlflow"
    auth_db_name: str = "mlflow_auth"
    """A database of its own for the auth app's users and permissions."""
    db_user: str = "mlflow"
    db_sslmode: str | None = None
    """libpq sslmode, e.g. "verify-full" for a managed database; None leaves libpq's default."""
    db_sslrootcert: str | None = None
    """The CA file that verifies the database's certificate (verify-ca, verify-full)."""
    host: str = "0.0.0.0"  # noqa: S104 - the VM serves clients; who may connect is the firewall's job
    port: int = 5000
    workers: int = 2
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    """Host headers the server accepts (DNS-rebinding guard); include the static IP or DNS name."""
    tls_certfile: str = ""
    """The server's certificate (PEM, with its chain); required: the server speaks HTTPS only."""
    tls_keyfile: str = ""
    """Its private key (PEM), readable by the server only."""
    default_permission: str = "NO_PERMISSIONS"
    """What a user gets where nothing is granted: nothing."""
    auth_cache_seconds: int = 60
    """How long a worker trusts a checked password (MLflow's credential cache: every request
    otherwise pays a password hash) and what it read of users and grants (mlops_auth.store_cache).
    A password changed, a user deleted or a grant revoked through one worker takes effect in that
    worker at once and in the others within this long (at most MAX_AUTH_CACHE_SECONDS); 0 turns
    both off."""
    max_body_bytes: int = 16 * 1024 * 1024
    """The largest request body the server reads (artifact uploads stream and are not bounded);
    a larger one gets 413 before it is buffered."""
    ai_gateway: bool = False
    """MLflow's AI gateway (endpoints, provider secrets): off, as nothing here uses it."""
    db_max_connections: int = 100
    """The database's max_connections (PostgreSQL's default is 100; see infra.config for the
    managed databases'): the server's pools are sized to fit it (pool_for)."""
    servers: int = 1
    """How many servers share the database at once: the replicas and, while a rolling update
    runs, one more (infra.config.PlatformConfig.servers_at_once)."""
    mlflow_bin: str = "mlflow"
    site_dir: str = str(LOCAL_SITE_DIR)
    """The directory holding the plugin (mlops_auth and its dist-info), put on the server's
    PYTHONPATH (on the VM, a copy from the server's code bundle: infra.vm.server_bundle)."""

    def __post_init__(self) -> None:
        if not self.artifacts_destination.startswith(ARTIFACT_SCHEMES):
            raise ServerConfigError(
                f"artifacts_destination must start with one of {', '.join(ARTIFACT_SCHEMES)}, "
                f"got {self.artifacts_destination!r}"
            )
        if not self.artifacts_destination.split("://", 1)[1].strip("/"):
            raise ServerConfigError("artifacts_destination must name a bucket")
        for key in ("db_name", "auth_db_name", "db_user"):
            if not _IDENT.match(getattr(self, key)):
                raise ServerConfigError(
                    f"{key} must be a plain SQL identifier, got {getattr(self, key)!r}"
                )
        if self.db_name == self.auth_db_name:
            raise ServerConfigError("auth_db_name must differ from db_name")
        for key in ("port", "db_port"):
            if not 1 <= getattr(self, key) <= 65535:
                raise ServerConfigError(f"{key} must be 1-65535, got {getattr(self, key)}")
        if not 1 <= self.workers <= 16:
            raise ServerConfigError(f"workers must be 1-16, got {self.workers}")
        if not 0 <= self.auth_cache_seconds <= MAX_AUTH_CACHE_SECONDS:
            raise ServerConfigError(
                f"auth_cache_seconds must be 0-{MAX_AUTH_CACHE_SECONDS}, "
                f"got {self.auth_cache_seconds}"
            )
        if not 1024 <= self.max_body_bytes <= 1024**3:
            raise ServerConfigError(
                f"max_body_bytes must be 1024-{1024**3}, got {self.max_body_bytes}"
            )
        pool_for(self.db_max_connections, self.workers, self.servers)  # raises if too small
        if self.default_permission not in PERMISSIONS:
            raise ServerConfigError(
                f"default_permission must be one of {', '.join(PERMISSIONS)}, "
                f"got {self.default_permission!r}"
            )
        if not (self.tls_certfile and self.tls_keyfile):
            raise ServerConfigError("tls_certfile and tls_keyfile are required: HTTPS only")
        for key in ("tls_certfile", "tls_keyfile", "site_dir"):
            if not re.fullmatch(r"/[\w./-]+", getattr(self, key)):
                raise ServerConfigError(
                    f"{key} must be an absolute path, got {getattr(self, key)!r}"
                )
        if not self.allowed_hosts:
            raise ServerConfigError("allowed_hosts must list at least one host")
        if self.db_sslmode not in SSLMODES:
            raise ServerConfigError(
                f"db_sslmode must be one of {', '.join(m for m in SSLMODES if m)}, "
                f"got {self.db_sslmode!r}"
            )
        if (self.db_sslmode in ("verify-ca", "verify-full")) != bool(self.db_sslrootcert):
            raise ServerConfigError(
                "db_sslrootcert is needed with db_sslmode verify-ca or verify-full, and only then"
            )


@dataclass(frozen=True)
class ServerCommand:
    argv: list[str]
    env: dict[str, str]
    """Non-secret environment for the server process."""
    auth_ini: str
    """Contents of the basic-auth config file, to write at settings.auth_config_path."""
    secret_env: tuple[str, ...] = SECRET_ENV

    def shell(self) -> str:
        """The argv as one shell-quoted line (for systemd units and scripts)."""
        import shlex

        return shlex.join(self.argv)


def database_uri(s: ServerSettings, db_name: str) -> str:
    # No password here: libpq takes it from PGPASSWORD. psycopg2 explicitly, because with
    # SQLAlchemy 2.1 a bare postgresql:// means psycopg 3, which the server does not ship.
    uri = f"postgresql+psycopg2://{s.db_user}@{s.db_host}:{s.db_port}/{db_name}"
    query = [f"sslmode={s.db_sslmode}"] if s.db_sslmode else []
    query += [f"sslrootcert={s.db_sslrootcert}"] if s.db_sslrootcert else []
    return f"{uri}?{'&'.join(query)}" if query else uri


def render(s: ServerSettings) -> ServerCommand:
    """The `mlflow server` argv, environment and auth config for these settings."""
    argv = [
        s.mlflow_bin,
        "server",
        "--backend-store-uri", database_uri(s, s.db_name),
        # Proxied artifacts and no --default-artifact-root: clients reach the bucket only
        # through the server, so they never need bucket credentials.
        "--serve-artifacts",
        "--artifacts-destination", s.artifacts_destination,
        "--app-name", AUTH_APP,
        "--host", s.host,
        "--port", str(s.port),
        "--workers", str(s.workers),
        "--allowed-hosts", ",".join(s.allowed_hosts),
        "--uvicorn-opts", f"--ssl-certfile {s.tls_certfile} --ssl-keyfile {s.tls_keyfile}",
    ]  # fmt: skip
    pool_size, max_overflow = pool_for(s.db_max_connections, s.workers, s.servers)
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": s.auth_config_path,
        # The job runner adds worker processes a small VM cannot afford; this bundle uses no jobs.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # Bounded pools (see ENGINES_PER_PROCESS): the defaults, 5 + 10 per engine, let one
        # 2-worker server open 135 connections, more than a small managed database allows.
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool_size),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(max_overflow),
        # The plugin: where MLflow finds it, and its settings (mlops_auth.settings).
        "PYTHONPATH": s.site_dir,
        "MLOPS_AUTH_REQUEST_THREADS": str(request_threads(pool_size, max_overflow)),
        "MLOPS_AUTH_MAX_BODY_BYTES": str(s.max_body_bytes),
        "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX": VERSION_SOURCES,
        "MLFLOW_ENABLE_AI_GATEWAY": str(s.ai_gateway).lower(),
    }
    auth_ini = (
        "[mlflow]\n"
        f"default_permission = {s.default_permission}\n"
        f"auth_cache_ttl_seconds = {s.auth_cache_seconds}\n"
        f"database_uri = {database_uri(s, s.auth_db_name)}\n"
        "# admin_username / admin_password come from MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD.\n"
    )
    return ServerCommand(argv=argv, env=env, auth_ini=auth_ini)
