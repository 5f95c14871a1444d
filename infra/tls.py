"""The tracking server's TLS without a domain: each platform stack owns a small CA (pulumi-tls) that
signs one server certificate for the static IP and the fixed private address.

The CA's certificate is a public stack output (`trackingCaCert`) that every client trusts; the
server's key and certificate go together into the cloud's secret store (nothing of them in the
user-data), whence the VM's launcher fetches them at every start. Pulumi keeps both keys in the
stack's state as secrets, and the CA's key signs nothing else.

With a `domain`, Let's Encrypt certifies that name on the VM (infra/vm.py's ACME units) and this
certificate, which names the domain too, is only what the server presents until the first one
is issued.

Renewal needs no person and no new VM: within `EARLY_RENEWAL_HOURS` of its end (`trackingCertExpiry`
says when) any `pulumi up` replaces the certificate and writes a new secret version; the weekly
renewal workflow runs just that (`scripts/renew-cert STACK`: an `up` that targets the certificate
and its secret only), and the VM's daily `mlflow-tls` timer restarts the server when the secret
holds a certificate other than the one it presents (seconds). The CA lasts ten years; a new CA
reaches the service stacks at their next `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

CA_VALIDITY_HOURS = 10 * 8760
CERT_VALIDITY_HOURS = 8760
EARLY_RENEWAL_HOURS = 30 * 24


@dataclass(frozen=True)
class TrackingTls:
    ca_cert_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    """Secret: for the secret store only."""
    key_and_cert_pem: pulumi.Output[str]
    """Secret: what the secret store holds for the server, the key's PEM then the certificate's
    (infra.vm_launcher.split_pem)."""
    expiry: pulumi.Output[str]
    """When the certificate ends (RFC 3339): the `trackingCertExpiry` output."""


def tracking_tls(
    name: str,
    stack: str,
    ip_addresses: list[pulumi.Input[str]],
    parent: pulumi.Resource,
    dns_names: list[str] | None = None,
) -> TrackingTls:
    opts = pulumi.ResourceOptions(parent=parent)
    ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
    ca = tls.SelfSignedCert(
        f"{name}-ca",
        private_key_pem=ca_key.private_key_pem,
        is_ca_certificate=True,
        subject=tls.SelfSignedCertSubjectArgs(
            common_name=f"mlops-platform {stack} tracking CA", organization="mlops-platform"
        ),
        validity_period_hours=CA_VALIDITY_HOURS,
        early_renewal_hours=8760,
        allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
        opts=opts,
    )
    key = tls.PrivateKey(f"{name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)
    request = tls.CertRequest(
        f"{name}-tls-request",
        private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(
            common_name=f"mlflow-{stack}", organization="mlops-platform"
        ),
        ip_addresses=ip_addresses,
        dns_names=dns_names or None,
        opts=opts,
    )
    cert = tls.LocallySignedCert(
        f"{name}-tls-cert",
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=ca_key.private_key_pem,
        ca_cert_pem=ca.cert_pem,
        validity_period_hours=CERT_VALIDITY_HOURS,
        early_renewal_hours=EARLY_RENEWAL_HOURS,
        allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
        opts=opts,
    )
    return TrackingTls(
        ca_cert_pem=ca.cert_pem,
        cert_pem=cert.cert_pem,
        private_key_pem=pulumi.Output.secret(key.private_key_pem),
        key_and_cert_pem=pulumi.Output.secret(
            pulumi.Output.concat(key.private_key_pem, cert.cert_pem)
        ),
        expiry=cert.validity_end_time,
    )
