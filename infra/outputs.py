"""Stack output names: the contract between the platform stack and the service stacks."""

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
client verifies the server with it (MLFLOW_TRACKING_SERVER_CERT_PATH)."""
PASSWORD_SECRETS = {"trainer": "trainerPasswordSecret", "model-api": "modelApiPasswordSecret"}
"""Per workload user (infra.mlflow_server.IDENTITIES): the ARN (AWS) or secret id (GCP) of the
secret holding just its password."""
TRACKING_INSTANCE = "trackingInstance"
"""The tracking VM: its EC2 ARN, or projects/P/zones/Z/instances/N on GCP (scripts/smoke reads
its serial console for the bootstrap's verdict)."""
ADMIN_USERNAME = "adminUsername"
ADMIN_PASSWORD = "adminPassword"
"""Exported only as a Pulumi secret."""

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
    CREDENTIALS_SECRET,
    *PASSWORD_SECRETS.values(),
    ADMIN_USERNAME,
    ADMIN_PASSWORD,
)
AWS = (*SHARED, CLIENT_SECURITY_GROUP_ID)
GCP = SHARED
