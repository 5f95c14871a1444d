"""The EC2 MLflow tracking server: admin credentials, the workload users' passwords and the TLS key in
Secrets Manager, a least-privilege instance role, an Elastic IP, the stack's CA and the server's
certificate (infra.tls), and cloud-init rendered by infra.vm (the same server command as `make demo`)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.aws.common import assume, child, tags
from infra.aws.database import rds_ca_bundle_url
from infra.aws.replicas import ReplicatedServers
from infra.config import PlatformConfig
from infra.mlflow_server import IDENTITIES, ServerSettings
from infra.tls import tracking_tls
from infra.vm import (
    AUTH_INI_PATH,
    DB_CA_PATH,
    SITE_DIR,
    TLS_CERT_PATH,
    TLS_KEY_PATH,
    VENV,
    DatabaseCa,
    LogShipping,
    SecretSource,
    ServerBundle,
    allowed_hosts,
    server_bundle,
    user_data,
)

UBUNTU_OWNER = "099720109477"  # Canonical
SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
SNAPSHOT_PREFIX = "mlflow-pre-upgrade-"
"""The launcher's RDS snapshots before a migration (infra.vm_launcher.rds_snapshot)."""


def server_policy(
    bucket_arn: str, secret_arns: list[str], log_group_arns=(), db_arn: str | None = None
) -> str:
    """Objects of this bucket, these secrets, these log groups' streams, snapshots of this
    database named for an upgrade only: no wildcard actions on wildcard resources."""
    snapshot_arns = db_arn.split(":db:")[0] + f":snapshot:{SNAPSHOT_PREFIX}*" if db_arn else ""
    snapshots = (
        [
            {
                "Sid": "SnapshotBeforeUpgrade",
                "Effect": "Allow",
                "Action": ["rds:CreateDBSnapshot"],
                # CreateDBSnapshot is authorised on the instance and on the new snapshot.
                "Resource": [db_arn, snapshot_arns],
            },
            {
                # The instance copies its tags to its snapshots: tagging on create.
                "Sid": "TagThoseSnapshots",
                "Effect": "Allow",
                "Action": ["rds:AddTagsToResource"],
                "Resource": [snapshot_arns],
            },
        ]
        if db_arn
        else []
    )
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListArtifactBucket",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                    "Resource": [bucket_arn],
                },
                {
                    "Sid": "ReadWriteArtifacts",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"{bucket_arn}/*"],
                },
                {
                    "Sid": "ReadServerSecrets",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": secret_arns,
                },
                *(
                    [
                        {
                            "Sid": "ShipServerLogs",
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            # A group's ARN from the provider ends in ":*" (its streams).
                            "Resource": [
                                a if a.endswith(":*") else f"{a}:*" for a in log_group_arns
                            ],
                        }
                    ]
                    if log_group_arns
                    else []
                ),
                *snapshots,
            ],
        }
    )


def pinned_ami(image: str, parent: pulumi.Resource) -> str:
    """The AMI of the pinned image (infra.config.PINNED_IMAGES / vmImage): an id as it is, a
    name looked up among Canonical's own, deprecated ones too (Canonical deprecates an image
    after a while; it still launches, and a lookup without them would fail the next `up`)."""
    if image.startswith("ami-"):
        return image
    return aws.ec2.get_ami(
        owners=[UBUNTU_OWNER],
        filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[image])],
        include_deprecated=True,
        # One name is one image per region; most_recent only keeps a duplicate from failing.
        most_recent=True,
        opts=pulumi.InvokeOptions(parent=parent),
    ).id


