"""The one rendering of `mlflow server` (the local platform and the VM bootstrap both use it)."""

from __future__ import annotations

import dataclasses

import pytest

from infra.mlflow_server import (
    IDENTITIES,
    SECRET_ENV,
    ServerConfigError,
    ServerSettings,
    render,
)

BASE = ServerSettings(
    db_host="db.internal",
    artifacts_destination="s3://team-artifacts/mlflow",
    auth_config_path="/etc/mlflow/basic_auth.ini",
    allowed_hosts=("203.0.113.10:5000",),
    tls_certfile="/etc/mlflow/tls.crt",
    tls_keyfile="/run/mlflow/tls.key",
)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_backend_is_postgres_through_psycopg2_without_a_password():
    argv = render(BASE).argv
    assert (
        flag(argv, "--backend-store-uri") == "postgresql+psycopg2://mlflow@db.internal:5432/mlflow"
    )


def test_artifacts_are_proxied_and_there_is_no_default_artifact_root():
    """Clients then need no bucket credentials: every artifact goes through the server."""
    argv = render(BASE).argv
    assert flag(argv, "--artifacts-destination") == "s3://team-artifacts/mlflow"
    assert "--serve-artifacts" in argv
    assert "--default-artifact-root" not in argv


def test_gcs_destination_is_accepted():
    argv = render(dataclasses.replace(BASE, artifacts_destination="gs://b/mlflow")).argv
    assert flag(argv, "--artifacts-destination") == "gs://b/mlflow"


def test_basic_auth_is_on_with_admin_credentials_from_the_environment():
    """The app is the repository's plugin around MLflow's basic auth (infra/server_site); the
    auth config keeps MLflow's default authorization function, so MLflow's UI shows logout and
    change-password."""
    command = render(BASE)
    assert flag(command.argv, "--app-name") == "mlops-auth"
    assert command.env["PYTHONPATH"] == BASE.site_dir
    assert "authorization_function" not in command.auth_ini
    assert command.env["MLFLOW_AUTH_CONFIG_PATH"] == BASE.auth_config_path
    assert "admin_password" not in command.auth_ini.replace("# admin_username / admin_password", "")
    assert {"MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "PGPASSWORD"} <= set(
        command.secret_env
    )
    assert (
        "database_uri = postgresql+psycopg2://mlflow@db.internal:5432/mlflow_auth"
        in command.auth_ini
    )


def test_no_secret_variable_is_set_by_the_rendering():
    command = render(BASE)
    assert not set(SECRET_ENV) & set(command.env)
    assert all("password" not in part.lower() for part in command.argv)


def test_https_only_and_nothing_granted_by_default():
    command = render(BASE)
    assert flag(command.argv, "--uvicorn-opts") == (
        "--ssl-certfile /etc/mlflow/tls.crt --ssl-keyfile /run/mlflow/tls.key"
    )
    assert "default_permission = NO_PERMISSIONS" in command.auth_ini
    with pytest.raises(ServerConfigError, match="tls_certfile and tls_keyfile are required"):
        dataclasses.replace(BASE, tls_keyfile="")
    with pytest.raises(ServerConfigError, match="tls_keyfile must be an absolute path"):
        dataclasses.replace(BASE, tls_keyfile="key.pem --reload")


def test_each_workload_user_names_what_the_workloads_use():
    """The grants name the experiments and model the code logs to and reads from."""
    import monitoring
    import training
    from training import train

    by_name = {i.username: i for i in IDENTITIES}
    assert set(by_name) == {"trainer", "model-api", "streaming"}
    assert by_name["trainer"].experiments == {
        train.EXPERIMENT: "EDIT",
        monitoring.EXPERIMENT: "EDIT",
    }
    assert by_name["trainer"].registered_models == {training.REGISTERED_MODEL: "EDIT"}
    assert by_name["model-api"].experiments == {train.EXPERIMENT: "READ"}
    assert by_name["model-api"].registered_models == {training.REGISTERED_MODEL: "READ"}
    # The stream handler serves the same champion: the model API's grants, as a user of its own.
    assert by_name["streaming"].experiments == by_name["model-api"].experiments
    assert by_name["streaming"].registered_models == by_name["model-api"].registered_models


