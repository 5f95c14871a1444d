"""Replicated tracking servers on GCP (trackingReplicas 2 or more): the single VM's instance (its
user-data: the fetcher and the bundle) as an instance template, a regional managed instance group
across two zones, and two passthrough network load balancers, which keep the client's address
(the network's firewall rules apply as before) and pass TLS through:

    external  a forwarding rule on the reserved static address (staticIp)
    internal  a forwarding rule on the reserved private address (trackingPrivateUri)

A regional health check GETs /health over HTTPS (not verifying the certificate); the group heals
a server that fails it. A new template (a new bootstrap, certificate or MLflow version) rolls
out proactively: new servers first, one per zone at a time (a regional group's least surge),
none taken out before its replacement is up (max unavailable 0).
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import PlatformConfig
from infra.gcp.network import SERVER_TAG

HEALTH_CHECK_RANGES = ["35.191.0.0/16", "130.211.0.0/22", "209.85.152.0/22", "209.85.204.0/22"]
"""Where Google's health checks come from (passthrough network load balancers)."""
BOOT_SECONDS = 900
"""A new server's first boot (install, migrate-check, start) before autohealing judges it."""
ZONES = 2


class ReplicatedServers(pulumi.ComponentResource):
    group: gcp.compute.RegionInstanceGroupManager

    def __init__(
        self, name: str, cfg: PlatformConfig, *, instance: dict, zones: pulumi.Input[list[str]],
        network_id: pulumi.Input[str], subnet_id: pulumi.Input[str],
        public_address: gcp.compute.Address, private_address: gcp.compute.Address,
        ready: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        """`instance`: the single VM's arguments (machine type, disk image, service account,
        shielded config, metadata with the user-data), which the template takes as they are."""
        super().__init__("mlops:gcp:ReplicatedServers", f"{name}-servers", None, opts)
        mine = pulumi.ResourceOptions(parent=self)
        port = cfg.mlflowPort
        template = gcp.compute.RegionInstanceTemplate(
            f"{name}-server",
            region=cfg.gcpRegion,
            machine_type=cfg.instanceType,
            tags=[SERVER_TAG],
            disks=[gcp.compute.RegionInstanceTemplateDiskArgs(
                source_image=instance["image"], disk_size_gb=20, disk_type="pd-balanced",
                boot=True, auto_delete=True,
            )],
            network_interfaces=[gcp.compute.RegionInstanceTemplateNetworkInterfaceArgs(
                subnetwork=subnet_id,
                # cloud-init needs the internet at first boot: an address of its own.
                access_configs=[gcp.compute.RegionInstanceTemplateNetworkInterfaceAccessConfigArgs()],
            )],
            service_account=gcp.compute.RegionInstanceTemplateServiceAccountArgs(
                email=instance["service_account"], scopes=["cloud-platform"]
            ),
            shielded_instance_config=gcp.compute.RegionInstanceTemplateShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata=instance["metadata"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready),
        )  # fmt: skip
        health = gcp.compute.RegionHealthCheck(
            f"{name}-servers",
            region=cfg.gcpRegion,
            check_interval_sec=10,
            timeout_sec=5,
            healthy_threshold=2,
            unhealthy_threshold=2,
            https_health_check=gcp.compute.RegionHealthCheckHttpsHealthCheckArgs(
                port=port, request_path="/health"
            ),
            opts=mine,
        )
        gcp.compute.Firewall(
            f"{name}-health-checks",
            network=network_id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(port)])],
            source_ranges=HEALTH_CHECK_RANGES,
            target_tags=[SERVER_TAG],
            description="MLflow /health from Google's health checks (the load balancers')",
            opts=mine,
        )
        self.group = gcp.compute.RegionInstanceGroupManager(
            f"{name}-servers",
            # Its servers are named after it (<name>-xxxx): the dashboards find them by it.
            name=f"mlflow-{cfg.stack}",
            region=cfg.gcpRegion,
            base_instance_name=f"mlflow-{cfg.stack}",
            distribution_policy_zones=pulumi.Output.from_input(zones).apply(
                lambda names: sorted(names)[:ZONES]
            ),
            versions=[gcp.compute.RegionInstanceGroupManagerVersionArgs(
                instance_template=template.self_link, name="server"
            )],
            target_size=cfg.trackingReplicas,
            auto_healing_policies=gcp.compute.RegionInstanceGroupManagerAutoHealingPoliciesArgs(
                health_check=health.id, initial_delay_sec=BOOT_SECONDS
            ),
            update_policy=gcp.compute.RegionInstanceGroupManagerUpdatePolicyArgs(
                type="PROACTIVE",
                minimal_action="REPLACE",
                replacement_method="SUBSTITUTE",
                max_surge_fixed=ZONES,
                max_unavailable_fixed=0,
            ),
            # `up` returns once the servers run their new template and are healthy: a first boot
            # takes up to BOOT_SECONDS, a rollout of more replicas several of them.
            wait_for_instances=True,
            wait_for_instances_status="UPDATED",
            opts=pulumi.ResourceOptions(
                parent=self,
                custom_timeouts=pulumi.CustomTimeouts(create="60m", update="60m", delete="30m"),
                # Its zones are chosen once (a change would replace the group); its fixed name
                # would collide with a replacement made first.
                ignore_changes=["distributionPolicyZones"],
                delete_before_replace=True,
            ),
        )  # fmt: skip
        self.rules = {}
        for label, scheme, address in (
            ("external", "EXTERNAL", public_address),
            ("internal", "INTERNAL", private_address),
        ):
            backend = gcp.compute.RegionBackendService(
                f"{name}-{label}",
                region=cfg.gcpRegion,
                load_balancing_scheme=scheme,
                protocol="TCP",
                health_checks=health.id,
                backends=[gcp.compute.RegionBackendServiceBackendArgs(
                    group=self.group.instance_group, balancing_mode="CONNECTION"
                )],
                # A server leaving keeps its connections this long (requests in flight finish).
                connection_draining_timeout_sec=60,
                **({"network": network_id} if scheme == "INTERNAL" else {}),
                opts=mine,
            )  # fmt: skip
            self.rules[label] = gcp.compute.ForwardingRule(
                f"{name}-{label}",
                region=cfg.gcpRegion,
                load_balancing_scheme=scheme,
                ip_address=address.address,
                ip_protocol="TCP",
                ports=[str(port)],
                backend_service=backend.id,
                **({"network": network_id, "subnetwork": subnet_id}
                   if scheme == "INTERNAL" else {}),
                opts=mine,
            )  # fmt: skip
        self.register_outputs({"group": self.group.name})
