"""Score TLC trip files with a model: plan the shard, read row groups in bounded batches, flag the
rides the model cannot score, predict the rest, and write one parquet file per shard.

Shards split the input by rows (trip_model.tlc.plan), in input order, each shard taking a
contiguous run of the same number of rows (within one): a month stored as one row group is split
as evenly as one stored as many. Every shard reads only the files' footers to agree on the split,
so N shards started independently (array jobs, Cloud Run tasks) cover the input exactly once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import storage
from trip_model.predict import Scorer
from trip_model.rides import MAX_TRIP_DISTANCE, MAX_ZONE, MIN_ZONE
from trip_model.tlc import Source, batches, describe, plan, zones

log = logging.getLogger(__name__)

# Rows per batch read, scored and written: bounds memory whatever the file's row groups.
BATCH_ROWS = 1 << 19
ZONES = f"{MIN_ZONE}-{MAX_ZONE}"
REASONS = (
    "PULocationID missing",
    f"PULocationID not a zone ({ZONES})",
    "DOLocationID missing",
    f"DOLocationID not a zone ({ZONES})",
    "trip_distance missing",
    f"trip_distance not in [0, {MAX_TRIP_DISTANCE:g}) miles",
)
OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("source", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("row", pa.int64(), nullable=False),
        pa.field("VendorID", pa.int64()),
        pa.field("pickup_datetime", pa.timestamp("us")),
        pa.field("dropoff_datetime", pa.timestamp("us")),
        pa.field("PULocationID", pa.int64()),
        pa.field("DOLocationID", pa.int64()),
        pa.field("trip_distance", pa.float64()),
        pa.field("predicted_duration", pa.float64()),
        pa.field("model_version", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("reason", pa.dictionary(pa.int8(), pa.string())),
    ],
    metadata={
        "row": "the ride's row number in its source file",
        "predicted_duration": "minutes; null when the model cannot score the ride (see reason)",
    },
)


@dataclass
class Summary:
    shard: int
    shards: int
    output: str
    rows: int = 0
    scored: int = 0
    flagged: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self, scorer: Scorer) -> str:
        reasons = "; ".join(f"{n:,} {why}" for why, n in self.flagged.items() if n) or "none"
        return (
            f"shard {self.shard}/{self.shards}: scored {self.scored:,} of {self.rows:,} rides "
            f"with v{scorer.version} via {scorer.path} in {self.seconds:.1f} s "
            f"(flagged: {reasons}) -> {self.output}"
        )


def score_batch(batch: pa.RecordBatch, unit_first_row: int, source: Source, scorer: Scorer):
    """The output rows for one input batch, and how many rides each reason flagged."""
    n = batch.num_rows
    pu, pu_missing, pu_bad = zones(batch.column("PULocationID"))
    do, do_missing, do_bad = zones(batch.column("DOLocationID"))
    distance_col = batch.column("trip_distance")
    distance = distance_col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    distance_missing = np.isnan(distance)
    distance_bad = ~distance_missing & ~((distance >= 0) & (distance < MAX_TRIP_DISTANCE))

    # The first reason in REASONS order wins: assign the last ones first.
    reason = np.full(n, -1, dtype=np.int8)
    for code, mask in reversed(
        list(enumerate([pu_missing, pu_bad, do_missing, do_bad, distance_missing, distance_bad]))
    ):
        reason[mask] = code
    ok = reason < 0
    if ok.all():
        predicted = pa.array(np.asarray(scorer.predict(pu, do, distance), dtype=np.float64))
    else:
        values = np.full(n, np.nan)
        if ok.any():
            values[ok] = scorer.predict(pu[ok], do[ok], distance[ok])
        predicted = pa.array(values, mask=~ok)

    def constant(text: str) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), [text])

    def passthrough(name: str, typ: pa.DataType) -> pa.Array:
        if name not in source.columns:
            return pa.nulls(n, typ)
        return pc.cast(batch.column(source.columns[name]), typ, safe=False)

    table = pa.table(
        [
            constant(source.uri),
            pa.array(np.arange(unit_first_row, unit_first_row + n, dtype=np.int64)),
            passthrough("VendorID", pa.int64()),
            passthrough("pickup_datetime", pa.timestamp("us")),
            passthrough("dropoff_datetime", pa.timestamp("us")),
            pa.array(pu, mask=pu_missing | pu_bad),
            pa.array(do, mask=do_missing | do_bad),
            pa.array(distance, mask=distance_missing),
            predicted,
            constant(scorer.version),
            pa.DictionaryArray.from_arrays(
                pa.array(reason, mask=ok), pa.array(REASONS, pa.string())
            ),
        ],
        schema=OUTPUT_SCHEMA,
    )
    counts = np.bincount(reason[~ok], minlength=len(REASONS)) if not ok.all() else None
    flagged = {why: int(counts[i]) for i, why in enumerate(REASONS)} if counts is not None else {}
    return table, flagged


def output_uri(prefix: str, shard: int, shards: int) -> str:
    return storage.join(prefix, f"part-{shard:05d}-of-{shards:05d}.parquet")


def run(
    inputs: list[str | Source],
    output: str,
    scorer: Scorer,
    shard: int = 0,
    shards: int = 1,
    batch_rows: int = BATCH_ROWS,
) -> Summary:
    """Score this shard's part of the inputs (URIs, or their footers already read by
    `describe`) into `output`/part-SHARD-of-SHARDS.parquet."""
    started = time.perf_counter()
    sources = [i if isinstance(i, Source) else describe(i) for i in inputs]
    units = plan(sources, shard, shards)
    summary = Summary(shard, shards, output_uri(output, shard, shards))
    summary.flagged = dict.fromkeys(REASONS, 0)
    log.info(
        "shard %d/%d: %d row group(s), %d rows of %d file(s)",
        shard, shards, len(units), sum(u.rows for u in units), len(sources),
    )  # fmt: skip
    with storage.publishing(summary.output) as path:
        with pq.ParquetWriter(path, OUTPUT_SCHEMA, compression="snappy") as writer:
            for unit in units:
                for batch, first in batches(unit, batch_rows):
                    table, flagged = score_batch(batch, first, unit.source, scorer)
                    writer.write_table(table)
                    summary.rows += batch.num_rows
                    for why, count in flagged.items():
                        summary.flagged[why] += count
        summary.scored = summary.rows - sum(summary.flagged.values())
    summary.seconds = time.perf_counter() - started
    return summary
