#!/usr/bin/env python3
"""Starts the MLflow server on the tracking VM (installed by cloud-init, run by systemd).

Reads the rendered server spec (/etc/mlflow/server.json: argv, non-secret env, auth config and where
the secrets are), fetches the secrets through the VM's own identity (instance role / service
account), creates the auth database if missing, runs both database migrations, and replaces itself
with `mlflow server`. Secrets live only in this process's memory and the server's environment.

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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: vm_launcher.py /etc/mlflow/server.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    try:
        secrets = fetch_secrets(spec["secrets"])
        if secrets.pop("DB_USERNAME") != spec["database"]["user"]:
            raise LaunchError("the database secret's username differs from the rendered one")
        ensure_database(spec["database"], secrets["PGPASSWORD"])
        env = {**os.environ, **spec["env"], **secrets}
        # The auth app reads its config even to migrate: write it first (no secret in it).
        auth_ini = Path(spec["env"]["MLFLOW_AUTH_CONFIG_PATH"])
        auth_ini.parent.mkdir(parents=True, exist_ok=True)
        auth_ini.write_text(spec["authIni"])
        migrate(spec, env)
    except LaunchError as exc:
        print(f"mlflow launcher: {exc}", file=sys.stderr)
        return 1
    except (
        Exception
    ) as exc:  # cloud SDK or database errors: one line for the journal, retried by systemd
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"mlflow launcher: {exc.__class__.__name__}: {first}", file=sys.stderr)
        return 1
    os.execve(spec["argv"][0], spec["argv"], env)  # noqa: S606 - argv rendered by infra, no shell
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
