"""Stack output names: the contract between the platform stack and the service stacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pulumi

    from infra.config import PlatformConfig

TRACKING_URI = "trackingUri"
STATIC_IP = "staticIp"
ARTIFACT_BUCKET = "artifactBucket"
DB_ENDPOINT = "dbEndpoint"
VPC_ID = "vpcId"
PUBLIC_SUBNET_IDS = "publicSubnetIds"
PRIVATE_SUBNET_IDS = "privateSubnetIds"
CLIENT_SECURITY_GROUP_ID = "clientSecurityGroupId"
TRACKING_PRIVATE_URI = "trackingPrivateUri"
"""The server's private address, for clients inside the network (the service stacks)."""
CREDENTIALS_SECRET = "credentialsSecret"
"""ARN (AWS) or secret id (GCP) of the secret holding the MLflow admin username and password."""
TRACKING_CA_CERT = "trackingCaCert"
"""The PEM of the stack's own CA, which signed the tracking server's certificate (public): every
client verifies the server with it (MLFLOW_TRACKING_SERVER_CERT_PATH). Empty with a `domain`: the
server's certificate is Let's Encrypt's, which the system's CAs verify."""
PASSWORD_SECRETS = {
    "trainer": "trainerPasswordSecret",
    "model-api": "modelApiPasswordSecret",
    "streaming": "streamingPasswordSecret",
}
"""Per workload user (infra.mlflow_server.IDENTITIES): the ARN (AWS) or secret id (GCP) of the
secret holding just its password."""
TRACKING_INSTANCE = "trackingInstance"
"""The tracking VM: its EC2 ARN, or projects/P/zones/Z/instances/N on GCP (scripts/smoke reads
its serial console for the bootstrap's verdict)."""
TRACKING_CERT_EXPIRY = "trackingCertExpiry"
"""When the stack's server certificate ends (RFC 3339); renewed automatically 30 days before
(infra/tls.py). With a domain, Let's Encrypt's own certificate renews on the VM."""
ALERTS_TOPIC = "alertsTopic"
"""AWS, with alertEmail or alertWebhook set: the SNS topic the platform's alarms publish to."""
SLEEP_SCHEDULE = "sleepSchedule"
"""With a sleepSchedule: the platform's night, which its service stack should share (it warns
when its own differs)."""
ADMIN_USERNAME = "adminUsername"
ADMIN_PASSWORD = "adminPassword"
"""Exported only as a Pulumi secret."""

# Where the service stacks write in the artifact bucket, outside MLflow's artifact root (mlflow/):
# the bucket's lifecycle rules expire them (predictionLogDays, scoringOutputDays).
PREDICTIONS_PREFIX = "predictions/"
SCORING_PREFIX = "batch-predictions/"


def expiring(cfg: PlatformConfig) -> list[tuple[str, int]]:
    """(prefix, days) the artifact bucket keeps the service stacks' outputs for."""
    return [(PREDICTIONS_PREFIX, cfg.predictionLogDays), (SCORING_PREFIX, cfg.scoringOutputDays)]


# Both clouds export these; AWS adds the clients' security group.
SHARED = (
    TRACKING_URI,
    TRACKING_PRIVATE_URI,
    TRACKING_INSTANCE,
    STATIC_IP,
    ARTIFACT_BUCKET,
    DB_ENDPOINT,
    VPC_ID,
    PUBLIC_SUBNET_IDS,
    PRIVATE_SUBNET_IDS,
    TRACKING_CA_CERT,
    TRACKING_CERT_EXPIRY,
    CREDENTIALS_SECRET,
    *PASSWORD_SECRETS.values(),
    ADMIN_USERNAME,
    ADMIN_PASSWORD,
)
AWS = (*SHARED, CLIENT_SECURITY_GROUP_ID)
GCP = SHARED


def tracking_endpoints(
    cfg: PlatformConfig,
    public_ip: pulumi.Output[str],
    private_ip: pulumi.Output[str],
    ca_cert_pem: pulumi.Output[str],
) -> dict[str, object]:
    """Where clients reach the tracking server and what they trust: the bare addresses and the
    stack's CA, or the domain (inside the network it resolves to the private address) and the
    system's CAs (Let's Encrypt)."""
    port = cfg.mlflowPort
    if cfg.domain:
        uri = f"https://{cfg.domain}:{port}"
        return {TRACKING_URI: uri, TRACKING_PRIVATE_URI: uri, TRACKING_CA_CERT: ""}
    return {
        TRACKING_URI: public_ip.apply(lambda ip: f"https://{ip}:{port}"),
        TRACKING_PRIVATE_URI: private_ip.apply(lambda ip: f"https://{ip}:{port}"),
        TRACKING_CA_CERT: ca_cert_pem,
    }
