"""Compose the AWS platform and return its outputs, keyed by the names in infra.outputs."""

from __future__ import annotations

import pulumi

from infra import outputs as out
from infra.aws.alerts import platform_alerts
from infra.aws.bucket import ArtifactBucket
from infra.aws.database import Database
from infra.aws.network import Network
from infra.aws.probe import TrackingProbe
from infra.aws.sleep import platform_night
from infra.aws.tracking_server import TrackingServer
from infra.config import PlatformConfig
from infra.outputs import tracking_endpoints


def build(cfg: PlatformConfig, admin_password: pulumi.Output[str] | None) -> dict[str, object]:
    name = "mlops"
    network = Network(name, cfg)
    database = Database(name, cfg, network.private_subnet_ids, network.db_sg_id)
    bucket = ArtifactBucket(name, cfg)
    server = TrackingServer(
        name,
        cfg,
        subnet_ids=network.public_subnet_ids,
        lb_sg_ids=network.lb_sg_ids,
        private_ip=network.server_private_ip,
        security_group_id=network.server_sg_id,
        bucket_name=bucket.name,
        bucket_arn=bucket.arn,
        bucket_configured=bucket.configured,
        db_address=database.address,
        db_secret_arn=database.secret_arn,
        db_arn=database.arn,
        db_identifier=database.identifier,
        vpc_id=network.vpc_id,
        admin_password=admin_password,
    )
    endpoints = tracking_endpoints(cfg, server.public_ip, server.private_ip, server.ca_cert_pem)
    alerts = platform_alerts(name, cfg, database.identifier)
    probe = None
    if alerts:
        probe = TrackingProbe(
            name, cfg, endpoints[out.TRACKING_PRIVATE_URI], endpoints[out.TRACKING_CA_CERT],
            network.private_subnet_ids, network.client_sg_id, alerts.topic,
            opts=pulumi.ResourceOptions(parent=alerts),
        )  # fmt: skip
    platform_night(name, cfg, server.instance_ref, database.arn, database.identifier,
                   probe.health_alarm if probe else None)  # fmt: skip
    return {
        **({out.ALERTS_TOPIC: alerts.topic.arn} if alerts else {}),
        **endpoints,
        out.TRACKING_INSTANCE: server.instance_ref,
        out.TRACKING_CERT_EXPIRY: server.cert_expiry,
        out.STATIC_IP: server.public_ip,
        out.ARTIFACT_BUCKET: bucket.name,
        out.DB_ENDPOINT: pulumi.Output.concat(database.address, ":", database.port.apply(str)),
        out.VPC_ID: network.vpc_id,
        out.PUBLIC_SUBNET_IDS: network.public_subnet_ids,
        out.PRIVATE_SUBNET_IDS: network.private_subnet_ids,
        out.CLIENT_SECURITY_GROUP_ID: network.client_sg_id,
        out.CREDENTIALS_SECRET: server.credentials_secret_arn,
        **{out.PASSWORD_SECRETS[user]: arn for user, arn in server.password_secret_arns.items()},
        **({out.SLEEP_SCHEDULE: cfg.sleepSchedule.model_dump()} if cfg.sleepSchedule else {}),
        out.ADMIN_USERNAME: cfg.adminUsername,
        out.ADMIN_PASSWORD: server.admin_password,
    }
