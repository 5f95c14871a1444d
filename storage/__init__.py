"""Where the jobs and the model API read and write data: local paths, s3:// (honours
AWS_ENDPOINT_URL) and gs:// (honours STORAGE_EMULATOR_HOST).

Inputs are opened as random-access files, so parquet is read a row group at a time and never
whole. Outputs are written to a local temporary file and published in one step: an atomic rename
for a path, one upload for an object store (an S3 or GCS object exists only once its upload
completes), so a writer killed mid-write leaves no output, and a retried one replaces its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse


class StorageError(Exception):
    """An input cannot be read or an output cannot be written; the message names the URI."""


def split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) for s3:// and gs://; ("file", "", path) for a local path."""
    if uri.startswith(("s3://", "gs://")):
        parsed = urlparse(uri)
        return parsed.scheme, parsed.netloc, parsed.path.lstrip("/")
    return "file", "", uri.removeprefix("file://")


# What a filesystem or client depends on: a change (another endpoint, account or region, a test's
# mock) makes a new one.
CLIENT_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


def _settings() -> tuple:
    return tuple(os.environ.get(k) for k in CLIENT_SETTINGS)


def _filesystem(scheme: str, bucket: str):
    """One filesystem per bucket and endpoint settings: each input is opened once for its footer
    and once per row group."""
    return _cached_filesystem(scheme, bucket, _settings())


@functools.lru_cache(maxsize=64)
def _cached_filesystem(scheme: str, bucket: str, _settings: tuple):
    return _s3_filesystem(bucket) if scheme == "s3" else _gcs_filesystem()


def _client(scheme: str):
    """The S3 or GCS client, made once per settings and shared by threads (both are thread-safe):
    making a boto3 client costs CPU each time, and the prediction log publishes a file every few
    seconds under load."""
    return _cached_client(scheme, _settings())


def connect(uri: str) -> None:
    """Make the client that publishing to `uri` will use now (made once per settings; a
    folder needs none), so that the first write does not pay for it."""
    scheme = split(uri)[0]
    if scheme != "file":
        _client(scheme)


@functools.lru_cache(maxsize=8)
def _cached_client(scheme: str, _settings: tuple):
    if scheme == "s3":
        import boto3

        # As boto3 reads them: the S3 endpoint before the one for every service.
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return boto3.client("s3", endpoint_url=endpoint or None)
    from google.cloud import storage as gcs

    return gcs.Client()


def _s3_filesystem(bucket: str):
    from pyarrow import fs

    # S3FileSystem() ignores AWS_ENDPOINT_URL (only from_uri reads it): pass it on ourselves.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        # The data bucket may live in another region than the job.
        try:
            region = fs.resolve_s3_region(bucket)
        except OSError:
            region = os.environ.get("AWS_REGION") or None
        return fs.S3FileSystem(region=region)
    parsed = urlparse(endpoint)
    return fs.S3FileSystem(
        endpoint_override=parsed.netloc,
        scheme=parsed.scheme or "https",
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def _gcs_filesystem():
    from pyarrow import fs

    # Arrow retries for 15 minutes by default; a missing or forbidden object should fail sooner.
    retry = dt.timedelta(seconds=60)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")  # what google-cloud-storage honours
    if not emulator:
        return fs.GcsFileSystem(retry_time_limit=retry)
    parsed = urlparse(emulator if "://" in emulator else f"http://{emulator}")
    return fs.GcsFileSystem(
        anonymous=True,
        endpoint_override=parsed.netloc,  # host:port; Arrow adds the scheme itself
        scheme=parsed.scheme or "http",
        retry_time_limit=retry,
    )


def open_input(uri: str):
    """A random-access file for a parquet reader; StorageError if it cannot be opened."""
    scheme, bucket, key = split(uri)
    if scheme == "file":
        if not Path(key).is_file():
            raise StorageError(f"{uri}: no such file")
        return key
    try:
        filesystem = _filesystem(scheme, bucket)
        return filesystem.open_input_file(f"{bucket}/{key}")
    except FileNotFoundError as exc:
        raise StorageError(f"{uri}: no such object") from exc
    except OSError as exc:  # pyarrow raises OSError for access denied, unreachable, ...
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
        if scheme == "s3" and "ACCESS_DENIED" in first.upper().replace(" ", "_"):
            first += " (without s3:ListBucket, S3 answers a missing object with access denied)"
        raise StorageError(f"{uri}: {first}") from exc


def list_files(prefix: str) -> list[str]:
    """Every file under a prefix (a folder, s3://bucket/prefix, gs://bucket/prefix), as URIs in
    name order; [] when there are none. Listing needs s3:ListBucket / storage.objects.list."""
    scheme, bucket, key = split(prefix)
    try:
        if scheme == "file":
            root = Path(key)
            return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        if scheme == "s3":
            keys = [
                item["Key"]
                for page in _client("s3")
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=key)
                for item in page.get("Contents", [])
            ]
        else:
            keys = [blob.name for blob in _client("gs").list_blobs(bucket, prefix=key)]
    except Exception as exc:  # boto/google errors of many kinds: one line naming the prefix
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise StorageError(f"{prefix}: cannot list ({first[:300]})") from exc
    return sorted(f"{scheme}://{bucket}/{k}" for k in keys if not k.endswith("/"))


def join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}"


# Below this, one PUT (what upload_file would do too, after starting its transfer threads).
SINGLE_PUT_BYTES = 8 * 1024 * 1024


def _publish_s3(path: Path, bucket: str, key: str) -> None:
    client = _client("s3")
    if path.stat().st_size < SINGLE_PUT_BYTES:
        with open(path, "rb") as body:
            client.put_object(Bucket=bucket, Key=key, Body=body)
        return
    # upload_file uses multipart for large files and aborts the upload if a part fails.
    client.upload_file(str(path), bucket, key)


def _publish_gcs(path: Path, bucket: str, key: str) -> None:
    _client("gs").bucket(bucket).blob(key).upload_from_filename(str(path))


@contextlib.contextmanager
def publishing(uri: str) -> Iterator[Path]:
    """Yield a local path to write to; publish it as `uri` only if the block completes."""
    scheme, bucket, key = split(uri)
    if scheme == "file":
        final = Path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A dot file next to the final one (readers skip dot files), renamed over it at the end.
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    else:
        fd, name = tempfile.mkstemp(prefix="scoring-", suffix=".parquet")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        if scheme == "file":
            # mkstemp made it private; the part gets the mode any new file would.
            umask = os.umask(0)
            os.umask(umask)
            temporary.chmod(0o666 & ~umask)
            os.replace(temporary, final)
        else:
            try:
                (_publish_s3 if scheme == "s3" else _publish_gcs)(temporary, bucket, key)
            except Exception as exc:
                raise StorageError(
                    f"{uri}: upload failed ({exc.__class__.__name__}: {exc})"
                ) from exc
    finally:
        temporary.unlink(missing_ok=True)
