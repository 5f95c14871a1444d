"""scripts/ensure-test-tools, which `make test` runs first: cloud-init (for `cloud-init schema`)
and a PostgreSQL server with SSL come only from the system's packages, so they are installed with
apt-get when that can work (root, apt present) and otherwise the run stops with the exact
command, never a silent skip. The script runs for real with /bin/sh; `id`, `apt-get`,
`cloud-init` and `initdb` are stand-ins on its PATH, and the Debian PostgreSQL directory it looks
in is an empty one of the test's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-test-tools"


def tool(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path):
    """A PATH with only the stand-ins given, and a record of apt-get's calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "apt-calls"

    def make(uid: int, apt: bool = False, apt_installs: bool = True, has_cloud_init=False,
             has_postgres=True):  # fmt: skip
        tool(bindir, "id", f"echo {uid}")
        if has_postgres:
            tool(bindir, "initdb", "exit 0")
        if apt:
            install = (
                f"printf '#!/bin/sh\\n' > {bindir}/cloud-init; /bin/chmod +x {bindir}/cloud-init"
            )
            tool(bindir, "apt-get", f'echo "$*" >> {calls}\n' + (
                f'case "$*" in *install*) {install};; esac' if apt_installs else ":"
            ))  # fmt: skip
        if has_cloud_init:
            tool(bindir, "cloud-init", "exit 0")
        return subprocess.run(
            ["/bin/sh", str(SCRIPT)],
            env={"PATH": str(bindir), "MLOPS_PG_LIB": str(tmp_path / "no-postgresql")},
            capture_output=True,
            text=True,
            timeout=30,
        )

    make.calls = lambda: calls.read_text().splitlines() if calls.exists() else []
    return make


def test_present_means_nothing_to_do(machine):
    run = machine(uid=1000, apt=True, has_cloud_init=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert machine.calls() == []


def test_as_root_with_apt_it_is_installed(machine):
    run = machine(uid=0, apt=True)
    assert run.returncode == 0, run.stderr
    assert machine.calls() == [
        "update -qq",
        "install -y -qq --no-install-recommends cloud-init",
    ]
    assert "installing from the system's packages for the tests: cloud-init" in run.stdout


def test_without_root_it_stops_with_the_exact_command(machine):
    run = machine(uid=1000, apt=True)
    assert run.returncode == 2
    assert "sudo apt-get install -y --no-install-recommends cloud-init" in run.stderr
    assert machine.calls() == []  # not even tried


def test_without_apt_it_stops_naming_the_package(machine):
    run = machine(uid=0)
    assert run.returncode == 2
    assert "distribution's packages for: cloud-init" in run.stderr


def test_an_install_that_leaves_no_cloud_init_is_a_failure(machine):
    run = machine(uid=0, apt=True, apt_installs=False)
    assert run.returncode == 2
    assert "not on PATH" in run.stderr


def test_no_postgresql_server_is_installed_or_asked_for_with_cloud_init(machine):
    run = machine(uid=0, apt=True, has_postgres=False)
    assert run.returncode == 0, run.stderr
    assert machine.calls()[-1] == "install -y -qq --no-install-recommends cloud-init postgresql"
    stop = machine(uid=1000, apt=True, has_postgres=False, has_cloud_init=True)
    assert stop.returncode == 2
    assert "sudo apt-get install -y --no-install-recommends postgresql" in stop.stderr