class TrackingServer(pulumi.ComponentResource):
    public_ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    credentials_secret_arn: pulumi.Output[str]
    password_secret_arns: dict[str, pulumi.Output[str]]
    ca_cert_pem: pulumi.Output[str]
    admin_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: PlatformConfig,
        *,
        subnet_ids: list[pulumi.Input[str]],
        private_ip: str,
        security_group_id: pulumi.Input[str],
        lb_sg_ids: dict[str, pulumi.Input[str]] | None = None,
        bucket_name: pulumi.Input[str],
        bucket_arn: pulumi.Input[str],
        bucket_configured: list[pulumi.Resource] | None = None,
        db_address: pulumi.Input[str],
        db_secret_arn: pulumi.Input[str],
        db_arn: pulumi.Input[str],
        db_identifier: pulumi.Input[str],
        vpc_id: pulumi.Input[str],
        admin_password: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mlops:aws:TrackingServer", name, None, opts)
        region = aws.get_region(opts=pulumi.InvokeOptions(parent=self)).region

        if admin_password is None:
            admin_password = random.RandomPassword(
                f"{name}-admin-password", length=32, special=False, opts=child(self)
            ).result
        flask_key = random.RandomPassword(
            f"{name}-flask-key", length=48, special=False, opts=child(self)
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-credentials",
            name_prefix=f"mlflow-{cfg.stack}-credentials-",
            description="MLflow tracking server admin credentials and CSRF key",
            # dev: delete at once so a destroyed stack can be recreated; prod: 30-day recovery.
            recovery_window_in_days=30 if cfg.protect else 0,
            tags=tags(cfg.stack, f"{name}-credentials"),
            opts=child(self),
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-credentials-value",
            secret_id=secret.id,
            secret_string=pulumi.Output.json_dumps(
                {
                    "username": cfg.adminUsername,
                    "password": admin_password,
                    "flaskSecretKey": flask_key.result,
                }
            ),
            opts=child(self),
        )

        # One MLflow user per kind of workload (infra.mlflow_server.IDENTITIES), its password alone
        # in a secret of its own: the service stacks hand each workload only its own.
        def private_secret(key: str, description: str, value: pulumi.Input[str]):
            secret = aws.secretsmanager.Secret(
                f"{name}-{key}",
                name_prefix=f"mlflow-{cfg.stack}-{key}-",
                description=description,
                recovery_window_in_days=30 if cfg.protect else 0,
                tags=tags(cfg.stack, f"{name}-{key}"),
                opts=child(self),
            )
            aws.secretsmanager.SecretVersion(
                f"{name}-{key}-value", secret_id=secret.id, secret_string=value, opts=child(self)
            )
            return secret

        password_secrets = {
            i.username: private_secret(
                f"{i.username}-password",
                f"MLflow user {i.username} ({', '.join(i.workloads)})",
                random.RandomPassword(
                    f"{name}-{i.username}-password", length=32, special=False, opts=child(self)
                ).result,
            )
            for i in IDENTITIES
        }

        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume("ec2.amazonaws.com"),
            tags=tags(cfg.stack, f"{name}-role"),
            opts=child(self),
        )
        # The server's and the bootstrap's logs leave the VM (the CloudWatch agent writes them).
        log_prefix = f"/mlflow/{cfg.stack}"
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-{kind}-logs",
                name=f"{log_prefix}/{kind}",
                retention_in_days=cfg.logRetentionDays,
                tags=tags(cfg.stack, f"{name}-{kind}-logs"),
                opts=child(self),
            )
            for kind in ("server", "bootstrap")
        ]
        # Allocated before the instance so its address can go into --allowed-hosts and the
        # certificate.
        eip = aws.ec2.Eip(
            f"{name}-eip", domain="vpc", tags=tags(cfg.stack, f"{name}-eip"), opts=child(self)
        )
        server_tls = tracking_tls(
            name, cfg.stack, [eip.public_ip, private_ip], self, [cfg.domain] if cfg.domain else None
        )
        if cfg.domain:
            # Inside the VPC the domain names the private address (the service stacks connect
            # there, through the clients' security group); outside, the user's A record names
            # the Elastic IP.
            zone = aws.route53.Zone(
                f"{name}-private-zone",
                name=cfg.domain,
                comment=f"MLflow tracking server ({cfg.stack}), inside the VPC",
                vpcs=[aws.route53.ZoneVpcArgs(vpc_id=vpc_id)],
                force_destroy=True,
                tags=tags(cfg.stack, f"{name}-private-zone"),
                opts=child(self),
            )
            aws.route53.Record(
                f"{name}-private-record",
                zone_id=zone.zone_id,
                name=cfg.domain,
                type="A",
                ttl=60,
                records=[private_ip],
                opts=child(self),
            )
        tls_secret = private_secret(
            "tls-key",
            "MLflow tracking server's TLS private key and certificate",
            server_tls.key_and_cert_pem,
        )
        secret_arns = [db_secret_arn, secret.arn, tls_secret.arn]
        secret_arns += [s.arn for s in password_secrets.values()]
        access = aws.iam.RolePolicy(
            f"{name}-access",
            role=role.id,
            policy=pulumi.Output.all(
                bucket_arn, db_arn, *(g.arn for g in log_groups), *secret_arns
            ).apply(lambda a: server_policy(a[0], list(a[4:]), a[2:4], a[1])),
            opts=child(self),
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm", role=role.name, policy_arn=SSM_CORE, opts=child(self)
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child(self))

        ami_id = pinned_ami(cfg.vm_image, self)

        def files(args: list) -> ServerBundle:
            public_ip, bucket, db_host, db_id, db_secret, admin_secret, tls_key_secret = args[:7]
            tracking_ca = args[7]
            users = dict(zip(password_secrets, args[8:], strict=True))
            settings = ServerSettings(
                db_host=db_host,
                # The RDS endpoint name is in its certificate: a full check.
                db_sslmode="verify-full",
                db_sslrootcert=DB_CA_PATH,
                artifacts_destination=f"s3://{bucket}/mlflow",
                auth_config_path=AUTH_INI_PATH,
                port=cfg.mlflowPort,
                workers=cfg.mlflowWorkers,
                db_max_connections=cfg.max_connections,
                servers=cfg.servers_at_once,
                auth_cache_seconds=cfg.authCacheSeconds,
                max_body_bytes=cfg.maxRequestBytes,
                ai_gateway=cfg.aiGateway,
                allowed_hosts=allowed_hosts(cfg, public_ip),
                tls_certfile=TLS_CERT_PATH,
                tls_keyfile=TLS_KEY_PATH,
                mlflow_bin=f"{VENV}/bin/mlflow",
                site_dir=SITE_DIR,
            )
            secrets = SecretSource(
                "aws", db_secret, admin_secret, tls_key_secret, users, region=region
            )
            ca = DatabaseCa(url=rds_ca_bundle_url(region))
            logs = LogShipping("aws", log_prefix)
            return server_bundle(
                settings, secrets, ca, logs, f"s3://{bucket}", cfg.domain, rds_instance=db_id,
                tracking_ca_pem=tracking_ca, gc_days=cfg.gcDays, private_ip=private_ip,
            )  # fmt: skip

        # Every file the VM needs but the fetcher: one object, named by its sha256, which the
        # user-data carries; put in the bucket before the instance boots.
        bundle = pulumi.Output.all(
            eip.public_ip,
            bucket_name,
            db_address,
            db_identifier,
            db_secret_arn,
            secret.arn,
            tls_secret.arn,
            server_tls.ca_cert_pem,
            *(s.arn for s in password_secrets.values()),
        ).apply(files)  # fmt: skip
        bundle_object = aws.s3.BucketObjectv2(
            f"{name}-bundle",
            bucket=bucket_name,
            key=bundle.apply(lambda b: b.key),
            content=bundle.apply(lambda b: b.text),
            content_type="application/json",
            tags=tags(cfg.stack, f"{name}-bundle"),
            opts=child(self, depends_on=bucket_configured or []),
        )

        vm_user_data = pulumi.Output.all(bucket_name, bundle).apply(
            lambda a: user_data(f"s3://{a[0]}", a[1].key, a[1].sha256, region)
        )
        if cfg.trackingReplicas > 1:
            servers = ReplicatedServers(
                name, cfg, ami_id=ami_id, profile_name=profile.name,
                server_sg_id=security_group_id, user_data=vm_user_data, subnet_ids=subnet_ids,
                private_ip=private_ip, vpc_id=vpc_id, eip_allocation_id=eip.allocation_id,
                lb_sg_ids=lb_sg_ids or {}, ready=[access, bundle_object], opts=child(self),
            )  # fmt: skip
            self.instance_ref = servers.group.arn
        else:
            self.instance_ref = self.single_vm(
                name, cfg, ami_id, subnet_ids[0], private_ip, security_group_id, profile,
                vm_user_data, eip, [access, bundle_object],
            )  # fmt: skip
        self.public_ip = eip.public_ip
        self.private_ip = pulumi.Output.from_input(private_ip)
        self.credentials_secret_arn = secret.arn
        self.password_secret_arns = {user: s.arn for user, s in password_secrets.items()}
        self.ca_cert_pem = server_tls.ca_cert_pem
        self.cert_expiry = server_tls.expiry
        self.admin_password = pulumi.Output.secret(admin_password)
        self.register_outputs({"publicIp": eip.public_ip, "credentialsSecretArn": secret.arn})

    def single_vm(
        self, name: str, cfg: PlatformConfig, ami_id: pulumi.Input[str],
        subnet_id: pulumi.Input[str], private_ip: str, security_group_id: pulumi.Input[str],
        profile: aws.iam.InstanceProfile, vm_user_data: pulumi.Output[str], eip: aws.ec2.Eip,
        ready: list[pulumi.Resource],
    ) -> pulumi.Output[str]:  # fmt: skip
        """trackingReplicas 1: one instance holding the private address and the Elastic IP."""
        instance = aws.ec2.Instance(
            f"{name}-vm",
            ami=ami_id,
            instance_type=cfg.instanceType,
            subnet_id=subnet_id,
            private_ip=private_ip,
            # cloud-init needs the internet at first boot, before the Elastic IP is associated;
            # the EIP then replaces this launch address.
            associate_public_ip_address=True,
            vpc_security_group_ids=[security_group_id],
            iam_instance_profile=profile.name,
            # The fetcher and the bundle's name: a changed bundle is a changed user-data.
            user_data=vm_user_data,
            user_data_replace_on_change=True,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=20, encrypted=True, delete_on_termination=True
            ),
            tags=tags(cfg.stack, f"{name}-vm"),
            # A new bootstrap means a new instance, which takes over the old one's private
            # address and Elastic IP: the old one must go first (minutes of downtime).
            # After its role may read the secrets and the bundle is in the bucket: the bootstrap
            # and the launcher fetch them at first boot.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=ready),
        )
        aws.ec2.EipAssociation(
            f"{name}-eip-association",
            instance_id=instance.id,
            allocation_id=eip.allocation_id,
            opts=child(self),
        )
        return instance.arn
