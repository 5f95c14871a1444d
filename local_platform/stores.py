"""The object stores, locally: moto_server as S3 and the GCS emulator, with the environment a
client needs to reach each."""

from __future__ import annotations

from pathlib import Path

import requests

from local_platform.processes import BIN, LOOPBACK, Proc, http_ok, spawn, wait_until

# moto accepts any credentials; these only keep boto3 from looking for real ones.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "local-platform",
    "AWS_SECRET_ACCESS_KEY": "local-platform",  # noqa: S105 - not a secret, moto ignores it
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_start(port: int, log: Path, recording: Path | None = None) -> Proc:
    """moto_server on loopback; with `recording`, S3 writes are recorded and replayed on restart,
    so the local bucket keeps its objects across `make demo-down` / `make demo`."""
    env = dict(FAKE_AWS)
    if recording:
        recording.parent.mkdir(parents=True, exist_ok=True)
        env |= {"MOTO_ENABLE_RECORDING": "true", "MOTO_RECORDER_FILEPATH": str(recording)}
    proc = spawn(
        "moto_server", [str(BIN / "moto_server"), "-H", LOOPBACK, "-p", str(port)], log, env
    )
    proc.url = f"http://{LOOPBACK}:{port}"
    wait_until(proc, http_ok(f"{proc.url}/moto-api/data.json"), 30, "answering")
    if recording and recording.exists() and recording.stat().st_size:
        requests.post(
            f"{proc.url}/moto-api/recorder/replay-recording", data=proc.url, timeout=300
        ).raise_for_status()
    return proc


def s3_client(endpoint: str):
    return aws_client("s3", endpoint)


def aws_client(service: str, endpoint: str):
    """A boto3 client of moto_server's `service` (S3, Kinesis, SQS) at `endpoint`."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
    )


def ensure_bucket(endpoint: str, bucket: str) -> None:
    client = s3_client(endpoint)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def s3_store_env(endpoint: str) -> dict[str, str]:
    return {**FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}


# GCS (emulator)


def gcs_emulator_start(port: int, log: Path) -> Proc:
    argv = [
        str(BIN / "gcp-storage-emulator"),
        "start",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--in-memory",
    ]
    proc = spawn("gcs-emulator", argv, log)
    proc.url = f"http://{LOOPBACK}:{port}"
    wait_until(proc, http_ok(f"{proc.url}/storage/v1/b?project=local"), 30, "answering")
    return proc


def gcs_store_env(endpoint: str) -> dict[str, str]:
    # google-cloud-storage talks to the emulator, anonymously, when this is set.
    return {"STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_CLOUD_PROJECT": "local"}
