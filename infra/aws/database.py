"""RDS PostgreSQL in private subnets: encrypted, not public, password managed by RDS in Secrets
Manager (never in Pulumi state or user-data); prod keeps deletion protection and a final snapshot."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.aws.common import child, tags
from infra.config import PlatformConfig

DB_NAME = "mlflow"
DB_USER = "mlflow"


RDS_CA = "rds-ca-rsa2048-g1"


def rds_ca_bundle_url(region: str) -> str:
    """AWS's CA bundle for a region's RDS certificates (too large for user-data: fetched)."""
    return f"https://truststore.pki.rds.amazonaws.com/{region}/{region}-bundle.pem"


class Database(pulumi.ComponentResource):
    address: pulumi.Output[str]
    port: pulumi.Output[int]
    secret_arn: pulumi.Output[str]
    """The RDS-managed secret: {"username": ..., "password": ...}."""
    arn: pulumi.Output[str]
    identifier: pulumi.Output[str]
    """The instance's name, which the tracking VM snapshots before a migration."""

    def __init__(
        self,
        name: str,
        cfg: PlatformConfig,
        subnet_ids: list[pulumi.Input[str]],
        security_group_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mlops:aws:Database", name, None, opts)
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=subnet_ids,
            description="private subnets for the MLflow backend store",
            tags=tags(cfg.stack, f"{name}-subnets"),
            opts=child(self),
        )
        db = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=cfg.dbEngineVersion,
            instance_class=cfg.dbInstanceClass,
            allocated_storage=cfg.dbAllocatedStorageGb,
            max_allocated_storage=max(cfg.dbMaxAllocatedStorageGb, cfg.dbAllocatedStorageGb),
            storage_type="gp3",
            storage_encrypted=True,
            db_name=DB_NAME,
            username=DB_USER,
            manage_master_user_password=True,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[security_group_id],
            publicly_accessible=False,
            multi_az=cfg.multiAz,
            backup_retention_period=cfg.backupRetentionDays,
            deletion_protection=cfg.protect,
            skip_final_snapshot=not cfg.protect,
            final_snapshot_identifier=f"mlflow-{cfg.stack}-final" if cfg.protect else None,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            # Pinned, not the region's default: the server verifies the database against it.
            ca_cert_identifier=RDS_CA,
            tags=tags(cfg.stack, f"{name}-postgres"),
            opts=child(self, protect=cfg.protect),
        )
        self.address = db.address
        self.arn, self.identifier = db.arn, db.identifier
        self.port = db.port
        self.secret_arn = db.master_user_secrets.apply(lambda s: s[0].secret_arn)
        self.register_outputs({"address": db.address, "secretArn": self.secret_arn})
