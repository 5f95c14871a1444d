"""The user-data's fetcher (infra/vm_fetch_bundle.py), for real, as cloud-init runs it: the image's
python3 with nothing installed, the VM's identity from a metadata server (a stand-in on
127.0.0.1 that answers as EC2's IMDSv2 or GCE's does), the object in moto_server's S3 or the GCS
emulator; the files land under a temporary root."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest

import local_platform as c
from infra.vm import FETCH_SOURCE, ServerBundle, code_files
from infra.vm_launcher import environ

pytestmark = [pytest.mark.integration]

ROLE = "mlops-tracking-role"
TOKEN = "imds-session-token"
FILES = [
    *code_files(),
    ("/opt/mlflow/bootstrap.sh", "0755", "#!/bin/bash\necho bootstrap\n"),
    ("/etc/mlflow/server.json", "0644", '{"argv": []}\n'),
    ("/etc/systemd/system/mlflow.service", "0644", "[Unit]\n"),
]


@contextmanager
def metadata_server(cloud: str):
    """EC2's IMDSv2 (a PUT for a session token, then GETs that carry it) or GCE's metadata
    server (GETs with Metadata-Flavor: Google); every request it saw is kept."""
    seen: list[tuple[str, str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):  # noqa: N802
            seen.append(("PUT", self.path, dict(self.headers)))
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            ok = cloud == "aws" and self.path == "/latest/api/token" and ttl
            self.answer(200 if ok else 403, TOKEN.encode() if ok else b"")

        def do_GET(self):  # noqa: N802
            seen.append(("GET", self.path, dict(self.headers)))
            base = "/latest/meta-data/iam/security-credentials/"
            if cloud == "aws" and self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.answer(401, b"")
            if cloud == "aws" and self.path == base:
                return self.answer(200, ROLE.encode())
            if cloud == "aws" and self.path == base + ROLE:
                creds = {"AccessKeyId": "ASIAMOCK", "SecretAccessKey": "secret", "Token": "t"}
                return self.answer(200, json.dumps(creds).encode())
            token = "/computeMetadata/v1/instance/service-accounts/default/token"
            if cloud == "gcp" and self.path == token:
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self.answer(403, b"")
                return self.answer(200, b'{"access_token": "ya29.mock", "expires_in": 3599}')
            self.answer(404, b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def fetch(args: list[str], root, endpoint: str, metadata: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "FETCH_ROOT": str(root), "FETCH_ENDPOINT": endpoint,
           "FETCH_METADATA": metadata, "FETCH_RETRY_SECONDS": "0"}  # fmt: skip
    # -I: the interpreter alone, as on a fresh VM (no site-packages, no repository on the path)
    return subprocess.run([sys.executable, "-I", str(FETCH_SOURCE), *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_bundle_comes_from_s3_with_the_instance_role_and_a_changed_one_is_refused(tmp_path):
    bundle = ServerBundle.of(FILES)
    moto = c.moto_start(c.free_port(), tmp_path / "moto.log")
    try:
        c.ensure_bucket(moto.url, "artifacts")
        s3 = c.s3_client(moto.url)
        s3.put_object(Bucket="artifacts", Key=bundle.key, Body=bundle.text.encode())
        url = f"s3://artifacts/{bundle.key}"
        with metadata_server("aws") as (metadata, seen):
            done = fetch([url, bundle.sha256, "us-east-1"], tmp_path / "vm", moto.url, metadata)
            assert done.returncode == 0, done.stderr
            assert [(m, p) for m, p, _ in seen][0] == ("PUT", "/latest/api/token")
            for path, text in bundle.files().items():
                written = tmp_path / "vm" / path.lstrip("/")
                assert written.read_text() == text
                mode = stat.S_IMODE(written.stat().st_mode)
                assert mode == int(bundle.modes()[path], 8), path
            # Someone who may write to the bucket swaps the object: the VM refuses it, says so
            # on its console and in the status file, and writes nothing.
            tampered = json.loads(bundle.text)
            tampered["files"]["/opt/mlflow/vm_launcher.py"]["text"] += "\nprint('hello')\n"
            s3.put_object(Bucket="artifacts", Key=bundle.key, Body=json.dumps(tampered).encode())
            other = tmp_path / "other"
            refused = fetch([url, bundle.sha256, "us-east-1"], other, moto.url, metadata)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        line = (other / "opt/mlflow/bootstrap.status").read_text().strip()
        assert line.startswith(
            "MLFLOW BOOTSTRAP FAILED at step server bundle: the bundle's sha256 is "
        )
        assert (other / "console").read_text().strip() == line
        assert not (other / "opt/mlflow/vm_launcher.py").exists()
        assert refused.stderr.count("attempt ") == 1  # the same object would fail the same way
    finally:
        moto.stop()


def test_the_bundle_comes_from_gcs_and_may_not_write_outside_its_roots(tmp_path):
    emulator = c.gcs_emulator_start(c.free_port(), tmp_path / "gcs.log")
    try:
        bundle = ServerBundle.of(FILES)
        escaping = ServerBundle.of([("/etc/cron.d/evil", "0644", "* * * * * root sh\n")])
        with environ(c.gcs_store_env(emulator.url)):
            from google.cloud import storage

            bucket = storage.Client().create_bucket("artifacts")
            for each in (bundle, escaping):
                bucket.blob(each.key).upload_from_string(each.text)
        with metadata_server("gcp") as (metadata, seen):
            args = [f"gs://artifacts/{bundle.key}", bundle.sha256]
            done = fetch(args, tmp_path / "vm", emulator.url, metadata)
            assert done.returncode == 0, done.stderr
            assert seen[0][2].get("Metadata-Flavor") == "Google"
            launcher = tmp_path / "vm/opt/mlflow/vm_launcher.py"
            assert launcher.read_text() == bundle.files()["/opt/mlflow/vm_launcher.py"]
            args = [f"gs://artifacts/{escaping.key}", escaping.sha256]
            out = fetch(args, tmp_path / "vm", emulator.url, metadata)
        assert out.returncode == 1 and "/etc/cron.d/evil is outside" in out.stderr
        assert not (tmp_path / "vm/etc/cron.d").exists()
    finally:
        emulator.stop()


def test_an_unreachable_bucket_is_retried_then_said_once(tmp_path):
    with metadata_server("aws") as (metadata, _):
        sha = hashlib.sha256(b"x").hexdigest()
        url = f"s3://artifacts/server-bundles/{sha}.json"
        out = fetch(
            [url, sha, "us-east-1"], tmp_path, f"http://127.0.0.1:{c.free_port()}", metadata
        )
    assert out.returncode == 1 and out.stderr.count("attempt ") == 5
    assert "Connection refused" in (tmp_path / "opt/mlflow/bootstrap.status").read_text()


@pytest.mark.parametrize(
    "args",
    [["s3://bucket/key", "ab" * 32], ["ftp://bucket/key", "ab" * 32], ["gs://bucket", "ab" * 32]],
)
def test_a_url_it_cannot_read_is_one_verdict_line(args, tmp_path):
    out = fetch(args, tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    status = (tmp_path / "opt/mlflow/bootstrap.status").read_text()
    assert status.startswith("MLFLOW BOOTSTRAP FAILED at step server bundle: ")
    assert "not gs://bucket/key, nor s3://bucket/key with a REGION" in status
