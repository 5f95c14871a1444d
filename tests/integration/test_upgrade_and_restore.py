"""An MLflow upgrade with a way back, for real: a database made by MLflow's previous minor (in an
environment of its own), with runs, metrics, model versions and an alias; the launcher backs it up
into the bucket (moto_server) before the current MLflow migrates it; restoring that backup lets the
previous version's server start and serve every run and version again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

import local_platform as c
from infra import db_backup, vm_launcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BUCKET = "upgrade-test"

# Runs with the previous MLflow's Python: fill the tracking store (the DB URI) or read it back
# through a server (an http URI), printing what it holds as JSON.
FILL_OR_READ = r"""
import json, sys
from mlflow import MlflowClient
uri, fill = sys.argv[1], sys.argv[2] == "fill"
client = MlflowClient(tracking_uri=uri, registry_uri=uri)
if fill:
    exp = client.create_experiment("nyc-taxi")
    for i in range(3):
        run = client.create_run(exp, run_name=f"run-{i}")
        for step in range(4):
            client.log_metric(run.info.run_id, "rmse", 6.0 - i - step / 10, step=step)
        client.log_param(run.info.run_id, "alpha", str(i))
        client.set_terminated(run.info.run_id)
    client.create_registered_model("nyc-taxi-duration")
    runs = client.search_runs([exp], order_by=["attributes.run_name"])
    for run in runs[:2]:
        client.create_model_version("nyc-taxi-duration", f"s3://b/{run.info.run_id}", run.info.run_id)
    client.set_registered_model_alias("nyc-taxi-duration", "champion", "2")
exp = client.get_experiment_by_name("nyc-taxi")
runs = client.search_runs([exp.experiment_id], order_by=["attributes.run_name"])
print(json.dumps({
    "runs": {r.info.run_name: {
        "params": r.data.params,
        "rmse": [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "rmse")],
    } for r in runs},
    "versions": sorted((str(v.version), v.source) for v in client.search_model_versions("name='nyc-taxi-duration'")),
    "champion": str(client.get_model_version_by_alias("nyc-taxi-duration", "champion").version),
}))
"""


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3.11", "-m", "uv"]


@pytest.fixture(scope="module")
def previous_mlflow(tmp_path_factory) -> Path:
    """MLflow's previous minor in its own environment, hash-pinned by previous-mlflow.txt."""
    venv = tmp_path_factory.mktemp("previous-mlflow") / "venv"
    subprocess.run([*uv(), "venv", "-q", "-p", "3.11", str(venv)], check=True)
    requirements = Path(__file__).with_name("previous-mlflow.txt")
    subprocess.run([*uv(), "pip", "install", "-q", "--python", str(venv / "bin/python"),
                    "--require-hashes", "-r", str(requirements)], check=True)  # fmt: skip
    return venv


@pytest.fixture(scope="module")
def stores():
    """PostgreSQL (the two databases, owned by a login role with CREATEDB as on the clouds) and
    moto_server with the bucket."""
    root = Path(tempfile.mkdtemp(prefix="mlops-upgrade-"))
    root.chmod(0o755)
    procs = []
    try:
        cluster = c.pg_init(root / "pgdata", root / "pg-superuser")
        pg = c.pg_start(cluster, c.free_port(), root / "postgresql.log")
        procs.append(pg)
        password = c.new_password()
        c.pg_ensure_databases(pg.extra["port"], cluster.superuser_password, "mlflow", password,
                              ["mlflow", "mlflow_auth"])  # fmt: skip
        moto = c.moto_start(c.free_port(), root / "moto.log")
        procs.append(moto)
        c.ensure_bucket(moto.url, BUCKET)
        base = f"postgresql+psycopg2://mlflow@{c.LOOPBACK}:{pg.extra['port']}"
        env = {**os.environ, **c.s3_store_env(moto.url), "PGPASSWORD": password}
        yield {
            "uris": {"tracking": f"{base}/mlflow", "auth": f"{base}/mlflow_auth"},
            "env": env,
            "s3": moto.url,
            "root": root,
        }
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


