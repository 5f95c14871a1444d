"""The VM start path for real: the server spec rendered for the VM, the launcher fetching secrets
from Secrets Manager (moto_server), creating the auth database on a fresh RDS-like PostgreSQL,
migrating both databases and exec'ing `mlflow server`; all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pytest
import requests

from infra.mlflow_server import ServerSettings
from infra.vm import SecretSource, server_spec
from scripts import components as c

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def tls_files(root: Path, datadir: Path) -> tuple[Path, Path]:
    """A CA, and a server certificate it signs for 127.0.0.1 (as RDS's names its endpoint),
    installed in the data directory; (the CA's PEM, another CA's PEM)."""
    import datetime as dt
    import ipaddress
    import pwd

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.UTC)

    def certificate(subject, issuer, key, signer, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(signer, hashes.SHA256())

    pems = []
    for label in ("test CA", "another CA"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(name(label), name(label), key, key, ca=True)
        pems.append((key, cert))
        (root / f"{label.replace(' ', '-')}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
        )
    ca_key, ca_cert = pems[0]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate(
        name(c.LOOPBACK), ca_cert.subject, server_key, ca_key, ca=False,
        san=[x509.IPAddress(ipaddress.ip_address(c.LOOPBACK))],
    )  # fmt: skip
    (datadir / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path = datadir / "server.key"
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    user = c.pg_user()
    if user:
        entry = pwd.getpwnam(user)
        for path in (key_path, datadir / "server.crt"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    with open(datadir / "postgresql.conf", "a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    return root / "test-CA.pem", root / "another-CA.pem"


@pytest.fixture(scope="module")
def rds_like():
    """A PostgreSQL with only the `mlflow` database and a master user, as RDS creates it, serving
    TLS with a certificate for its address signed by a CA of its own."""
    root = Path(tempfile.mkdtemp(prefix="rds-like-"))
    root.chmod(0o755)
    cluster = c.pg_init(root / "pgdata", root / "pw")
    ca, other_ca = tls_files(root, root / "pgdata")
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
            "ca": ca, "other_ca": other_ca,
        }  # fmt: skip
    finally:
        pg.stop()
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_launcher_starts_the_rendered_server_with_secrets_from_secrets_manager(rds_like, tmp_path):
    aws_env = {**c.FAKE_AWS, "AWS_ENDPOINT_URL": rds_like["moto"]}
    sm = boto3.client(
        "secretsmanager",
        endpoint_url=rds_like["moto"],
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    db_secret = sm.create_secret(
        Name="rds-db",
        SecretString=json.dumps({"username": "mlflow", "password": rds_like["password"]}),
    )["ARN"]
    admin_password = c.new_password()
    admin_secret = sm.create_secret(
        Name="mlflow-admin",
        SecretString=json.dumps(
            {"username": "admin", "password": admin_password, "flaskSecretKey": c.new_password()}
        ),
    )["ARN"]
    c.ensure_bucket(rds_like["moto"], "vm-artifacts")

    port = c.free_port()
    settings = ServerSettings(
        db_host=c.LOOPBACK,
        db_port=rds_like["port"],
        # As on the VM: the database's certificate is checked against its CA, name included.
        db_sslmode="verify-full",
        db_sslrootcert=str(rds_like["ca"]),
        artifacts_destination="s3://vm-artifacts/mlflow",
        auth_config_path=str(tmp_path / "run" / "basic_auth.ini"),
        host=c.LOOPBACK,
        port=port,
        workers=1,
        allowed_hosts=(f"{c.LOOPBACK}:{port}",),
        mlflow_bin=str(c.BIN / "mlflow"),
    )
    spec = server_spec(settings, SecretSource("aws", db_secret, admin_secret, region="us-east-1"))
    assert rds_like["password"] not in json.dumps(spec) and admin_password not in json.dumps(spec)
    spec_path = tmp_path / "server.json"
    spec_path.write_text(json.dumps(spec))

    env = {**aws_env, "MLFLOW_S3_ENDPOINT_URL": rds_like["moto"]}
    proc = c.spawn(
        "vm-launcher",
        [sys.executable, str(ROOT / "infra/vm_launcher.py"), str(spec_path)],
        tmp_path / "vm.log",
        env,
    )
    proc.url = f"http://{c.LOOPBACK}:{port}"
    try:
        c.wait_until(proc, c.http_ok(f"{proc.url}/health"), 180, "healthy")
        search = f"{proc.url}/api/2.0/mlflow/experiments/search"
        assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 401
        ok = requests.get(
            search, params={"max_results": 1}, auth=("admin", admin_password), timeout=10
        )
        assert ok.status_code == 200
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
    sm = boto3.client(
        "secretsmanager", endpoint_url=rds_like["moto"], region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip
    db_secret = sm.create_secret(
        Name="rds-db-other-ca",
        SecretString=json.dumps({"username": "mlflow", "password": rds_like["password"]}),
    )["ARN"]
    admin_secret = sm.create_secret(
        Name="mlflow-admin-other-ca",
        SecretString=json.dumps(
            {"username": "admin", "password": "x" * 20, "flaskSecretKey": c.new_password()}
        ),
    )["ARN"]
    settings = ServerSettings(
        db_host=c.LOOPBACK,
        db_port=rds_like["port"],
        db_sslmode="verify-full",
        db_sslrootcert=str(rds_like["other_ca"]),
        artifacts_destination="s3://vm-artifacts/mlflow",
        auth_config_path=str(tmp_path / "basic_auth.ini"),
        allowed_hosts=("x",),
        mlflow_bin=str(c.BIN / "mlflow"),
    )
    spec = server_spec(settings, SecretSource("aws", db_secret, admin_secret, region="us-east-1"))
    (tmp_path / "s.json").write_text(json.dumps(spec))
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra/vm_launcher.py"), str(tmp_path / "s.json")],
        env={**c.FAKE_AWS, "AWS_ENDPOINT_URL": rds_like["moto"], "PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "certificate verify failed" in result.stderr and "Traceback" not in result.stderr


def test_launcher_fails_with_one_line_when_a_secret_is_missing(rds_like, tmp_path):
    settings = ServerSettings(
        db_host=c.LOOPBACK,
        db_port=rds_like["port"],
        artifacts_destination="s3://vm-artifacts/mlflow",
        auth_config_path=str(tmp_path / "basic_auth.ini"),
        allowed_hosts=("x",),
        mlflow_bin=str(c.BIN / "mlflow"),
    )
    spec = server_spec(
        settings, SecretSource("aws", "arn:missing", "arn:missing", region="us-east-1")
    )
    (tmp_path / "s.json").write_text(json.dumps(spec))
    result = subprocess.run(
        [sys.executable, str(ROOT / "infra/vm_launcher.py"), str(tmp_path / "s.json")],
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

    sm = boto3.client(
        "secretsmanager", endpoint_url=rds_like["moto"], region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip
    db_secret = sm.create_secret(
        Name="rds-db-rotating",
        SecretString=json.dumps({"username": "mlflow", "password": rds_like["password"]}),
    )["ARN"]
    admin_password = c.new_password()
    admin_secret = sm.create_secret(
        Name="mlflow-admin-rotating",
        SecretString=json.dumps(
            {"username": "admin", "password": admin_password, "flaskSecretKey": c.new_password()}
        ),
    )["ARN"]
    port = c.free_port()
    settings = ServerSettings(
        db_host=c.LOOPBACK,
        db_port=rds_like["port"],
        auth_db_name="mlflow_auth_rotation",  # its own admin user, apart from the test above
        artifacts_destination="s3://vm-artifacts/mlflow",
        auth_config_path=str(tmp_path / "run" / "basic_auth.ini"),
        host=c.LOOPBACK,
        port=port,
        workers=1,
        allowed_hosts=(f"{c.LOOPBACK}:{port}",),
        mlflow_bin=str(c.BIN / "mlflow"),
    )
    spec_path = tmp_path / "server.json"
    spec_path.write_text(
        json.dumps(server_spec(settings, SecretSource("aws", db_secret, admin_secret, "us-east-1")))
    )
    env = {
        **c.FAKE_AWS,
        "AWS_ENDPOINT_URL": rds_like["moto"],
        "MLFLOW_S3_ENDPOINT_URL": rds_like["moto"],
    }
    launcher = [sys.executable, str(ROOT / "infra/vm_launcher.py")]
    proc = c.spawn("vm-launcher", [*launcher, str(spec_path)], tmp_path / "vm.log", env)
    url = f"http://{c.LOOPBACK}:{port}"
    auth = ("admin", admin_password)
    try:
        c.wait_until(proc, c.http_ok(f"{url}/health"), 180, "healthy")
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
            sm.put_secret_value(
                SecretId=db_secret,
                SecretString=json.dumps({"username": "mlflow", "password": new_password}),
            )
            refreshed = subprocess.run(
                [*launcher, "--refresh", str(spec_path)],
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
        )
        assert created.status_code == 200, created.text
        assert new_password in (tmp_path / "run" / "pgpass").read_text()
    finally:
        proc.stop()
