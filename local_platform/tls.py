"""TLS, locally: a CA of the platform's own and the tracking server's certificate from it."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from local_platform.processes import LOOPBACK


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    """What clients trust (MLFLOW_TRACKING_SERVER_CERT_PATH)."""
    cert: Path
    key: Path


def make_tls(directory: Path, hosts: tuple[str, ...] = (LOOPBACK, "localhost")) -> TlsFiles:
    """A CA (10 years) and a server certificate for `hosts` (IPs or names; 1 year) in `directory`,
    made once and reused while the certificate has 30 days left and still names every host. The
    keys are mode 600; the CA's key stays here and signs nothing else."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    now = dt.datetime.now(dt.UTC)

    def sans() -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return names

    if files.cert.exists() and files.key.exists() and files.ca_cert.exists():
        current = x509.load_pem_x509_certificate(files.cert.read_bytes())
        named = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if current.not_valid_after_utc - now > dt.timedelta(days=30) and set(sans()) <= set(named):
            return files
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)

    def private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: clients tell two local CAs apart by name before checking signatures.
    label = f"mlops-platform local CA {secrets.token_hex(4)}"
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans()), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    private(directory / "ca-key.pem", ca_key)
    private(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files
