"""The rendered cloud-init document is valid cloud-config and its shell passes shellcheck."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.infra.test_aws_platform import EC2

CLOUD_INIT = shutil.which("cloud-init")


def test_user_data_passes_cloud_init_schema(declared, tmp_path):
    if CLOUD_INIT is None:
        pytest.fail("cloud-init is not installed: `apt-get install -y cloud-init` (.ci/run does)")
    path = tmp_path / "user-data.yaml"
    path.write_text(declared.one(EC2)["inputs"]["userData"])
    result = subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_every_shell_command_in_user_data_passes_shellcheck(declared, tmp_path):
    """runcmd entries given as strings run through sh; lists are exec'd without a shell."""
    from scripts.components import BIN

    document = yaml.safe_load(declared.one(EC2)["inputs"]["userData"])
    shell = [c for c in document.get("runcmd", []) if isinstance(c, str)]
    shell += [f["content"] for f in document["write_files"] if f["content"].startswith("#!/bin/")]
    for i, script in enumerate(shell):
        path = tmp_path / f"snippet-{i}.sh"
        body = script if script.startswith("#!") else f"#!/bin/sh\n{script}\n"
        path.write_text(body)
        result = subprocess.run(
            [str(BIN / "shellcheck"), str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout
    # Every runcmd entry is an argv list today: nothing goes through a shell at all.
    assert all(isinstance(c, list) for c in document["runcmd"])


def test_systemd_unit_restarts_and_runs_unprivileged(declared):
    document = yaml.safe_load(declared.one(EC2)["inputs"]["userData"])
    [unit] = [f["content"] for f in document["write_files"] if f["path"].endswith("mlflow.service")]
    assert "Restart=always" in unit and "User=mlflow" in unit and "NoNewPrivileges=true" in unit
    [pins] = [c for c in document["runcmd"] if isinstance(c, list) and c[1:2] == ["install"]]
    assert any(p.startswith("mlflow[auth]==") for p in pins) and any(
        p.startswith("boto3==") for p in pins
    )


def test_rotated_database_password_is_refreshed_by_a_timer(declared):
    """RDS rotates its managed password; the VM re-reads it every 10 minutes without a restart."""
    document = yaml.safe_load(declared.one(EC2)["inputs"]["userData"])
    files = {f["path"]: f["content"] for f in document["write_files"]}
    timer = files["/etc/systemd/system/mlflow-db-password.timer"]
    assert "OnUnitActiveSec=10min" in timer
    assert (
        "--refresh /etc/mlflow/server.json"
        in files["/etc/systemd/system/mlflow-db-password.service"]
    )
    assert [
        "systemctl",
        "enable",
        "--now",
        "mlflow.service",
        "mlflow-db-password.timer",
    ] in document["runcmd"]


def test_the_server_verifies_the_database_with_the_rds_ca(declared):
    """The CA bundle is fetched (over HTTPS, with retries) before the server starts, and both
    the server and the launcher connect with verify-full against it."""
    from infra.vm import DB_CA_PATH

    assert declared.one("aws:rds/instance:Instance")["inputs"]["caCertIdentifier"] == (
        "rds-ca-rsa2048-g1"
    )
    document = yaml.safe_load(declared.one(EC2)["inputs"]["userData"])
    steps = document["runcmd"]
    [fetch] = [i for i, c in enumerate(steps) if c[0] == "curl" and DB_CA_PATH in c]
    [start] = [i for i, c in enumerate(steps) if c[:2] == ["systemctl", "enable"]]
    assert fetch < start
    assert steps[fetch][-1] == (
        "https://truststore.pki.rds.amazonaws.com/us-east-1/us-east-1-bundle.pem"
    )
    assert steps[fetch][steps[fetch].index("--output") + 1] == DB_CA_PATH
    spec = yaml.safe_load(
        next(
            f["content"] for f in document["write_files"] if f["path"] == "/etc/mlflow/server.json"
        )
    )
    assert (spec["database"]["sslmode"], spec["database"]["sslrootcert"]) == (
        "verify-full",
        DB_CA_PATH,
    )
    assert spec["database"]["backendUri"].endswith(f"?sslmode=verify-full&sslrootcert={DB_CA_PATH}")


def test_user_data_fits_ec2s_16_kb(declared):
    """EC2 refuses user-data over 16 KB (raw, before base64): large files are fetched at boot."""
    size = len(declared.one(EC2)["inputs"]["userData"].encode())
    assert size < 16 * 1024, f"{size} bytes"


def test_server_and_bootstrap_logs_leave_the_vm(declared):
    """The CloudWatch agent ships the server's log file and cloud-init's output (a bootstrap
    that fails is visible) to two groups of this stack; the role may write only there."""
    from infra.vm import BOOTSTRAP_LOG, SERVER_LOG

    document = yaml.safe_load(declared.one(EC2)["inputs"]["userData"])
    files = {f["path"]: f["content"] for f in document["write_files"]}
    unit = files["/etc/systemd/system/mlflow.service"]
    assert f"StandardOutput=append:{SERVER_LOG}" in unit and "LogsDirectory=mlflow" in unit
    agent = json.loads(files["/etc/mlflow/log-agent.json"])
    collected = {
        f["file_path"]: f["log_group_name"]
        for f in agent["logs"]["logs_collected"]["files"]["collect_list"]
    }
    stack = declared.stack
    assert collected == {
        SERVER_LOG: f"/mlflow/{stack}/server", BOOTSTRAP_LOG: f"/mlflow/{stack}/bootstrap",
    }  # fmt: skip
    steps = document["runcmd"]
    assert steps[0][-1].endswith("/amazon-cloudwatch-agent.deb")  # first: the bootstrap's log too
    assert any("fetch-config" in step for step in steps)
    groups = {
        g["inputs"]["name"]: g["inputs"]["retentionInDays"]
        for g in declared.of_type("aws:cloudwatch/logGroup:LogGroup")
    }
    assert set(groups) == set(collected.values())
    role_policy = next(
        r for r in declared.of_type("aws:iam/rolePolicy:RolePolicy") if r["name"] == "mlops-access"
    )
    [logs] = [s for s in json.loads(role_policy["inputs"]["policy"])["Statement"]
              if s.get("Sid") == "ShipServerLogs"]  # fmt: skip
    assert logs["Action"] == [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
    ]
    assert all(r.endswith(":*") and "/mlflow/" in r for r in logs["Resource"])
