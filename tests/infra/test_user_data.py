"""The tracking VM's user-data (the fetcher) and the bundle of files it fetches."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess

from tests.infra.conftest import PEM_KEY


def test_user_data_is_the_repository_s_fetcher_and_one_command_within_8_kb(declared):
    """The user-data carries no file but the fetcher, byte for byte as in the repository
    (comments and docstrings kept, no compression), and fetches the bundle this stack uploads,
    by its sha256; then the bundle's bootstrap runs. 8 KB is half of what EC2 takes."""
    from infra.vm import BOOTSTRAP_ENV, BOOTSTRAP_PATH, FETCH_END, FETCH_PATH, FETCH_SOURCE

    text = declared.user_data()
    assert len(text.encode()) <= 8 * 1024, f"{len(text.encode())} bytes"
    head, rest = text.split(f"cat >{FETCH_PATH} <<'{FETCH_END}'\n")
    fetcher, tail = rest.split(f"{FETCH_END}\n")
    assert fetcher == FETCH_SOURCE.read_text()
    assert head.startswith("#!/bin/sh\n") and "set -eu\n" in head
    bundle = declared.bundle()
    bucket = declared.outputs["artifactBucket"]["value"]
    sha256 = hashlib.sha256(bundle["content"].encode()).hexdigest()
    assert tail.splitlines() == [
        f"python3 {FETCH_PATH} s3://{bucket}/server-bundles/{sha256}.json {sha256} us-east-1",
        f"exec bash {BOOTSTRAP_PATH} {BOOTSTRAP_ENV}",
    ]
    assert not PEM_KEY.search(text) and "gzip" not in text


