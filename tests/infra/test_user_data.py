"""The rendered cloud-init document is valid cloud-config and its shell passes shellcheck."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.infra.test_aws_platform import EC2, user_data

CLOUD_INIT = shutil.which("cloud-init")


def test_user_data_passes_cloud_init_schema(declared, tmp_path):
    if CLOUD_INIT is None:
        pytest.fail("cloud-init is not installed: `apt-get install -y cloud-init` (.ci/run does)")
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data(declared))
    result = subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_every_shell_command_in_user_data_passes_shellcheck(declared, tmp_path):
    """runcmd entries given as strings run through sh; lists are exec'd without a shell."""
    from infra.vm import BOOTSTRAP_ENV
    from scripts.components import BIN

    document = yaml.safe_load(user_data(declared))
    shell = [c for c in document.get("runcmd", []) if isinstance(c, str)]
    shell += [f["content"] for f in document["write_files"] if f["content"].startswith("#!/bin/")]
    shell += [f["content"] for f in document["write_files"] if f["path"] == BOOTSTRAP_ENV]
    assert len(shell) == 2  # the bootstrap script and the env file it sources
    for i, script in enumerate(shell):
        path = tmp_path / f"snippet-{i}.sh"
        body = script if script.startswith("#!") else f"#!/bin/sh\n{script}\n"
        path.write_text(body)
        result = subprocess.run(
            [str(BIN / "shellcheck"), str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def written(document: dict) -> dict[str, str]:
    return {f["path"]: f["content"] for f in document["write_files"]}


def bootstrap_env(document: dict) -> dict[str, str]:
    """The bootstrap's parameters, as the shell that sources the env file reads them."""
    from infra.vm import BOOTSTRAP_ENV

    lines = [
        line for line in written(document)[BOOTSTRAP_ENV].splitlines() if not line.startswith("#")
    ]
    return {k: "".join(shlex.split(v)) for k, v in (line.split("=", 1) for line in lines)}


def test_one_bootstrap_script_runs_every_step(declared):
    """runcmd entries run on after one fails; a single script stops at the first failure. The
    script is the repository's, less its comment lines (tests/infra/test_vm_bootstrap.py runs
    that copy), and still parses."""
    from infra.vm import BOOTSTRAP_ENV, BOOTSTRAP_PATH, BOOTSTRAP_SOURCE, is_comment_line

    document = yaml.safe_load(user_data(declared))
    assert document["runcmd"] == [["bash", BOOTSTRAP_PATH, BOOTSTRAP_ENV]]
    shipped = written(document)[BOOTSTRAP_PATH].splitlines()
    source = BOOTSTRAP_SOURCE.read_text().splitlines()
    assert shipped[0] == source[0] == "#!/bin/bash" and shipped[1].startswith("# vm_bootstrap.sh")
    assert shipped[2:] == [line for line in source[1:] if not is_comment_line(line)]
    assert "# shellcheck source=/dev/null" in shipped
    assert len(shipped) < len(source) - 10
    parsed = subprocess.run(
        ["bash", "-n"], input="\n".join(shipped), text=True, capture_output=True
    )
    assert parsed.returncode == 0, parsed.stderr
    assert "packages" not in document and "package_update" not in document  # no apt step
    assert document["apt"]["conf"].strip() == 'Acquire::Retries "5";'


def test_the_vm_installs_the_lock_s_exact_versions_hash_checked(declared):
    """Every package of the server's environment (not just the top-level three), at uv.lock's
    version, with the hashes of the lock's wheels for the VM; uv itself from the lock too."""
    import tomllib

    from infra.vm import REQUIREMENTS_PATH
    from infra.vm_requirements import LOCK_PATH, installer

    document = yaml.safe_load(user_data(declared))
    text = written(document)[REQUIREMENTS_PATH]
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
    env = bootstrap_env(document)
    uv = installer()
    assert (env["UV_WHEEL_URL"], f"sha256:{env['UV_WHEEL_SHA256']}") == (uv.wheel_url, uv.hashes[0])
    assert uv.wheel_url.endswith("manylinux2014_x86_64.whl") and uv.version == "0.13.9"
    assert env["PYTHON_VERSION"] == "3.11"  # the lock's Python (Ubuntu 24.04 ships 3.12)


def test_systemd_unit_restarts_and_runs_unprivileged(declared):
    document = yaml.safe_load(user_data(declared))
    [unit] = [f["content"] for f in document["write_files"] if f["path"].endswith("mlflow.service")]
    assert "Restart=always" in unit and "User=mlflow" in unit and "NoNewPrivileges=true" in unit


def test_rotated_database_password_is_refreshed_by_a_timer(declared):
    """RDS rotates its managed password; the VM re-reads it every 10 minutes without a restart."""
    from infra.vm import BOOTSTRAP_SOURCE

    document = yaml.safe_load(user_data(declared))
    files = {f["path"]: f["content"] for f in document["write_files"]}
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
    document = yaml.safe_load(user_data(declared))
    env = bootstrap_env(document)  # the script fetches it before it starts the server
    assert env["DB_CA_URL"] == (
        "https://truststore.pki.rds.amazonaws.com/us-east-1/us-east-1-bundle.pem"
    )
    assert env["DB_CA_PATH"] == DB_CA_PATH
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
    # Before a migration the launcher backs up to the artifact bucket and snapshots this RDS
    # instance (the role may do just that: test_aws_platform).
    assert spec["backups"] == {
        "bucketUrl": f"s3://{declared.outputs['artifactBucket']['value']}",
        "region": "us-east-1",
        "rdsInstance": "mlops-postgres-mock",
    }
    # A failed migration stops the unit for good: no retry, no backup per retry.
    unit = next(f["content"] for f in document["write_files"]
                if f["path"] == "/etc/systemd/system/mlflow.service")  # fmt: skip
    assert "\nRestartPreventExitStatus=3\n" in unit


def test_user_data_fits_ec2s_16_kb(declared):
    """EC2 refuses user-data over 16 KB (raw, before base64): it goes gzipped (cloud-init
    inflates it), the same bytes at every render so that an unchanged document never replaces
    the instance; large files (the RDS CA bundle) are fetched at boot."""
    from infra.vm import compressed

    packed = base64.b64decode(declared.one(EC2)["inputs"]["userDataBase64"])
    assert packed[:2] == b"\x1f\x8b"  # gzip
    assert len(packed) < 16 * 1024, f"{len(packed)} bytes"
    assert compressed(user_data(declared)) == declared.one(EC2)["inputs"]["userDataBase64"]
    with pytest.raises(ValueError, match="over EC2's 16384-byte limit"):
        compressed(base64.b64encode(__import__("os").urandom(20_000)).decode())


def test_server_and_bootstrap_logs_leave_the_vm(declared):
    """The CloudWatch agent ships the server's log file and cloud-init's output (a bootstrap
    that fails is visible) to two groups of this stack; the role may write only there."""
    from infra.vm import BOOTSTRAP_LOG, SERVER_LOG

    document = yaml.safe_load(user_data(declared))
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
    env = bootstrap_env(document)  # the agent is the script's first step: its log ships too
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


def _without_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def test_the_vm_gets_the_repository_s_code_from_the_bundle_the_program_uploads(declared):
    """The launcher and the MLflow plugin reach the VM as one object in the artifact bucket,
    byte for byte as in the repository; the user-data names it by its sha256 (a changed bundle
    is a changed user-data: a new VM) and carries only the small script that fetches it (the
    same code, without its docstrings)."""
    from infra.mlflow_server import LOCAL_SITE_DIR, site_files
    from infra.vm import (
        BACKUP_PATH,
        BACKUP_SOURCE,
        BOOTSTRAP_ENV,
        FETCH_PATH,
        FETCH_SOURCE,
        LAUNCHER_PATH,
        LAUNCHER_SOURCE,
        PREFIX,
        SITE_DIR,
        SPEC_PATH,
        server_bundle,
    )  # fmt: skip

    files = written(yaml.safe_load(user_data(declared)))
    bundle = declared.one("aws:s3/bucketObjectv2:BucketObjectv2")["inputs"]
    assert bundle == {**bundle, "content": server_bundle().text, "key": server_bundle().key,
                      "bucket": declared.outputs["artifactBucket"]["value"]}  # fmt: skip
    text = bundle["content"]
    assert bundle["key"] == f"server-bundles/{hashlib.sha256(text.encode()).hexdigest()}.json"
    env = bootstrap_env(yaml.safe_load(user_data(declared)))
    assert env["BUNDLE_URL"] == f"s3://{bundle['bucket']}/{bundle['key']}"
    assert env["BUNDLE_SHA256"] == hashlib.sha256(text.encode()).hexdigest()
    assert env["BUNDLE_REGION"] == "us-east-1" and env["FETCH_BUNDLE"] == FETCH_PATH
    shipped = {f"{PREFIX}/{name}": text for name, text in json.loads(text)["files"].items()}
    assert shipped == {
        LAUNCHER_PATH: LAUNCHER_SOURCE.read_text(),
        BACKUP_PATH: BACKUP_SOURCE.read_text(),  # the launcher imports it, next to itself
        **{f"{SITE_DIR}/{name}": text for name, text in site_files().items()},
    }
    assert f"{SITE_DIR}/mlops_auth/app.py" in shipped
    assert f"{SITE_DIR}/mlops_auth-1.0.dist-info/entry_points.txt" in shipped
    assert not any(path.startswith(f"{SITE_DIR}/") for path in files)  # not in the user-data
    assert (LOCAL_SITE_DIR / "mlops_auth-1.0.dist-info/entry_points.txt").is_file()
    assert _without_docstrings(ast.parse(files[FETCH_PATH])) == _without_docstrings(
        ast.parse(FETCH_SOURCE.read_text())
    )
    assert BOOTSTRAP_ENV in files
    spec = json.loads(files[SPEC_PATH])
    assert spec["env"]["PYTHONPATH"] == SITE_DIR
    assert "authorization_function" not in spec["authIni"]  # MLflow's default: its UI's logout


def test_a_daily_timer_collects_garbage_through_the_server_it_verifies(declared):
    """`mlflow gc` on the VM: runs deleted more than gcDays (default 30) ago go; artifacts go
    through the server at its private address, verified with the stack's CA."""
    from infra.vm import SPEC_PATH, TRACKING_CA_PATH

    files = written(yaml.safe_load(user_data(declared)))
    spec = json.loads(files[SPEC_PATH])
    assert spec["gc"] == {"olderThanDays": 30, "trackingUri": "https://10.40.0.10:5000",
                          "caPath": TRACKING_CA_PATH}  # fmt: skip
    assert files[TRACKING_CA_PATH] == declared.outputs["trackingCaCert"]["value"]
    service = files["/etc/systemd/system/mlflow-gc.service"]
    assert "ExecStart=/opt/mlflow/venv/bin/python /opt/mlflow/vm_launcher.py --gc " in service
    assert "User=mlflow" in service and "Type=oneshot" in service
    timer = files["/etc/systemd/system/mlflow-gc.timer"]
    assert "OnCalendar=*-*-* 03:30:00 UTC" in timer and "Persistent=true" in timer
