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
        path = Path(tempfile.gettempdir()) / "mlflow-tracking-ca.pem"
        path.write_text(pem + "\n")
        os.environ[CERT_PATH_ENV] = str(path)
    path = os.environ.get(CERT_PATH_ENV)
    if path and not Path(path).is_file():
        raise TrustError(f"{CERT_PATH_ENV} names {path}, which is not a file")
    return path


def verify() -> str | bool:
    """For requests made without MLflow's client: the CA file, or the system's CAs."""
    return os.environ.get(CERT_PATH_ENV) or True
