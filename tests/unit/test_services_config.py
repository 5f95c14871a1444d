"""The service stacks' config: per-stack defaults, cron conversion, and errors naming the key."""

from __future__ import annotations

import pytest

from infra.config import ConfigError
from services.deploy.config import aws_cron, load

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
    ],
)
def test_cron_becomes_eventbridge_syntax(cron, expected):
    assert aws_cron(cron) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cloud": "aws"}, "mlops-services:trainData is required"),
        (
            {"cloud": "aws", **DATA, "trainingSchedule": "daily"},
            "mlops-services:trainingSchedule: 'daily': must be a five-field cron",
        ),
        (
            {"cloud": "aws", **DATA, "logRetentionDays": "10"},
            "mlops-services:logRetentionDays: 10: allowed: 1, 3, 5, 7",
        ),
        ({"cloud": "gcp", **DATA}, "mlops-services:trainData: on gcp the data must be at gs://"),
        ({"cloud": "aws", **DATA, "modelApiImage": "x/y:1"}, "set both (prebuilt) or neither"),
        ({"cloud": "aws", **DATA, "apiMaxTask": "3"}, "mlops-services:apiMaxTask: unknown key"),
    ],
)
def test_bad_value_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        load(raw, "dev")
    assert message in str(err.value)