def old(venv: Path, stores: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(venv / "bin/python"), *args], env=stores["env"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def revisions(uris: dict[str, str]) -> dict[str, str | None]:
    return {role: db_backup.revision(db_backup.connection(uri), db_backup.DATABASES[role])
            for role, uri in uris.items()}  # fmt: skip


def auth_ini(stores: dict) -> Path:
    ini = stores["root"] / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {stores['uris']['auth']}\n"
        "admin_username = admin\nadmin_password = password1234\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    return ini


def test_an_upgrade_backs_up_first_and_the_backup_brings_the_previous_version_back(
    previous_mlflow, stores
):
    uris, env = stores["uris"], {**stores["env"]}
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_ini(stores))
    stores["env"] = env
    # 1. The previous MLflow makes both databases and fills the tracking one.
    old(previous_mlflow, stores, "-m", "mlflow.server.auth", "db", "upgrade", "--url", uris["auth"])
    before = json.loads(
        old(previous_mlflow, stores, "-c", FILL_OR_READ, uris["tracking"], "fill").stdout
    )
    assert len(before["runs"]) == 3 and len(before["versions"]) == 2 and before["champion"] == "2"
    with vm_launcher.environ(env):
        old_revisions = revisions(uris)
        assert set(db_backup.schema_plan(uris)) == {"tracking"}  # auth's schema did not change

    # 2. The current MLflow's launcher: a backup into the bucket, then the migration.
    spec = {"argv": [str(c.BIN / "mlflow")], "database": {"backendUri": uris["tracking"],
            "authUri": uris["auth"]}, "backups": {"bucketUrl": f"s3://{BUCKET}"}}  # fmt: skip
    saved = vm_launcher.migrate(spec, env)
    assert (
        saved
        and saved.startswith(f"s3://{BUCKET}/backups/")
        and saved.endswith("-before-mlflow-3.17.2")
    )
    folder = saved.removeprefix(f"s3://{BUCKET}/")
    with vm_launcher.environ(env):
        bucket = db_backup.Bucket(f"s3://{BUCKET}")
        assert bucket.folders() == [folder]
        assert db_backup.schema_plan(uris) == {}  # at the current head now
        keys = {o["Key"] for o in bucket.client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {f"{folder}/{n}" for n in ("tracking.dump", "auth.dump", "manifest.json")}
    # The previous MLflow no longer starts on the migrated database...
    refused = old(
        previous_mlflow, stores, "-c", FILL_OR_READ, uris["tracking"], "read", check=False
    )
    assert refused.returncode != 0 and "out-of-date database schema" in refused.stderr
    # ...and a second start of the current one migrates nothing and backs nothing up.
    assert vm_launcher.migrate(spec, env) is None

    # 3. The way back: restore, and the previous version's server serves everything again.
    with vm_launcher.environ(env):
        manifest = db_backup.restore(uris, bucket, folder, env)
        assert manifest["mlflowVersion"] == "3.17.2"
        assert {r: d["revision"] for r, d in manifest["databases"].items()} == old_revisions
        assert revisions(uris) == old_revisions
    port = c.free_port()
    server = c.spawn(
        "previous-mlflow-server",
        [str(previous_mlflow / "bin/mlflow"), "server", "--backend-store-uri", uris["tracking"],
         "--default-artifact-root", str(stores["root"] / "artifacts"), "--host", c.LOOPBACK,
         "--port", str(port), "--workers", "1"],
        stores["root"] / "previous-server.log", env,
    )  # fmt: skip
    try:
        url = f"http://{c.LOOPBACK}:{port}"
        c.wait_until(server, lambda: requests.get(f"{url}/health", timeout=2).ok, 120, "healthy")
        after = json.loads(old(previous_mlflow, stores, "-c", FILL_OR_READ, url, "read").stdout)
    finally:
        server.stop(timeout=5)
    assert after == before


def test_a_failed_migration_stops_with_one_line_and_keeps_the_backup(stores, tmp_path):
    """A database behind the installed MLflow (its revision set back one step) and an `mlflow
    db upgrade` that fails: the launcher stops for good (no retry) naming the backup."""
    uris, env = stores["uris"], stores["env"]
    with vm_launcher.environ(env):
        scripts = db_backup.migration_scripts()["tracking"]
        head = scripts.get_current_head()
        previous = scripts.get_revision(head).down_revision
        with db_backup.connect(db_backup.connection(uris["tracking"])) as db, db.cursor() as cur:
            cur.execute("UPDATE alembic_version SET version_num = %s", (previous,))
    failing = tmp_path / "mlflow"
    failing.write_text(
        "#!/bin/sh\necho 'sqlalchemy.exc.ProgrammingError: relation exists' >&2\nexit 1\n"
    )
    failing.chmod(0o755)
    spec = {"argv": [str(failing)], "database": {"backendUri": uris["tracking"],
            "authUri": uris["auth"]}, "backups": {"bucketUrl": f"s3://{BUCKET}"}}  # fmt: skip
    with pytest.raises(vm_launcher.Stopped) as stopped:
        vm_launcher.migrate(spec, env)
    line = str(stopped.value)
    assert "\n" not in line and "db upgrade" in line and "relation exists" in line
    saved = line.split("the backup taken before it: ")[1].split(" ")[0]
    with vm_launcher.environ(env):
        assert saved.removeprefix(f"s3://{BUCKET}/") in db_backup.Bucket(f"s3://{BUCKET}").folders()
    # Without a bucket to back up to, nothing migrates at all.
    with pytest.raises(vm_launcher.Stopped, match="names no bucket for a backup"):
        vm_launcher.migrate({**spec, "backups": None}, env)


def test_a_schema_newer_than_this_mlflow_stops_the_start_and_names_the_way_back(stores):
    uris, env = stores["uris"], stores["env"]
    with vm_launcher.environ(env):
        with db_backup.connect(db_backup.connection(uris["auth"])) as db, db.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version_auth")
            (kept,) = cur.fetchone()
            cur.execute("UPDATE alembic_version_auth SET version_num = 'f00dfeedbeef'")
        try:
            spec = {"argv": [str(c.BIN / "mlflow")], "database": {"backendUri": uris["tracking"],
                    "authUri": uris["auth"]}, "backups": {"bucketUrl": f"s3://{BUCKET}"}}  # fmt: skip
            with pytest.raises(vm_launcher.Stopped) as stopped:
                vm_launcher.migrate(spec, env)
        finally:
            with db_backup.connect(db_backup.connection(uris["auth"])) as db, db.cursor() as cur:
                cur.execute("UPDATE alembic_version_auth SET version_num = %s", (kept,))
    assert "auth database's schema (f00dfeedbeef) is newer than MLflow 3.17.2" in str(stopped.value)
    assert "Rolling back" in str(stopped.value)


def test_the_vm_command_without_its_spec_says_so(tmp_path, capsys):
    assert db_backup.main(["--spec", str(tmp_path / "none.json"), "list"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"db_backup: no launcher spec at {tmp_path / 'none.json'} (run it on the tracking VM)"
    )
