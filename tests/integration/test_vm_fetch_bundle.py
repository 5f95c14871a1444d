"""The VM's fetch of the server's code bundle (infra/vm_fetch_bundle.py), for real: the object in
moto_server's S3 or the GCS emulator, read with the libraries the server's environment has, as
the bootstrap runs it; all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from infra.vm import FETCH_SOURCE, server_bundle
from scripts import components as c

pytestmark = [pytest.mark.integration]


def fetch(url: str, sha256: str, prefix, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FETCH_SOURCE), url, sha256, str(prefix), "us-east-1"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_bundle_comes_from_s3_whole_and_a_changed_one_is_refused(tmp_path):
    moto = c.moto_start(c.free_port(), tmp_path / "moto.log")
    try:
        c.ensure_bucket(moto.url, "artifacts")
        bundle = server_bundle()
        s3 = c.s3_client(moto.url)
        s3.put_object(Bucket="artifacts", Key=bundle.key, Body=bundle.text.encode())
        env = c.s3_store_env(moto.url)
        done = fetch(f"s3://artifacts/{bundle.key}", bundle.sha256, tmp_path / "opt", env)
        assert done.returncode == 0, done.stderr
        for name, text in bundle.files().items():
            assert (tmp_path / "opt" / name).read_text() == text
        assert (tmp_path / "opt/site/mlops_auth/app.py").is_file()
        # Someone with write access to the bucket swaps the object: the VM refuses it.
        tampered = json.loads(bundle.text)
        tampered["files"]["vm_launcher.py"] += "\nprint('hello')\n"
        s3.put_object(Bucket="artifacts", Key=bundle.key, Body=json.dumps(tampered).encode())
        refused = fetch(f"s3://artifacts/{bundle.key}", bundle.sha256, tmp_path / "other", env)
        assert refused.returncode != 0 and not (tmp_path / "other").exists()
        assert refused.stderr.strip().startswith("fetch_bundle: the bundle's sha256 is ")
        assert "Traceback" not in refused.stderr
    finally:
        moto.stop()


def test_the_bundle_comes_from_gcs_and_may_not_write_outside_its_prefix(tmp_path):
    emulator = c.gcs_emulator_start(c.free_port(), tmp_path / "gcs.log")
    try:
        env = c.gcs_store_env(emulator.url)
        with c._environ(env):
            from google.cloud import storage

            bucket = storage.Client().create_bucket("artifacts")
            bundle = server_bundle()
            bucket.blob(bundle.key).upload_from_string(bundle.text)
            escaping = '{"files": {"../escaped.py": "x"}}'
            bucket.blob("server-bundles/escape.json").upload_from_string(escaping)
        done = fetch(f"gs://artifacts/{bundle.key}", bundle.sha256, tmp_path / "opt", env)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "opt/vm_launcher.py").read_text() == bundle.files()["vm_launcher.py"]
        import hashlib

        sha = hashlib.sha256(escaping.encode()).hexdigest()
        out = fetch("gs://artifacts/server-bundles/escape.json", sha, tmp_path / "opt", env)
        assert out.returncode != 0 and "is outside" in out.stderr
        assert not (tmp_path / "escaped.py").exists()
    finally:
        emulator.stop()
