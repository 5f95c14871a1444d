"""The service stacks' config: per-stack defaults, cron conversion, and errors naming the key."""

from __future__ import annotations

import re

import pytest

from infra.config import ConfigError
from services.deploy.config import (
    CronError,
    aws_cron,
    batch_job_name,
    load,
    read_prefix,
    scoring_command,
)
from services.deploy.gcp import account_id

DATA = {"trainData": "s3://b/green/2024-01.parquet", "valData": "s3://b/green/2024-02.parquet"}


def test_defaults_follow_the_stack_kind():
    dev, prod = load({"cloud": "aws", **DATA}, "dev"), load({"cloud": "aws", **DATA}, "prod")
    assert (dev.apiMinTasks, dev.apiMaxTasks, dev.logRetentionDays) == (1, 2, 7)
    assert (prod.apiMinTasks, prod.apiMaxTasks, prod.logRetentionDays) == (2, 10, 90)


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 6 * * 1", "cron(0 6 ? * MON *)"),
        ("0 5 1 * *", "cron(0 5 1 * ? *)"),
        ("30 2 * * 0,6", "cron(30 2 ? * SUN,SAT *)"),
        # EventBridge's 1-5 would be Sunday to Thursday: weekdays are written as names.
        ("0 6 * * 1-5", "cron(0 6 ? * MON,TUE,WED,THU,FRI *)"),
        ("0 6 * * 7", "cron(0 6 ? * SUN *)"),
        ("0 6 * * 5-7", "cron(0 6 ? * FRI,SAT,SUN *)"),
        ("0 0 * * */2", "cron(0 0 ? * SUN,TUE,THU,SAT *)"),
        ("0 6 * * mon", "cron(0 6 ? * MON *)"),
        ("*/15 * * * *", "cron(*/15 * * * ? *)"),
        ("0 6 1,15 * *", "cron(0 6 1,15 * ? *)"),
        ("0 6 * JAN-MAR *", "cron(0 6 * JAN-MAR ? *)"),
        ("0 7 25 * *", "cron(0 7 25 * ? *)"),
    ],
)
def test_cron_becomes_eventbridge_syntax(cron, expected):
    assert aws_cron(cron) == expected


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 5 1 * 1", "set a day of month or a day of week, not both"),
        ("60 * * * *", "minute: '60' is not in 0-59"),
        ("0 24 * * *", "hour: '24' is not in 0-23"),
        ("0 0 0 * *", "day of month: '0' is not in 1-31"),
        ("0 0 * 13 *", "month: '13' is not in 1-12"),
        ("0 0 * * 8", "day of week: '8' is not in 0-7"),
        ("0 0 * * 5-1", "range '5-1' runs backwards"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("0 0 L * *", "day of month: 'L' is not in 1-31"),
    ],
)
def test_crons_eventbridge_cannot_run_are_errors(cron, message):
    with pytest.raises(CronError, match=re.escape(message)):
        aws_cron(cron)
    raw = {"cloud": "aws", **DATA, "trainingSchedule": cron}
    with pytest.raises(ConfigError, match="mlops-services:trainingSchedule"):
        load(raw, "dev")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cloud": "aws"}, "mlops-services:trainData is required (or trainingDataPrefix)"),
        (
            {"cloud": "aws", "trainingDataPrefix": "s3://b/green/"},
            "mlops-services:scoringInput is required (no trainData with a YYYY-MM",
        ),
        (
            {"cloud": "aws", **DATA, "trainingDataPrefix": "s3://"},
            "mlops-services:trainingDataPrefix: 's3://': must be s3://bucket/prefix/",
        ),
        ({"cloud": "aws", **DATA, "monitoringSchedule": "daily"}, "monitoringSchedule: 'daily'"),
        ({"cloud": "aws", **DATA, "driftShare": "0"}, "mlops-services:driftShare:"),
        (
            {"cloud": "aws", **DATA, "trainingSchedule": "daily"},
            "mlops-services:trainingSchedule: 'daily': must be a five-field cron",
        ),
        (
            {"cloud": "aws", **DATA, "logRetentionDays": "10"},
            "mlops-services:logRetentionDays: 10: allowed: 1, 3, 5, 7",
        ),
        ({"cloud": "gcp", **DATA}, "mlops-services:trainData: on gcp the data must be at gs://"),
        ({"cloud": "aws", **DATA, "modelApiImage": "x/y:1"}, "set all 5 (prebuilt) or none"),
        (
            {"cloud": "aws", "trainData": "s3://b/train.parquet", "valData": "s3://b/v.parquet"},
            "mlops-services:scoringInput is required (no trainData with a YYYY-MM",
        ),
        (
            {"cloud": "aws", **DATA, "scoringMemoryMb": "1024"},
            "mlops-services:scoringMemoryMb: 1024 with scoringCpu 1: Fargate allows 2048-8192",
        ),
        (
            {
                "cloud": "gcp",
                **{k: v.replace("s3", "gs") for k, v in DATA.items()},
                "scoringCpu": "2",
                "scoringMemoryMb": "9216",
            },
            "mlops-services:scoringMemoryMb: 9216 with scoringCpu 2: Cloud Run allows 512-8192",
        ),
        (
            {
                "cloud": "gcp",
                **{k: v.replace("s3", "gs") for k, v in DATA.items()},
                "scoringCpu": "4",
                "scoringMemoryMb": "1024",
            },
            "mlops-services:scoringMemoryMb: 1024 with scoringCpu 4: Cloud Run allows 2048-16384",
        ),
        ({"cloud": "aws", **DATA, "scoringCpu": "3"}, "mlops-services:scoringCpu: Input should be"),
        ({"cloud": "aws", **DATA, "scoringOutput": "gs://x/y/"}, "scoringOutput: on aws"),
        ({"cloud": "aws", **DATA, "scoringShards": "0"}, "mlops-services:scoringShards:"),
        ({"cloud": "aws", **DATA, "apiMaxTask": "3"}, "mlops-services:apiMaxTask: unknown key"),
    ],
)
def test_bad_value_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        load(raw, "dev")
    assert message in str(err.value)


