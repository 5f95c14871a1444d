"""sleepSchedule (infra.sleep): what it accepts, the crons each cloud gets, its share of the week,
and the jobs it refuses (on the service stack: a job while the platform sleeps would fail)."""

from __future__ import annotations

import json

import pytest

from infra.config import ConfigError
from infra.config import load as load_platform
from infra.sleep import SleepSchedule, days_of_week
from services.deploy.config import load as load_services

BERLIN = SleepSchedule(wake="07:00", sleep="20:00", timeZone="Europe/Berlin")
SERVICES = {
    "cloud": "aws",
    "trainData": "s3://b/green/green_tripdata_2024-01.parquet",
    "valData": "s3://b/green/green_tripdata_2024-02.parquet",
    "streaming": "false",  # a stack that sleeps cannot stream
}


def test_crons_for_each_cloud_on_the_awake_days():
    assert BERLIN.aws_cron("07:00") == "cron(0 7 ? * MON-FRI *)"
    assert BERLIN.unix_cron("20:00") == "0 20 * * 1-5"
    daily = BERLIN.model_copy(update={"days": "daily"})
    assert daily.aws_cron("07:05") == "cron(5 7 * * ? *)"
    assert daily.unix_cron("07:05") == "5 7 * * *"
    assert BERLIN.listening == "07:15"


def test_the_share_of_the_week_awake():
    assert BERLIN.awake_share() == pytest.approx(65 / 168)  # 13 h x 5 days
    assert BERLIN.model_copy(update={"days": "daily"}).awake_share() == pytest.approx(13 / 24)


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("30 9 * * 1-5", None),  # 10:30 / 11:30 in Berlin, weekdays
        ("0 6 * * 1", "runs at 06:00 UTC, 07:00 Europe/Berlin in winter"),  # before 07:15
        ("30 5 * * 1", "runs at 05:30 UTC, 06:30 Europe/Berlin in winter"),
        ("0 18 * * 1", "runs at 18:00 UTC, 20:00 Europe/Berlin in summer"),  # at sleep
        ("0 9 * * *", "may run on a weekend"),
        ("0 9 25 * *", "may run on a weekend"),  # a day of the month
        ("0 9 * * MON-FRI", None),
        ("0 9 * * 0", "may run on a weekend"),
        ("*/15 * * * *", None),  # not judged: no fixed hour
    ],
)
def test_a_job_is_judged_in_winter_and_summer(cron, why):
    assert BERLIN.conflict(cron) == why


def test_a_utc_evening_job_lands_on_the_next_local_day():
    tokyo = SleepSchedule(wake="07:00", sleep="22:00", timeZone="Asia/Tokyo")
    # Friday 23:00 UTC is Saturday 08:00 in Tokyo.
    assert tokyo.conflict("0 23 * * 5") == "may run on a weekend"
    assert tokyo.conflict("0 23 * * 1-4") is None  # Tuesday to Friday mornings


def test_day_of_week_fields():
    assert days_of_week("1-5") == {1, 2, 3, 4, 5}
    assert days_of_week("SAT,SUN") == {6, 0}
    assert days_of_week("7") == {0}
    assert days_of_week("5-1") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"wake": "7:00", "sleep": "20:00"}, "sleepSchedule.wake: '7:00': must be a time of day"),
        ({"wake": "07:00", "sleep": "07:10"}, "wake (07:00) must come before sleep (07:10)"),
        ({"wake": "21:00", "sleep": "06:00"}, "wake (21:00) must come before sleep (06:00)"),
        ({"wake": "07:00", "sleep": "20:00", "timeZone": "Mars/Base"}, "not an IANA time zone"),
        ({"wake": "07:00", "sleep": "20:00", "tz": "UTC"}, "unknown key tz; allowed: wake,"),
        ({"wake": "07:00", "sleep": "20:00", "days": "weekends"}, "sleepSchedule.days: Input"),
    ],
)
def test_a_bad_schedule_names_the_key(value, message):
    with pytest.raises(ConfigError, match="sleepSchedule") as err:
        load_services({**SERVICES, "sleepSchedule": json.dumps(value)}, "dev")
    assert message in str(err.value)


