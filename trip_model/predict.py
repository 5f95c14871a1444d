"""The fastest way to predict with a registered model that gives the pyfunc's own predictions.

Candidates, fastest first: the LightGBM region table (trip_model.table), the LightGBM booster on the
three feature columns, the model's own pipeline called step by step (direct_predictor), and the pyfunc itself. Each faster
candidate is tried on a check set of rides (every zone at both ends, every distance threshold of
the model and its neighbours, random rides) against the pyfunc, and used only if no prediction
differs by more than MAX_DIFF; the figure is kept and reported. The table predicts a single ride
by a path of its own (plain Python, for the API's /predict), so it is also checked ride by ride.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from trip_model.features import model_input
from trip_model.rides import MAX_TRIP_DISTANCE, MAX_ZONE, MIN_ZONE
from trip_model.table import compile_booster

log = logging.getLogger(__name__)

# Rides -> minutes: pickup zones, dropoff zones (integers in MIN_ZONE..MAX_ZONE) and distances
# (finite, in [0, MAX_TRIP_DISTANCE)); callers refuse other rows before predicting.
ArrayPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Predict = Callable[[pd.DataFrame], object]
MAX_DIFF = 1e-9


@dataclass(frozen=True)
class Scorer:
    version: str
    path: str  # which candidate predicts, e.g. "region table (227 x 42 x 42)"
    predict: ArrayPredict
    max_diff: float  # largest difference from the pyfunc on the check set


def check_set(thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rides that reach every zone at both ends and both sides of every distance threshold."""
    rng = np.random.default_rng(20240101)
    zones = np.arange(MIN_ZONE, MAX_ZONE + 1)
    edges = np.array([0.0, 0.01, 1.0, MAX_TRIP_DISTANCE - 0.01])
    if thresholds is not None and len(thresholds):
        edges = np.concatenate(
            [edges, thresholds, np.nextafter(thresholds, np.inf), np.nextafter(thresholds, -np.inf)]
        )
    edges = edges[(edges >= 0) & (edges < MAX_TRIP_DISTANCE)]
    edges = np.repeat(edges, 2)
    n_random = 4000
    pu = np.concatenate([zones, rng.permutation(zones), rng.choice(zones, len(edges) + n_random)])
    do = np.concatenate([rng.permutation(zones), zones, rng.choice(zones, len(edges) + n_random)])
    random_distance = np.round(rng.exponential(3.0, 2 * len(zones) + n_random), 2)
    distance = np.concatenate(
        [random_distance[: 2 * len(zones)], edges, random_distance[2 * len(zones) :]]
    )
    distance = np.clip(distance, 0.0, np.nextafter(MAX_TRIP_DISTANCE, 0))
    return pu.astype(np.int64), do.astype(np.int64), distance


def _booster(model):
    """The LightGBM booster at the end of the model's sklearn pipeline, or None."""
    try:
        raw = model.get_raw_model()
        from lightgbm import LGBMRegressor
        from sklearn.pipeline import Pipeline
    except Exception:  # not every flavor has a raw model; LightGBM may be missing
        return None
    if isinstance(raw, Pipeline) and isinstance(raw.steps[-1][1], LGBMRegressor):
        return raw.steps[-1][1].booster_
    return None


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


@dataclass(frozen=True)
class Candidate:
    label: str
    predict: ArrayPredict
    thresholds: np.ndarray | None = None  # distance thresholds worth checking both sides of
    one_ride: bool = False  # predicts one ride another way: checked ride by ride too


def _table(model) -> Candidate | None:
    booster = _booster(model)
    compiled = compile_booster(booster, MAX_ZONE) if booster is not None else None
    if compiled is None:
        return None
    label = "region table ({} distance intervals x {} x {} zone classes)".format(*compiled.shape)
    return Candidate(label, compiled.predict, compiled.thresholds, one_ride=True)


