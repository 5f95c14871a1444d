"""Column drift between the training reference and recent traffic, by Evidently's default rules.

Evidently (the course's tool) does not import with pandas 3, which this platform runs on
(`evidently 0.7.23`: ImportError `infer_dtype_from_object`), so its default choice of test is
reproduced here with SciPy, the library Evidently itself calls (`evidently.legacy.calculations.
stattests.registry._get_default_stattest`):
- reference of more than 1,000 rows: numerical columns with more than 5 values, the Wasserstein
  distance normed by the reference's standard deviation; categorical columns (and numerical ones
  with 5 values or fewer), the Jensen-Shannon distance between the value (or bin) frequencies;
  drift when the distance is at least the threshold (0.1);
- 1,000 rows or fewer: the two-sample Kolmogorov-Smirnov test for numerical columns, chi-square
  (of homogeneity, see below) for categorical ones; drift when the p-value is below 0.05;
- the data set drifts when at least `drift_share` (0.5) of its columns do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

DISTANCE_THRESHOLD = 0.1
P_VALUE_THRESHOLD = 0.05
DRIFT_SHARE = 0.5
SMALL_REFERENCE = 1000


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # "numerical" or "categorical"
    method: str
    score: float  # a distance, or a p-value for the small-sample tests
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int


def _frequencies(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(reference.dropna().unique()) | set(current.dropna().unique()))
    ref = reference.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=float)
    cur = current.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=float)
    return ref / len(reference), cur / len(current)


def _binned(reference: pd.Series, current: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's get_binned_data: Sturges bins over both for a numerical column with more than
    20 values in the reference; value frequencies otherwise."""
    if kind == "numerical" and reference.nunique() > 20:
        edges = np.histogram_bin_edges(
            np.concatenate([reference.to_numpy(), current.to_numpy()]), bins="sturges"
        )
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
        return ref, cur
    return _frequencies(reference, current)


def column_drift(
    name: str,
    reference: pd.Series,
    current: pd.Series,
    kind: str,
    distance_threshold: float = DISTANCE_THRESHOLD,
    p_value_threshold: float = P_VALUE_THRESHOLD,
) -> ColumnDrift:
    reference, current = reference.dropna(), current.dropna()
    if len(reference) == 0 or len(current) == 0:
        raise ValueError(f"{name}: no values to compare ({len(reference)} / {len(current)})")
    values = pd.concat([reference, current]).nunique()
    few_values = kind == "numerical" and values <= 5
    if len(reference) > SMALL_REFERENCE:
        if kind == "numerical" and not few_values:
            norm = max(float(np.std(reference)), 0.001)
            score = float(stats.wasserstein_distance(reference, current) / norm)
            method = "Wasserstein distance (normed)"
        else:
            ref, cur = _binned(reference, current, kind)
            score = float(distance.jensenshannon(ref, cur))
            method = "Jensen-Shannon distance"
        return ColumnDrift(name, kind, method, score, distance_threshold,
                           score >= distance_threshold, len(reference), len(current))  # fmt: skip
    if kind == "numerical" and not few_values:
        score = float(stats.ks_2samp(reference, current).pvalue)
        method = "Kolmogorov-Smirnov p-value"
    else:
        ref, cur = _frequencies(reference, current)
        # A test of homogeneity on the 2 x k table of counts. Evidently tests the current
        # counts for goodness of fit to the reference's frequencies, as if those were exact; with
        # a reference of at most 1,000 rows they are not, and samples of one distribution fail.
        table = np.vstack([ref * len(reference), cur * len(current)])
        score = float(stats.chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue)
        method = "chi-square p-value"
    return ColumnDrift(name, kind, method, score, p_value_threshold, score < p_value_threshold,
                       len(reference), len(current))  # fmt: skip


@dataclass(frozen=True)
class DatasetDrift:
    columns: list[ColumnDrift]
    drift_share: float

    @property
    def drifted_share(self) -> float:
        return sum(c.drifted for c in self.columns) / len(self.columns)

    @property
    def drifted(self) -> bool:
        return self.drifted_share >= self.drift_share


def dataset_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: dict[str, str],
    distance_threshold: float = DISTANCE_THRESHOLD,
    drift_share: float = DRIFT_SHARE,
) -> DatasetDrift:
    """Drift of each column in `kinds` (name -> numerical/categorical) present in both frames."""
    columns = [
        column_drift(name, reference[name], current[name], kind, distance_threshold)
        for name, kind in kinds.items()
        if name in reference and name in current and current[name].notna().any()
    ]
    if not columns:
        raise ValueError("no column to compare")
    return DatasetDrift(columns, drift_share)
