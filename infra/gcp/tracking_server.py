"""The GCE MLflow tracking server: a dedicated service account with access to this bucket and these
secrets only (admin credentials, the workload users' passwords, the TLS key), a shielded Ubuntu LTS
VM with a reserved static IP, the stack's CA and the server's certificate (infra.tls), and the same
cloud-init document as on AWS (infra.vm), passed as `user-data` metadata."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.config import PlatformConfig
from infra.gcp.network import SERVER_TAG
from infra.gcp.replicas import ReplicatedServers
from infra.gcp.secrets import stored_secret
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

UBUNTU_PROJECT = "ubuntu-os-cloud"


class TrackingServer(pulumi.ComponentResource):
    public_ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    credentials_secret_id: pulumi.Output[str]
    password_secret_ids: dict[str, pulumi.Output[str]]
    ca_cert_pem: pulumi.Output[str]
    admin_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cfg: PlatformConfig,
        *,
        subnet_id: pulumi.Input[str],
        network_id: pulumi.Input[str],
        bucket_name: pulumi.Input[str],
        db_host: pulumi.Input[str],
        db_ca: pulumi.Input[str],
        database: pulumi.Resource,
        db_secret_name: pulumi.Input[str],
        db_secret_id: pulumi.Input[str],
        admin_password: pulumi.Input[str] | None = None,
        apis: list[pulumi.Resource] | None = None,
        schedule: tuple[gcp.compute.ResourcePolicy, pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`schedule`: the night's instance schedule and the grant it needs first
        (infra.gcp.sleep.vm_schedule)."""
        super().__init__("mlops:gcp:TrackingServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        if admin_password is None:
            admin_password = random.RandomPassword(
                f"{name}-admin-password", length=32, special=False, opts=child
            ).result
        flask_key = random.RandomPassword(f"{name}-flask-key", length=48, special=False, opts=child)
        secret = stored_secret(
            f"{name}-credentials",
            f"mlflow-{cfg.stack}-credentials",
            pulumi.Output.json_dumps(
                {
                    "username": cfg.adminUsername,
                    "password": admin_password,
                    "flaskSecretKey": flask_key.result,
                }
            ),
            self,
        )
        # One MLflow user per kind of workload (infra.mlflow_server.IDENTITIES), its password alone
        # in a secret of its own (Cloud Run's secret_key_ref takes a whole secret).
        password_secrets = {
            i.username: stored_secret(
                f"{name}-{i.username}-password",
                f"mlflow-{cfg.stack}-{i.username}-password",
                random.RandomPassword(
                    f"{name}-{i.username}-password", length=32, special=False, opts=child
                ).result,
                self,
            )
            for i in IDENTITIES
        }

        account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=f"mlflow-{cfg.stack}"[:30],
            display_name=f"MLflow tracking server ({cfg.stack})",
            opts=child,
        )
        member = account.email.apply(lambda email: f"serviceAccount:{email}")
        # The Ops Agent writes the server's and the bootstrap's logs to Cloud Logging and its
        # own metrics to Cloud Monitoring: the project-level grants (writing logs and metrics
        # has no narrower resource).
        for label, role in (("log", "roles/logging.logWriter"),
                            ("metric", "roles/monitoring.metricWriter")):  # fmt: skip
            gcp.projects.IAMMember(
                f"{name}-{label}-writer", project=cfg.gcpProject, role=role, member=member,
                opts=child,
            )  # fmt: skip
        # Object access on this bucket only: a bucket-level binding, never a project-wide role.
        bucket_access = gcp.storage.BucketIAMMember(
            f"{name}-bucket-access",
            bucket=bucket_name,
            role="roles/storage.objectAdmin",
            member=member,
            opts=child,
        )
        address = gcp.compute.Address(
            f"{name}-ip",
            region=cfg.gcpRegion,
            address_type="EXTERNAL",
            network_tier="PREMIUM",
            opts=child,
        )
        # A stable private address: the service stacks read trackingPrivateUri once, so a new VM
        # takes over the same address (the old one is deleted first, below).
        private_address = gcp.compute.Address(
            f"{name}-private-ip",
            region=cfg.gcpRegion,
            address_type="INTERNAL",
            subnetwork=subnet_id,
            purpose="GCE_ENDPOINT",
            opts=child,
        )
        server_tls = tracking_tls(
            name,
            cfg.stack,
            [address.address, private_address.address],
            self,
            [cfg.domain] if cfg.domain else None,
        )
        if cfg.domain:
            # Inside the network the domain names the private address (Cloud Run's Direct VPC
            # egress resolves the network's private zones); outside, the user's A record names
            # the static IP.
            zone = gcp.dns.ManagedZone(
                f"{name}-private-zone",
                dns_name=f"{cfg.domain}.",
                description=f"MLflow tracking server ({cfg.stack}), inside the network",
                visibility="private",
                private_visibility_config=gcp.dns.ManagedZonePrivateVisibilityConfigArgs(
                    networks=[
                        gcp.dns.ManagedZonePrivateVisibilityConfigNetworkArgs(
                            network_url=network_id
                        )
                    ]
                ),
                force_destroy=True,
                opts=child,
            )
            gcp.dns.RecordSet(
                f"{name}-private-record",
                managed_zone=zone.name,
                name=f"{cfg.domain}.",
                type="A",
                ttl=60,
                rrdatas=[private_address.address],
                opts=child,
            )
        tls_secret = stored_secret(
            f"{name}-tls-key", f"mlflow-{cfg.stack}-tls-key", server_tls.key_and_cert_pem, self
        )
        readable = {
            "db": db_secret_id,
            "credentials": secret.secret_id,
            "tls-key": tls_secret.secret_id,
            **{user: s.secret_id for user, s in password_secrets.items()},
        }
        secret_grants = [
            gcp.secretmanager.SecretIamMember(
                f"{name}-{label}-secret-access",
                secret_id=secret_id,
                role="roles/secretmanager.secretAccessor",
                member=member,
                opts=child,
            )
            for label, secret_id in readable.items()
        ]

        # Pinned by name (infra.config.PINNED_IMAGES / vmImage), not by family: a family follows
        # each release, and a new image replaces the VM. A deprecated image still boots.
        image = f"projects/{UBUNTU_PROJECT}/global/images/{cfg.vm_image}"
        # A lookup is no resource: the stack's "after the APIs" transformation does not reach
        # it, and in a fresh project it would ask a Compute API that is still off.
        after_apis = pulumi.InvokeOutputOptions(parent=self, depends_on=list(apis or []))
        # Not "<region>-a": europe-west1 and us-east1 have none. The region's first zone that is
        # up, unless the stack names one.
        zone = cfg.zone or gcp.compute.get_zones_output(
            region=cfg.gcpRegion, status="UP", opts=after_apis
        ).names.apply(lambda names: sorted(names)[0])

        def files(args: list) -> ServerBundle:
            public_ip, bucket, host, db_secret, admin_secret, ca, tls_key_secret = args[:7]
            tracking_ca, private_ip = args[7:9]
            users = dict(zip(password_secrets, args[9:], strict=True))
            settings = ServerSettings(
                db_host=host,
                # Cloud SQL's certificate names the instance, not its private IP, so libpq cannot
                # match the host: verify-ca, against this instance's own CA (it signs no other).
                db_sslmode="verify-ca",
                db_sslrootcert=DB_CA_PATH,
                artifacts_destination=f"gs://{bucket}/mlflow",
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
            return server_bundle(
                settings,
                SecretSource("gcp", db_secret, admin_secret, tls_key_secret, users),
                DatabaseCa(pem=ca),
                LogShipping("gcp", f"mlflow-{cfg.stack}"),
                f"gs://{bucket}",
                cfg.domain,
                tracking_ca_pem=tracking_ca,
                gc_days=cfg.gcDays,
                private_ip=private_ip,
            )

        # Every file the VM needs but the fetcher: one object, named by its sha256, which the
        # user-data carries; put in the bucket before the instance boots.
        bundle = pulumi.Output.all(
            address.address,
            bucket_name,
            db_host,
            db_secret_name,
            secret.name,
            db_ca,
            tls_secret.name,
            server_tls.ca_cert_pem,
            private_address.address,
            *(s.name for s in password_secrets.values()),
        ).apply(files)  # fmt: skip
        bundle_object = gcp.storage.BucketObject(
            f"{name}-bundle",
            bucket=bucket_name,
            name=bundle.apply(lambda b: b.key),
            content=bundle.apply(lambda b: b.text),
            content_type="application/json",
            opts=child,
        )

        metadata = {
            # The fetcher and the bundle's name: a changed bundle is a changed user-data.
            "user-data": pulumi.Output.all(bucket_name, bundle).apply(
                lambda a: user_data(f"gs://{a[0]}", a[1].key, a[1].sha256, None)
            ),
            "block-project-ssh-keys": "true",
            "enable-oslogin": "TRUE",
        }
        ready = [database, bundle_object, bucket_access, *secret_grants]
        if cfg.trackingReplicas > 1:
            zones = gcp.compute.get_zones_output(
                region=cfg.gcpRegion, status="UP", opts=after_apis
            ).names
            servers = ReplicatedServers(
                name, cfg,
                instance={"image": image, "service_account": account.email, "metadata": metadata},
                zones=zones, network_id=network_id, subnet_id=subnet_id,
                public_address=address, private_address=private_address, ready=ready,
                opts=pulumi.ResourceOptions(parent=self),
            )  # fmt: skip
            self.instance_ref = servers.group.id
        else:
            self.instance_ref = self.single_vm(
                name, cfg, zone, image, subnet_id, private_address, address, account, metadata,
                schedule, ready,
            )  # fmt: skip
        self.public_ip = address.address
        self.private_ip = private_address.address
        self.credentials_secret_id = secret.secret_id
        self.password_secret_ids = {user: s.secret_id for user, s in password_secrets.items()}
        self.ca_cert_pem = server_tls.ca_cert_pem
        self.cert_expiry = server_tls.expiry
        self.admin_password = pulumi.Output.secret(admin_password)
        self.register_outputs({"publicIp": address.address, "credentialsSecret": secret.secret_id})

    def single_vm(
        self, name: str, cfg: PlatformConfig, zone: pulumi.Input[str], image: str,
        subnet_id: pulumi.Input[str], private_address: gcp.compute.Address,
        address: gcp.compute.Address, account: gcp.serviceaccount.Account, metadata: dict,
        schedule: tuple | None, ready: list[pulumi.Resource],
    ) -> pulumi.Output[str]:  # fmt: skip
        """trackingReplicas 1: one VM holding the static and the private address."""
        instance = gcp.compute.Instance(
            f"{name}-vm",
            zone=zone,
            machine_type=cfg.instanceType,
            tags=[SERVER_TAG],
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=image, size=20, type="pd-balanced"
                )
            ),
            network_interfaces=[
                gcp.compute.InstanceNetworkInterfaceArgs(
                    subnetwork=subnet_id,
                    network_ip=private_address.address,
                    access_configs=[
                        gcp.compute.InstanceNetworkInterfaceAccessConfigArgs(nat_ip=address.address)
                    ],
                )
            ],
            service_account=gcp.compute.InstanceServiceAccountArgs(
                email=account.email, scopes=["cloud-platform"]
            ),
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata=metadata,
            allow_stopping_for_update=True,
            resource_policies=schedule[0].self_link if schedule else None,
            # cloud-init runs once per instance: a changed bootstrap means a new VM, as on AWS.
            # The new VM needs the old one's static addresses, which two VMs cannot hold at once:
            # the old one goes first (minutes of downtime, addresses kept). Explicitly after the
            # database, so a destroy removes the VM, which connects to it, before it.
            opts=pulumi.ResourceOptions(
                parent=self,
                replace_on_changes=["metadata"],
                delete_before_replace=True,
                # The bootstrap fetches the bundle and the launcher its secrets at first boot: the
                # bundle and the grants come first.
                depends_on=[*ready, *(schedule[1:] if schedule else [])],
            ),
        )
        return pulumi.Output.concat(
            "projects/", instance.project, "/zones/", instance.zone, "/instances/", instance.name,
        )  # fmt: skip
