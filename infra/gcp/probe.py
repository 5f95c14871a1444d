"""The tracking server checked from outside its VM, on GCP: a private uptime check. Cloud
Monitoring's checkers reach the VM's private address through Service Directory (a namespace,
service and endpoint naming the address, the MLflow port and the network) and GET /health over
HTTPS every minute, so the server stays closed to the internet. They come from Google's range
for private checks, which a firewall rule lets in on the MLflow port only; the Monitoring
service agent may read Service Directory and reach the project's networks through it (the two
roles Google documents, on the project).

    tracking-health       the check failing from more than one checker for 2 minutes
    tracking-certificate  the days left of the certificate the check reads
                          (uptime_check/time_until_ssl_cert_expires) below 21

The checkers cannot verify the stack's own CA (validate_ssl applies to public URL checks
only): this check proves the server answers, not whom it presents. Not verified against a live
project: that Cloud Monitoring writes the certificate metric for a private check that does not
validate (docs/operations.md says how to look for it); the weekly renewal workflow renews at 30
days whatever this alert sees.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import PlatformConfig
from infra.gcp.alerts import alert_policy
from infra.gcp.network import SERVER_TAG

PRIVATE_CHECKERS = "35.199.192.0/19"
"""Where private uptime checks come from (Google's range for them)."""
UPTIME = "monitoring.googleapis.com/uptime_check"
CERTIFICATE_DAYS = 21
AGENT_ROLES = ("roles/servicedirectory.viewer", "roles/servicedirectory.pscAuthorizedService")


class TrackingProbe(pulumi.ComponentResource):
    check: gcp.monitoring.UptimeCheckConfig
    health: gcp.monitoring.AlertPolicy
    """Disabled at night with a sleepSchedule (infra.gcp.sleep)."""

    def __init__(
        self, name: str, cfg: PlatformConfig, private_ip: pulumi.Input[str],
        network_id: pulumi.Input[str], channels: list[gcp.monitoring.NotificationChannel],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:gcp:TrackingProbe", f"{name}-tracking-probe", None, opts)
        mine = pulumi.ResourceOptions(parent=self)
        label = f"{name}-tracking-probe"
        project = gcp.organizations.get_project_output()
        namespace = gcp.servicedirectory.Namespace(
            label, namespace_id=f"mlops-{cfg.stack}", location=cfg.gcpRegion, opts=mine
        )
        service = gcp.servicedirectory.Service(
            label, service_id="tracking", namespace=namespace.id, opts=mine
        )
        endpoint = gcp.servicedirectory.Endpoint(
            label,
            endpoint_id="vm",
            service=service.id,
            address=private_ip,
            port=cfg.mlflowPort,
            # Private network access: the network by project number and name.
            network=pulumi.Output.all(project.number, network_id).apply(
                lambda a: f"projects/{a[0]}/locations/global/networks/{a[1].split('/')[-1]}"
            ),
            opts=mine,
        )
        firewall = gcp.compute.Firewall(
            label,
            network=network_id,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=[str(cfg.mlflowPort)])],
            source_ranges=[PRIVATE_CHECKERS],
            target_tags=[SERVER_TAG],
            description="MLflow /health from Cloud Monitoring's private uptime checkers",
            opts=mine,
        )
        # The Monitoring service agent, made if it is not yet (its address is fixed: the
        # identity's own answer may leave it empty); it reads the namespace and reaches the
        # network, both granted on the project, where Google documents them.
        agent = gcp.projects.ServiceIdentity(label, service="monitoring.googleapis.com", opts=mine)
        member = project.number.apply(
            lambda n: (
                f"serviceAccount:service-{n}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
            )
        )
        grants = [
            gcp.projects.IAMMember(
                f"{label}-{role.split('.')[-1]}",
                project=project.project_id,
                role=role,
                member=member,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[agent]),
            )  # fmt: skip
            for role in AGENT_ROLES
        ]
        self.check = gcp.monitoring.UptimeCheckConfig(
            label,
            display_name=f"MLOps {cfg.stack} tracking server /health",
            checker_type="VPC_CHECKERS",
            period="60s",
            timeout="10s",
            monitored_resource=gcp.monitoring.UptimeCheckConfigMonitoredResourceArgs(
                type="servicedirectory_service",
                labels={
                    "project_id": project.project_id,
                    "location": cfg.gcpRegion,
                    "namespace_name": namespace.namespace_id,
                    "service_name": service.service_id,
                },
            ),
            http_check=gcp.monitoring.UptimeCheckConfigHttpCheckArgs(
                path="/health", port=cfg.mlflowPort, use_ssl=True, validate_ssl=False
            ),
            # Checks start at once: the agent must already reach the endpoint through the rule.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[endpoint, firewall, *grants]),
        )
        check_id = self.check.uptime_check_id
        health = gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=check_id.apply(
                lambda c: f'metric.type = "{UPTIME}/check_passed" AND metric.label.check_id = "{c}"'
            ),
            comparison="COMPARISON_GT",
            threshold_value=1,
            duration="120s",
            aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                alignment_period="60s", per_series_aligner="ALIGN_NEXT_OLDER",
                cross_series_reducer="REDUCE_COUNT_FALSE", group_by_fields=["resource.label.*"],
            )],
        )  # fmt: skip
        # With a sleepSchedule the night's jobs own `enabled`: an `up --refresh` at night
        # leaves it off.
        self.health = alert_policy(
            f"{name}-tracking-health", cfg.stack, "tracking-health",
            "the tracking server's /health failed from more than one checker for 2 minutes",
            health, channels, pulumi.ResourceOptions(
                parent=self, ignore_changes=["enabled"] if cfg.sleepSchedule else None),
        )  # fmt: skip
        certificate = gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=check_id.apply(
                lambda c: f'metric.type = "{UPTIME}/time_until_ssl_cert_expires" AND '
                f'metric.label.check_id = "{c}"'
            ),
            comparison="COMPARISON_LT",
            threshold_value=CERTIFICATE_DAYS,
            duration="0s",
            aggregations=[gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                alignment_period="3600s", per_series_aligner="ALIGN_MIN",
                cross_series_reducer="REDUCE_MIN",
            )],
        )  # fmt: skip
        alert_policy(
            f"{name}-tracking-certificate", cfg.stack, "tracking-certificate",
            f"the tracking server's certificate ends within {CERTIFICATE_DAYS} days "
            "(scripts/renew-cert)", certificate, channels, mine,
        )  # fmt: skip
        self.register_outputs({"check": check_id})
