"""The VM start path for real: the server spec rendered for the VM, the launcher fetching secrets
from Secrets Manager (moto_server), writing the TLS key, creating the auth database on a fresh
RDS-like PostgreSQL, migrating both databases, creating the workload users and exec'ing
`mlflow server` over HTTPS; all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests

import local_platform as c
from infra.mlflow_server import IDENTITIES, ServerSettings
from infra.vm import SecretSource, server_spec
from infra.vm_launcher import environ

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = [sys.executable, str(ROOT / "infra/vm_launcher.py")]


def serve_tls(root: Path, datadir: Path) -> tuple[Path, Path]:
    """PostgreSQL serves a certificate for 127.0.0.1 (as RDS's names its endpoint) from a CA of
    its own; (that CA's PEM, another CA's PEM)."""
    tls, other = c.make_tls(root / "db-tls", (c.LOOPBACK,)), c.make_tls(root / "other-tls")
    user = c.pg_user()
    for source, name in ((tls.cert, "server.crt"), (tls.key, "server.key")):
        target = datadir / name
        shutil.copyfile(source, target)
        target.chmod(0o600)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(target, entry.pw_uid, entry.pw_gid)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    return tls.ca_cert, other.ca_cert


@pytest.fixture(scope="module")
def rds_like():
    """A PostgreSQL with only the `mlflow` database and a master user, as RDS creates it, serving
    TLS with a certificate for its address signed by a CA of its own."""
    root = Path(tempfile.mkdtemp(prefix="rds-like-"))
    root.chmod(0o755)
    cluster = c.pg_init(root / "pgdata", root / "pw", ssl=True)  # a system server: ssl = on
    ca, other_ca = serve_tls(root, root / "pgdata")
    pg = c.pg_start(cluster, c.free_port(), root / "pg.log")
    moto = c.moto_start(c.free_port(), root / "moto.log")
    try:
        import psycopg2

        password = c.new_password()
        conn = psycopg2.connect(
            host=c.LOOPBACK,
            port=pg.extra["port"],
            user="postgres",
            password=cluster.superuser_password,
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE mlflow LOGIN CREATEDB PASSWORD %s", (password,))
            cur.execute("CREATE DATABASE mlflow OWNER mlflow")
        conn.close()
        yield {
            "port": pg.extra["port"], "password": password, "moto": moto.url, "root": root,
            "ca": ca, "other_ca": other_ca, "server_tls": c.make_tls(root / "server-tls"),
        }  # fmt: skip
    finally:
        pg.stop()
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class VmSecrets:
    source: SecretSource
    admin_password: str
    users: dict[str, str]


def vm_secrets(rds_like, db_password: str | None = None) -> VmSecrets:
    """The secrets the platform stacks create, in moto's Secrets Manager: the database's, the
    admin's, the TLS key, and one password per workload user."""
    sm = secrets_manager(rds_like)
    tag = uuid.uuid4().hex[:8]

    def put(name: str, value: str) -> str:
        return sm.create_secret(Name=f"{name}-{tag}", SecretString=value)["ARN"]

    db = put(
        "rds-db",
        json.dumps({"username": "mlflow", "password": db_password or rds_like["password"]}),
    )
    admin_password = c.new_password()
    admin = put("mlflow-admin", json.dumps(
        {"username": "admin", "password": admin_password, "flaskSecretKey": c.new_password()}
    ))  # fmt: skip
    # The key, then the certificate: one secret (infra/tls.py).
    tls_key = put("mlflow-tls-key", rds_like["server_tls"].key.read_text()
                  + rds_like["server_tls"].cert.read_text())  # fmt: skip
    users = {i.username: c.new_password() for i in IDENTITIES}
    refs = {user: put(f"mlflow-{user}", password) for user, password in users.items()}
    return VmSecrets(
        SecretSource("aws", db, admin, tls_key, refs, region="us-east-1"), admin_password, users
    )


def secrets_manager(rds_like):
    return boto3.client(
        "secretsmanager", endpoint_url=rds_like["moto"], region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip


def vm_settings(rds_like, tmp_path: Path, **overrides) -> ServerSettings:
    """As on the VM: what the server presents on the runtime dir, put there by the launcher."""
    port = overrides.pop("port", c.free_port())
    return ServerSettings(**{
        "db_host": c.LOOPBACK,
        "db_port": rds_like["port"],
        "artifacts_destination": "s3://vm-artifacts/mlflow",
        "auth_config_path": str(tmp_path / "run" / "basic_auth.ini"),
        "host": c.LOOPBACK,
        "port": port,
        "workers": 1,
        "allowed_hosts": (f"{c.LOOPBACK}:{port}",),
        "tls_certfile": str(tmp_path / "run" / "tls.crt"),
        "tls_keyfile": str(tmp_path / "run" / "tls.key"),
        "mlflow_bin": str(c.BIN / "mlflow"),
        **overrides,
    })  # fmt: skip


def vm_spec(rds_like, settings: ServerSettings, source: SecretSource) -> dict:
    return server_spec(settings, source)


def test_launcher_starts_the_rendered_server_with_secrets_from_secrets_manager(rds_like, tmp_path):
    secrets = vm_secrets(rds_like)
    c.ensure_bucket(rds_like["moto"], "vm-artifacts")
    # As on the VM: the database's certificate is checked against its CA, name included.
    settings = vm_settings(
        rds_like, tmp_path, db_sslmode="verify-full", db_sslrootcert=str(rds_like["ca"])
    )
    spec = vm_spec(rds_like, settings, secrets.source)
    text = json.dumps(spec)
    assert rds_like["password"] not in text and secrets.admin_password not in text
    assert "PRIVATE KEY" not in text and not any(p in text for p in secrets.users.values())
    spec_path = tmp_path / "server.json"
    spec_path.write_text(text)

    env = {
        **c.FAKE_AWS,
        "AWS_ENDPOINT_URL": rds_like["moto"],
        "MLFLOW_S3_ENDPOINT_URL": rds_like["moto"],
    }
    proc = c.spawn("vm-launcher", [*LAUNCHER, str(spec_path)], tmp_path / "vm.log", env)
    url = f"https://{c.LOOPBACK}:{settings.port}"
    ca = str(rds_like["server_tls"].ca_cert)
    try:
        c.wait_until(
            proc, c.https_ok(f"{url}/health", rds_like["server_tls"].ca_cert), 180, "healthy"
        )
        search = f"{url}/api/2.0/mlflow/experiments/search"
        assert (
            requests.get(search, params={"max_results": 1}, timeout=10, verify=ca).status_code
            == 401
        )
        ok = requests.get(
            search, params={"max_results": 1}, auth=("admin", secrets.admin_password),
            timeout=10, verify=ca,
        )  # fmt: skip
        assert ok.status_code == 200
        # The key came from the secret store onto the runtime dir, readable by the server only.
        key = tmp_path / "run" / "tls.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_text() == rds_like["server_tls"].key.read_text()
        # The workload users exist with their secrets' passwords, and only their grants.
        trainer = ("trainer", secrets.users["trainer"])
        experiment = requests.get(
            f"{url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "nyc-taxi-duration"}, auth=trainer, timeout=10, verify=ca,
        ).json()["experiment"]["experiment_id"]  # fmt: skip
        run = {"experiment_id": experiment}
        create = f"{url}/api/2.0/mlflow/runs/create"
        assert requests.post(create, json=run, auth=trainer, timeout=10, verify=ca).ok
        reader = ("model-api", secrets.users["model-api"])
        assert (
            requests.post(create, json=run, auth=reader, timeout=10, verify=ca).status_code == 403
        )
        # The launcher replaced itself with the server: same pid, now `mlflow server`.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"server" in cmdline and b"--app-name" in cmdline
        assert rds_like["password"].encode() not in b" ".join(cmdline)
        assert (tmp_path / "run" / "basic_auth.ini").read_text() == spec["authIni"]
        # The server's own connections are TLS too (pg_stat_ssl, from the superuser).
        import psycopg2

        superuser = (rds_like["root"] / "pw").read_text().strip()
        conn = psycopg2.connect(host=c.LOOPBACK, port=rds_like["port"], user="postgres",
                                password=superuser, dbname="postgres")  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(
                "SELECT bool_and(s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                "USING (pid) WHERE a.usename = 'mlflow'"
            )
            all_tls, connections = cur.fetchone()
        conn.close()
        assert connections > 0 and all_tls
    finally:
        proc.stop()


def test_a_database_certificate_from_another_ca_is_refused(rds_like, tmp_path):
    """verify-full: a server whose certificate the pinned CA did not sign is not talked to."""
    settings = vm_settings(
        rds_like, tmp_path, db_sslmode="verify-full", db_sslrootcert=str(rds_like["other_ca"])
    )
    (tmp_path / "s.json").write_text(
        json.dumps(vm_spec(rds_like, settings, vm_secrets(rds_like).source))
    )
    result = subprocess.run(
        [*LAUNCHER, str(tmp_path / "s.json")],
        env={**c.FAKE_AWS, "AWS_ENDPOINT_URL": rds_like["moto"], "PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "certificate verify failed" in result.stderr and "Traceback" not in result.stderr


def test_launcher_fails_with_one_line_when_a_secret_is_missing(rds_like, tmp_path):
    users = {i.username: "arn:missing" for i in IDENTITIES}
    missing = SecretSource("aws", "arn:missing", "arn:missing", "arn:missing", users, "us-east-1")
    (tmp_path / "s.json").write_text(
        json.dumps(vm_spec(rds_like, vm_settings(rds_like, tmp_path), missing))
    )
    result = subprocess.run(
        [*LAUNCHER, str(tmp_path / "s.json")],
        env={**c.FAKE_AWS, "AWS_ENDPOINT_URL": rds_like["moto"], "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().startswith("mlflow launcher: ") and "Traceback" not in result.stderr
    )


def test_rotated_database_password_reaches_the_running_server(rds_like, tmp_path):
    """RDS rotates the managed password; `--refresh` (a systemd timer on the VM) rewrites the
    passfile and new connections use it, without restarting the server."""
    import psycopg2

    secrets = vm_secrets(rds_like)
    # Its own auth database (admin, users), apart from the test above.
    settings = vm_settings(rds_like, tmp_path, auth_db_name="mlflow_auth_rotation")
    spec_path = tmp_path / "server.json"
    spec_path.write_text(json.dumps(vm_spec(rds_like, settings, secrets.source)))
    env = {
        **c.FAKE_AWS,
        "AWS_ENDPOINT_URL": rds_like["moto"],
        "MLFLOW_S3_ENDPOINT_URL": rds_like["moto"],
    }
    proc = c.spawn("vm-launcher", [*LAUNCHER, str(spec_path)], tmp_path / "vm.log", env)
    url = f"https://{c.LOOPBACK}:{settings.port}"
    auth = ("admin", secrets.admin_password)
    try:
        c.wait_until(
            proc, c.https_ok(f"{url}/health", rds_like["server_tls"].ca_cert), 180, "healthy"
        )
        assert (tmp_path / "run" / "pgpass").stat().st_mode & 0o777 == 0o600

        # Rotate: new password in PostgreSQL and in the secret; drop the pool's connections.
        new_password = c.new_password()
        superuser = (rds_like["root"] / "pw").read_text().strip()
        conn = psycopg2.connect(
            host=c.LOOPBACK, port=rds_like["port"], user="postgres", password=superuser
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER ROLE mlflow PASSWORD %s", (new_password,))
            secrets_manager(rds_like).put_secret_value(
                SecretId=secrets.source.db_secret,
                SecretString=json.dumps({"username": "mlflow", "password": new_password}),
            )
            refreshed = subprocess.run(
                [*LAUNCHER, "--refresh", str(spec_path)],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
            )
            assert refreshed.returncode == 0, refreshed.stderr
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'mlflow'"
            )
        conn.close()

        created = requests.post(
            f"{url}/api/2.0/mlflow/experiments/create",
            json={"name": "after-rotation"},
            auth=auth,
            timeout=30,
            verify=str(rds_like["server_tls"].ca_cert),
        )
        assert created.status_code == 200, created.text
        assert new_password in (tmp_path / "run" / "pgpass").read_text()
    finally:
        proc.stop()
        # Put the original password back for the other tests of this module.
        conn = psycopg2.connect(
            host=c.LOOPBACK, port=rds_like["port"], user="postgres",
            password=(rds_like["root"] / "pw").read_text().strip(),
        )  # fmt: skip
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER ROLE mlflow PASSWORD %s", (rds_like["password"],))
        conn.close()


def test_each_workload_user_keeps_exactly_the_grants_the_platform_gives_it(rds_like, tmp_path):
    """A grant an admin added since (another experiment, a model, a role assigned to the user)
    is gone after the next start; the platform's grants are there, as the spec says."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore

    from infra import vm_launcher

    settings = vm_settings(rds_like, tmp_path)
    spec = vm_spec(rds_like, settings, vm_secrets(rds_like).source)
    env = {**os.environ, "PGPASSWORD": rds_like["password"], "MLFLOW_AUTH_CONFIG_PATH": "x"}
    vm_launcher.ensure_database(spec["database"], rds_like["password"])
    (tmp_path / "run").mkdir()
    Path(settings.auth_config_path).write_text(spec["authIni"])
    env["MLFLOW_AUTH_CONFIG_PATH"] = settings.auth_config_path
    vm_launcher.migrate(spec, env)
    passwords = {i.username: c.new_password() for i in IDENTITIES}
    identities = [i.as_dict() for i in IDENTITIES]
    with environ({"PGPASSWORD": rds_like["password"]}):
        vm_launcher.sync_identities(identities, passwords, spec["database"])
        auth = AuthStore()
        auth.init_db(spec["database"]["authUri"])

        def grants(user: str) -> set[tuple[str, str, str]]:
            roles = auth.list_user_roles(auth.get_user(user).id)
            return {(role.name.startswith("__user_") and "own" or role.name, p.resource_type,
                     p.permission) for role in roles for p in auth.list_role_permissions(role.id)}  # fmt: skip

        before = {user: grants(user) for user in passwords}
        assert before["model-api"] == {("own", "experiment", "READ"),
                                       ("own", "registered_model", "READ")}  # fmt: skip
        auth.create_experiment_permission("999", "model-api", "MANAGE")
        auth.create_registered_model_permission("someone-elses-model", "trainer", "MANAGE")
        role = auth.create_role("power-users", "default")
        auth.add_role_permission(role.id, "experiment", "*", "MANAGE")
        auth.assign_role_to_user(auth.get_user("model-api").id, role.id)
        assert grants("model-api") != before["model-api"]
        vm_launcher.sync_identities(identities, passwords, spec["database"])
        assert {user: grants(user) for user in passwords} == before
