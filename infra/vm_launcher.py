#!/usr/bin/env python3
"""Starts the MLflow server on the tracking VM (installed by cloud-init, run by systemd).

Reads the rendered server spec (/etc/mlflow/server.json: argv, non-secret env, auth config and where
the secrets are), fetches the secrets through the VM's own identity (instance role / service
account), creates the auth database if missing, runs both database migrations, and replaces itself
with `mlflow server`. The admin credentials live only in the server's environment; the database
password in a libpq passfile on the runtime tmpfs (mode 600), which `--refresh` (a systemd timer)
rewrites when the cloud rotates the password, so new connections keep working without a restart.

Standalone on purpose: it runs on the VM with only the server's virtualenv (mlflow, psycopg2, boto3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


class LaunchError(RuntimeError):
    pass


def fetch_secrets(source: dict) -> dict[str, str]:
    """The server's secret environment: PGPASSWORD, the admin credentials and the CSRF key."""
    if source["provider"] == "aws":
        import boto3

        client = boto3.client("secretsmanager", region_name=source.get("region"))

        def read(arn: str) -> dict:
            return json.loads(client.get_secret_value(SecretId=arn)["SecretString"])

        db = read(source["dbSecret"])  # RDS-managed: {"username": ..., "password": ...}
        admin = read(source["adminSecret"])
    elif source["provider"] == "gcp":
        from google.cloud import secretmanager

        client = secretmanager.SecretManagerServiceClient()

        def read(name: str) -> dict:
            version = client.access_secret_version(name=f"{name}/versions/latest")
            return json.loads(version.payload.data.decode())

        db = read(source["dbSecret"])  # projects/<p>/secrets/<id>: {"username", "password"}
        admin = read(source["adminSecret"])
    else:
        raise LaunchError(f"unknown secrets provider {source['provider']!r}")
    return {
        "DB_USERNAME": db["username"],
        "PGPASSWORD": db["password"],
        "MLFLOW_AUTH_ADMIN_USERNAME": admin["username"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin["password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": admin["flaskSecretKey"],
    }


def ensure_database(db: dict, password: str) -> None:
    """Create the auth app's database next to MLflow's (RDS creates only the first)."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(
        host=db["host"],
        port=db["port"],
        user=db["user"],
        password=password,
        dbname=db["name"],
        sslmode=db.get("sslmode") or "prefer",
        sslrootcert=db.get("sslrootcert"),
        connect_timeout=10,
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["authName"],))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["authName"])))
    finally:
        conn.close()


def migrate(spec: dict, env: dict[str, str]) -> None:
    python = str(Path(spec["argv"][0]).with_name("python"))
    steps = [
        [spec["argv"][0], "db", "upgrade", spec["database"]["backendUri"]],
        [python, "-m", "mlflow.server.auth", "db", "upgrade", "--url", spec["database"]["authUri"]],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise LaunchError(f"{' '.join(step[:4])} failed: " + " | ".join(tail))


def pgpass_line(db: dict, password: str) -> str:
    def escape(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    return f"{escape(db['host'])}:{db['port']}:*:{escape(db['user'])}:{escape(password)}\n"


def write_pgpass(path: Path, db: dict, password: str) -> None:
    """libpq reads this file at every new connection, so a refreshed password reaches the
    server's pool without a restart. Written atomically, mode 600, on the runtime tmpfs."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pgpass_line(db, password))
    os.replace(tmp, path)


def runtime_dir(spec: dict) -> Path:
    return Path(spec["env"]["MLFLOW_AUTH_CONFIG_PATH"]).parent


def start(spec: dict) -> dict[str, str]:
    """Everything before `mlflow server`; returns the server's environment."""
    secrets = fetch_secrets(spec["secrets"])
    if secrets.pop("DB_USERNAME") != spec["database"]["user"]:
        raise LaunchError("the database secret's username differs from the rendered one")
    password = secrets.pop("PGPASSWORD")
    ensure_database(spec["database"], password)
    run_dir = runtime_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    pgpass = run_dir / "pgpass"
    write_pgpass(pgpass, spec["database"], password)
    # The auth app reads its config even to migrate: write it first (no secret in it).
    (run_dir / Path(spec["env"]["MLFLOW_AUTH_CONFIG_PATH"]).name).write_text(spec["authIni"])
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env |= {**spec["env"], **secrets, "PGPASSFILE": str(pgpass)}
    migrate(spec, env)
    return env


def refresh(spec: dict) -> None:
    """Re-read the database secret (RDS rotates it) into the passfile of a running server."""
    pgpass = runtime_dir(spec) / "pgpass"
    if not pgpass.parent.is_dir():
        return  # the server is not running; its next start fetches the secret anyway
    secrets = fetch_secrets(spec["secrets"])
    write_pgpass(pgpass, spec["database"], secrets["PGPASSWORD"])


def main(argv: list[str]) -> int:
    args = argv[1:]
    refreshing = args[:1] == ["--refresh"]
    if refreshing:
        args = args[1:]
    if len(args) != 1:
        print("usage: vm_launcher.py [--refresh] /etc/mlflow/server.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    try:
        if refreshing:
            refresh(spec)
            return 0
        env = start(spec)
    except LaunchError as exc:
        print(f"mlflow launcher: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # SDK or database errors: one line for the journal; systemd retries
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"mlflow launcher: {exc.__class__.__name__}: {first}", file=sys.stderr)
        return 1
    os.execve(spec["argv"][0], spec["argv"], env)  # noqa: S606 - argv rendered by infra, no shell
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
