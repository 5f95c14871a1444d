"""The tracking server's probe, run from outside its VM every minute (AWS: a Lambda function in the
platform's network; infra.aws.probe): GET /health over HTTPS as the workloads reach it (the
private URI, trusting the stack's CA or, with a domain, the system's), and how long the
certificate the server presents has left. It prints one JSON line, whence the log's metric
filters make the metrics the alarms watch:

    {"probe": "tracking", "stack": "dev", "healthy": 1, "certificateDaysLeft": 331.5}
    {"probe": "tracking", "stack": "dev", "healthy": 0, "reason": "timed out"}

Standard library only: it runs as plain code on the cloud's Python runtime.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 5.0


def probe(uri: str, ca_pem: str = "", timeout: float = TIMEOUT_SECONDS, now=time.time) -> dict:
    """One check of `uri`/health: healthy 1 (HTTP 200 over a verified connection) with the
    certificate's days left, or healthy 0 with why. A certificate that no longer verifies
    (expired, another CA) is unhealthy: its days are then unknown."""
    parts = urlsplit(uri)
    # The stack's CA alone, or (a domain: no CA given) the system's.
    context = ssl.create_default_context(cadata=ca_pem or None)
    connection = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, timeout=timeout, context=context
    )
    try:
        connection.request("GET", "/health", headers={"User-Agent": "mlops-tracking-probe"})
        # Before the response: a response that closes the connection takes its socket.
        certificate = connection.sock.getpeercert()
        response = connection.getresponse()
        response.read(1024)
    except (OSError, http.client.HTTPException) as exc:
        return {"healthy": 0, "reason": reason(exc, timeout)}
    finally:
        connection.close()
    days = None
    if certificate and certificate.get("notAfter"):
        days = round((ssl.cert_time_to_seconds(certificate["notAfter"]) - now()) / 86400, 1)
    result: dict = {"healthy": int(response.status == 200)}
    if days is not None:
        result["certificateDaysLeft"] = days
    if response.status != 200:
        result["reason"] = f"/health answered HTTP {response.status}"
    return result


def reason(exc: BaseException, timeout: float) -> str:
    """One line saying why the check failed, without the exception's class noise."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def handler(event=None, context=None) -> dict:
    """Lambda's entry point (and `python -m infra.tracking_probe` anywhere): the probe's line
    for this stack, from TRACKING_PROBE_URI, TRACKING_PROBE_CA (PEM, may be empty) and
    TRACKING_PROBE_STACK."""
    line = {"probe": "tracking", "stack": os.environ["TRACKING_PROBE_STACK"]}
    line |= probe(os.environ["TRACKING_PROBE_URI"], os.environ.get("TRACKING_PROBE_CA", ""))
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    raise SystemExit(0 if handler()["healthy"] else 1)