def test_scoring_defaults_to_the_training_data_s_months_two_months_back():
    cfg = load({"cloud": "aws", **DATA}, "prod")
    assert cfg.scoringInput == "s3://b/green/{month}.parquet"
    assert (cfg.scoringShards, cfg.scoringSchedule, cfg.scoringMonthsBack) == (4, "0 6 25 * *", 2)
    assert scoring_command(cfg) == [
        "--input", "s3://b/green/{month}.parquet", "--shards", "4", "--month=-2",
    ]  # fmt: skip
    assert read_prefix(cfg.scoringInput) == "s3://b/green/*"
    fixed = load(
        {"cloud": "aws", **DATA, "scoringInput": "s3://b/latest.parquet",
         "scoringOutput": "s3://o/latest/"}, "dev",
    )  # fmt: skip
    assert "--month" not in " ".join(scoring_command(fixed))  # nothing to fill in


def test_names_the_clouds_accept_whatever_the_stack_is_called():
    assert batch_job_name("dev") == "mlops-dev-scoring"
    assert batch_job_name("dev.alice") == "mlops-dev-alice-scoring"
    assert account_id("dev", "scoring") == "mlops-dev-scoring"
    long = "staging-qa-feature-x"
    ids = {account_id(long, role) for role in ("api", "training", "scheduler", "scoring")}
    assert len(ids) == 4  # cut to 30 characters, they would not all differ
    assert all(len(i) <= 30 and i[0].isalpha() and not i.endswith("-") for i in ids)
    assert account_id("Dev_Bob", "api") == "mlops-dev-bob-api"


def test_continuous_training_replaces_the_fixed_months():
    from services.deploy.config import monitoring_command

    cfg = load(
        {"cloud": "aws", "trainingDataPrefix": "s3://b/green/", "trainingMonths": "2",
         "scoringInput": "s3://b/green/green_tripdata_{month}.parquet"}, "dev",
    )  # fmt: skip
    assert cfg.training_command == ["--data-prefix", "s3://b/green/", "--months", "2"]
    assert cfg.training_data == ["s3://b/green/{month}"]
    assert monitoring_command(cfg, None) == [
        "--metrics", "cloudwatch", "--metrics-stack", "dev",
        "--days", "7", "--actuals", "s3://b/green/green_tripdata_{month}.parquet",
        "--drift-threshold", "0.1", "--drift-share", "0.5", "--max-rmse-increase", "0.1",
        "--month=-2",
    ]  # fmt: skip
    fixed = load({"cloud": "aws", **DATA}, "dev")
    assert fixed.training_command == ["--train", DATA["trainData"], "--val", DATA["valData"]]
