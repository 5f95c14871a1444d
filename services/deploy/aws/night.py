"""The service stack's night on AWS (sleepSchedule, infra.sleep): the model API has no task from
sleep until the stack listens again (wake + the database's start), by two Application Auto
Scaling scheduled actions in the schedule's time zone; its alarms are muted for the night and set
to OK once listening (infra.aws.sleep.muting), so a request in the night (answered 503 by the
load balancer) pages no one."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.aws.sleep import Night, muting
from services.deploy.aws.alerts import Alerts
from services.deploy.aws.model_api import ModelApiService
from services.deploy.components import NAME, child
from services.deploy.config import ServicesConfig


def stack_night(cfg: ServicesConfig, api: ModelApiService, alerting: Alerts | None) -> None:
    night = cfg.sleepSchedule
    if not night:
        return
    target = api.scaling

    def bounds(label: str, at: str, low: int, high: int, after: list) -> pulumi.Resource:
        return aws.appautoscaling.ScheduledAction(
            f"{NAME}-api-{label}",
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            service_namespace=target.service_namespace,
            schedule=night.aws_cron(at),
            timezone=night.timeZone,
            scalable_target_action=aws.appautoscaling.ScheduledActionScalableTargetActionArgs(
                min_capacity=low, max_capacity=high
            ),
            # One target's updates made at once collide (ConcurrentUpdateException): after its
            # scaling policy, one action after the other.
            opts=child(api, depends_on=after),
        )

    asleep = bounds("sleep", night.sleep, 0, 0, [api.scaling_policy])
    bounds("wake", night.listening, cfg.apiMinTasks, cfg.apiMaxTasks, [asleep])
    if alerting is not None:
        Night(NAME, cfg.stack, night, muting(night, alerting.api_alarms), "mlops-services",
              pulumi.ResourceOptions(parent=alerting))  # fmt: skip
