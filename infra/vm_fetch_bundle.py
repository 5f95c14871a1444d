#!/usr/bin/env python3
"""Fetches the tracking server's code bundle (the launcher and the MLflow plugin) at first boot.

The platform program uploads the bundle to the artifact bucket under a key named by its sha256
(infra.vm.server_bundle); the user-data carries that key and hash, not the code, which EC2's
16 KB of user-data cannot hold. Run by the bootstrap with the server's virtualenv, it reads the
object through the VM's own identity (instance role / service account), refuses it unless its
sha256 is the one in the user-data, and writes each file at its path under the install prefix.

    fetch_bundle.py URL SHA256 PREFIX [REGION]     URL: s3://bucket/key or gs://bucket/key

Standalone on purpose: it runs with only the server's virtualenv (boto3 or google-cloud-storage).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def read(url: str, region: str | None = None) -> bytes:
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise SystemExit(f"fetch_bundle: {url} names no bucket and key")
    if scheme == "s3":
        import boto3

        return (
            boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
        )
    if scheme == "gs":
        from google.cloud import storage

        return storage.Client().bucket(bucket).blob(key).download_as_bytes()
    raise SystemExit(f"fetch_bundle: {url} is neither s3:// nor gs://")


def install(data: bytes, sha256: str, prefix: Path) -> list[Path]:
    """Write the bundle's files (each at its relative path under `prefix`), if `data` hashes to
    `sha256`."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(f"fetch_bundle: the bundle's sha256 is {digest}, not {sha256}")
    prefix = prefix.resolve()
    written = []
    for name, text in json.loads(data)["files"].items():
        target = (prefix / name).resolve()
        if prefix not in target.parents:
            raise SystemExit(f"fetch_bundle: {name} is outside {prefix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print("usage: fetch_bundle.py URL SHA256 PREFIX [REGION]", file=sys.stderr)
        return 2
    url, sha256, prefix = argv[1:4]
    region = argv[4] if len(argv) == 5 and argv[4] else None
    written = install(read(url, region), sha256, Path(prefix))
    print(f"fetch_bundle: {len(written)} files from {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
