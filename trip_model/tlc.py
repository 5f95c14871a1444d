"""NYC TLC trip-record files as every job reads them: where a file's ride columns are (green or
yellow), a row-exact split of many files into shards, bounded batches of one shard's rows, the zone
columns as numbers with what is missing or not a zone, and the month a URI template names."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import storage
from trip_model.rides import MAX_ZONE, MIN_ZONE

MONTH = "{month}"
"""What a URI template holds where the month goes (e.g. s3://tlc/yellow_tripdata_{month}.parquet)."""


class MonthError(ValueError):
    """A month that is neither YYYY-MM nor a number of months back; the message names --month."""


class InputError(Exception):
    """An input is missing, unreadable or not a TLC trip file; the message names it."""


@dataclass(frozen=True)
class Source:
    uri: str
    columns: dict[str, str]  # output name -> the file's column name
    row_groups: tuple[int, ...]  # rows per row group
    footer: pq.FileMetaData | None = field(default=None, compare=False, repr=False)
    """The footer `describe` read, so each row group's reader does not fetch it again."""


@dataclass(frozen=True)
class Unit:
    """Rows of one row group of one input, the part of it one shard scores: `rows` rows from the
    group's row `skip` on."""

    source: Source
    row_group: int
    first_row: int  # index of its first row in the file
    rows: int
    skip: int = 0


def describe(uri: str) -> Source:
    """Read a file's footer: its row groups and where the ride columns are (green or yellow)."""
    try:
        metadata = pq.ParquetFile(storage.open_input(uri)).metadata
    except storage.StorageError as exc:
        raise InputError(str(exc)) from exc
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise InputError(f"{uri}: not a readable parquet file ({exc.__class__.__name__})") from exc
    columns = ride_columns(uri, set(metadata.schema.names))
    groups = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    return Source(uri, columns, groups, metadata)


def ride_columns(uri: str, names: set[str]) -> dict[str, str]:
    """Where a TLC file's ride columns are: output name -> the file's column name (green files
    say lpep_, yellow ones tpep_; VendorID when the file has it). The one place that knows."""
    for prefix in ("lpep", "tpep"):
        if {f"{prefix}_pickup_datetime", f"{prefix}_dropoff_datetime"} <= names:
            break
    else:
        raise InputError(
            f"{uri}: not a TLC trip file: needs lpep_ (green) or tpep_ (yellow) "
            "pickup_datetime and dropoff_datetime columns"
        )
    missing = [c for c in ("PULocationID", "DOLocationID", "trip_distance") if c not in names]
    if missing:
        raise InputError(f"{uri}: not a TLC trip file: missing column(s) {', '.join(missing)}")
    columns = {
        "VendorID": "VendorID",
        "pickup_datetime": f"{prefix}_pickup_datetime",
        "dropoff_datetime": f"{prefix}_dropoff_datetime",
        "PULocationID": "PULocationID",
        "DOLocationID": "DOLocationID",
        "trip_distance": "trip_distance",
    }
    if "VendorID" not in names:
        del columns["VendorID"]
    return columns


def plan(sources: list[Source], shard: int, shards: int) -> list[Unit]:
    """The rows shard `shard` of `shards` scores: the contiguous run [total*shard/shards,
    total*(shard+1)/shards) of all the inputs' rows, as parts of the row groups it overlaps.
    Shards differ by at most one row; every row is in exactly one shard."""
    total = sum(sum(source.row_groups) for source in sources)
    low, high = total * shard // shards, total * (shard + 1) // shards
    units, start = [], 0
    for source in sources:
        first = 0
        for index, rows in enumerate(source.row_groups):
            begin, end = max(low, start), min(high, start + rows)
            if begin < end:
                units.append(Unit(source, index, first + begin - start, end - begin, begin - start))
            first += rows
            start += rows
    return units


def zones(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zone numbers, missing, not a zone) from a location ID column of any numeric type."""
    missing = column.is_null().to_numpy(zero_copy_only=False)
    values = column.fill_null(0).to_numpy(zero_copy_only=False)
    if np.issubdtype(values.dtype, np.floating):
        missing |= np.isnan(values)
        integral = np.isfinite(values) & (np.floor(values) == values)
        values = np.where(integral, values, 0)
    else:
        integral = np.ones(len(values), dtype=bool)
    in_range = (values >= MIN_ZONE) & (values <= MAX_ZONE)
    values = values.astype(np.int64)
    return values, missing, ~missing & ~(integral & in_range)


def batches(unit: Unit, batch_rows: int) -> Iterator[tuple[pa.RecordBatch, int]]:
    """The unit's rows in batches of at most batch_rows, with each batch's first row number.
    The row group is read from its start (parquet reads no part of one); rows before `skip` are
    dropped, and reading stops after the unit's last row."""
    try:
        reader = pq.ParquetFile(storage.open_input(unit.source.uri), metadata=unit.source.footer)
        position, end = 0, unit.skip + unit.rows  # within the row group
        for batch in reader.iter_batches(
            batch_size=batch_rows,
            row_groups=[unit.row_group],
            columns=list(unit.source.columns.values()),
        ):
            begin, stop = max(unit.skip, position), min(end, position + batch.num_rows)
            if begin < stop:
                yield (
                    batch.slice(begin - position, stop - begin),
                    unit.first_row + begin - unit.skip,
                )
            position += batch.num_rows
            if position >= end:
                break
    except storage.StorageError as exc:
        raise InputError(str(exc)) from exc
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{unit.source.uri}: row group {unit.row_group}: {exc}") from exc


def month_of(value: str, today: dt.date | None = None) -> str:
    today = today or dt.datetime.now(dt.UTC).date()
    if re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        return value
    if re.fullmatch(r"0|-[1-9]\d*", value):
        index = today.year * 12 + today.month - 1 + int(value)
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    raise MonthError(f"--month: {value!r} is not YYYY-MM or a number of months back like -2")
