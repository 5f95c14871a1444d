"""The monitoring job as a process: a degraded run that starts training, and its one-line errors."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from mlflow import MlflowClient

from monitoring import EXPERIMENT
from monitoring.job import Settings, monitor
from monitoring.retrain import Command
from tests.unit.monitoring.test_job import (
    cli,
    log_traffic,
)


def test_shifted_traffic_and_worse_quality_are_degraded_and_start_training(champion, tlc, tmp_path):
    prediction_log, today = log_traffic(tmp_path / "log", tlc["shifted"], champion.version)
    marker = tmp_path / "retrained"
    trigger = Command([sys.executable, "-c", f"open({str(marker)!r}, 'w'); print('trained v9')"])
    settings = Settings(
        prediction_log=prediction_log, since=today, until=today, actuals=str(tlc["shifted"])
    )
    outcome = monitor(settings, trigger.start)
    assert outcome.decision == "degraded"
    assert marker.exists() and outcome.retrain == "started trained v9"
    drifted = {c.column for c in outcome.drift.columns if c.drifted}
    assert {"trip_distance", "predicted_duration"} <= drifted
    assert outcome.quality.rmse > outcome.val_rmse * 1.1
    run = MlflowClient().get_run(outcome.run_id)
    assert run.data.tags["decision"] == "degraded"
    assert run.data.metrics["drifted_trip_distance"] == 1.0
    assert run.data.metrics["rmse_ratio"] == pytest.approx(outcome.quality.rmse / outcome.val_rmse)
    experiment = MlflowClient().get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT
    artifacts = {a.path for a in MlflowClient().list_artifacts(outcome.run_id)}
    assert {"report.html", "summary.json"} <= artifacts


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "give --prediction-log and/or --actuals"),
        (["--actuals", "x_{month}.parquet"], 2, "give --month"),
        (["--actuals", "nope.parquet"], 2, "nope.parquet: no such file"),
        (["--prediction-log", "/tmp/p", "--retrain", "ecs"], 2, "needs --ecs-cluster"),
        (["--prediction-log", "/tmp/p", "--drift-share", "2"], 2, "--drift-share: must be in"),
        (["--prediction-log", "/tmp/p", "--until", "2024-01-01"], 2, "--until needs --since"),
    ],
)
def test_cli_errors_are_one_line(champion, local_store, args, code, message):
    result = cli({"MLFLOW_TRACKING_URI": local_store}, *args)
    assert result.returncode == code, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_degraded_run_publishes_the_metric_the_alarm_watches(
    champion, tlc, local_store, tmp_path
):
    """The CLI as the stacks run it, with --metrics cloudwatch, against CloudWatch on moto_server:
    Degraded = 1 under the namespace and dimensions the AWS alarm names (tests/infra: the alarm
    is built from the same monitoring.metrics)."""
    import local_platform as c
    from monitoring import metrics

    moto = c.moto_start(c.free_port(), tmp_path / "moto.log")
    try:
        prediction_log, today = log_traffic(tmp_path / "log", tlc["shifted"], champion.version)
        env = {"MLFLOW_TRACKING_URI": local_store, **c.FAKE_AWS, "AWS_ENDPOINT_URL": moto.url}
        result = cli(env, "--prediction-log", prediction_log, "--since", str(today),
                     "--actuals", str(tlc["shifted"]), "--metrics", "cloudwatch",
                     "--metrics-stack", "dev")  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert (
            ": degraded;" in result.stdout
            and "metrics: CloudWatch MLOps/Monitoring" in result.stdout
        )
        cloudwatch = c.aws_client("cloudwatch", moto.url)
        dims = [{"Name": "Stack", "Value": "dev"}, {"Name": "Model", "Value": "nyc-taxi-duration"}]
        values = {}
        for name in ("degraded", "drift", "realised_rmse", "rmse_ratio"):
            stats = cloudwatch.get_metric_statistics(
                Namespace=metrics.NAMESPACE, MetricName=metrics.METRICS[name], Dimensions=dims,
                StartTime=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5), Period=60,
                Statistics=["Maximum"],
            )  # fmt: skip
            values[name] = max(p["Maximum"] for p in stats["Datapoints"])
        assert values["degraded"] == 1.0 and values["drift"] == 1.0
        assert values["rmse_ratio"] > 1.1
    finally:
        moto.stop()


def test_metrics_not_published_fail_the_run_with_one_line(champion, tlc, local_store, tmp_path):
    import local_platform as c

    prediction_log, today = log_traffic(tmp_path / "log", tlc["plain"], champion.version)
    closed = f"http://127.0.0.1:{c.free_port()}"  # nothing listens: CloudWatch unreachable
    env = {"MLFLOW_TRACKING_URI": local_store, **c.FAKE_AWS, "AWS_ENDPOINT_URL": closed,
           "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip
    result = cli(env, "--prediction-log", prediction_log, "--since", str(today),
                 "--metrics", "cloudwatch", "--metrics-stack", "dev")  # fmt: skip
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: metrics not published: cloudwatch: EndpointConnectionError")
    )
    assert cli(env, "--prediction-log", prediction_log, "--metrics", "cloudwatch").returncode == 2
