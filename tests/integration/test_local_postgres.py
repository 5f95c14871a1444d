"""The local platform's PostgreSQL as root: it runs as an unprivileged user, which must reach its
data. It never loosens a directory outside its own; where the data's parents are closed to that
user (root's clone in a private home), the data goes where it can reach and a symlink says where."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from scripts import components as c

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
