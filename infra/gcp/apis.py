"""The Google APIs a stack needs, enabled by the stack itself, before anything that uses them.

A fresh project has most APIs off; a resource created before its API is on fails. Each API is a
`gcp.projects.Service` (left on at destroy: other things in the project may use it), and a stack
transformation makes every resource declared afterwards depend on all of them.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

PLATFORM_APIS = (
    "compute.googleapis.com",
    "sqladmin.googleapis.com",
    "servicenetworking.googleapis.com",
    "secretmanager.googleapis.com",
    "iam.googleapis.com",
)
DNS_API = "dns.googleapis.com"
"""With a `domain`: the private zone that names the server inside the network."""
SERVICES_APIS = (
    "run.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudscheduler.googleapis.com",
    "secretmanager.googleapis.com",
    "iam.googleapis.com",
    "monitoring.googleapis.com",  # the monitor's metrics, the alert policies (MONITORING_API)
)
STREAMING_API = "pubsub.googleapis.com"
"""With streaming on: the topics and the push subscription."""
SERVICE_TYPE = "gcp:projects/service:Service"


MONITORING_API = "monitoring.googleapis.com"
"""With alertEmail or alertWebhook: the notification channels and alert policies."""
SERVICE_DIRECTORY_API = "servicedirectory.googleapis.com"
"""With alerts: where the private uptime check finds the tracking server (infra.gcp.probe)."""


BUDGET_API = "billingbudgets.googleapis.com"
"""With monthlyBudget: the billing budget."""
SCHEDULER_API = "cloudscheduler.googleapis.com"
"""With sleepSchedule: the jobs that stop and start the database (infra.gcp.sleep)."""


def platform_apis(cfg) -> tuple[str, ...]:
    apis = (*PLATFORM_APIS, DNS_API) if cfg.domain else PLATFORM_APIS
    if cfg.alertEmail or cfg.alertWebhook:
        apis = (*apis, MONITORING_API, SERVICE_DIRECTORY_API)
    if cfg.sleepSchedule:
        apis = (*apis, SCHEDULER_API)
    return (*apis, BUDGET_API) if cfg.monthlyBudget else apis


def enable_apis(apis: tuple[str, ...]) -> list[gcp.projects.Service]:
    services = [
        gcp.projects.Service(
            f"api-{api.split('.')[0]}",
            service=api,
            disable_on_destroy=False,
            disable_dependent_services=False,
        )
        for api in apis
    ]

    def after_apis(args: pulumi.ResourceTransformationArgs):
        if args.type_ == SERVICE_TYPE:
            return None
        opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(depends_on=services))
        return pulumi.ResourceTransformationResult(args.props, opts)

    pulumi.runtime.register_stack_transformation(after_apis)
    return services
