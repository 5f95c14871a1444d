"""Replicated tracking servers on AWS (trackingReplicas 2 or more): the same bootstrap as the single
VM (the fetcher and the bundle in its user-data) in a launch template, an Auto Scaling group across
the platform's two public subnets, and two network load balancers passing TLS through to them:

    public    internet-facing, holding the Elastic IP (staticIp) on its subnet mapping; reached
              from allowedCidrs
    internal  holding the servers' fixed private address (trackingPrivateUri, as before) on its
              subnet mapping; reached from the services' security group

Both check each server's /health over HTTPS (the load balancer does not verify the certificate,
which names the addresses clients use) and balance across zones. A changed launch template (a new
bootstrap, certificate or MLflow version) starts an instance refresh that launches a new
instance before it terminates an old one (minimum healthy 100%, one more at a time): every
healthy server stays in service until its replacement passes its checks; then the old one is
drained (DEREGISTRATION_SECONDS) and terminated. `pulumi up` returns once the refresh started.
"""

from __future__ import annotations

import base64
import math

import pulumi
import pulumi_aws as aws

from infra.aws.common import child, tags
from infra.config import PlatformConfig

DEREGISTRATION_SECONDS = 60
"""How long a server leaving keeps its open connections (the clients' requests finish)."""
BOOT_SECONDS = 900
"""A new server's first boot (install, migrate-check, start) before its checks count."""


class ReplicatedServers(pulumi.ComponentResource):
    group: aws.autoscaling.Group

    def __init__(
        self, name: str, cfg: PlatformConfig, *, ami_id: pulumi.Input[str],
        profile_name: pulumi.Input[str], server_sg_id: pulumi.Input[str],
        user_data: pulumi.Output[str], subnet_ids: list[pulumi.Input[str]], private_ip: str,
        vpc_id: pulumi.Input[str], eip_allocation_id: pulumi.Input[str],
        lb_sg_ids: dict[str, pulumi.Input[str]], ready: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:aws:ReplicatedServers", f"{name}-servers", None, opts)
        port = cfg.mlflowPort
        # A zone a load balancer is not in sends its targets nothing: both are in both subnets.
        # The addresses clients use are the first subnet's; the second's is AWS's to choose.
        mappings = {
            "public": [
                aws.lb.LoadBalancerSubnetMappingArgs(
                    subnet_id=subnet_ids[0], allocation_id=eip_allocation_id
                ),
                aws.lb.LoadBalancerSubnetMappingArgs(subnet_id=subnet_ids[1]),
            ],
            "internal": [
                aws.lb.LoadBalancerSubnetMappingArgs(
                    subnet_id=subnet_ids[0], private_ipv4_address=private_ip
                ),
                aws.lb.LoadBalancerSubnetMappingArgs(subnet_id=subnet_ids[1]),
            ],
        }
        self.target_groups = {}
        made: list[pulumi.Resource] = []
        for label, mapping in mappings.items():
            target_group = aws.lb.TargetGroup(
                f"{name}-{label}",
                port=port,
                protocol="TCP",
                target_type="instance",
                vpc_id=vpc_id,
                deregistration_delay=DEREGISTRATION_SECONDS,
                # Inside the network the servers call themselves through it too (the daily
                # `mlflow gc`): with the client's address kept, a server's own request would
                # come back to it and fail.
                preserve_client_ip="false" if label == "internal" else "true",
                health_check=aws.lb.TargetGroupHealthCheckArgs(
                    protocol="HTTPS",
                    path="/health",
                    port="traffic-port",
                    matcher="200",
                    interval=10,
                    timeout=5,
                    healthy_threshold=2,
                    unhealthy_threshold=2,
                ),  # fmt: skip
                tags=tags(cfg.stack, f"{name}-{label}"),
                opts=child(self),
            )
            balancer = aws.lb.LoadBalancer(
                f"{name}-{label}",
                load_balancer_type="network",
                internal=label == "internal",
                subnet_mappings=mapping,
                security_groups=[lb_sg_ids[label]],
                enable_cross_zone_load_balancing=True,
                enable_deletion_protection=cfg.protect,
                tags=tags(cfg.stack, f"{name}-{label}"),
                opts=child(self),
            )
            listener = aws.lb.Listener(
                f"{name}-{label}",
                load_balancer_arn=balancer.arn,
                port=port,
                protocol="TCP",  # TLS passes through: the servers hold the certificate
                default_actions=[aws.lb.ListenerDefaultActionArgs(
                    type="forward", target_group_arn=target_group.arn
                )],
                opts=child(self),
            )  # fmt: skip
            self.target_groups[label] = target_group
            made += [balancer, listener]
        template = aws.ec2.LaunchTemplate(
            f"{name}-server",
            image_id=ami_id,
            instance_type=cfg.instanceType,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(name=profile_name),
            # cloud-init needs the internet at first boot: a public address of its own.
            network_interfaces=[aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                associate_public_ip_address="true", security_groups=[server_sg_id],
                delete_on_termination="true",
            )],
            user_data=user_data.apply(lambda text: base64.b64encode(text.encode()).decode()),
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/sda1",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_type="gp3", volume_size=20, encrypted="true",
                    delete_on_termination="true",
                ),
            )],
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type="instance", tags=tags(cfg.stack, f"{name}-server"),
            )],
            update_default_version=True,
            tags=tags(cfg.stack, f"{name}-server"),
            opts=child(self),
        )  # fmt: skip
        self.group = aws.autoscaling.Group(
            f"{name}-servers",
            vpc_zone_identifiers=subnet_ids,
            desired_capacity=cfg.trackingReplicas,
            min_size=cfg.trackingReplicas,
            # Room for the one an instance refresh launches before it terminates one.
            max_size=cfg.trackingReplicas + 1,
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            target_group_arns=[t.arn for t in self.target_groups.values()],
            health_check_type="ELB",
            health_check_grace_period=BOOT_SECONDS,
            # `up` returns once the servers pass the load balancers' checks.
            wait_for_elb_capacity=cfg.trackingReplicas,
            wait_for_capacity_timeout=f"{BOOT_SECONDS // 60 + 5}m",
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100,
                    # One server more at a time, whatever max_size allows: the database's
                    # connection budget counts one (infra.config.servers_at_once).
                    max_healthy_percentage=100 + math.ceil(100 / cfg.trackingReplicas),
                    instance_warmup=str(BOOT_SECONDS),
                ),
            ),
            tags=[aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=False)
                  for k, v in tags(cfg.stack, f"{name}-servers").items()],
            # The bootstrap reads the bundle and the secrets at first boot: they come first; and
            # the internal load balancer, which must take the fixed private address before an
            # instance could be given it.
            opts=child(self, depends_on=[*ready, *made]),
        )  # fmt: skip
        self.register_outputs({"group": self.group.name})
