"""The monitoring job as a process: a degraded run that starts training, and its one-line errors."""

from __future__ import annotations

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
