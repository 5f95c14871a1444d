"""The fetcher's own SigV4 signing (it runs before boto3 is installed on the VM) signs an S3 GET
exactly as botocore does."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra import vm_fetch_bundle as fetcher

NOW = dt.datetime(2026, 12, 6, 9, 30, 15, tzinfo=dt.UTC)
CREDS = {
    "AccessKeyId": "ASIAEXAMPLE",
    "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG",
    "Token": "tok/en+==",
}


@pytest.mark.parametrize(
    ("host", "path", "region"),
    [
        (
            "mlops-artifacts-dev-1a2b.s3.us-east-1.amazonaws.com",
            "/server-bundles/ab12.json",
            "us-east-1",
        ),
        ("bucket.s3.eu-west-3.amazonaws.com", "/a%20key/with~tilde.json", "eu-west-3"),
    ],
)
def test_the_signature_is_botocore_s(host, path, region, monkeypatch):
    ours = fetcher.sigv4_headers(host, path, region, CREDS, NOW)
    request = AWSRequest(method="GET", url=f"https://{host}{path}")
    credentials = Credentials(CREDS["AccessKeyId"], CREDS["SecretAccessKey"], CREDS["Token"])
    monkeypatch.setattr("botocore.auth.datetime.datetime", _Frozen)
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"] == "20261206T093015Z"


class _Frozen(dt.datetime):
    @classmethod
    def utcnow(cls):
        return NOW.replace(tzinfo=None)

    @classmethod
    def now(cls, tz=None):
        return NOW if tz else NOW.replace(tzinfo=None)
