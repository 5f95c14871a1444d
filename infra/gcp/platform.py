"""Compose the GCP platform and return its outputs, keyed by the names in infra.outputs."""

from __future__ import annotations

import pulumi

from infra import outputs as out
from infra.config import PlatformConfig
from infra.gcp.alerts import platform_alerts
from infra.gcp.apis import enable_apis, platform_apis
from infra.gcp.bucket import ArtifactBucket
from infra.gcp.database import Database
from infra.gcp.network import Network
from infra.gcp.probe import TrackingProbe
from infra.gcp.sleep import platform_night, vm_schedule
from infra.gcp.tracking_server import TrackingServer
from infra.outputs import tracking_endpoints


def build(cfg: PlatformConfig, admin_password: pulumi.Output[str] | None) -> dict[str, object]:
    name = "mlops"
    apis = enable_apis(platform_apis(cfg))
    network = Network(name, cfg)
    database = Database(name, cfg, network.network_id, network.peering)
    bucket = ArtifactBucket(name, cfg)
    schedule = vm_schedule(name, cfg) if cfg.sleepSchedule else None
    server = TrackingServer(
        name,
        cfg,
        subnet_id=network.subnet_id,
        network_id=network.network_id,
        bucket_name=bucket.name,
        db_host=database.private_ip,
        db_ca=database.ca_pem,
        database=database.instance,
        db_secret_name=database.secret_name,
        db_secret_id=database.secret_id,
        admin_password=admin_password,
        apis=apis,
        schedule=schedule,
    )
    alerts = platform_alerts(name, cfg, database.instance)
    probe = None
    if alerts:
        probe = TrackingProbe(name, cfg, server.private_ip, network.network_id, alerts.channels,
                              pulumi.ResourceOptions(parent=alerts))  # fmt: skip
    platform_night(name, cfg, database.instance, probe.health if probe else None)
    return {
        **tracking_endpoints(cfg, server.public_ip, server.private_ip, server.ca_cert_pem),
        out.TRACKING_INSTANCE: server.instance_ref,
        out.TRACKING_CERT_EXPIRY: server.cert_expiry,
        out.STATIC_IP: server.public_ip,
        out.ARTIFACT_BUCKET: bucket.name,
        out.DB_ENDPOINT: database.private_ip.apply(lambda ip: f"{ip}:5432"),
        out.VPC_ID: network.network_id,
        # One subnet holds the VM, and the services' Direct VPC egress; Cloud SQL sits in the
        # peered service range, reachable only from inside the VPC.
        out.PUBLIC_SUBNET_IDS: [network.subnet_id],
        out.PRIVATE_SUBNET_IDS: [network.subnet_id],
        out.CREDENTIALS_SECRET: server.credentials_secret_id,
        **{out.PASSWORD_SECRETS[user]: ref for user, ref in server.password_secret_ids.items()},
        **({out.SLEEP_SCHEDULE: cfg.sleepSchedule.model_dump()} if cfg.sleepSchedule else {}),
        out.ADMIN_USERNAME: cfg.adminUsername,
        out.ADMIN_PASSWORD: server.admin_password,
    }