def test_the_service_stack_refuses_a_job_while_the_platform_sleeps():
    night = json.dumps({"wake": "07:00", "sleep": "20:00", "timeZone": "Europe/Berlin"})
    with pytest.raises(ConfigError) as err:
        load_services({**SERVICES, "sleepSchedule": night}, "dev")
    # dev's default training schedule, 0 6 * * 1: 07:00 in Berlin, before the database is up.
    assert str(err.value) == (
        "mlops-services:trainingSchedule: '0 6 * * 1' runs at 06:00 UTC, 07:00 Europe/Berlin in "
        "winter, when the platform sleeps or is starting (sleepSchedule: awake 07:00-20:00 "
        "Europe/Berlin, weekdays): schedule it between 07:15 and 20:00 Europe/Berlin"
    )
    fine = {**SERVICES, "sleepSchedule": night, "trainingSchedule": "0 9 * * 1",
            "monitoringSchedule": "0 10 * * 1-5", "scoringSchedule": "0 11 * * 3"}  # fmt: skip
    assert load_services(fine, "dev").sleepSchedule == BERLIN
    with pytest.raises(ConfigError, match="monitoringSchedule: '0 7 \\* \\* \\*' may run on a"):
        load_services({**fine, "monitoringSchedule": "0 7 * * *"}, "dev")


def test_prod_stays_up():
    night = json.dumps({"wake": "07:00", "sleep": "20:00"})
    with pytest.raises(ConfigError, match="mlops-services:sleepSchedule: prod stacks stay up"):
        load_services({**SERVICES, "sleepSchedule": night}, "prod")
    platform = {"cloud": "aws", "sleepSchedule": night, "adminPassword": "x"}
    with pytest.raises(ConfigError, match="mlops-platform:sleepSchedule: prod stacks stay up"):
        load_platform(platform, "prod")
    assert load_platform(platform, "dev").sleepSchedule == SleepSchedule(wake="07:00",
                                                                          sleep="20:00")  # fmt: skip


def test_a_stack_that_sleeps_cannot_stream():
    night = json.dumps({"wake": "07:00", "sleep": "20:00"})
    fine = {**SERVICES, "sleepSchedule": night, "trainingSchedule": "0 9 * * 1",
            "monitoringSchedule": "0 10 * * 1-5", "scoringSchedule": "0 11 * * 3"}  # fmt: skip
    with pytest.raises(ConfigError, match="cannot stream .*set mlops-services:streaming: false"):
        load_services({**fine, "streaming": "true"}, "dev")
    with pytest.raises(ConfigError, match="cannot stream"):
        load_services({k: v for k, v in fine.items() if k != "streaming"}, "dev")  # on by default
    assert not load_services({**fine, "streaming": "false"}, "dev").streaming


def test_the_dev_stack_files_commented_nights_load_as_they_are():
    """The sample nights in Pulumi.dev.yaml and services/Pulumi.dev.yaml, uncommented, are
    valid together: the same night, and jobs the service stack accepts."""
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]

    def uncommented(path: Path, namespace: str) -> dict:
        text = re.sub(rf"^  # ({namespace}:|  )", r"  \1", path.read_text(), flags=re.M)
        config = yaml.safe_load(text)["config"]
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()
                if k.startswith(f"{namespace}:")}  # fmt: skip

    platform = load_platform(uncommented(root / "Pulumi.dev.yaml", "mlops-platform"), "dev")
    services = load_services(
        uncommented(root / "services/Pulumi.dev.yaml", "mlops-services"), "dev"
    )
    assert platform.sleepSchedule is not None
    assert platform.sleepSchedule == services.sleepSchedule


def test_on_aws_a_stack_that_sleeps_keeps_a_task_by_day():
    night = json.dumps({"wake": "07:00", "sleep": "20:00"})
    fine = {**SERVICES, "sleepSchedule": night, "trainingSchedule": "0 9 * * 1",
            "monitoringSchedule": "0 10 * * 1-5", "scoringSchedule": "0 11 * * 3"}  # fmt: skip
    with pytest.raises(ConfigError, match="apiMinTasks: 0 with a sleepSchedule would leave"):
        load_services({**fine, "apiMinTasks": "0"}, "dev")
    gcp = {**fine, "cloud": "gcp", "apiMinTasks": "0", "trainData": "gs://b/g_2024-01.parquet",
           "valData": "gs://b/g_2024-02.parquet", "scoringInput": "gs://b/g_{month}.parquet"}  # fmt: skip
    assert load_services(gcp, "dev").apiMinTasks == 0  # no warm instance there anyway
