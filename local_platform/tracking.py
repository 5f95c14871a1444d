"""The MLflow tracking server, locally: rendered by infra.mlflow_server as on the VM, its admin and
workload users, started and waited for over HTTPS."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from infra import vm_launcher
from infra.mlflow_server import OPEN_APP, ServerSettings, render
from local_platform.processes import BIN, LOOPBACK, ComponentError, Proc, spawn, wait_until
from local_platform.tls import TlsFiles


@dataclass(frozen=True)
class MlflowCredentials:
    username: str
    password: str
    ca_cert: Path | None = None
    """The CA that signed the server's certificate; clients verify with it."""

    def env(self, tracking_uri: str) -> dict[str, str]:
        env = {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }
        if self.ca_cert:
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(self.ca_cert)
        return env


def mlflow_start(
    *,
    port: int,
    db_port: int,
    db_password: str,
    admin: MlflowCredentials,
    users: dict[str, str],
    secret_key: str,
    artifacts_destination: str,
    store_env: dict[str, str],
    tls: TlsFiles,
    workdir: Path,
    log: Path,
    workers: int = 1,
    db_max_connections: int = 100,
    auth: bool = True,
    backups: str | None = None,
    behind: int | None = None,
) -> Proc:
    """Start `mlflow server` exactly as infra.mlflow_server renders it for the VM, on loopback:
    HTTPS with `tls`, the workload users of infra.mlflow_server.IDENTITIES (passwords in `users`)
    created and granted as the VM's launcher does, before the server starts.

    `store_env` points the server (not its clients) at the local object store: moto for s3://,
    the GCS emulator for gs://. `auth=False` (for the benchmark's comparison only) starts the same
    rendering with MLflow's app without auth (the plugin's mlops-open): anyone may do anything.
    `backups` (s3://bucket or gs://bucket): where the launcher backs the databases up before it
    migrates a schema that is behind (none: such a database stops the start). `behind`: the
    port of the load balancer in front of it (local_platform.balancer), whose address clients
    use: the server accepts that Host too."""
    from infra.mlflow_server import IDENTITIES, database_uri

    settings = ServerSettings(
        db_host=LOOPBACK,
        db_port=db_port,
        artifacts_destination=artifacts_destination,
        auth_config_path=str(workdir / "basic_auth.ini"),
        host=LOOPBACK,
        port=port,
        workers=workers,
        db_max_connections=db_max_connections,  # PostgreSQL's default, as the local server runs
        allowed_hosts=tuple(
            f"{host}:{p}"
            for p in (port, *([behind] if behind else []))
            for host in (LOOPBACK, "localhost")
        ),  # fmt: skip
        tls_certfile=str(tls.cert),
        tls_keyfile=str(tls.key),
        mlflow_bin=str(BIN / "mlflow"),
    )
    command = render(settings)
    if not auth:  # MLflow's own app, without auth, with the plugin's thread bound
        at = command.argv.index("--app-name") + 1
        command = replace(command, argv=[*command.argv[:at], OPEN_APP, *command.argv[at + 1 :]])
    workdir.mkdir(parents=True, exist_ok=True)
    ini = Path(settings.auth_config_path)
    ini.write_text(command.auth_ini)
    secrets_env = {
        "PGPASSWORD": db_password,
        "MLFLOW_AUTH_ADMIN_USERNAME": admin.username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin.password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret_key,
    }
    assert set(secrets_env) == set(command.secret_env)
    env = {**command.env, **secrets_env, **store_env}
    database = {
        "backendUri": database_uri(settings, settings.db_name),
        "authUri": database_uri(settings, settings.auth_db_name),
    }
    try:
        spec = {"argv": command.argv, "database": database,
                "backups": {"bucketUrl": backups} if backups else None}  # fmt: skip
        vm_launcher.migrate(spec, {**os.environ, **env})
        if auth:
            with vm_launcher.environ({"PGPASSWORD": db_password, **command.env}):
                vm_launcher.sync_identities([i.as_dict() for i in IDENTITIES], users, database)
    except vm_launcher.LaunchError as exc:
        raise ComponentError(f"mlflow server: {exc}") from exc
    proc = spawn("mlflow-server", command.argv, log, env, cwd=workdir)
    proc.url = f"https://{LOOPBACK}:{port}"
    proc.extra = {"ca_cert": tls.ca_cert}
    wait_until(proc, https_ok(f"{proc.url}/health", tls.ca_cert), 120, "healthy")
    return proc


def https_ok(url: str, ca_cert: Path) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2, verify=str(ca_cert)).status_code == 200
