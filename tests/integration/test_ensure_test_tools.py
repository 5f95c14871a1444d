"""scripts/ensure-test-tools, which `make test` runs first: a PostgreSQL server with SSL and HAProxy
come only from the system's packages, so they are installed with apt-get when that can work
(root, apt present) and otherwise the run stops with the exact command, never a silent skip. The
script runs for real with /bin/sh; `id`, `apt-get`, `initdb` and `haproxy` are stand-ins on its
PATH, and the Debian directories it looks in are the test's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-test-tools"


def tool(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path):
    """A PATH with only the stand-ins given, and a record of apt-get's calls. apt-get's install
    puts an initdb where Debian does (PG_LIB/<version>/bin), unless told not to."""
    bindir, pg_lib, sbin = tmp_path / "bin", tmp_path / "postgresql", tmp_path / "sbin"
    bindir.mkdir()
    calls = tmp_path / "apt-calls"

    def make(uid: int, apt: bool = False, apt_installs: bool = True, has_postgres=False,
             has_haproxy=True):  # fmt: skip
        tool(bindir / "id", f"echo {uid}")
        if has_postgres:
            tool(bindir / "initdb", "exit 0")
        if has_haproxy:
            tool(bindir / "haproxy", "exit 0")
        if apt:
            initdb, haproxy = pg_lib / "17/bin/initdb", sbin / "haproxy"
            install = "; ".join(
                f'case "$*" in *{package}*) mkdir -p {path.parent}; '
                f"printf '#!/bin/sh\\n' > {path}; chmod +x {path};; esac"
                for package, path in (("postgresql", initdb), ("haproxy", haproxy))
            )
            tool(bindir / "apt-get", f'echo "$*" >> {calls}\n' + (
                f'case "$*" in *install*) {install};; esac' if apt_installs else ":"
            ))  # fmt: skip
            for name in ("mkdir", "chmod", "printf"):
                (bindir / name).symlink_to(
                    f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else f"/bin/{name}"
                )
        return subprocess.run(
            ["/bin/sh", str(SCRIPT)],
            env={
                "PATH": str(bindir),
                "MLOPS_PG_LIB": str(pg_lib),
                "MLOPS_HAPROXY": str(sbin / "haproxy"),
            },  # fmt: skip
            capture_output=True,
            text=True,
            timeout=30,
        )

    make.calls = lambda: calls.read_text().splitlines() if calls.exists() else []
    return make


def test_present_means_nothing_to_do(machine):
    run = machine(uid=1000, apt=True, has_postgres=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert machine.calls() == []


def test_as_root_with_apt_it_is_installed(machine):
    run = machine(uid=0, apt=True)
    assert run.returncode == 0, run.stderr
    assert machine.calls() == ["update -qq", "install -y -qq --no-install-recommends postgresql"]
    assert "installing from the system's packages for the tests: postgresql" in run.stdout


def test_without_root_it_stops_with_the_exact_command(machine):
    run = machine(uid=1000, apt=True)
    assert run.returncode == 2
    assert "sudo apt-get install -y --no-install-recommends postgresql" in run.stderr
    assert machine.calls() == []  # not even tried


def test_without_apt_it_stops_naming_the_package(machine):
    run = machine(uid=0)
    assert run.returncode == 2
    assert "distribution's package for: postgresql" in run.stderr


def test_an_install_that_leaves_no_server_is_a_failure(machine):
    run = machine(uid=0, apt=True, apt_installs=False)
    assert run.returncode == 2
    assert "no initdb is on PATH" in run.stderr


def test_haproxy_missing_is_installed_with_postgresql(machine):
    run = machine(uid=0, apt=True, has_haproxy=False)
    assert run.returncode == 0, run.stderr
    assert machine.calls() == [
        "update -qq",
        "install -y -qq --no-install-recommends postgresql haproxy",
    ]


def test_haproxy_alone_missing_without_root_names_it(machine):
    run = machine(uid=1000, apt=True, has_postgres=True, has_haproxy=False)
    assert run.returncode == 2
    assert "sudo apt-get install -y --no-install-recommends haproxy" in run.stderr
