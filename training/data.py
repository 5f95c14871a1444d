"""Read TLC trip records (local path, s3:// or gs://), clean them, and build the model features."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trip_model.features import model_input
from trip_model.tlc import InputError, ride_columns

log = logging.getLogger(__name__)

MIN_MINUTES = 1.0
MAX_MINUTES = 60.0
TARGET = "duration"


class DataError(Exception):
    """The input data cannot be used: missing file, unreadable, or not a TLC trip file."""


@dataclass(frozen=True)
class CleaningReport:
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in self.dropped.items() if n) or "none"
        return f"kept {self.rows_kept} of {self.rows_read} rows; dropped: {reasons}"


def _read_bytes(uri: str) -> bytes:
    if uri.startswith("s3://"):
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = uri[len("s3://") :].partition("/")
        # boto3 honours AWS_ENDPOINT_URL itself; passing it keeps older SDKs working the same way.
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise DataError(f"{uri}: {code}") from exc
        except BotoCoreError as exc:
            raise DataError(f"{uri}: {exc}") from exc
    if uri.startswith("gs://"):
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import storage

        bucket, _, key = uri[len("gs://") :].partition("/")
        try:
            return storage.Client().bucket(bucket).blob(key).download_as_bytes()
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise DataError(f"{uri}: {exc}") from exc
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise DataError(f"{uri}: no such file")
    return path.read_bytes()


def read_trips(uri: str) -> pd.DataFrame:
    """Read one TLC parquet file and normalise green (lpep_) / yellow (tpep_) column names."""
    try:
        frame = pd.read_parquet(io.BytesIO(_read_bytes(uri)))
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise DataError(f"{uri}: not a readable parquet file ({exc.__class__.__name__})") from exc
    try:
        columns = ride_columns(uri, set(frame.columns))
    except InputError as exc:
        raise DataError(str(exc)) from exc
    frame = frame.rename(columns={name: out for out, name in columns.items()})
    check_types(uri, frame)
    return frame


def plain(value):
    """A NumPy scalar as the Python value it holds (58.5, not np.float64(58.5))."""
    return value.item() if hasattr(value, "item") else value


def check_types(uri: str, frame: pd.DataFrame) -> None:
    """The columns the model uses hold what TLC files hold: timestamps, whole-number zone IDs
    and numeric distances. Anything else is one error naming the column, before training."""

    def example(column: str) -> str:
        values = frame[column].dropna()
        return f" (e.g. {plain(values.iloc[0])!r})" if len(values) else ""

    for column in ("pickup_datetime", "dropoff_datetime"):
        if not pd.api.types.is_datetime64_any_dtype(frame[column]):
            raise DataError(
                f"{uri}: column {column}: must hold timestamps, found {frame[column].dtype}"
                f"{example(column)}"
            )
    for column in ("PULocationID", "DOLocationID", "trip_distance"):
        dtype = frame[column].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            raise DataError(
                f"{uri}: column {column}: must hold numbers, found {dtype}{example(column)}"
            )
    for column in ("PULocationID", "DOLocationID"):
        values = frame[column].dropna()
        if pd.api.types.is_float_dtype(values.dtype) and len(values):
            fractional = values[values % 1 != 0]
            if len(fractional):
                raise DataError(
                    f"{uri}: column {column}: zone IDs are whole numbers, found "
                    f"{plain(fractional.iloc[0])!r}"
                )


def clean(frame: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """Keep trips of 1-60 minutes with known locations and distance; report what was dropped."""
    minutes = (frame["dropoff_datetime"] - frame["pickup_datetime"]).dt.total_seconds() / 60
    checks = {
        "missing location or distance": frame[["PULocationID", "DOLocationID", "trip_distance"]]
        .isna()
        .any(axis=1),
        "missing pickup or dropoff time": minutes.isna(),
        f"shorter than {MIN_MINUTES:g} min": minutes < MIN_MINUTES,
        f"longer than {MAX_MINUTES:g} min": minutes > MAX_MINUTES,
        "negative distance": frame["trip_distance"] < 0,
    }
    dropped: dict[str, int] = {}
    keep = pd.Series(True, index=frame.index)
    for reason, bad in checks.items():
        # Count each row once, under the first reason that drops it.
        dropped[reason] = int((bad & keep).sum())
        keep &= ~bad
    kept = frame.loc[keep].copy()
    kept[TARGET] = minutes[keep]
    report = CleaningReport(rows_read=len(frame), rows_kept=len(kept), dropped=dropped)
    return kept, report


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model input of cleaned trips (trip_model.features: the one builder)."""
    return model_input(
        frame["PULocationID"], frame["DOLocationID"], frame["trip_distance"], index=frame.index
    )


def load(uri: str) -> tuple[pd.DataFrame, pd.Series, CleaningReport]:
    """Read, clean and featurise one month: (X, y, report)."""
    kept, report = clean(read_trips(uri))
    log.info("%s: %s", uri, report.summary())
    if report.rows_kept == 0:
        raise DataError(f"{uri}: no trips left after cleaning ({report.summary()})")
    return features(kept), kept[TARGET], report
