"""The service stack's night on GCP (sleepSchedule, infra.sleep): the model API keeps no warm
instance (services.deploy.gcp.model_api: Cloud Run charges nothing while none runs), and its alert
policies are off from sleep until the stack listens again, by Cloud Scheduler jobs acting as an
account that may edit alert policies (infra.gcp.sleep.muting): a request in the night, which
fails for want of the tracking server, pages no one."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.gcp.accounts import account_id
from infra.gcp.sleep import Night, muting
from services.deploy.components import NAME
from services.deploy.config import ServicesConfig
from services.deploy.gcp.alerts import Alerts
from services.deploy.gcp.common import Platform


def stack_night(cfg: ServicesConfig, platform: Platform, alerting: Alerts) -> None:
    night = cfg.sleepSchedule
    if not night or not alerting.api_policies:
        return
    mine = pulumi.ResourceOptions(parent=alerting)
    account = gcp.serviceaccount.Account(
        f"{NAME}-night", account_id=account_id(cfg.stack, "night"),
        display_name=f"MLOps night ({cfg.stack}): turns the API's alerts off and on", opts=mine,
    )  # fmt: skip
    grant = gcp.projects.IAMMember(
        f"{NAME}-night-alerts", project=platform.project,
        role="roles/monitoring.alertPolicyEditor",
        member=account.email.apply(lambda e: f"serviceAccount:{e}"), opts=mine,
    )  # fmt: skip
    Night(NAME, cfg.stack, night, cfg.schedulerRegion or platform.region,
          muting(night, alerting.api_policies), account, [grant], mine)  # fmt: skip
