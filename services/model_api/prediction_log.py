"""The prediction log: every prediction the API makes, for the monitoring job.

Rides are written to the artifact store as Hive-partitioned parquet,
`PREFIX/date=YYYY-MM-DD/<host>-<pid>-<HHMMSS>-<random>.parquet`, one file per flush and day, with
the request id, the ride's place in its request, the time (UTC), the model version, the ride's
features and the predicted duration. A request only appends a reference to its rides to an
in-memory buffer; a background thread turns the buffer into parquet and uploads it every
`flush_seconds` or once `flush_rows` are waiting. The buffer is bounded: a request that would
overflow it is not logged, and its rides are counted (model_api_prediction_log_dropped_total). A
write that fails is logged and counted, never retried, never seen by a request. Closing the log
(the app's shutdown) flushes what is left.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import storage
from services.model_api.metrics import (
    PREDICTION_LOG_DROPPED,
    PREDICTION_LOG_FAILED,
    PREDICTION_LOG_WRITTEN,
)

# A request's rides as the predictors take them: pickup zones, dropoff zones, distances.
Features = tuple[np.ndarray, np.ndarray, np.ndarray]

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("ride", pa.int32(), nullable=False),  # its index in the request
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("PULocationID", pa.int32(), nullable=False),
        pa.field("DOLocationID", pa.int32(), nullable=False),
        pa.field("trip_distance", pa.float64(), nullable=False),
        pa.field("predicted_duration", pa.float64(), nullable=False),
    ]
)


class PredictionLog:
    def __init__(
        self,
        prefix: str,
        max_rows: int = 100_000,
        flush_rows: int = 20_000,
        flush_seconds: float = 60.0,
    ) -> None:
        self.prefix = prefix
        self.max_rows = max_rows
        self.flush_rows = min(flush_rows, max_rows)
        self.flush_seconds = flush_seconds
        # (unix time, request id, model version, features, durations) per request.
        self._chunks: list[tuple[float, str, str, Features, Sequence[float]]] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker = f"{socket.gethostname()}-{os.getpid()}"

    def record(
        self, request_id: str, version: str, features: Features, durations: Sequence[float]
    ) -> bool:
        """Keep a request's predictions for the next write; False (and counted) if the buffer
        is full. Constant time: the request's own feature arrays (pickup zones, dropoff zones,
        distances) are kept as they are and joined, column by column, when written."""
        n = len(durations)
        full = due = False
        with self._lock:
            if self._rows + n > self.max_rows:
                full = True
            else:
                self._chunks.append((time.time(), request_id, version, features, durations))
                self._rows += n
                due = self._rows >= self.flush_rows
        if full:
            PREDICTION_LOG_DROPPED.inc(n)
            return False
        if due:
            self._wake.set()
        return True

    @property
    def buffered(self) -> int:
        return self._rows

    def flush(self) -> int:
        """Write what is buffered now; the number of rides written."""
        with self._lock:
            chunks, self._chunks, self._rows = self._chunks, [], 0
        if not chunks:
            return 0
        with self._write_lock:
            return self._write(chunks)

    def _write(self, chunks) -> int:
        by_day: dict[str, list] = {}
        for chunk in chunks:
            day = dt.datetime.fromtimestamp(chunk[0], dt.UTC).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).append(chunk)
        written = 0
        for day, day_chunks in sorted(by_day.items()):
            table = _table(day_chunks)
            name = (
                f"date={day}/{self._worker}-{dt.datetime.now(dt.UTC):%H%M%S}-"
                f"{uuid.uuid4().hex[:8]}.parquet"
            )
            uri = storage.join(self.prefix, name)
            try:
                with storage.publishing(uri) as path:
                    pq.write_table(table, path, compression="snappy")
            except Exception as exc:  # the log must never take the API down
                PREDICTION_LOG_FAILED.inc(table.num_rows)
                log.warning("prediction log: %d rides not written to %s: %s", table.num_rows,
                            uri, exc)  # fmt: skip
                continue
            PREDICTION_LOG_WRITTEN.inc(table.num_rows)
            written += table.num_rows
        return written

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def start(self) -> None:
        # A flush holds the GIL for some milliseconds at a time (joining the buffer, building the
        # table, boto3's request); with CPython's default 5 ms switch interval a request that
        # arrives meanwhile waits that long at each of its steps. The worker hands the GIL over
        # after 1 ms instead (measured with wrk: single-ride p99 with the log on, see
        # docs/benchmarks.md).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer and write what is left (a clean shutdown loses nothing)."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=timeout)
        self.flush()


def _table(chunks) -> pa.Table:
    """The chunks' rides as one table, built with array operations (the writer shares its
    worker's interpreter with the requests: a Python loop per ride held the GIL for ~100 ms per
    20,000 rides, which showed in the requests' p99). A request's id and version are converted
    once per request and repeated by Arrow (from a NumPy object array, 100,000 strings took
    20-350 ms, the latter when a collection ran meanwhile)."""
    k = len(chunks)
    counts = np.fromiter((len(c[4]) for c in chunks), dtype=np.int64, count=k)
    starts = np.cumsum(counts) - counts
    index = np.arange(counts.sum(), dtype=np.int32) - np.repeat(starts, counts).astype(np.int32)
    seconds = np.fromiter((c[0] for c in chunks), dtype=np.float64, count=k)
    micros = np.repeat((seconds * 1_000_000).astype(np.int64), counts)
    take = None if (counts == 1).all() else pa.array(np.repeat(np.arange(k), counts))

    def per_ride(values: list[str]) -> pa.Array:
        array = pa.array(values, pa.string())
        return array if take is None else array.take(take)

    columns = [np.concatenate([c[3][j] for c in chunks]) for j in range(3)]
    durations = np.concatenate([np.asarray(c[4], dtype=np.float64) for c in chunks])
    return pa.table(
        [
            per_ride([c[1] for c in chunks]),
            pa.array(index, pa.int32()),
            pa.array(micros, pa.timestamp("us", tz="UTC")),
            per_ride([c[2] for c in chunks]),
            pa.array(columns[0], pa.int32()),
            pa.array(columns[1], pa.int32()),
            pa.array(columns[2], pa.float64()),
            pa.array(durations, pa.float64()),
        ],
        schema=SCHEMA,
    )
