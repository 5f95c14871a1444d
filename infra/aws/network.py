"""Network: own VPC, public subnets for the server, private subnets (two AZs) for the database,
an internet gateway (no NAT), and the security groups that decide who reaches what."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from infra.aws.common import child, tags
from infra.config import NAMESPACE, ConfigError, PlatformConfig

POSTGRES_PORT = 5432
ACME_HTTP_PORT = 80


def usable_zones(cfg: PlatformConfig, opts: pulumi.InvokeOptions) -> list[str]:
    """Two availability zones where both the server's instance type and the database's class
    are offered (not every zone has every type: e.g. us-east-1e lacks many)."""
    zones = aws.get_availability_zones(state="available", opts=opts).names
    offered = set(
        aws.ec2.get_instance_type_offerings(
            filters=[
                aws.ec2.GetInstanceTypeOfferingsFilterArgs(
                    name="instance-type", values=[cfg.instanceType]
                )
            ],
            location_type="availability-zone",
            opts=opts,
        ).locations
    )
    orderable = set(
        aws.rds.get_orderable_db_instance(
            engine="postgres", instance_class=cfg.dbInstanceClass, opts=opts
        ).availability_zones
    )
    usable = [z for z in zones if z in offered and z in orderable]
    if len(usable) < 2:
        raise ConfigError(
            f"{NAMESPACE}:instanceType {cfg.instanceType} and {NAMESPACE}:dbInstanceClass "
            f"{cfg.dbInstanceClass} are offered together in {len(usable)} availability zone(s) "
            f"of this region ({', '.join(usable) or 'none'}); the database needs two: choose "
            "other sizes or another aws:region"
        )
    return usable[:2]


class Network(pulumi.ComponentResource):
    lb_sg_ids: dict[str, pulumi.Output[str]]
    """With trackingReplicas > 1: the load balancers' security groups (public, internal), which
    clients reach and which alone reach the servers."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    server_sg_id: pulumi.Output[str]
    client_sg_id: pulumi.Output[str]
    """Attach to anything that must reach the MLflow port (the service stacks' tasks)."""
    db_sg_id: pulumi.Output[str]
    server_private_ip: str
    """The tracking server's fixed address in the first public subnet: a replacement VM takes
    it over, so the service stacks' trackingPrivateUri stays right."""

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:aws:Network", name, None, opts)
        azs = usable_zones(cfg, pulumi.InvokeOptions(parent=self))
        blocks = list(
            ipaddress.ip_network(cfg.vpcCidr).subnets(
                new_prefix=ipaddress.ip_network(cfg.vpcCidr).prefixlen + 4
            )
        )
        # AWS keeps a subnet's first four addresses; the tenth host is the server's.
        self.server_private_ip = str(list(blocks[0].hosts())[9])

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.vpcCidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags(cfg.stack, f"{name}-vpc"),
            opts=child(self),
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=tags(cfg.stack, f"{name}-igw"), opts=child(self)
        )
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=tags(cfg.stack, f"{name}-public-rt"),
            opts=child(self),
        )
        self.public_subnet_ids, self.private_subnet_ids = [], []
        for i, az in enumerate(azs):
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=str(blocks[i]),
                availability_zone=az,
                map_public_ip_on_launch=False,  # the server asks for its address itself
                tags=tags(cfg.stack, f"{name}-public-{i}"),
                opts=child(self),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}-rta",
                subnet_id=public.id,
                route_table_id=public_rt.id,
                opts=child(self),
            )
            # Private subnets keep the VPC's main route table: local routes only, no internet.
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=str(blocks[2 + i]),
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags=tags(cfg.stack, f"{name}-private-{i}"),
                opts=child(self),
            )
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)

        egress_all = [
            aws.ec2.SecurityGroupEgressArgs(
                protocol="-1",
                from_port=0,
                to_port=0,
                cidr_blocks=["0.0.0.0/0"],
                description="outbound",
            )
        ]
        client_sg = aws.ec2.SecurityGroup(
            f"{name}-mlflow-clients",
            vpc_id=vpc.id,
            description="Members may reach the MLflow tracking server",
            egress=egress_all,
            tags=tags(cfg.stack, f"{name}-mlflow-clients"),
            opts=child(self),
        )
        ingress = self.mlflow_ingress(name, cfg, vpc.id, client_sg.id, egress_all)
        if cfg.domain:
            # Let's Encrypt's HTTP-01 check comes from addresses it does not publish; only
            # certbot's own listener answers there, and only while it runs (infra/vm.py).
            ingress.append(
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=ACME_HTTP_PORT,
                    to_port=ACME_HTTP_PORT,
                    cidr_blocks=["0.0.0.0/0"],
                    description="Let's Encrypt HTTP-01 for the domain's certificate",
                )
            )
        # No SSH: operators use SSM Session Manager through the instance role.
        server_sg = aws.ec2.SecurityGroup(
            f"{name}-mlflow-server",
            vpc_id=vpc.id,
            description="MLflow tracking server",
            ingress=ingress,
            egress=egress_all,
            tags=tags(cfg.stack, f"{name}-mlflow-server"),
            opts=child(self),
        )
        db_sg = aws.ec2.SecurityGroup(
            f"{name}-db",
            vpc_id=vpc.id,
            description="PostgreSQL, from the tracking server only",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=POSTGRES_PORT,
                    to_port=POSTGRES_PORT,
                    security_groups=[server_sg.id],
                    description="PostgreSQL from the tracking server",
                )
            ],
            tags=tags(cfg.stack, f"{name}-db"),
            opts=child(self),
        )
        self.vpc_id = vpc.id
        self.server_sg_id, self.client_sg_id, self.db_sg_id = server_sg.id, client_sg.id, db_sg.id
        if self.lb_sg_ids:
            self.internal_lb_rules(name, cfg, client_sg.id, server_sg.id)
        self.server_private_cidr = str(blocks[0])
        self.register_outputs(
            {
                "vpcId": vpc.id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "clientSecurityGroupId": client_sg.id,
            }
        )

    def mlflow_ingress(
        self, name: str, cfg: PlatformConfig, vpc_id: pulumi.Input[str],
        client_sg_id: pulumi.Input[str], egress: list,
    ) -> list[aws.ec2.SecurityGroupIngressArgs]:  # fmt: skip
        """Who reaches the servers' MLflow port: the services' group and allowedCidrs, or with
        replicas the two load balancers, which those reach instead (a load balancer with a
        group of its own: a rule naming the clients' group matches only there)."""

        def port(description: str, **source) -> aws.ec2.SecurityGroupIngressArgs:
            return aws.ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=cfg.mlflowPort, to_port=cfg.mlflowPort,
                description=description, **source,
            )  # fmt: skip

        from_clients = [port("MLflow from the services", security_groups=[client_sg_id])]
        if cfg.allowedCidrs:
            from_clients.append(
                port("MLflow from allowedCidrs", cidr_blocks=list(cfg.allowedCidrs))
            )
        self.lb_sg_ids = {}
        if cfg.trackingReplicas == 1:
            return from_clients
        # The internal one's rules are made apart (internal_lb_rules): they name the servers'
        # group, which names this one.
        groups = {
            "public": ("MLflow's internet-facing load balancer: allowedCidrs",
                       from_clients[1:]),
            "internal": ("MLflow's internal load balancer: the services and the servers", None),
        }  # fmt: skip
        for label, (description, rules) in groups.items():
            group = aws.ec2.SecurityGroup(
                f"{name}-mlflow-{label}-lb",
                vpc_id=vpc_id,
                description=description,
                **({"ingress": rules} if rules is not None else {}),
                egress=egress,
                tags=tags(cfg.stack, f"{name}-mlflow-{label}-lb"),
                opts=child(self),
            )
            self.lb_sg_ids[label] = group.id
        # The servers: the load balancers' traffic and their health checks.
        return [port("MLflow through its load balancers",
                     security_groups=list(self.lb_sg_ids.values()))]  # fmt: skip

    def internal_lb_rules(
        self, name: str, cfg: PlatformConfig, client_sg_id: pulumi.Input[str],
        server_sg_id: pulumi.Input[str],
    ) -> None:  # fmt: skip
        """Who reaches the internal load balancer: the services, and the servers themselves
        (the daily `mlflow gc` calls the server through it). Rules of their own, not inline:
        the servers' group names this one."""
        for label, source, description in (
            ("services", client_sg_id, "MLflow from the services"),
            ("servers", server_sg_id, "MLflow from the servers themselves"),
        ):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-mlflow-internal-lb-from-{label}",
                security_group_id=self.lb_sg_ids["internal"],
                referenced_security_group_id=source,
                ip_protocol="tcp",
                from_port=cfg.mlflowPort,
                to_port=cfg.mlflowPort,
                description=description,
                opts=child(self),
            )
