#!/usr/bin/env python3
"""The user-data's only code: fetches the VM's bundle at first boot and writes its files.

    fetch_bundle.py URL SHA256 [REGION]      URL: s3://bucket/key or gs://bucket/key

The bundle (infra.vm.ServerBundle) is one object named by its sha256: every other file the VM
needs, at its path with its mode. Read through the VM's own identity (EC2's role via IMDSv2 and
a SigV4-signed GET; GCE's service account via the metadata server), refused unless it hashes to
SHA256. The image's python3 runs it before anything is installed: standard library only. A read
is tried 5 times (10 s, 20 s, ... apart), then the bootstrap's verdict line goes to the serial
console and the status file (as in vm_bootstrap.sh). Tests set the FETCH_* variables.
"""

import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOTS = ("/opt/mlflow/", "/etc/mlflow/", "/etc/systemd/system/", "/etc/logrotate.d/")
"""Where the bundle may write: the server's prefix, its settings, its units, its log rotation."""
STATUS = "opt/mlflow/bootstrap.status"
LOG = "/var/log/cloud-init-output.log"


class FetchError(Exception):
    pass


def http(url: str, headers: dict, method: str = "GET") -> bytes:
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{url}: not an http(s) URL")
    request = urllib.request.Request(url, headers=headers, method=method)  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (checked)
            return response.read()
    except OSError as exc:  # URLError and HTTPError are OSErrors
        raise FetchError(f"{method} {url}: {exc}") from None


def sigv4_headers(host: str, path: str, region: str, creds: dict, now: dt.datetime) -> dict:
    """An S3 GET's headers, signed with AWS Signature Version 4 (`path` URI-encoded)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": host, "x-amz-content-sha256": hashlib.sha256(b"").hexdigest(),
               "x-amz-date": amz_date, "x-amz-security-token": creds["Token"]}  # fmt: skip
    names = ";".join(sorted(headers))
    canonical = "\n".join(["GET", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)),
                           "", names, headers["x-amz-content-sha256"]])  # fmt: skip
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    key = ("AWS4" + creds["SecretAccessKey"]).encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    text = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
    signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds['AccessKeyId']}/{scope}, "
                                f"SignedHeaders={names}, Signature={signature}")  # fmt: skip
    return headers


def read_s3(bucket: str, key: str, region: str) -> bytes:
    metadata = os.environ.get("FETCH_METADATA", "http://169.254.169.254")
    token = http(f"{metadata}/latest/api/token",
                 {"X-aws-ec2-metadata-token-ttl-seconds": "300"}, "PUT").decode()  # fmt: skip
    auth = {"X-aws-ec2-metadata-token": token}
    base = f"{metadata}/latest/meta-data/iam/security-credentials/"
    role = http(base, auth).decode().split()[0]
    creds = json.loads(http(base + role, auth))
    endpoint = os.environ.get("FETCH_ENDPOINT")
    if endpoint:  # a test's, path style
        base, path = endpoint.rstrip("/"), f"/{quote(bucket)}/{quote(key, safe='/~')}"
    else:  # the bucket's own virtual host in its region
        base, path = f"https://{bucket}.s3.{region}.amazonaws.com", f"/{quote(key, safe='/~')}"
    headers = sigv4_headers(base.split("://")[1], path, region, creds, dt.datetime.now(dt.UTC))
    del headers["host"]  # urllib sends it, from the URL, as signed
    return http(base + path, headers)


def read_gcs(bucket: str, key: str) -> bytes:
    metadata = os.environ.get("FETCH_METADATA", "http://metadata.google.internal")
    token = json.loads(http(f"{metadata}/computeMetadata/v1/instance/service-accounts/default/token",
                            {"Metadata-Flavor": "Google"}))["access_token"]  # fmt: skip
    base = os.environ.get("FETCH_ENDPOINT", "https://storage.googleapis.com").rstrip("/")
    url = f"{base}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}?alt=media"
    return http(url, {"Authorization": f"Bearer {token}"})


def install(data: bytes, sha256: str, root: Path) -> int:
    """Write {"files": {path: {"mode": "0644", "text": ...}}} under `root` if `data` hashes to
    `sha256` and every path is under ROOTS (all checked before any write)."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise FetchError(f"the bundle's sha256 is {digest}, not {sha256}")
    files = json.loads(data)["files"]
    for path in files:
        if os.path.normpath(path) != path or not path.startswith(ROOTS):
            raise FetchError(f"{path} is outside {', '.join(ROOTS)}")
    for path, entry in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(entry["text"])
        tmp.chmod(int(entry["mode"], 8))
        os.replace(tmp, target)
    return len(files)


def fail(why: str, root: Path) -> int:
    line = f"MLFLOW BOOTSTRAP FAILED at step server bundle: {why}; see {LOG}"
    print(line, file=sys.stderr)
    console = Path("/dev/console") if root == Path("/") else root / "console"
    for path, mode in ((console, "a"), (root / STATUS, "w")):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, mode) as out:
                out.write(line + "\n")
        except OSError:
            pass
    return 1


def main(argv: list) -> int:
    if len(argv) not in (3, 4):
        print("usage: fetch_bundle.py URL SHA256 [REGION]", file=sys.stderr)
        return 2
    url, sha256, region = (argv[1:] + [""])[:3]
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    root = Path(os.environ.get("FETCH_ROOT", "/"))
    if scheme not in ("s3", "gs") or not bucket or not key or (scheme == "s3" and not region):
        return fail(f"{url}: not gs://bucket/key, nor s3://bucket/key with a REGION", root)
    for attempt in range(1, 6):
        try:
            data = read_s3(bucket, key, region) if scheme == "s3" else read_gcs(bucket, key)
            print(f"fetch_bundle: {install(data, sha256, root)} files from {url}")
            return 0
        except FetchError as exc:
            why = str(exc)
        print(f"attempt {attempt} of 5 failed: {why}", file=sys.stderr)
        if " is outside " in why or why.startswith("the bundle's sha256"):
            break  # the same object would fail the same way
        if attempt < 5:
            time.sleep(attempt * float(os.environ.get("FETCH_RETRY_SECONDS", "10")))
    return fail(why, root)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
