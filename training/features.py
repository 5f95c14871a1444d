"""Transforms that run inside the logged model, so a served model takes the same input as training.

The model input is a frame with `PU_DO` ("{PULocationID}_{DOLocationID}") and `trip_distance`.
This module is shipped with each model (MLflow `code_paths`), so keep it small and dependency-light.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def to_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts, the input DictVectorizer expects (the course baseline)."""
    return frame[["PU_DO", "trip_distance"]].to_dict(orient="records")


def split_pair(frame: pd.DataFrame) -> np.ndarray:
    """PU_DO split back into pickup and dropoff zone numbers, plus trip_distance.

    Tree models learn per-zone effects from the two ends, which generalises to pairs seen rarely.
    """
    ends = frame["PU_DO"].astype(str).str.split("_", n=1, expand=True)
    out = np.empty((len(frame), 3), dtype=np.float64)
    out[:, 0] = pd.to_numeric(ends[0], errors="coerce")
    out[:, 1] = pd.to_numeric(ends[1], errors="coerce")
    out[:, 2] = frame["trip_distance"].to_numpy(dtype=np.float64)
    return out
