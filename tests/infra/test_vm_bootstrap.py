"""infra/vm_bootstrap.sh, run for real with bash: the network and system tools it calls (curl, dpkg,
systemctl, sleep, the log agent) are stand-ins on PATH that record their calls; uv is a stand-in
packed in a wheel, which the script downloads, checks against its sha256 and unpacks as on a VM.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra.vm import BOOTSTRAP_SOURCE, DatabaseCa, LogShipping, bootstrap_env

RECORDER = """#!/bin/bash
echo "{name} $*" >> "$CALLS"
"""
CURL = """#!/bin/bash
# curl ... --output FILE URL: serve URL's last path element from $SERVED; fail while a
# fail-<name> count file says so.
echo "curl $*" >> "$CALLS"
out="" url=""
while [ $# -gt 0 ]; do
  case "$1" in --output) out="$2"; shift ;; --retry) shift ;; -*) ;; *) url="$1" ;; esac
  shift
done
name="${url##*/}"
if [ -s "$SERVED/fail-$name" ]; then
  left=$(cat "$SERVED/fail-$name"); echo $((left - 1)) > "$SERVED/fail-$name"
  [ "$left" -gt 1 ] || : > "$SERVED/fail-$name"
  echo "curl: (7) Failed to connect" >&2; exit 7
fi
cp "$SERVED/$name" "$out"
"""
FAKE_UV = """#!/bin/bash
echo "uv $*" >> "$CALLS"
if [ "$1" = venv ]; then
  venv="${@: -1}"; mkdir -p "$venv/bin"
  printf '#!/bin/bash\necho "python $*" >> "$CALLS"\n' > "$venv/bin/python"
  chmod +x "$venv/bin/python"
fi
if [ "$1 $2" = "pip sync" ] && [ -e "$SERVED/fail-pip" ]; then
  echo "error: Failed to fetch: https://pypi.org/simple/mlflow/" >&2; exit 2
