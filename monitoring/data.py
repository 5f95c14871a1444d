"""What the monitor compares: the model API's prediction log for a period, the champion's training
reference, and a TLC month with the actual durations of the rides."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import storage
from trip_model.predict import Scorer
from trip_model.rides import MAX_TRIP_DISTANCE
from trip_model.tlc import batches, describe, plan, zones

# As training.data cleans a month: trips of 1 to 60 minutes are the ones the model learned.
MIN_MINUTES, MAX_MINUTES = 1.0, 60.0
COLUMNS = ["PULocationID", "DOLocationID", "trip_distance", "predicted_duration"]
PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")


class MonitoringError(Exception):
    """Something the monitor needs cannot be read; the message names it."""


def logged_predictions(prefix: str, since: dt.date, until: dt.date) -> pd.DataFrame:
    """The prediction log's rides from `since` to `until` (UTC days, both included)."""
    wanted = []
    for uri in storage.list_files(prefix):
        match = PARTITION.search(uri)
        if match and since <= dt.date.fromisoformat(match[1]) <= until:
            wanted.append(uri)
    tables = []
    for uri in wanted:
        try:
            tables.append(
                pq.read_table(storage.open_input(uri), columns=[*COLUMNS, "model_version"])
            )
        except (OSError, pa.ArrowException, storage.StorageError) as exc:
            raise MonitoringError(f"{uri}: not a readable prediction log file ({exc})") from exc
    if not tables:
        return pd.DataFrame(columns=[*COLUMNS, "model_version"])
    return pa.concat_tables(tables).to_pandas()


@dataclass(frozen=True)
class Quality:
    rides: int  # rides of 1-60 minutes with valid zones and distance, scored
    rmse: float


def realised_quality(uri: str, scorer: Scorer, batch_rows: int = 1 << 19) -> Quality:
    """The model's RMSE on a TLC month's rides, cleaned as training cleans them."""
    source = describe(uri)
    squared, rides = 0.0, 0
    for unit in plan([source], 0, 1):
        for batch, _ in batches(unit, batch_rows):
            pickup = batch.column(source.columns["pickup_datetime"])
            dropoff = batch.column(source.columns["dropoff_datetime"])
            seconds = pc.cast(
                pc.subtract(
                    pc.cast(dropoff, pa.timestamp("us")), pc.cast(pickup, pa.timestamp("us"))
                ),
                pa.int64(),
            )
            minutes = seconds.fill_null(-1).to_numpy(zero_copy_only=False) / 60e6
            pu, pu_missing, pu_bad = zones(batch.column("PULocationID"))
            do, do_missing, do_bad = zones(batch.column("DOLocationID"))
            distance = (
                batch.column("trip_distance").cast(pa.float64()).fill_null(np.nan)
                .to_numpy(zero_copy_only=False)
            )  # fmt: skip
            keep = (
                (minutes >= MIN_MINUTES) & (minutes <= MAX_MINUTES)
                & ~(pu_missing | pu_bad | do_missing | do_bad)
                & (distance >= 0) & (distance < MAX_TRIP_DISTANCE)
            )  # fmt: skip
            if keep.any():
                predicted = scorer.predict(pu[keep], do[keep], distance[keep])
                squared += float(np.sum((np.asarray(predicted) - minutes[keep]) ** 2))
                rides += int(keep.sum())
    if rides == 0:
        raise MonitoringError(
            f"{uri}: no rides of {MIN_MINUTES:g}-{MAX_MINUTES:g} minutes to score"
        )
    return Quality(rides, math.sqrt(squared / rides))