def _booster_candidate(model, threads: int | None = None) -> Candidate | None:
    booster = _booster(model)
    if booster is None:
        return None
    threads = threads or _threads()

    def predict(pu, do, distance):
        features = np.column_stack([pu, do, distance]).astype(np.float64)
        return booster.predict(features, num_threads=threads)

    return Candidate("LightGBM booster", predict)


def direct_predictor(model) -> tuple[Predict, str] | None:
    """The pyfunc's sklearn pipeline, called step by step; None for other kinds of model.

    A LightGBM regressor at the end is asked through its Booster with one thread: the sklearn
    wrapper re-reads its parameters on every call, and each worker process already has a core.
    """
    try:
        raw = model.get_raw_model()
    except Exception:  # not every flavor has a raw model
        return None
    from sklearn.pipeline import Pipeline

    if not isinstance(raw, Pipeline):
        return None
    *transforms, (_, final) = raw.steps
    steps = [step for _, step in transforms if step not in (None, "passthrough")]
    try:
        from lightgbm import LGBMRegressor
    except ImportError:
        LGBMRegressor = ()  # noqa: N806 - no LightGBM, so no LightGBM model either
    if isinstance(final, LGBMRegressor):
        booster = final.booster_

        def last(x):
            return booster.predict(x, num_threads=1)

        kind = "LightGBM booster"
    else:
        last, kind = final.predict, type(final).__name__

    def predict(frame: pd.DataFrame):
        x = frame
        for step in steps:
            x = step.transform(x)
        return last(x)

    return predict, f"direct ({' -> '.join([*(type(s).__name__ for s in steps), kind])})"


def _pipeline(model) -> Candidate | None:
    direct = direct_predictor(model)
    if direct is None:
        return None
    predict_frame, label = direct
    return Candidate(label, lambda pu, do, distance: predict_frame(model_input(pu, do, distance)))


def candidates(model, threads: int | None = None) -> list[Candidate]:
    """The faster ways to predict that apply to this model, fastest first; the booster with
    `threads` threads (default: every core this process may use)."""
    found = []
    builds = {"table": _table, "booster": partial(_booster_candidate, threads=threads),
              "pipeline": _pipeline}  # fmt: skip
    for name, build in builds.items():
        try:
            candidate = build(model)
        except Exception as exc:  # one that cannot be built is skipped, not fatal
            log.warning("%s: not built (%s)", name, exc)
            continue
        if candidate is not None:
            found.append(candidate)
    return found


def choose(model, version: str, threads: int | None = None) -> Scorer:
    """The first candidate that predicts as the pyfunc does on the check set, else the pyfunc.

    Raises if the pyfunc itself cannot predict these rides (a model with another signature)."""
    found = candidates(model, threads)
    thresholds = next((c.thresholds for c in found if c.thresholds is not None), None)
    pu, do, distance = check_set(thresholds)
    expected = np.asarray(model.predict(model_input(pu, do, distance)), dtype=np.float64).ravel()
    for candidate in found:
        try:
            got = np.asarray(candidate.predict(pu, do, distance), dtype=np.float64).ravel()
            diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
            if candidate.one_ride:
                one_by_one = np.array([
                    candidate.predict(pu[i : i + 1], do[i : i + 1], distance[i : i + 1])[0]
                    for i in range(len(pu))
                ])  # fmt: skip
                diff = max(diff, float(np.max(np.abs(one_by_one - expected))))
        except Exception as exc:
            log.warning("%s failed on the check set (%s); not used", candidate.label, exc)
            continue
        if diff <= MAX_DIFF:
            log.info(
                "%s: largest difference from the pyfunc %.3g over %d check rides",
                candidate.label, diff, len(pu),
            )  # fmt: skip
            return Scorer(version, candidate.label, candidate.predict, diff)
        log.warning("%s differs from the pyfunc by %.3g; not used", candidate.label, diff)

    def pyfunc(pu, do, distance):
        return model.predict(model_input(pu, do, distance))

    return Scorer(version, "pyfunc", pyfunc, 0.0)
