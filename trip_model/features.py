"""The model's input, built one way for training and for every predictor: the pickup and dropoff
zones joined as one categorical column PU_DO ("{PULocationID}_{DOLocationID}") and the trip
distance as a number."""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORICAL = ["PU_DO"]
NUMERICAL = ["trip_distance"]
FEATURES = CATEGORICAL + NUMERICAL


def model_input(pu, do, distance, index: pd.Index | None = None) -> pd.DataFrame:
    """Pickup zones, dropoff zones (whole numbers) and distances -> the frame the pyfunc takes."""
    pu = pd.Series(np.asarray(pu), index=index).astype("int64").astype(str)
    do = pd.Series(np.asarray(do), index=index).astype("int64").astype(str)
    return pd.DataFrame(
        {
            "PU_DO": (pu + "_" + do).astype(object),
            "trip_distance": np.asarray(distance, dtype=np.float64),
        },
        index=index,
    )