fi
"""


class Bootstrap:
    def __init__(self, root: Path, provider: str) -> None:
        self.root, self.provider = root, provider
        self.served, self.bin = root / "served", root / "bin"
        self.served.mkdir()
        self.bin.mkdir()
        self.calls = root / "calls.log"
        for name in ("dpkg", "systemctl", "sleep", "cloudwatch-agent-ctl", "apt-get", "useradd"):
            self.tool(name, RECORDER.format(name=name))
        self.tool("curl", CURL)
        wheel = self.served / "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("uv-0.13.9.data/scripts/uv", FAKE_UV)
            archive.writestr("uv-0.13.9.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        self.wheel_sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        (self.served / "us-east-1-bundle.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        (self.served / "amazon-cloudwatch-agent.deb").write_bytes(b"deb")
        (self.served / "add-google-cloud-ops-agent-repo.sh").write_text(
            'echo "ops-agent-repo $*" >> "$CALLS"\n'
        )
        (root / "agent.json").write_text("{}")
        self.prefix = root / "opt/mlflow"

    def tool(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(body)
        path.chmod(0o755)

    def run(self, acme: bool = False, **overrides: str) -> subprocess.CompletedProcess:
        r = self.root
        ca = (
            DatabaseCa(
                url="https://truststore.pki.rds.amazonaws.com/us-east-1/us-east-1-bundle.pem"
            )
            if self.provider == "aws"
            else DatabaseCa(pem="PEM")
        )
        paths = {
            "PREFIX": str(self.prefix),
            "VENV": str(self.prefix / "venv"),
            "REQUIREMENTS": str(r / "requirements.txt"),
            "UV_WHEEL_URL": "https://files.pythonhosted.org/packages/3d/aa/uv-0.13.9-py3-none-"
            "manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "UV_WHEEL_SHA256": self.wheel_sha256,
            "DB_CA_PATH": str(r / "db-ca.pem"),
            "LOG_AGENT_CONFIG": str(r / "agent.json"),
            "CLOUDWATCH_AGENT_CTL": str(self.bin / "cloudwatch-agent-ctl"),
            "OPS_AGENT_CONFIG": str(r / "ops-agent-config.yaml"),
            "LOG_DIR": str(r / "var/log/mlflow"),
            "SERVICE_USER": getpass.getuser(),
            "STATUS_FILE": str(r / "bootstrap.status"),
            "CONSOLE": str(r / "console"),
            "APT_RETRIES_CONF": str(r / "apt-retries.conf"),
            **overrides,
        }
        env_file = r / "bootstrap.env"
        logs = LogShipping(self.provider, "/mlflow/dev")
        env_file.write_text(bootstrap_env(ca, logs, acme=acme, **paths))
        script = r / "bootstrap.sh"
        script.write_text(BOOTSTRAP_SOURCE.read_text())  # as the bundle carries it
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "CALLS": str(self.calls),
            "SERVED": str(self.served),
        }
        return subprocess.run(
            ["bash", str(script), str(env_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def log(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def status(self) -> str:
        return (self.root / "bootstrap.status").read_text().strip()

    def console(self) -> str:
        return (self.root / "console").read_text().strip()


@pytest.fixture
def aws(tmp_path) -> Bootstrap:
    return Bootstrap(tmp_path, "aws")


def test_a_clean_bootstrap_runs_every_step_in_order_and_says_done(aws):
    result = aws.run()
    assert result.returncode == 0, result.stderr
    assert aws.status() == aws.console() == "MLFLOW BOOTSTRAP DONE"
    calls = aws.log()
    order = [
        next(i for i, c in enumerate(calls) if c.startswith(prefix))
        for prefix in (
            "curl",  # the agent first: the bootstrap's own log ships from here on
            "dpkg -i -E",
            "cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:",
            "uv venv --clear --managed-python --python 3.11 ",
            "uv pip sync --python ",
            "systemctl daemon-reload",
            "systemctl enable --now mlflow.service mlflow-db-password.timer mlflow-gc.timer mlflow-tls.timer",
        )
    ]
    assert order == sorted(order)
    assert (aws.root / "apt-retries.conf").read_text() == 'Acquire::Retries "5";\n'
    assert not any(c.startswith("useradd") for c in calls)  # the user exists (here: this one)
    [sync] = [c for c in calls if c.startswith("uv pip sync")]
    assert "--require-hashes --only-binary :all:" in sync
    assert sync.endswith(str(aws.root / "requirements.txt"))
    assert (aws.root / "db-ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert os.access(aws.prefix / "bin/uv", os.X_OK)  # unpacked from the checked wheel
    assert not (aws.prefix / "uv.whl").exists() and not (aws.prefix / "uv-cache").exists()
    assert not any(c.startswith("sleep") for c in calls)


def test_without_a_domain_no_acme_client(aws):
    assert aws.run().returncode == 0
    assert not any("certbot" in c or "mlflow-acme" in c for c in aws.log())


def test_with_a_domain_certbot_is_installed_and_one_timer_keeps_the_certificate(aws):
    result = aws.run(acme=True)
    assert result.returncode == 0, result.stderr
    calls = aws.log()
    order = [
        calls.index(call)
        for call in (
            "apt-get update -q",
            "apt-get install -y -q --no-install-recommends certbot",
            "systemctl enable --now mlflow.service mlflow-db-password.timer mlflow-gc.timer mlflow-tls.timer",
            "systemctl disable --now certbot.timer",  # Ubuntu's: two schedules, one certificate
            "systemctl enable --now mlflow-acme.timer",
        )
    ]
    assert order == sorted(order)
    assert aws.status() == "MLFLOW BOOTSTRAP DONE"


def test_a_transient_download_failure_is_retried(aws):
    (aws.served / "fail-us-east-1-bundle.pem").write_text("2")
    result = aws.run()
    assert result.returncode == 0, result.stderr
    assert "step database CA: attempt 1 of 5 failed" in result.stderr
    assert [c for c in aws.log() if c.startswith("sleep")] == ["sleep 10", "sleep 20"]
    assert aws.status() == "MLFLOW BOOTSTRAP DONE"


def test_a_step_that_keeps_failing_stops_the_bootstrap_visibly(aws):
    """The verdict reaches the serial console and the status file; the server is never enabled,
    so there is no crash loop to read it from."""
    (aws.served / "fail-pip").write_text("always")
    result = aws.run()
    assert result.returncode != 0
    verdict = (
        "MLFLOW BOOTSTRAP FAILED at step packages (exit 1); see /var/log/cloud-init-output.log"
    )
    assert aws.status() == aws.console() == verdict
    assert verdict in result.stderr  # the bootstrap log (cloud-init-output.log), shipped
    calls = aws.log()
    assert len([c for c in calls if c.startswith("uv pip sync")]) == 5
    assert not any(c.startswith("systemctl") for c in calls)


def test_a_uv_wheel_that_is_not_the_locked_one_is_refused(aws):
    result = aws.run(UV_WHEEL_SHA256="0" * 64)
    assert result.returncode != 0
    assert aws.status().startswith("MLFLOW BOOTSTRAP FAILED at step uv ")
    assert not (aws.prefix / "bin/uv").exists()
    assert not any(c.startswith("uv ") for c in aws.log())


def test_gcp_installs_the_ops_agent_with_the_shipping_config(tmp_path):
    gcp = Bootstrap(tmp_path, "gcp")
    (gcp.root / "agent.json").write_text("logging: {}\n")
    result = gcp.run()
    assert result.returncode == 0, result.stderr
    calls = gcp.log()
    assert "ops-agent-repo --also-install" in calls
    assert (gcp.root / "ops-agent-config.yaml").read_text() == "logging: {}\n"
    restart = calls.index("systemctl restart google-cloud-ops-agent")
    assert restart < calls.index(
        "systemctl enable --now mlflow.service mlflow-db-password.timer mlflow-gc.timer mlflow-tls.timer"
    )
    assert not (gcp.root / "db-ca.pem").exists()  # the CA came in the user-data
    assert gcp.status() == "MLFLOW BOOTSTRAP DONE"


def test_a_log_agent_that_does_not_install_leaves_the_server_starting(aws):
    """The agents come from their vendors at their latest release: a bad one must not keep a
    replacement VM's server from starting. The bootstrap says so and goes on."""
    (aws.served / "fail-amazon-cloudwatch-agent.deb").write_text("99")
    result = aws.run()
    assert result.returncode == 0, result.stderr
    assert "MLFLOW BOOTSTRAP WARNING: the log agent did not install" in result.stderr
    assert aws.status() == "MLFLOW BOOTSTRAP DONE"
    calls = aws.log()
    assert (
        "systemctl enable --now mlflow.service mlflow-db-password.timer mlflow-gc.timer mlflow-tls.timer"
        in calls
    )
    assert not any(c.startswith("dpkg") or c.startswith("cloudwatch-agent-ctl") for c in calls)


def test_an_unknown_log_agent_is_still_a_stop(aws):
    result = aws.run(LOG_AGENT="azure")
    assert result.returncode != 0
    assert aws.status().startswith("MLFLOW BOOTSTRAP FAILED at step log agent ")
