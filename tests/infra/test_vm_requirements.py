"""The tracking VM's environment from uv.lock: the same packages uv exports, installable as rendered
(uv itself, from its cache: no network), complete, and refused when a hash does not match."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from infra.vm_requirements import ENVIRONMENT, Lock, LockError, requirements

UV = shutil.which("uv")
CLOUD_IMPORTS = {
    "server-aws": "import boto3",
    "server-gcp": "from google.cloud import secretmanager, storage",
}


def uv() -> str:
    if UV is None:
        pytest.fail("uv is not on PATH (`make install` needs it too; .ci/run installs it)")
    return UV


@pytest.mark.parametrize("group", ["server-aws", "server-gcp"])
def test_the_closure_is_what_uv_exports_for_the_vm(group):
    exported = subprocess.run(
        [uv(), "export", "--frozen", "--only-group", group, "--no-emit-project", "--no-hashes",
         "--no-header", "--no-annotate"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    theirs = {}
    for line in exported.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**ENVIRONMENT, "extra": ""}):
                theirs[req.name] = str(req.specifier).removeprefix("==")
    ours = {pin.name: pin.version for pin in Lock().group(group)}
    assert ours == theirs
    assert all(pin.hashes for pin in Lock().group(group))


@pytest.mark.slow
@pytest.mark.parametrize("group", ["server-aws", "server-gcp"])
def test_the_rendered_requirements_install_complete_and_hash_checked(group, tmp_path):
    """What the VM runs (`uv pip sync --require-hashes --only-binary :all:`), here against uv's
    cache (--offline) and this machine's Python 3.11 instead of a downloaded one."""
    text = requirements(group)
    (tmp_path / "requirements.txt").write_text(text)
    venv = tmp_path / "venv"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    sync = [uv(), "pip", "sync", "--offline", "--python", str(venv / "bin/python"),
            "--require-hashes", "--only-binary", ":all:"]  # fmt: skip
    done = subprocess.run(
        [*sync, str(tmp_path / "requirements.txt")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check = subprocess.run(
        [uv(), "pip", "check", "--python", str(venv / "bin/python")], capture_output=True, text=True
    )
    report = check.stdout + check.stderr
    assert check.returncode == 0 and "All installed packages are compatible" in report, report
    probe = (
        "import mlflow, mlflow.server.auth, psycopg2, flask_wtf; "
        f"{CLOUD_IMPORTS[group]}; print(mlflow.__version__)"
    )
    version = subprocess.run(
        [str(venv / "bin/python"), "-W", "ignore", "-c", probe],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert f"\nmlflow=={version} " in text

    # One changed hash and nothing installs.
    pin = text.index("--hash=sha256:", text.index("\nmlflow==")) + len("--hash=sha256:")
    tampered = text[:pin] + ("1" if text[pin] == "0" else "0") + text[pin + 1 :]
    (tmp_path / "tampered.txt").write_text(tampered)
    fresh = tmp_path / "fresh"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(fresh)], check=True)
    sync[sync.index(str(venv / "bin/python"))] = str(fresh / "bin/python")
    refused = subprocess.run(
        [*sync, str(tmp_path / "tampered.txt")], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "Hash mismatch for `mlflow==" in refused.stderr


def test_a_package_without_a_wheel_for_the_vm_is_a_clear_error(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text(
        'version = 1\nrequires-python = "==3.11.*"\n\n'
        '[[package]]\nname = "mlops-platform"\nversion = "0.1.0"\nsource = { editable = "." }\n\n'
        '[package.dev-dependencies]\nserver-aws = [{ name = "onlymac" }]\n\n'
        '[[package]]\nname = "onlymac"\nversion = "1.0"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        'wheels = [{ url = "https://files.example/onlymac-1.0-cp311-cp311-macosx_11_0_arm64.whl",'
        ' hash = "sha256:00" }]\n'
    )
    with pytest.raises(LockError, match=r"onlymac 1.0: no wheel in uv.lock for CPython 3.11"):
        requirements("server-aws", Lock(lock))
    with pytest.raises(LockError, match="no dependency group 'server-azure'"):
        requirements("server-azure", Lock(lock))
