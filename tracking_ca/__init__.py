"""How every workload trusts the tracking server: HTTPS, verified against the platform's own CA.

MLflow's client verifies the server with the file named by MLFLOW_TRACKING_SERVER_CERT_PATH. A
person or the local platform sets that path; a container in the service stacks gets the CA's PEM
in MLFLOW_TRACKING_CA_PEM instead (ECS and Cloud Run pass environment, not files), and each
entrypoint calls `trust()` first, which writes it to a file and sets the path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CA_PEM_ENV = "MLFLOW_TRACKING_CA_PEM"
CERT_PATH_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"


class TrustError(ValueError):
    """The CA given in the environment is not usable; the message names the variable."""


def trust() -> str | None:
    """Point MLflow's client at the tracking server's CA; the file it verifies with (None: the
    system's CAs, e.g. a `domain` certificate from Let's Encrypt)."""
    pem = os.environ.get(CA_PEM_ENV, "").strip()
    if pem:
        if not pem.startswith("-----BEGIN CERTIFICATE-----") or "PRIVATE KEY" in pem:
            raise TrustError(f"{CA_PEM_ENV} must hold PEM certificates (and nothing else)")
        path = _private_file(pem + "\n")
        os.environ[CERT_PATH_ENV] = str(path)
    path = os.environ.get(CERT_PATH_ENV)
    if path and not Path(path).is_file():
        raise TrustError(f"{CERT_PATH_ENV} names {path}, which is not a file")
    return path


def _private_file(text: str) -> Path:
    """`text` in a new file (mode 600) in a new directory only this user can write (mode 700):
    a fixed path in the shared temporary directory could be planted or swapped by another
    user of the machine, and with it the CA every client trusts."""
    path = Path(tempfile.mkdtemp(prefix="mlflow-tracking-ca-")) / "ca.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def verify() -> str | bool:
    """For requests made without MLflow's client: the CA file, or the system's CAs."""
    return os.environ.get(CERT_PATH_ENV) or True
