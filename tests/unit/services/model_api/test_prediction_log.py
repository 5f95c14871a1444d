"""The model API's prediction log: what it writes, that requests never wait on it, that the
buffer is bounded with drops counted, and that a clean shutdown loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import storage
from services.model_api import metrics
from services.model_api.app import create_app
from services.model_api.settings import Settings
from trip_model.prediction_log import SCHEMA, PredictionLog
from trip_model.rides import Ride
from trip_model.serving import Loaded, features

RIDE = {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}


class Holder:
    """A served model that predicts twice the distance (no registry needed)."""

    uri = "models:/stub@champion"
    error = None
    current = Loaded("3", 0.0, lambda pu, do, distance: distance * 2.0, "stub")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def logged(folder: Path):
    files = sorted(folder.rglob("*.parquet"))
    return pq.read_table(files).to_pandas() if files else None


def counter(c) -> float:
    return c._value.get()


def rides(n: int) -> list[Ride]:
    return features(
        [Ride(PULocationID=1 + i % 265, DOLocationID=7, trip_distance=i / 10) for i in range(n)]
    )


def test_rides_are_written_as_hive_partitioned_parquet(tmp_path):
    log = PredictionLog(str(tmp_path))
    log.record("r1", "3", rides(2), [1.0, 2.0])
    log.record("r2", "4", rides(1), [5.0])
    assert log.flush() == 3
    [part] = list(tmp_path.glob("date=*/*.parquet"))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert part.parent.name == f"date={day}"
    table = pq.read_table(part)
    assert table.schema.remove_metadata() == SCHEMA
    out = table.to_pandas()
    assert out[["request_id", "ride", "model_version"]].values.tolist() == [
        ["r1", 0, "3"], ["r1", 1, "3"], ["r2", 0, "4"],
    ]  # fmt: skip
    assert out["PULocationID"].tolist() == [1, 2, 1]
    assert out["trip_distance"].tolist() == [0.0, 0.1, 0.0]
    assert out["predicted_duration"].tolist() == [1.0, 2.0, 5.0]
    assert str(out["timestamp"].dt.tz) == "UTC"
    assert log.flush() == 0  # nothing twice


def test_one_ride_and_many_ride_requests_come_out_in_order_split_at_midnight(tmp_path, monkeypatch):
    """One-ride requests are kept as Python numbers, the others as arrays; a flush puts their
    rides back in the order the requests came and writes one file per UTC day."""
    from trip_model import prediction_log

    midnight = 20_000 * 86_400.0  # 2024-10-04 00:00 UTC
    clock = iter([midnight - 2.0, midnight - 1.0, midnight - 0.5, midnight + 0.25, midnight + 1])
    monkeypatch.setattr(prediction_log.time, "time", lambda: next(clock))
    log = PredictionLog(str(tmp_path))
    log.record("a", "1", rides(1), [10.0])
    log.record("b", "1", rides(3), [20.0, 21.0, 22.0])
    log.record("c", "2", rides(1), [30.0])
    log.record("d", "2", rides(2), [40.0, 41.0])
    log.record("e", "2", rides(1), [50.0])
    assert log.flush() == 8
    parts = {f.parent.name: pq.read_table(f).to_pandas() for f in tmp_path.rglob("*.parquet")}
    assert sorted(parts) == ["date=2024-10-03", "date=2024-10-04"]
    before, after = parts["date=2024-10-03"], parts["date=2024-10-04"]
    assert before[["request_id", "ride"]].values.tolist() == [
        ["a", 0], ["b", 0], ["b", 1], ["b", 2], ["c", 0],
    ]  # fmt: skip
    assert before["predicted_duration"].tolist() == [10.0, 20.0, 21.0, 22.0, 30.0]
    assert before["PULocationID"].tolist() == [1, 1, 2, 3, 1]
    assert before["trip_distance"].tolist() == [0.0, 0.0, 0.1, 0.2, 0.0]
    assert after[["request_id", "ride", "model_version"]].values.tolist() == [
        ["d", 0, "2"], ["d", 1, "2"], ["e", 0, "2"],
    ]  # fmt: skip
    assert after["timestamp"].iloc[0] == pd.Timestamp(midnight + 0.25, unit="s", tz="UTC")
    assert before["timestamp"].iloc[0] == pd.Timestamp(midnight - 2.0, unit="s", tz="UTC")


def test_a_full_buffer_drops_whole_requests_and_counts_them(tmp_path):
    dropped: list[int] = []
    log = PredictionLog(str(tmp_path), max_rows=10, on_dropped=dropped.append)
    assert log.record("a", "1", rides(4), [0.0] * 4)
    assert log.record("b", "1", rides(6), [0.0] * 6)
    assert not log.record("c", "1", rides(3), [0.0] * 3)
    assert dropped == [3]
    assert log.flush() == 10
    assert log.record("d", "1", rides(3), [0.0] * 3)  # room again after the write


def test_a_failed_write_is_counted_and_never_raised(tmp_path, monkeypatch):
    failed: list[int] = []
    log = PredictionLog(str(tmp_path), on_failed=failed.append)

    def broken(uri):
        raise storage.StorageError(f"{uri}: access denied")

    monkeypatch.setattr(storage, "publishing", broken)
    log.record("a", "1", rides(5), [0.0] * 5)
    assert log.flush() == 0
    assert failed == [5]


def test_enough_rides_wake_the_writer_and_closing_writes_the_rest(tmp_path):
    log = PredictionLog(str(tmp_path), flush_rows=100, flush_seconds=3600)
    log.start()
    log.record("big", "1", rides(150), [1.0] * 150)
    deadline = time.monotonic() + 10
    while logged(tmp_path) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(logged(tmp_path)) == 150
    log.record("tail", "1", rides(7), [1.0] * 7)
    log.close()
    assert len(logged(tmp_path)) == 157


def test_the_writer_warms_up_first_writes_nothing_then_and_survives_a_failed_warm_up(
    tmp_path, monkeypatch
):
    """Before its first flush the writer makes the store's client (and Arrow's first table): a
    cold first flush held a worker's GIL ~0.5 s. A warm-up that fails changes nothing else."""
    calls = []

    def connect(uri):
        calls.append(uri)
        raise storage.StorageError(f"{uri}: no credentials yet")

    monkeypatch.setattr(storage, "connect", connect)
    log = PredictionLog(str(tmp_path), flush_rows=1, flush_seconds=3600)
    log.start()
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [str(tmp_path)]
    assert logged(tmp_path) is None  # the warm-up's table went nowhere
    log.record("a", "1", rides(1), [1.0])
    while logged(tmp_path) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    log.close()
    assert logged(tmp_path)["request_id"].tolist() == ["a"]


