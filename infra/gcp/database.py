"""Cloud SQL PostgreSQL with a private IP only, TLS required, backups; prod adds deletion protection,
regional HA and point-in-time recovery. The password is generated and kept in Secret Manager."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.config import PlatformConfig
from infra.gcp.secrets import stored_secret

DB_NAME = "mlflow"
AUTH_DB_NAME = "mlflow_auth"
DB_USER = "mlflow"


class Database(pulumi.ComponentResource):
    instance: gcp.sql.DatabaseInstance
    ca_pem: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    """projects/<p>/secrets/<id>, holding {"username": ..., "password": ...}."""
    secret_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: PlatformConfig,
        network: pulumi.Input[str],
        peering: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mlops:gcp:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        instance = gcp.sql.DatabaseInstance(
            f"{name}-postgres",
            region=cfg.gcpRegion,
            database_version=f"POSTGRES_{cfg.dbEngineVersion.split('.')[0]}",
            deletion_protection=cfg.protect,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=cfg.dbInstanceClass,
                edition="ENTERPRISE",
                availability_type="REGIONAL" if cfg.multiAz else "ZONAL",
                disk_type="PD_SSD",
                disk_size=cfg.dbAllocatedStorageGb,
                disk_autoresize=True,
                disk_autoresize_limit=max(cfg.dbMaxAllocatedStorageGb, cfg.dbAllocatedStorageGb),
                deletion_protection_enabled=cfg.protect,
                user_labels={"project": "mlops-platform", "stack": cfg.stack},
                ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                    ipv4_enabled=False,
                    private_network=network,
                    ssl_mode="ENCRYPTED_ONLY",
                    # A CA of this instance's own, which the server pins (verify-ca).
                    server_ca_mode="GOOGLE_MANAGED_INTERNAL_CA",
                ),
                backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                    enabled=True,
                    point_in_time_recovery_enabled=cfg.protect,
                    backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                        retained_backups=max(cfg.backupRetentionDays, 1), retention_unit="COUNT"
                    ),
                ),
            ),
            # disk_size is the starting size: autoresize grows it, and without this the next
            # `pulumi up` would shrink it back, which Cloud SQL refuses. With a sleepSchedule the
            # night's jobs own the activation policy: an `up --refresh` at night leaves it asleep.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[peering],
                protect=cfg.protect,
                ignore_changes=["settings.diskSize"]
                + (["settings.activationPolicy"] if cfg.sleepSchedule else []),
            ),
        )
        self.instance = instance
        # Every CA the instance's certificate may be signed by (more than one while rotating).
        self.ca_pem = instance.server_ca_certs.apply(
            lambda certs: "".join(c.cert for c in certs or [])
        )
        # ABANDON: deleting them alone fails once MLflow owns objects in them (a role with
        # grants cannot be dropped); they go with the instance.
        for db in (DB_NAME, AUTH_DB_NAME):
            gcp.sql.Database(
                f"{name}-{db.replace('_', '-')}",
                name=db,
                instance=instance.name,
                deletion_policy="ABANDON",
                opts=child,
            )
        password = random.RandomPassword(
            f"{name}-db-password", length=32, special=False, opts=child
        )
        gcp.sql.User(
            f"{name}-user",
            name=DB_USER,
            instance=instance.name,
            password=password.result,
            deletion_policy="ABANDON",
            opts=child,
        )
        secret = stored_secret(
            f"{name}-db-secret",
            f"mlflow-{cfg.stack}-db",
            pulumi.Output.json_dumps({"username": DB_USER, "password": password.result}),
            self,
        )
        self.private_ip = instance.private_ip_address
        self.secret_name = secret.name
        self.secret_id = secret.secret_id
        self.register_outputs({"privateIp": instance.private_ip_address, "secret": secret.name})
