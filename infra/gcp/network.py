"""Network: own VPC and subnet, firewall rules by network tag (the MLflow port from allowedCidrs and
the services' range, SSH only from Google's IAP range), and private service access for Cloud SQL."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_gcp as gcp

from infra.config import PlatformConfig

SERVER_TAG = "mlflow-server"
IAP_RANGE = "35.235.240.0/20"  # Google's Identity-Aware Proxy TCP forwarding


class Network(pulumi.ComponentResource):
    network_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    subnet_range: str
    """The services' range: Cloud Run's Direct VPC egress leaves from this subnet."""
    peering: gcp.servicenetworking.Connection

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        vpc = ipaddress.ip_network(cfg.vpcCidr)
        blocks = list(vpc.subnets(new_prefix=vpc.prefixlen + 4))
        self.subnet_range = str(blocks[0])

        network = gcp.compute.Network(f"{name}-vpc", auto_create_subnetworks=False, opts=child)
        subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            network=network.id,
            region=cfg.gcpRegion,
            ip_cidr_range=self.subnet_range,
            private_ip_google_access=True,
            opts=child,
        )
        port = [gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(cfg.mlflowPort)])]
        gcp.compute.Firewall(
            f"{name}-mlflow-from-services",
            network=network.id,
            direction="INGRESS",
            allows=port,
            source_ranges=[self.subnet_range],
            target_tags=[SERVER_TAG],
            description="MLflow from the services' subnet",
            opts=child,
        )
        if cfg.allowedCidrs:
            gcp.compute.Firewall(
                f"{name}-mlflow-from-allowed",
                network=network.id,
                direction="INGRESS",
                allows=port,
                source_ranges=list(cfg.allowedCidrs),
                target_tags=[SERVER_TAG],
                description="MLflow from allowedCidrs",
                opts=child,
            )
        if cfg.domain:
            # Let's Encrypt's HTTP-01 check comes from addresses it does not publish; only
            # certbot's own listener answers there, and only while it runs (infra/vm.py).
            gcp.compute.Firewall(
                f"{name}-acme-http",
                network=network.id,
                direction="INGRESS",
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["80"])],
                source_ranges=["0.0.0.0/0"],
                target_tags=[SERVER_TAG],
                description="Let's Encrypt HTTP-01 for the domain's certificate",
                opts=child,
            )
        gcp.compute.Firewall(
            f"{name}-ssh-from-iap",
            network=network.id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
            source_ranges=[IAP_RANGE],
            target_tags=[SERVER_TAG],
            description="SSH only through IAP (gcloud compute ssh --tunnel-through-iap)",
            opts=child,
        )
        # Private service access: Cloud SQL gets a private address from this reserved range.
        reserved = gcp.compute.GlobalAddress(
            f"{name}-sql-range",
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            prefix_length=20,
            network=network.id,
            opts=child,
        )
        # ABANDON: Cloud SQL's producer side keeps the connection for days after its instance
        # is deleted, and deleting it then fails the destroy. The peering it leaves would keep
        # the network: scripts/destroy removes it once the database is gone (scripts.delivery).
        self.peering = gcp.servicenetworking.Connection(
            f"{name}-sql-peering",
            network=network.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[reserved.name],
            deletion_policy="ABANDON",
            opts=child,
        )
        self.network_id, self.subnet_id = network.id, subnet.id
        self.register_outputs({"networkId": network.id, "subnetId": subnet.id})
