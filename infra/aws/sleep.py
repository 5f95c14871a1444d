"""A stack's night on AWS (sleepSchedule, infra.sleep): EventBridge Scheduler calls AWS's own APIs
at the schedule's times, in its time zone, as a role that may do only that.

Platform: at sleep, StopInstances on the tracking VM and StopDBInstance on the database; at
wake, StartInstances and StartDBInstance (the server waits for its database: systemd restarts
it until it connects). The outside probe's tracking-health alarm is muted at sleep; when the
stack is listening again (wake + WARM_UP) its actions come back and, a minute later, it is set
to OK, so a server still down in the morning alarms anew rather than staying in the night's
ALARM unnoticed. The service stacks mute their API alarms the same way (`Night`).

A stopped RDS instance starts by itself after seven days; a nightly stop never lets it get
there. Storage, backups and the Elastic IP are billed asleep as awake.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.aws.common import child
from infra.config import PlatformConfig
from infra.sleep import SleepSchedule

SDK = "arn:aws:scheduler:::aws-sdk"
"""EventBridge Scheduler's universal targets: `{SDK}:<service>:<apiAction>`."""
RETRIES = aws.scheduler.ScheduleTargetRetryPolicyArgs(
    maximum_retry_attempts=5, maximum_event_age_in_seconds=3600
)
"""A call refused for a passing state (the database backing up) is tried again for an hour."""


def at_minute_after(clock: str) -> str:
    hour, minute = divmod(int(clock[:2]) * 60 + int(clock[3:]) + 1, 60)
    return f"{hour:02d}:{minute:02d}"


class Night(pulumi.ComponentResource):
    """One stack's schedules and the role they act as. `calls` are (label, time of day, service,
    API action, input, resources the role may call it on)."""

    def __init__(
        self, name: str, stack: str, night: SleepSchedule,
        calls: list[tuple[str, str, str, str, pulumi.Input[dict], list[pulumi.Input[str]]]],
        project: str = "mlops-platform", opts: pulumi.ResourceOptions | None = None,
    ):  # fmt: skip
        super().__init__("mlops:aws:Night", f"{name}-night", None, opts)
        account = aws.get_caller_identity_output().account_id
        role = aws.iam.Role(
            f"{name}-night",
            # Only schedules of this account (the confused deputy).
            assume_role_policy=account.apply(trust),
            tags={"project": project, "stack": stack},
            opts=child(self),
        )
        grants = aws.iam.RolePolicy(
            f"{name}-night",
            role=role.id,
            policy=pulumi.Output.all(*[pulumi.Output.all(*arns) for *_, arns in calls]).apply(
                lambda resources: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": f"{service}:{action[0].upper()}{action[1:]}",
                                "Resource": arns,
                            }
                            for (_, _, service, action, _, _), arns in zip(
                                calls, resources, strict=True
                            )
                        ],
                    }
                )
            ),  # fmt: skip
            opts=child(self),
        )
        self.schedules = {
            label: aws.scheduler.Schedule(
                f"{name}-{label}",
                description=f"{stack}: {label} ({night.describe()})",
                schedule_expression=night.aws_cron(at),
                schedule_expression_timezone=night.timeZone,
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                target=aws.scheduler.ScheduleTargetArgs(
                    arn=f"{SDK}:{service}:{action}",
                    role_arn=role.arn,
                    input=pulumi.Output.from_input(body).apply(json.dumps),
                    retry_policy=RETRIES,
                ),
                # Scheduler checks nothing at creation; the first call needs the grant.
                opts=child(self, depends_on=[grants]),
            )
            for label, at, service, action, body, _ in calls
        }
        self.register_outputs({})


def trust(account: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        }],
    })  # fmt: skip


def muting(
    night: SleepSchedule, alarms: dict[str, aws.cloudwatch.MetricAlarm]
) -> list[tuple[str, str, str, str, pulumi.Input[dict], list[pulumi.Input[str]]]]:
    """The calls that mute `alarms` (label -> alarm) at sleep and, once listening, unmute them
    and a minute later set each to OK (an alarm still breaching then goes to ALARM again, and
    notifies)."""
    if not alarms:
        return []
    names = pulumi.Output.all(*[a.name for a in alarms.values()])
    arns = [a.arn for a in alarms.values()]
    calls = [
        ("mute", night.sleep, "cloudwatch", "disableAlarmActions", {"AlarmNames": names}, arns),
        ("unmute", night.listening, "cloudwatch", "enableAlarmActions", {"AlarmNames": names},
         arns),
    ]  # fmt: skip
    for label, alarm in alarms.items():
        reset = {
            "AlarmName": alarm.name,
            "StateValue": "OK",
            "StateReason": "awake: the stack's night is over (sleepSchedule)",
        }
        calls.append((f"reset-{label}", at_minute_after(night.listening), "cloudwatch",
                      "setAlarmState", reset, [alarm.arn]))  # fmt: skip
    return calls


def platform_night(
    name: str, cfg: PlatformConfig, instance_arn: pulumi.Output[str], db_arn: pulumi.Input[str],
    db_identifier: pulumi.Input[str], health: aws.cloudwatch.MetricAlarm | None,
) -> Night | None:  # fmt: skip
    """The tracking VM and the database asleep at night, and the probe's alarm with them."""
    night = cfg.sleepSchedule
    if not night:
        return None
    vm = {"InstanceIds": [instance_arn.apply(lambda arn: arn.split("/")[-1])]}
    # The SDK's member casing for the identifier, as universal targets take their input.
    db = {"DbInstanceIdentifier": db_identifier}
    return Night(name, cfg.stack, night, [
        ("vm-sleep", night.sleep, "ec2", "stopInstances", vm, [instance_arn]),
        ("vm-wake", night.wake, "ec2", "startInstances", vm, [instance_arn]),
        ("db-sleep", night.sleep, "rds", "stopDBInstance", db, [db_arn]),
        ("db-wake", night.wake, "rds", "startDBInstance", db, [db_arn]),
        *muting(night, {"tracking-health": health} if health else {}),
    ])  # fmt: skip
