#!/usr/bin/env python3
"""Starts the MLflow server on the tracking VM (from the server's code bundle, run by systemd).

Reads the rendered server spec (/etc/mlflow/server.json: argv, non-secret env, auth config, the
workload users and where the secrets are), fetches the secrets through the VM's own identity
(instance role / service account), writes the TLS certificate and key to the runtime tmpfs (the
stack's, or with a domain Let's Encrypt's once issued), creates the auth
database if missing, runs both database migrations (backing both databases up first when their
schema is behind the installed MLflow: infra.db_backup), creates or updates the workload users and
their grants, and replaces itself with `mlflow server`. The admin credentials live only in the server's environment; the database
password in a libpq passfile on the runtime tmpfs (mode 600), which `--refresh` (a systemd timer)
rewrites when the cloud rotates the password, so new connections keep working without a restart.
`--gc` (a daily systemd timer) runs `mlflow gc` for runs deleted more than the stack's gcDays ago;
`--tls-check` (another, as root) restarts the server when the stack has renewed its certificate.

Standalone on purpose: it runs on the VM with only the server's virtualenv (mlflow, psycopg2, boto3).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:  # in the repository
    from infra import db_backup
except ImportError:  # on the VM: /opt/mlflow/db_backup.py, next to this file
    import db_backup  # type: ignore[no-redef]


class LaunchError(RuntimeError):
    pass


def fetch_secrets(source: dict) -> dict:
    """The server's secrets, read through the VM's identity: the database user and password, the
    environment for the auth app (admin credentials, CSRF key), the TLS key and the workload
    users' passwords."""
    if source["provider"] == "aws":
        import boto3

        client = boto3.client("secretsmanager", region_name=source.get("region"))

        def read(arn: str) -> str:
            return client.get_secret_value(SecretId=arn)["SecretString"]

    elif source["provider"] == "gcp":
        from google.cloud import secretmanager

        client = secretmanager.SecretManagerServiceClient()

        def read(name: str) -> str:  # projects/<p>/secrets/<id>
            return client.access_secret_version(
                name=f"{name}/versions/latest"
            ).payload.data.decode()

    else:
        raise LaunchError(f"unknown secrets provider {source['provider']!r}")
    db = json.loads(read(source["dbSecret"]))  # {"username", "password"}; RDS manages it on AWS
    admin = json.loads(read(source["adminSecret"]))
    return {
        "dbUser": db["username"],
        "dbPassword": db["password"],
        "env": {
            "MLFLOW_AUTH_ADMIN_USERNAME": admin["username"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin["password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": admin["flaskSecretKey"],
        },
        # The key's PEM, then the certificate's (infra.tls: renewed without a new VM).
        **dict(zip(("tlsKey", "tlsCert"), split_pem(read(source["tlsKeySecret"])), strict=True)),
        "identities": {user: read(ref) for user, ref in source["identitySecrets"].items()},
    }


def split_pem(text: str) -> tuple[str, str]:
    """(the private key's PEM, the certificate chain's PEM) from the TLS secret's value."""
    blocks = [f"-----BEGIN {b.strip()}\n" for b in text.split("-----BEGIN ")[1:]]
    key = "".join(b for b in blocks if "PRIVATE KEY-----" in b.splitlines()[0])
    cert = "".join(b for b in blocks if b.startswith("-----BEGIN CERTIFICATE-----"))
    if not key or not cert:
        raise LaunchError("the TLS secret must hold a private key and a certificate (PEM)")
    return key, cert


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


class Stopped(LaunchError):
    """Retrying cannot help (a failed migration, a schema newer than this MLflow): the unit
    stays stopped (exit STOPPED, systemd's RestartPreventExitStatus) until a person acts."""


STOPPED = 3


@contextlib.contextmanager
def environ(values: dict[str, str]):
    """The server's environment in this process for a while: libpq's password (PGPASSFILE or
    PGPASSWORD) and the object store's settings for the in-process clients."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def migrate(spec: dict, env: dict[str, str]) -> str | None:
    """Bring both databases to the installed MLflow's schema. A database that is behind is
    backed up first (db_backup: pg_dump into the bucket, and an RDS snapshot where the spec
    names the instance); returns where the backup went, None when nothing needed migrating."""
    uris = {"tracking": spec["database"]["backendUri"], "auth": spec["database"]["authUri"]}
    try:
        with environ(env):
            behind = db_backup.schema_plan(uris)
            saved = back_up(spec.get("backups"), uris, behind, env) if behind else None
    except db_backup.BackupError as exc:
        raise Stopped(str(exc)) from None
    python = str(Path(spec["argv"][0]).with_name("python"))
    steps = [
        [spec["argv"][0], "db", "upgrade", uris["tracking"]],
        [python, "-m", "mlflow.server.auth", "db", "upgrade", "--url", uris["auth"]],
    ]
    for step in steps:
        result = subprocess.run(step, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            failed = f"{' '.join(step[:4])} failed: " + " | ".join(tail)
            if saved:
                raise Stopped(f"{failed}; the backup taken before it: {saved} (restore it: "
                              "docs/operations.md, 'Rolling back')")  # fmt: skip
            raise LaunchError(failed)
    return saved


def back_up(dest: dict | None, uris: dict[str, str], behind: dict, env: dict[str, str]) -> str:
    import mlflow

    what = ", ".join(f"{role} {now} -> {head}" for role, (now, head) in behind.items())
    if not dest:
        raise Stopped(f"the schema is behind MLflow {mlflow.__version__} ({what}) and the spec "
                      "names no bucket for a backup: not migrating without one")  # fmt: skip
    bucket = db_backup.Bucket(dest["bucketUrl"], dest.get("region"))
    folder = db_backup.backup(uris, bucket, f"before-mlflow-{mlflow.__version__}", env)
    where = f"{bucket.url}/{folder}"
    print(f"mlflow launcher: schema behind MLflow {mlflow.__version__} ({what}): both "
          f"databases backed up to {where} before migrating", file=sys.stderr)  # fmt: skip
    if dest.get("rdsInstance"):
        print(f"mlflow launcher: {rds_snapshot(dest, folder)}", file=sys.stderr)
    return where


def rds_snapshot(dest: dict, folder: str) -> str:
    """A manual RDS snapshot too (the role may create it for this instance only); its state at
    the call is what it keeps, so the migration need not wait. A failure is said, not fatal:
    the pg_dump backup is already in the bucket."""
    import boto3

    name = f"mlflow-pre-upgrade-{folder.rsplit('/', 1)[1].split('-', 1)[0].lower()}"
    try:
        boto3.client("rds", region_name=dest.get("region")).create_db_snapshot(
            DBSnapshotIdentifier=name, DBInstanceIdentifier=dest["rdsInstance"]
        )
    except Exception as exc:  # noqa: BLE001 - any SDK error: say it and go on
        return f"no RDS snapshot ({exc.__class__.__name__}: {str(exc)[:200]})"
    return f"RDS snapshot {name} of {dest['rdsInstance']} started"


def pgpass_line(db: dict, password: str) -> str:
    def escape(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    return f"{escape(db['host'])}:{db['port']}:*:{escape(db['user'])}:{escape(password)}\n"


def write_pgpass(path: Path, db: dict, password: str) -> None:
    """libpq reads this file at every new connection, so a refreshed password reaches the
    server's pool without a restart. Written atomically, mode 600, on the runtime tmpfs."""
    write_private(path, pgpass_line(db, password))


def runtime_dir(spec: dict) -> Path:
    return Path(spec["env"]["MLFLOW_AUTH_CONFIG_PATH"]).parent


def write_private(path: Path, text: str) -> None:
    """Atomically, mode 600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


SYNTHETIC_ROLE_PREFIX = "__user_"
"""MLflow keeps a user's own grants in a role named __user_<id>__ (it reserves the prefix)."""


def sync_identities(identities: list[dict], passwords: dict[str, str], database: dict) -> None:
    """Create each workload's MLflow user (or reset its password to its secret's) and make its
    grants exactly its permissions: the experiments and registered models they name are created
    if missing, and any other grant (given by an admin since, or a role assigned to the user) is
    removed and logged. Runs against the migrated databases before the server starts, so no
    client ever sees the server without its users. The admin is the auth app's own (from its
    environment)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    backend = database["backendUri"]
    # The artifact root `mlflow server --serve-artifacts` gives new experiments.
    tracking = TrackingStore(backend, resolve_default_artifact_root(True, None, backend))
    registry = RegistryStore(backend)
    auth = AuthStore()
    auth.init_db(database["authUri"])

    def grant(create, update, target: str, user: str, permission: str) -> None:
        try:
            create(target, user, permission)
        except MlflowException:  # granted before: set it to what the spec says now
            update(target, user, permission)

    for identity in identities:
        user, password = identity["username"], passwords[identity["username"]]
        if not auth.has_user(user):
            auth.create_user(user, password)
        elif not auth.authenticate_user(user, password):
            auth.update_user(user, password=password)
        wanted = set()
        for name, permission in identity["experiments"].items():
            experiment = tracking.get_experiment_by_name(name)
            if experiment is None:
                experiment_id = tracking.create_experiment(name)
            else:
                experiment_id = experiment.experiment_id
                if experiment.lifecycle_stage == "deleted":
                    tracking.restore_experiment(experiment_id)
            grant(auth.create_experiment_permission, auth.update_experiment_permission,
                  experiment_id, user, permission)  # fmt: skip
            wanted.add(("experiment", str(experiment_id)))
        for name, permission in identity["registeredModels"].items():
            try:
                registry.get_registered_model(name)
            except MlflowException:
                registry.create_registered_model(name)
            grant(auth.create_registered_model_permission,
                  auth.update_registered_model_permission, name, user, permission)  # fmt: skip
            wanted.add(("registered_model", name))
        removed = revoke_others(auth, user, wanted)
        if removed:
            print(f"mlflow launcher: removed from {user} what the platform does not grant: "
                  f"{'; '.join(removed)}", file=sys.stderr)  # fmt: skip


def revoke_others(auth, username: str, wanted: set[tuple[str, str]]) -> list[str]:
    """Remove every grant of `username` but the (resource type, id) pairs in `wanted`: other
    grants in its own role, and roles assigned to it. Returns what it removed."""
    user_id = auth.get_user(username).id
    removed = []
    for role in auth.list_user_roles(user_id):
        if not (role.name or "").startswith(SYNTHETIC_ROLE_PREFIX):
            auth.unassign_role_from_user(user_id, role.id)
            removed.append(f"role {role.name}")
            continue
        for grant in auth.list_role_permissions(role.id):
            if (grant.resource_type, str(grant.resource_pattern)) not in wanted:
                auth.remove_role_permission(grant.id)
                removed.append(f"{grant.permission} on {grant.resource_type} "
                               f"{grant.resource_pattern}")  # fmt: skip
    return removed


def lets_encrypt(tls: dict) -> Path | None:
    """With a domain, the directory holding Let's Encrypt's certificate once issued."""
    acme = Path(tls["acmeDir"]) if tls.get("acmeDir") else None
    if acme and (acme / "fullchain.pem").is_file() and (acme / "privkey.pem").is_file():
        return acme
    return None


def install_tls(tls: dict, stack_key: str, stack_cert: str) -> str:
    """Put the certificate and key the server presents in place (runtime tmpfs, key mode 600):
    with a domain, Let's Encrypt's once the deploy hook has copied them to acmeDir; otherwise,
    or until then, the stack CA's certificate and key from the secret store. Returns which."""
    acme = lets_encrypt(tls)
    if acme:
        cert, key, source = (
            (acme / "fullchain.pem").read_text(),
            (acme / "privkey.pem").read_text(),
            f"Let's Encrypt ({tls['domain']})",
        )
    else:
        if tls.get("acmeDir"):
            print(
                f"mlflow launcher: no Let's Encrypt certificate for {tls['domain']} yet "
                "(journalctl -u mlflow-acme: its DNS A record must name the static IP); "
                "presenting the stack CA's meanwhile",
                file=sys.stderr,
            )
        cert, key, source = stack_cert, stack_key, "the stack's CA"
    write_private(Path(tls["keyfile"]), key)
    write_private(Path(tls["certfile"]), cert)
    return source


def start(spec: dict) -> dict[str, str]:
    """Everything before `mlflow server`; returns the server's environment."""
    secrets = fetch_secrets(spec["secrets"])
    if secrets["dbUser"] != spec["database"]["user"]:
        raise LaunchError("the database secret's username differs from the rendered one")
    password = secrets["dbPassword"]
    ensure_database(spec["database"], password)
    run_dir = runtime_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    pgpass = run_dir / "pgpass"
    write_pgpass(pgpass, spec["database"], password)
    install_tls(spec["tls"], secrets["tlsKey"], secrets["tlsCert"])
    # The auth app reads its config even to migrate: write it first (no secret in it).
    (run_dir / Path(spec["env"]["MLFLOW_AUTH_CONFIG_PATH"]).name).write_text(spec["authIni"])
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    env |= {**spec["env"], **secrets["env"], "PGPASSFILE": str(pgpass)}
    migrate(spec, env)
    os.environ["PGPASSFILE"] = str(pgpass)  # the stores below connect from this process
    sync_identities(spec["identities"], secrets["identities"], spec["database"])
    return env


def refresh(spec: dict) -> None:
    """Re-read the database secret (RDS rotates it) into the passfile of a running server."""
    pgpass = runtime_dir(spec) / "pgpass"
    if not pgpass.parent.is_dir():
        return  # the server is not running; its next start fetches the secret anyway
    secrets = fetch_secrets(spec["secrets"])
    write_pgpass(pgpass, spec["database"], secrets["dbPassword"])


def tls_check(spec: dict, restart=None) -> str:
    """The daily mlflow-tls timer (as root): when the secret store holds a certificate other than
    the one the server presents (the stack renewed it), restart the server, whose launcher
    installs it (seconds without a server, at a quiet hour). Returns what it did."""
    if lets_encrypt(spec["tls"]):
        return "mlflow tls: Let's Encrypt's certificate in use (mlflow-acme renews it)"
    secrets = fetch_secrets(spec["secrets"])
    presented = Path(spec["tls"]["certfile"])
    if presented.is_file() and presented.read_text() == secrets["tlsCert"]:
        return "mlflow tls: the server presents the current certificate"
    restart = restart or (lambda: subprocess.run(
        ["systemctl", "try-restart", "mlflow.service"], check=True, capture_output=True))  # fmt: skip
    restart()
    return "mlflow tls: a renewed certificate in the secret store: restarted mlflow.service"


def collect_garbage(gc: dict, mlflow_bin: str, backend_uri: str, env: dict[str, str]) -> str:
    """`mlflow gc`: runs deleted more than gc["olderThanDays"] ago lose their rows (from the
    database) and their artifacts (deleted through the server, which proxies the bucket: MLflow's
    gc must reach it at MLFLOW_TRACKING_URI for mlflow-artifacts:/ locations). Returns its
    summary line."""
    env = {**env, "MLFLOW_TRACKING_URI": gc["trackingUri"]}
    if gc.get("caPath"):
        env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = gc["caPath"]
    argv = [mlflow_bin, "gc", "--older-than", f"{gc['olderThanDays']}d",
            "--backend-store-uri", backend_uri]  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise LaunchError("mlflow gc failed: " + " | ".join(tail))
    deleted = sum(line.startswith("Run with ID") for line in result.stdout.splitlines())
    return f"mlflow gc: {deleted} run(s) deleted more than {gc['olderThanDays']} day(s) ago removed"


def gc(spec: dict) -> str:
    """The daily timer's job: the admin's credentials and a passfile, then collect_garbage."""
    secrets = fetch_secrets(spec["secrets"])
    admin = secrets["env"]
    with tempfile.TemporaryDirectory(prefix="mlflow-gc-") as tmp:
        pgpass = Path(tmp) / "pgpass"
        write_pgpass(pgpass, spec["database"], secrets["dbPassword"])
        env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
        env |= {**spec["env"], "PGPASSFILE": str(pgpass),
                "MLFLOW_TRACKING_USERNAME": admin["MLFLOW_AUTH_ADMIN_USERNAME"],
                "MLFLOW_TRACKING_PASSWORD": admin["MLFLOW_AUTH_ADMIN_PASSWORD"]}  # fmt: skip
        return collect_garbage(spec["gc"], spec["argv"][0], spec["database"]["backendUri"], env)


def main(argv: list[str]) -> int:
    args = argv[1:]
    mode = args[0] if args[:1] in (["--refresh"], ["--gc"], ["--tls-check"]) else None
    if mode:
        args = args[1:]
    if len(args) != 1:
        print("usage: vm_launcher.py [--refresh | --gc | --tls-check] /etc/mlflow/server.json",
              file=sys.stderr)  # fmt: skip
        return 2
    spec = json.loads(Path(args[0]).read_text())
    try:
        if mode == "--refresh":
            refresh(spec)
            return 0
        if mode in ("--gc", "--tls-check"):
            print((gc if mode == "--gc" else tls_check)(spec), flush=True)
            return 0
        env = start(spec)
    except Stopped as exc:
        print(f"mlflow launcher: {exc}", file=sys.stderr)
        return STOPPED
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