def test_allowed_hosts_workers_and_job_execution():
    command = render(dataclasses.replace(BASE, workers=3, allowed_hosts=("a:5000", "b")))
    assert flag(command.argv, "--allowed-hosts") == "a:5000,b"
    assert flag(command.argv, "--workers") == "3"
    assert command.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_sslmode_is_added_to_both_database_uris():
    command = render(dataclasses.replace(BASE, db_sslmode="require"))
    assert flag(command.argv, "--backend-store-uri").endswith("/mlflow?sslmode=require")
    assert "/mlflow_auth?sslmode=require" in command.auth_ini
    verified = render(
        dataclasses.replace(BASE, db_sslmode="verify-full", db_sslrootcert="/etc/ca.pem")
    )
    assert flag(verified.argv, "--backend-store-uri").endswith(
        "/mlflow?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    )
    with pytest.raises(ServerConfigError, match="db_sslrootcert is needed"):
        dataclasses.replace(BASE, db_sslmode="verify-ca")
    with pytest.raises(ServerConfigError, match="db_sslmode must be one of"):
        dataclasses.replace(BASE, db_sslmode="verify")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "artifacts_destination",
            "/var/mlflow",
            "artifacts_destination must start with one of s3://, gs://",
        ),
        ("artifacts_destination", "s3://", "artifacts_destination must name a bucket"),
        ("db_name", "mlflow; drop", "db_name must be a plain SQL identifier"),
        ("auth_db_name", "mlflow", "auth_db_name must differ from db_name"),
        ("port", 70000, "port must be 1-65535"),
        ("workers", 0, "workers must be 1-16"),
        (
            "default_permission",
            "ALL",
            "default_permission must be one of READ, EDIT, MANAGE, NO_PERMISSIONS",
        ),
        ("allowed_hosts", (), "allowed_hosts must list at least one host"),
        ("auth_cache_seconds", -1, "auth_cache_seconds must be 0-300"),
        ("auth_cache_seconds", 301, "auth_cache_seconds must be 0-300"),
        ("max_body_bytes", 10, "max_body_bytes must be 1024-1073741824"),
    ],
)
def test_bad_setting_is_an_error_naming_the_key(key, value, message):
    with pytest.raises(ServerConfigError, match=message.replace("(", r"\(")):
        dataclasses.replace(BASE, **{key: value})


def test_a_checked_password_is_trusted_for_a_minute_unless_set_otherwise():
    """Without MLflow's credential cache every request pays a password hash: a training run's 55
    requests took 16 s. The TTL bounds how long a changed password lingers."""
    assert "auth_cache_ttl_seconds = 60\n" in render(BASE).auth_ini
    off = render(dataclasses.replace(BASE, auth_cache_seconds=0)).auth_ini
    assert "auth_cache_ttl_seconds = 0\n" in off
    import os
    import tempfile

    from mlflow.server.auth.config import read_auth_config

    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as ini:
        ini.write(render(BASE).auth_ini)
    try:
        os.environ["MLFLOW_AUTH_CONFIG_PATH"] = ini.name
        assert read_auth_config().auth_cache_ttl_seconds == 60  # MLflow reads it as rendered
    finally:
        del os.environ["MLFLOW_AUTH_CONFIG_PATH"]
        os.unlink(ini.name)


def test_database_pools_are_bounded_by_the_database_limit():
    """MLflow's defaults (5 + 10 per pool, three pools per process) would let a 2-worker server
    open 135 connections; the rendering sizes them from the database's max_connections."""
    from dataclasses import replace

    from infra.mlflow_server import connections_used

    base = BASE
    for limit in (50, 100, 400):
        env = render(replace(base, db_max_connections=limit, workers=2)).env
        pool, overflow = (int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]),
                          int(env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]))  # fmt: skip
        assert connections_used(2, pool, overflow) <= limit - 10 and overflow >= 1
        assert (
            2 * int(env["MLOPS_AUTH_REQUEST_THREADS"]) <= pool + overflow
        )  # see mlops_auth.threads
    with pytest.raises(ServerConfigError, match="workers=8: the database allows 40 connections"):
        replace(base, db_max_connections=40, workers=8)


def test_versions_come_only_from_mlflow_s_own_sources_and_the_gateway_is_off():
    """A version's `source` in the bucket (s3://, gs://) would be read with the server's role,
    which reaches every experiment's files: only models:/, runs:/ and mlflow-artifacts:/, which
    MLflow checks against the caller's runs and logged models. MLflow's AI gateway is off."""
    import re

    env = render(BASE).env
    pattern = env["MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"]
    for source in ("models:/m-0123", "runs:/abc/model", "mlflow-artifacts:/1/models/m-1/artifacts"):
        assert re.search(pattern, source), source
    for source in ("s3://team-artifacts/mlflow/2/report", "gs://b/x", "file:///etc", "/etc",
                   "http://x/models:/", " models:/m-1", "dbfs:/x"):  # fmt: skip
        assert not re.search(pattern, source), source
    assert env["MLFLOW_ENABLE_AI_GATEWAY"] == "false"
    assert (
        render(dataclasses.replace(BASE, ai_gateway=True)).env["MLFLOW_ENABLE_AI_GATEWAY"] == "true"
    )
    assert env["MLOPS_AUTH_MAX_BODY_BYTES"] == str(16 << 20)
