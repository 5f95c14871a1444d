"""A dev stack's night (`sleepSchedule`, on the platform stack and on its service stack): awake from
`wake` to `sleep` in `timeZone` on `days` (weekdays or daily), asleep otherwise.

Asleep, the tracking VM and the database are stopped (the platform: infra.aws.sleep,
infra.gcp.sleep), the model API has no task (the services), and the alerts that would only say
"asleep" are muted; at wake they start again, and WARM_UP later the alerts listen again (a
database takes minutes to start; the server waits for it). A job scheduled while the platform
sleeps would fail: the service stack refuses such a schedule (`conflict`).

Both projects read the same setting: set it alike on both stacks (the service stack warns when
its platform's differs).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

WARM_UP = dt.timedelta(minutes=15)
"""From wake until the alerts listen again and a job may run: the database's start."""
CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
WEEKDAYS = {1, 2, 3, 4, 5}  # cron's day-of-week numbers, Sunday 0 (and 7)
DAY_NAMES = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}


class SleepSchedule(BaseModel):
    model_config = ConfigDict(frozen=True)

    wake: str
    """When the stack starts, HH:MM (24 h) in timeZone."""
    sleep: str
    """When it stops, HH:MM, later the same day than wake."""
    timeZone: str = "UTC"
    """An IANA time zone, e.g. Europe/Berlin (daylight saving time followed)."""
    days: Literal["weekdays", "daily"] = "weekdays"
    """weekdays: awake Monday to Friday only (asleep all weekend); daily: every day."""

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError(
                'must be a mapping like {wake: "07:00", sleep: "20:00", timeZone: '
                '"Europe/Berlin", days: weekdays}'
            )
        unknown = sorted(set(value) - set(cls.model_fields))
        if unknown:
            raise ValueError(
                f"unknown key {', '.join(unknown)}; allowed: wake, sleep, timeZone, days"
            )
        return value

    @field_validator("wake", "sleep")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not CLOCK.fullmatch(str(value)):
            raise ValueError(f"{value!r}: must be a time of day as HH:MM, 00:00-23:59")
        return value

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone like Europe/Berlin or America/New_York"
            ) from None
        return value

    @model_validator(mode="after")
    def _order(self) -> SleepSchedule:
        if minutes(self.wake) + WARM_UP.seconds // 60 >= minutes(self.sleep):
            raise ValueError(
                f"wake ({self.wake}) must come before sleep ({self.sleep}) on the same day, "
                f"more than {WARM_UP.seconds // 60} minutes before (the database's start)"
            )
        return self

    def describe(self) -> str:
        return f"awake {self.wake}-{self.sleep} {self.timeZone}, {self.days}"

    @property
    def listening(self) -> str:
        """When the alerts listen again and jobs may run: WARM_UP after wake, HH:MM."""
        at = minutes(self.wake) + WARM_UP.seconds // 60
        return f"{at // 60:02d}:{at % 60:02d}"

    def awake_share(self) -> float:
        """The share of a week's hours the stack is awake."""
        hours = (minutes(self.sleep) - minutes(self.wake)) / 60
        return hours * (5 if self.days == "weekdays" else 7) / 168

    def aws_cron(self, at: str) -> str:
        """EventBridge Scheduler's and Application Auto Scaling's cron (their time zone is set
        apart) for `at` on the awake days."""
        hour, minute = at.split(":")
        on = "? * MON-FRI" if self.days == "weekdays" else "* * ?"
        return f"cron({int(minute)} {int(hour)} {on} *)"

    def unix_cron(self, at: str) -> str:
        """Cloud Scheduler's and Compute Engine's five-field cron for `at` on the awake days."""
        hour, minute = at.split(":")
        return f"{int(minute)} {int(hour)} * * {'1-5' if self.days == 'weekdays' else '*'}"

    def conflict(self, cron: str) -> str | None:
        """Why a job on this five-field UTC cron would run while the stack sleeps, or None. Only
        crons at a fixed minute and hour are judged (others: None); the hour is taken in winter
        and in summer."""
        fields = cron.split()
        if len(fields) != 5 or not (fields[0].isdigit() and fields[1].isdigit()):
            return None
        minute, hour, dom, _, dow = fields
        zone = ZoneInfo(self.timeZone)
        for month in (1, 7):
            utc = dt.datetime(2026, month, 15, int(hour), int(minute), tzinfo=dt.UTC)
            local = utc.astimezone(zone)
            clock = f"{local:%H:%M}"
            if not self.listening <= clock < self.sleep:
                return (
                    f"runs at {hour.zfill(2)}:{minute.zfill(2)} UTC, {clock} {self.timeZone} in "
                    f"{'winter' if month == 1 else 'summer'}"
                )
            if self.days == "weekdays":
                shift = (local.date() - utc.date()).days
                days = days_of_week(dow) if dom == "*" else None
                if days is None or any((d + shift) % 7 not in WEEKDAYS for d in days):
                    return "may run on a weekend"
        return None


def minutes(clock: str) -> int:
    hour, minute = clock.split(":")
    return int(hour) * 60 + int(minute)


def days_of_week(field: str) -> set[int] | None:
    """cron's day-of-week field as numbers 0-6 (Sunday 0), or None when it cannot be read."""
    if field == "*":
        return set(range(7))
    days: set[int] = set()
    for part in field.upper().split(","):
        ends = [DAY_NAMES.get(end, int(end) if end.isdigit() else -1) for end in part.split("-")]
        if any(end < 0 or end > 7 for end in ends) or len(ends) > 2:
            return None
        first, last = ends[0], ends[-1]
        if last < first:
            return None
        days |= {d % 7 for d in range(first, last + 1)}
    return days
