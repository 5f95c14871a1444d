"""The prediction log: every prediction the services make (the model API, the stream handler),
for the monitoring job.

Rides are written to the artifact store as Hive-partitioned parquet,
`PREFIX/date=YYYY-MM-DD/<host>-<pid>-<HHMMSS>-<random>.parquet`, one file per flush and day, with
the request id, the ride's place in its request, the time (UTC), the model version, the ride's
features and the predicted duration. A request only appends a reference to its rides to an
in-memory buffer; a background thread turns the buffer into parquet and uploads it every
`flush_seconds` or once `flush_rows` are waiting. The buffer is bounded: a request that would
overflow it is not logged, and its rides are counted (the service's `on_dropped`: the model
API's model_api_prediction_log_dropped_total). A write that fails is logged and counted, never
retried, never seen by a request. Closing the log (the app's shutdown) flushes what is left. A
caller with no thread between its calls (a Lambda function) does not start the writer and calls
`flush` itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from itertools import compress

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import storage

# A request's rides as the predictors take them: pickup zones, dropoff zones, distances.
Features = tuple[np.ndarray, np.ndarray, np.ndarray]

log = logging.getLogger(__name__)
Count = Callable[[int], None]


def _uncounted(rides: int) -> None:
    pass


def destination(value: str) -> str:
    """A service's prediction log setting: an s3:// or gs:// prefix, a folder, or "" (empty or
    `off`: no log); ValueError saying what is allowed otherwise."""
    value = value.strip()
    if value.lower() in ("", "off"):
        return ""
    if value.startswith(("s3://", "gs://")) and not value.split("://", 1)[1].strip("/"):
        raise ValueError("name a bucket, e.g. s3://bucket/predictions/")
    if "://" in value and not value.startswith(("s3://", "gs://", "file://")):
        raise ValueError("must be an s3:// or gs:// prefix, a folder, or off")
    return value


ONE_RIDE = 7  # the length of a one-ride chunk (see PredictionLog.record)
MICROS_PER_DAY = 86_400_000_000

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
        on_written: Count = _uncounted,
        on_dropped: Count = _uncounted,
        on_failed: Count = _uncounted,
    ) -> None:
        """`on_written`, `on_dropped` and `on_failed` are told each count of rides written, not
        kept (the buffer was full) and not written (the write failed): the service's metrics."""
        self.prefix = prefix
        self.on_written, self.on_dropped, self.on_failed = on_written, on_dropped, on_failed
        self.max_rows = max_rows
        self.flush_rows = min(flush_rows, max_rows)
        self.flush_seconds = flush_seconds
        # Per request: (unix time, request id, model version, features, durations), or for one
        # ride (unix time, request id, model version, pickup, dropoff, distance, duration).
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
        distances) are kept as they are and joined, column by column, when written; one ride is
        kept as its Python numbers (see _table)."""
        n = len(durations)
        chunk = _chunk(time.time(), request_id, version, features, durations)
        full = due = False
        with self._lock:
            if self._rows + n > self.max_rows:
                full = True
            else:
                self._chunks.append(chunk)
                self._rows += n
                due = self._rows >= self.flush_rows
        if full:
            self.on_dropped(n)
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
        table = _table(chunks)
        # The UTC day of every ride at once: a datetime per request held the GIL long enough to
        # show in the requests' latency (docs/benchmarks.md).
        days = table.column("timestamp").cast(pa.int64()).to_numpy() // MICROS_PER_DAY
        written, unique = 0, np.unique(days)
        for day in unique:
            part = table if len(unique) == 1 else table.filter(pa.array(days == day))
            date = dt.datetime.fromtimestamp(int(day) * 86_400, dt.UTC).strftime("%Y-%m-%d")
            name = (
                f"date={date}/{self._worker}-{dt.datetime.now(dt.UTC):%H%M%S}-"
                f"{uuid.uuid4().hex[:8]}.parquet"
            )
            uri = storage.join(self.prefix, name)
            try:
                with storage.publishing(uri) as path:
                    pq.write_table(part, path, compression="snappy")
            except Exception as exc:  # the log must never take the API down
                self.on_failed(part.num_rows)
                log.warning("prediction log: %d rides not written to %s: %s", part.num_rows,
                            uri, exc)  # fmt: skip
                continue
            self.on_written(part.num_rows)
            written += part.num_rows
        return written

    def _warm(self) -> None:
        """Pay a first write's one-time costs before requests come, not in the first flush
        (Arrow's kernels, the parquet writer, the store's client: a long hold of the worker's
        GIL, a stall the first flush under load would add to the requests)."""
        try:
            now = time.time()
            chunks = [
                _chunk(now, "warm", "0", (np.ones(n, np.int64),) * 2 + (np.zeros(n),), [0.0] * n)
                for n in (1, 2)
            ]
            table = _table(chunks)
            table.filter(pa.array(np.ones(len(table), dtype=bool)))
            pq.write_table(table, pa.BufferOutputStream(), compression="snappy")
            storage.connect(self.prefix)
        except Exception as exc:  # the first flush will say what is wrong, and count it
            log.debug("prediction log: warming up failed: %s", exc)

    def _run(self) -> None:
        self._warm()
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer and write what is left (a clean shutdown loses nothing)."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=timeout)
        self.flush()


def _chunk(when: float, request_id: str, version: str, features: Features, durations) -> tuple:
    """A request as the buffer keeps it: its arrays, or for one ride its Python numbers."""
    if len(durations) != 1:
        return (when, request_id, version, features, durations)
    pu, do, distance = features
    return (when, request_id, version, pu.item(), do.item(), distance.item(), float(durations[0]))


def _table(chunks) -> pa.Table:
    """The chunks' rides as one table in the order they came, built with array operations: the
    writer shares its worker's interpreter with the requests, and what it does in Python holds
    the GIL while they wait (a loop per ride showed in the requests' p99). One-ride chunks are
    kept as Python numbers and taken apart by zip (cheaper than one-element arrays); a request's
    id and version are converted once per request and repeated by Arrow (not built from a NumPy
    object array, whose cost grew when a collection ran meanwhile). Figures: docs/benchmarks.md."""
    one = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks)) == ONE_RIDE
    ones, many = list(compress(chunks, one.tolist())), list(compress(chunks, (~one).tolist()))
    counts = np.fromiter((len(c[4]) for c in many), dtype=np.int64, count=len(many))
    parts = [_one_ride_table(ones)] if ones else []
    if many:
        parts.append(_requests_table(many, counts))
    if len(parts) == 1:
        return parts[0]
    # Both kinds: each ride's request's place in the flush, to put the rides back in order.
    at = np.arange(len(chunks))
    where = np.concatenate([at[one], np.repeat(at[~one], counts)])
    return pa.concat_tables(parts).take(pa.array(np.argsort(where, kind="stable")))


def _one_ride_table(ones) -> pa.Table:
    times, request_ids, versions, pu, do, distance, duration = zip(*ones, strict=True)
    micros = (np.array(times, dtype=np.float64) * 1_000_000).astype(np.int64)
    return pa.table(
        [
            pa.array(request_ids, pa.string()),
            pa.array(np.zeros(len(ones), dtype=np.int32), pa.int32()),
            pa.array(micros, pa.timestamp("us", tz="UTC")),
            pa.array(versions, pa.string()),
            pa.array(pu, pa.int32()),
            pa.array(do, pa.int32()),
            pa.array(distance, pa.float64()),
            pa.array(duration, pa.float64()),
        ],
        schema=SCHEMA,
    )


def _requests_table(chunks, counts: np.ndarray) -> pa.Table:
    """Requests of several rides each (`counts`: how many), from their arrays."""
    k = len(chunks)
    starts = np.cumsum(counts) - counts
    index = np.arange(counts.sum(), dtype=np.int32) - np.repeat(starts, counts).astype(np.int32)
    seconds = np.fromiter((c[0] for c in chunks), dtype=np.float64, count=k)
    micros = np.repeat((seconds * 1_000_000).astype(np.int64), counts)
    take = pa.array(np.repeat(np.arange(k), counts))

    def per_ride(values: list[str]) -> pa.Array:
        return pa.array(values, pa.string()).take(take)

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
