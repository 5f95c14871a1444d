"""The monitoring job: drift found on shifted traffic and not on unshifted traffic, degraded
quality starts training, every run logged to MLflow with its report, clear errors otherwise."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from monitoring import data, drift
from monitoring.job import Settings, monitor
from training import data as training_data
from training import train as train_module
from training.generate import write_month
from training.models import Candidate
from trip_model.predict import choose
from trip_model.prediction_log import PredictionLog
from trip_model.rides import Ride
from trip_model.serving import features


def test_the_cleaning_rule_is_training_s():
    assert (data.MIN_MINUTES, data.MAX_MINUTES) == (
        training_data.MIN_MINUTES,
        training_data.MAX_MINUTES,
    )


@pytest.mark.parametrize("rows", [5000, 800], ids=["distances", "small-sample tests"])
def test_a_shifted_column_drifts_and_an_unshifted_one_does_not(rows):
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {"d": rng.exponential(3, rows), "zone": rng.choice([1, 2, 3, 4], rows, p=[.4, .3, .2, .1])}
    )  # fmt: skip
    same = pd.DataFrame(
        {"d": rng.exponential(3, 2000), "zone": rng.choice([1, 2, 3, 4], 2000, p=[.4, .3, .2, .1])}
    )  # fmt: skip
    shifted = pd.DataFrame(
        {"d": rng.exponential(4.5, 2000), "zone": rng.choice([1, 2, 3, 4], 2000, p=[.1, .2, .3, .4])}
    )  # fmt: skip
    kinds = {"d": "numerical", "zone": "categorical"}
    calm, moved = (drift.dataset_drift(reference, x, kinds) for x in (same, shifted))
    assert not any(c.drifted for c in calm.columns) and not calm.drifted
    assert all(c.drifted for c in moved.columns) and moved.drifted
    methods = {c.column: c.method for c in moved.columns}
    if rows > drift.SMALL_REFERENCE:
        assert methods == {"d": "Wasserstein distance (normed)", "zone": "Jensen-Shannon distance"}
    else:
        assert methods == {"d": "Kolmogorov-Smirnov p-value", "zone": "chi-square p-value"}


def test_half_the_columns_drifting_is_data_set_drift():
    columns = [
        drift.ColumnDrift(str(i), "numerical", "m", 0.5, 0.1, i < k, 10, 10)
        for k in (1, 2)
        for i in range(4)
    ]
    assert not drift.DatasetDrift(columns[:4], 0.5).drifted
    assert drift.DatasetDrift(columns[4:], 0.5).drifted


@pytest.fixture(scope="module")
def tlc(months, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tlc")
    return {
        "shifted": write_month(folder / "green_tripdata_2024-03.parquet", 2024, 3, 8000, 0,
                               "green", shift=0.5),
        "plain": write_month(folder / "green_tripdata_2024-04.parquet", 2024, 4, 8000, 0, "green"),
    }  # fmt: skip


@pytest.fixture
def champion(local_store, months):
    [result] = train_module.run(
        str(months.train), str(months.val), [Candidate("lightgbm", {"n_estimators": 60})]
    )
    return result


def log_traffic(folder, month, version: str, rides: int = 2000) -> tuple[str, dt.date]:
    """Rides of a month through the champion, written as the API's prediction log writes them;
    and the day they were logged on, read from the log's partition (not the clock at import: a
    run that crosses midnight UTC would look for the wrong day)."""
    frame = pd.read_parquet(month).sample(rides, random_state=0)
    frame = frame[frame["trip_distance"].between(0, 199)]
    model = mlflow.pyfunc.load_model(f"models:/nyc-taxi-duration/{version}")
    predicted = choose(model, version).predict(
        frame["PULocationID"].to_numpy(), frame["DOLocationID"].to_numpy(),
        frame["trip_distance"].to_numpy(),
    )  # fmt: skip
    log = PredictionLog(str(folder))
    for i, (pu, do, d) in enumerate(
        frame[["PULocationID", "DOLocationID", "trip_distance"]].values
    ):
        ride = Ride(PULocationID=int(pu), DOLocationID=int(do), trip_distance=float(d))
        log.record(f"r{i}", version, features([ride]), [float(predicted[i])])
    log.flush()
    [partition] = Path(folder).glob("date=*")
    return str(folder), dt.date.fromisoformat(partition.name.removeprefix("date="))


def test_unshifted_traffic_is_ok_and_starts_nothing(champion, tlc, tmp_path):
    prediction_log, today = log_traffic(tmp_path / "log", tlc["plain"], champion.version)
    started = []
    settings = Settings(
        prediction_log=prediction_log, since=today, until=today, actuals=str(tlc["plain"])
    )
    outcome = monitor(settings, lambda: started.append(1) or "x")
    assert outcome.decision == "ok" and not started and outcome.retrain == "not needed"
    assert not any(c.drifted for c in outcome.drift.columns)
    assert "ok; drift in 0 of 4 columns over" in outcome.summary(settings)


def test_drift_alone_is_drift(champion, tlc, tmp_path):
    prediction_log, today = log_traffic(tmp_path / "log", tlc["shifted"], champion.version)
    outcome = monitor(Settings(prediction_log=prediction_log, since=today, until=today))
    assert outcome.decision == "drift" and outcome.quality is None


def test_days_outside_the_period_are_not_read(champion, tlc, tmp_path):
    prediction_log, today = log_traffic(tmp_path / "log", tlc["plain"], champion.version)
    yesterday = today - dt.timedelta(days=1)
    with pytest.raises(data.MonitoringError, match="nothing to monitor: drift not computed: no"):
        monitor(Settings(prediction_log=prediction_log, since=yesterday, until=yesterday))


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "monitoring", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)  # fmt: skip
