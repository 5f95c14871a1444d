"""Transforms that run inside the logged model, so a served model takes the same input as training.

The model input is a frame with `PU_DO` ("{PULocationID}_{DOLocationID}") and `trip_distance`.
This module is shipped with each model (MLflow `code_paths`), so keep it small and dependency-light.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts, the input DictVectorizer expects (the course baseline)."""
    return frame[["PU_DO", "trip_distance"]].to_dict(orient="records")


# "{PULocationID}_{DOLocationID}": two zone numbers, ASCII digits only.
_PAIR = re.compile(r"(\d{1,9})_(\d{1,9})", re.ASCII)


def split_pair(frame: pd.DataFrame) -> np.ndarray:
    """PU_DO split back into pickup and dropoff zone numbers, plus trip_distance.

    Tree models learn per-zone effects from the two ends, which generalises to pairs seen rarely.
    A value that is not two zone numbers gives NaN for both (a missing value to LightGBM).
    Plain Python over the column: for the one-ride requests a model API serves, pandas' string
    methods cost ten times more than the prediction.
    """
    pairs = [_PAIR.fullmatch(p) if isinstance(p, str) else None for p in frame["PU_DO"].tolist()]
    out = np.empty((len(pairs), 3), dtype=np.float64)
    out[:, :2] = [(int(m[1]), int(m[2])) if m else (np.nan, np.nan) for m in pairs]
    out[:, 2] = frame["trip_distance"].to_numpy(dtype=np.float64)
    return out
