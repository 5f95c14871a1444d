"""A stack's night on GCP (sleepSchedule, infra.sleep).

Platform: the tracking VM follows a Compute Engine instance schedule (stopped at sleep, started
at wake), which Compute Engine's own service agent carries out: it needs the Compute Instance
Admin role on the project, before the schedule is attached (else the attach fails, 412). The
database and the alerts follow Cloud Scheduler jobs that call Google's APIs as an account of
their own: at sleep Cloud SQL's activation policy NEVER (stopped) and at wake ALWAYS; the
tracking-health policy disabled at sleep and enabled again when the stack listens (wake +
WARM_UP), when Cloud Monitoring evaluates it afresh. The service stacks disable their API
policies the same way (`Night`).

The account may update this database only (an IAM condition on its name) and edit alert
policies. Storage is billed asleep as awake, and the static addresses are reserved.
"""

from __future__ import annotations

import base64
import json

import pulumi
import pulumi_gcp as gcp

from infra.config import PlatformConfig
from infra.gcp.accounts import account_id
from infra.sleep import SleepSchedule

MONITORING = "https://monitoring.googleapis.com/v3/"
SQL_ADMIN = "https://sqladmin.googleapis.com/v1/"


def vm_schedule(
    name: str, cfg: PlatformConfig
) -> tuple[gcp.compute.ResourcePolicy, pulumi.Resource]:
    """The instance schedule the tracking VM follows, and the service agent's grant the VM
    must wait for."""
    night = cfg.sleepSchedule
    assert night  # noqa: S101 - only called with a schedule
    policy = gcp.compute.ResourcePolicy(
        f"{name}-night",
        region=cfg.gcpRegion,
        description=f"{cfg.stack}: {night.describe()}",
        instance_schedule_policy=gcp.compute.ResourcePolicyInstanceSchedulePolicyArgs(
            vm_start_schedule=gcp.compute.ResourcePolicyInstanceSchedulePolicyVmStartScheduleArgs(
                schedule=night.unix_cron(night.wake)
            ),
            vm_stop_schedule=gcp.compute.ResourcePolicyInstanceSchedulePolicyVmStopScheduleArgs(
                schedule=night.unix_cron(night.sleep)
            ),
            time_zone=night.timeZone,
        ),
    )
    project = gcp.organizations.get_project_output()
    agent = gcp.projects.IAMMember(
        f"{name}-night-compute-agent",
        project=project.project_id,
        role="roles/compute.instanceAdmin.v1",
        member=project.number.apply(
            lambda n: f"serviceAccount:service-{n}@compute-system.iam.gserviceaccount.com"
        ),
    )
    return policy, agent


class Night(pulumi.ComponentResource):
    """Cloud Scheduler jobs calling Google's APIs at the night's times as one account. `calls`
    are (label, time of day, HTTP method, URL, JSON body)."""

    def __init__(
        self, name: str, stack: str, night: SleepSchedule, region: str,
        calls: list[tuple[str, str, str, pulumi.Input[str], dict]],
        account: gcp.serviceaccount.Account, grants: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:gcp:Night", f"{name}-night", None, opts)
        self.jobs = {
            label: gcp.cloudscheduler.Job(
                f"{name}-{label}",
                region=region,
                description=f"{stack}: {label} ({night.describe()})",
                schedule=night.unix_cron(at),
                time_zone=night.timeZone,
                # A call refused for a passing state (a backup, maintenance) is tried again.
                retry_config=gcp.cloudscheduler.JobRetryConfigArgs(
                    retry_count=5, min_backoff_duration="60s", max_backoff_duration="600s"
                ),
                http_target=gcp.cloudscheduler.JobHttpTargetArgs(
                    http_method=method,
                    uri=uri,
                    body=base64.b64encode(json.dumps(body).encode()).decode(),
                    headers={"Content-Type": "application/json"},
                    oauth_token=gcp.cloudscheduler.JobHttpTargetOauthTokenArgs(
                        service_account_email=account.email
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
            )
            for label, at, method, uri, body in calls
        }
        self.register_outputs({})


def muting(
    night: SleepSchedule, policies: dict[str, gcp.monitoring.AlertPolicy]
) -> list[tuple[str, str, str, pulumi.Input[str], dict]]:
    """The calls that disable `policies` (label -> policy) at sleep and enable them again when
    the stack listens."""
    calls = []
    for label, policy in policies.items():
        uri = pulumi.Output.concat(MONITORING, policy.name, "?updateMask=enabled")
        calls += [
            (f"mute-{label}", night.sleep, "PATCH", uri, {"enabled": False}),
            (f"unmute-{label}", night.listening, "PATCH", uri, {"enabled": True}),
        ]
    return calls


def platform_night(
    name: str, cfg: PlatformConfig, database: gcp.sql.DatabaseInstance,
    health: gcp.monitoring.AlertPolicy | None,
) -> Night | None:  # fmt: skip
    """The database asleep at night (the VM follows vm_schedule), and the health alert with it."""
    night = cfg.sleepSchedule
    if not night:
        return None
    project = pulumi.Config("gcp").require("project")
    account = gcp.serviceaccount.Account(
        f"{name}-night", account_id=account_id(cfg.stack, "platform-night"),
        display_name=f"MLOps {cfg.stack}: stops and starts the database at night",
    )  # fmt: skip
    member = account.email.apply(lambda e: f"serviceAccount:{e}")
    grants: list[pulumi.Resource] = [
        gcp.projects.IAMMember(
            f"{name}-night-database",
            project=project,
            role="roles/cloudsql.editor",
            member=member,
            condition=gcp.projects.IAMMemberConditionArgs(
                title="the tracking database only",
                expression=database.name.apply(
                    lambda n: (
                        f'resource.name == "projects/{project}/instances/{n}" && '
                        'resource.service == "sqladmin.googleapis.com"'
                    )
                ),
            ),
        )
    ]
    if health:
        grants.append(gcp.projects.IAMMember(
            f"{name}-night-alerts", project=project, role="roles/monitoring.alertPolicyEditor",
            member=member,
        ))  # fmt: skip
    uri = database.name.apply(lambda n: f"{SQL_ADMIN}projects/{project}/instances/{n}")
    calls = [
        ("db-sleep", night.sleep, "PATCH", uri, {"settings": {"activationPolicy": "NEVER"}}),
        ("db-wake", night.wake, "PATCH", uri, {"settings": {"activationPolicy": "ALWAYS"}}),
        *muting(night, {"tracking-health": health} if health else {}),
    ]
    return Night(name, cfg.stack, night, cfg.schedulerRegion or str(cfg.gcpRegion), calls,
                 account, grants)  # fmt: skip