def test_user_data_and_the_bundle_s_shell_pass_shellcheck(declared, tmp_path):
    from infra.vm import BOOTSTRAP_ENV, BOOTSTRAP_PATH
    from local_platform import BIN

    files = declared.vm_files()
    scripts = {"user-data": declared.user_data(), "bootstrap": files[BOOTSTRAP_PATH],
               "env": "#!/bin/bash\n" + files[BOOTSTRAP_ENV]}  # fmt: skip
    for name, script in scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(script)
        result = subprocess.run(
            [str(BIN / "shellcheck"), str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def bootstrap_env(files: dict) -> dict[str, str]:
    """The bootstrap's parameters, as the shell that sources the env file reads them."""
    from infra.vm import BOOTSTRAP_ENV

    lines = [line for line in files[BOOTSTRAP_ENV].splitlines() if not line.startswith("#")]
    return {k: "".join(shlex.split(v)) for k, v in (line.split("=", 1) for line in lines)}


def test_one_bootstrap_script_runs_every_step(declared):
    """The bundle's bootstrap is the repository's script as it is (tests/infra/test_vm_bootstrap.py
    runs it), one script so that a failed step stops the rest."""
    from infra.vm import BOOTSTRAP_PATH, BOOTSTRAP_SOURCE

    files = declared.vm_files()
    assert files[BOOTSTRAP_PATH] == BOOTSTRAP_SOURCE.read_text()
    parsed = subprocess.run(
        ["bash", "-n"], input=files[BOOTSTRAP_PATH], text=True, capture_output=True
    )
    assert parsed.returncode == 0, parsed.stderr
    env = bootstrap_env(files)
    assert env["SERVICE_USER"] == "mlflow"
    assert env["APT_RETRIES_CONF"] == "/etc/apt/apt.conf.d/80mlflow-retries"


def test_the_vm_installs_the_lock_s_exact_versions_hash_checked(declared):
    """Every package of the server's environment (not just the top-level three), at uv.lock's
    version, with the hashes of the lock's wheels for the VM; uv itself from the lock too."""
    import tomllib

    from infra.vm import REQUIREMENTS_PATH
    from infra.vm_requirements import LOCK_PATH, installer

    files = declared.vm_files()
    text = files[REQUIREMENTS_PATH]
    pins = dict(line.split(" ", 1)[0].split("==") for line in text.splitlines() if "==" in line)
    locked = {
        p["name"]: (p["version"], {w["hash"] for w in p.get("wheels", [])})
        for p in tomllib.loads(LOCK_PATH.read_text())["package"]
    }
    assert {"mlflow", "psycopg2-binary", "boto3", "sqlalchemy", "flask", "alembic"} <= set(pins)
    assert not any(name.startswith("google-cloud") for name in pins)  # the AWS environment
    assert len(pins) > 80
    for name, version in pins.items():
        assert locked[name][0] == version, name
    for block in text.split("\n")[1:]:
        for digest in (h.split("=", 1)[1] for h in block.split() if h.startswith("--hash=")):
            assert any(digest in hashes for _, hashes in locked.values())
    env = bootstrap_env(files)
    uv = installer()
    assert (env["UV_WHEEL_URL"], f"sha256:{env['UV_WHEEL_SHA256']}") == (uv.wheel_url, uv.hashes[0])
    assert uv.wheel_url.endswith("manylinux2014_x86_64.whl") and uv.version == "0.13.9"
    assert env["PYTHON_VERSION"] == "3.11"  # the lock's Python (Ubuntu 24.04 ships 3.12)


def test_systemd_unit_restarts_and_runs_unprivileged(declared):
    unit = declared.vm_files()["/etc/systemd/system/mlflow.service"]
    assert "Restart=always" in unit and "User=mlflow" in unit and "NoNewPrivileges=true" in unit


def test_rotated_database_password_is_refreshed_by_a_timer(declared):
    """RDS rotates its managed password; the VM re-reads it every 10 minutes without a restart."""
    from infra.vm import BOOTSTRAP_SOURCE

    files = declared.vm_files()
    timer = files["/etc/systemd/system/mlflow-db-password.timer"]
    assert "OnUnitActiveSec=10min" in timer
    assert (
        "--refresh /etc/mlflow/server.json"
        in files["/etc/systemd/system/mlflow-db-password.service"]
    )
    # (tests/infra/test_vm_bootstrap.py runs the script and sees this call)
    assert "systemctl enable --now mlflow.service mlflow-db-password.timer" in (
        BOOTSTRAP_SOURCE.read_text()
    )


def test_the_server_verifies_the_database_with_the_rds_ca(declared):
    """The CA bundle is fetched (over HTTPS, with retries) before the server starts, and both
    the server and the launcher connect with verify-full against it."""
    from infra.vm import DB_CA_PATH

    assert declared.one("aws:rds/instance:Instance")["inputs"]["caCertIdentifier"] == (
        "rds-ca-rsa2048-g1"
    )
    files = declared.vm_files()
    env = bootstrap_env(files)  # the script fetches it before it starts the server
    assert env["DB_CA_URL"] == (
        "https://truststore.pki.rds.amazonaws.com/us-east-1/us-east-1-bundle.pem"
    )
    assert env["DB_CA_PATH"] == DB_CA_PATH
    spec = json.loads(files["/etc/mlflow/server.json"])
    assert (spec["database"]["sslmode"], spec["database"]["sslrootcert"]) == (
        "verify-full",
        DB_CA_PATH,
    )
    assert spec["database"]["backendUri"].endswith(f"?sslmode=verify-full&sslrootcert={DB_CA_PATH}")
    # Before a migration the launcher backs up to the artifact bucket and snapshots this RDS
    # instance (the role may do just that: test_aws_platform).
    assert spec["backups"] == {
        "bucketUrl": f"s3://{declared.outputs['artifactBucket']['value']}",
        "region": "us-east-1",
        "rdsInstance": "mlops-postgres-mock",
    }
    # A failed migration stops the unit for good: no retry, no backup per retry.
    unit = files["/etc/systemd/system/mlflow.service"]
    assert "\nRestartPreventExitStatus=3\n" in unit


def test_server_and_bootstrap_logs_leave_the_vm(declared):
    """The CloudWatch agent ships the server's log file and cloud-init's output (a bootstrap
    that fails is visible) to two groups of this stack; the role may write only there."""
    from infra.vm import BOOTSTRAP_LOG, SERVER_LOG

    files = declared.vm_files()
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
    env = bootstrap_env(files)  # the agent is the script's first step: its log ships too
    assert env["LOG_AGENT"] == "aws" and env["LOG_AGENT_CONFIG"] == "/etc/mlflow/log-agent.json"
    assert env["CLOUDWATCH_AGENT_DEB"].endswith("/amazon-cloudwatch-agent.deb")
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


def test_the_vm_gets_every_file_from_the_bundle_the_program_uploads(declared):
    """One object, named by its sha256, holds every file but the fetcher: the repository's code
    byte for byte (launcher, backups, the MLflow plugin, the bootstrap) and the stack's settings;
    each path is one the fetcher may write."""
    from infra.mlflow_server import LOCAL_SITE_DIR, site_files
    from infra.vm import (
        BACKUP_PATH,
        BACKUP_SOURCE,
        BOOTSTRAP_ENV,
        LAUNCHER_PATH,
        LAUNCHER_SOURCE,
        SITE_DIR,
        SPEC_PATH,
    )
    from infra.vm_fetch_bundle import ROOTS

    bundle = declared.bundle()
    text = bundle["content"]
    assert bundle["key"] == f"server-bundles/{hashlib.sha256(text.encode()).hexdigest()}.json"
    assert bundle["bucket"] == declared.outputs["artifactBucket"]["value"]
    files = declared.vm_files()
    assert files[LAUNCHER_PATH] == LAUNCHER_SOURCE.read_text()
    assert files[BACKUP_PATH] == BACKUP_SOURCE.read_text()  # the launcher imports it
    for name, source in site_files().items():
        assert files[f"{SITE_DIR}/{name}"] == source
    assert f"{SITE_DIR}/mlops_auth-1.0.dist-info/entry_points.txt" in files
    assert (LOCAL_SITE_DIR / "mlops_auth-1.0.dist-info/entry_points.txt").is_file()
    assert all(path.startswith(ROOTS) for path in files)
    assert BOOTSTRAP_ENV in files
    spec = json.loads(files[SPEC_PATH])
    assert spec["env"]["PYTHONPATH"] == SITE_DIR
    assert "authorization_function" not in spec["authIni"]  # MLflow's default: its UI's logout
    assert not PEM_KEY.search(text)  # the server's key stays in its secret


def test_a_daily_timer_collects_garbage_through_the_server_it_verifies(declared):
    """`mlflow gc` on the VM: runs deleted more than gcDays (default 30) ago go; artifacts go
    through the server at its private address, verified with the stack's CA."""
    from infra.vm import SPEC_PATH, TRACKING_CA_PATH

    files = declared.vm_files()
    spec = json.loads(files[SPEC_PATH])
    assert spec["gc"] == {"olderThanDays": 30, "trackingUri": "https://10.40.0.10:5000",
                          "caPath": TRACKING_CA_PATH}  # fmt: skip
    assert files[TRACKING_CA_PATH] == declared.outputs["trackingCaCert"]["value"]
    service = files["/etc/systemd/system/mlflow-gc.service"]
    assert "ExecStart=/opt/mlflow/venv/bin/python /opt/mlflow/vm_launcher.py --gc " in service
    assert "User=mlflow" in service and "Type=oneshot" in service
    timer = files["/etc/systemd/system/mlflow-gc.timer"]
    assert "OnCalendar=*-*-* 03:30:00 UTC" in timer and "Persistent=true" in timer


def test_a_changed_bundle_is_a_changed_user_data_which_replaces_the_vm(declared_vm):
    """cloud-init runs once per instance: a changed bundle (its sha256 in the user-data) must
    bring a new VM, which takes over the old one's addresses, so the old one goes first."""
    from infra.vm import ServerBundle, user_data

    vm = declared_vm.vm()
    assert vm["inputs"]["userDataReplaceOnChange"] is True
    assert vm["options"]["deleteBeforeReplace"] is True
    bucket = f"s3://{declared_vm.bundle()['bucket']}"
    files = [(path, "0644", text) for path, text in declared_vm.vm_files().items()]
    changed = ServerBundle.of([*files[:-1], (files[-1][0], "0644", files[-1][2] + "\n")])
    same = ServerBundle(declared_vm.bundle()["content"])
    assert user_data(bucket, same.key, same.sha256, "us-east-1") == declared_vm.user_data()
    assert user_data(bucket, changed.key, changed.sha256, "us-east-1") != declared_vm.user_data()