def test_requests_never_wait_on_the_writer_and_nothing_below_the_bound_is_lost(
    tmp_path, monkeypatch
):
    """With the writer stuck in an upload, 300 requests are still answered; once it is freed,
    every ride is in the log; beyond the buffer's bound rides are dropped and counted."""
    release = threading.Event()
    real = storage.publishing

    def stuck(uri):
        release.wait()
        return real(uri)

    monkeypatch.setattr(storage, "publishing", stuck)
    settings = Settings(
        prediction_log=str(tmp_path),
        prediction_log_max_rows=1000,
        prediction_log_flush_rows=50,
        prediction_log_flush_seconds=0.05,
    )
    dropped = counter(metrics.PREDICTION_LOG_DROPPED)
    app = create_app(settings, holder=Holder())
    with TestClient(app) as client:
        slowest = 0.0
        for i in range(300):
            started = time.perf_counter()
            resp = client.post("/predict", json=RIDE, headers={"X-Request-ID": f"req-{i}"})
            slowest = max(slowest, time.perf_counter() - started)
            assert resp.status_code == 200 and resp.headers["x-request-id"] == f"req-{i}"
        # The writer holds its first 50 rides in the stuck upload; the rest wait in the buffer.
        batch = client.post("/predict/batch", json={"rides": [RIDE] * 800})
        assert batch.status_code == 200
        assert slowest < 5.0  # the upload never returns while they run
        assert logged(tmp_path) is None
        release.set()
    out = logged(tmp_path)
    assert sorted(out.loc[out["ride"] == 0, "request_id"])[:3] == ["req-0", "req-1", "req-10"]
    singles = out[out["request_id"].str.startswith("req-")]
    assert len(singles) == 300 and set(singles["predicted_duration"]) == {3.6}
    # 300 rides (50 of them in the stuck write) + 800 > 1000 in memory: the batch was dropped.
    assert counter(metrics.PREDICTION_LOG_DROPPED) - dropped == 800


def test_a_request_id_is_made_when_none_or_an_odd_one_is_given(tmp_path):
    app = create_app(Settings(prediction_log=str(tmp_path)), holder=Holder())
    with TestClient(app) as client:
        made = client.post("/predict", json=RIDE).headers["x-request-id"]
        odd = client.post("/predict", json=RIDE, headers={"X-Request-ID": "a b\x01"})
    assert len(made) == 32 and odd.headers["x-request-id"] not in ("a b\x01", made)
    assert len(logged(tmp_path)) == 2  # the shutdown flushed both


def test_the_log_is_off_unless_a_destination_is_set(tmp_path):
    assert Settings().prediction_log == "" and Settings(prediction_log="off").prediction_log == ""
    app = create_app(Settings(), holder=Holder())
    with TestClient(app) as client:
        assert client.post("/predict", json=RIDE).status_code == 200
        assert app.state.prediction_log is None
    with pytest.raises(ValueError, match="name a bucket"):
        Settings(prediction_log="s3://")
