"""The served model, for every service that predicts (the model API, the stream handler): loaded
from the registry alias and swapped in whole, refreshed by a background thread (`start`) or, where
nothing runs between calls (a Lambda function, frozen between invocations), by the caller
(`refresh_if_due`).

A `Loaded` value (predict function + version) is replaced by a single reference assignment, so a
request sees either the old model or the new one, never a half-loaded one. While nothing is
loaded, `error` says why and the loader keeps retrying.

Requests do not go through the pyfunc wrapper, which re-checks every input frame against the
signature and costs more than a one-ride prediction: they take the fastest way that predicts as
the pyfunc does (trip_model.predict.choose, shared with the batch scoring job), checked at load on
rides covering every zone and both sides of every distance threshold: for a LightGBM model its
region table (one lookup per ride), else the model's own pipeline called step by step, else the
pyfunc. Rides reach it as three arrays, with no DataFrame in between.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings

from trip_model.predict import ArrayPredict, choose
from trip_model.rides import Ride

log = logging.getLogger(__name__)


class RegistrySettings(BaseSettings):
    """Which model a service serves and how it follows the registry; each service's settings add
    their own and read the environment under their own prefix (MODEL_API_, STREAMING_)."""

    model_name: str = "nyc-taxi-duration"
    """Registered model to serve."""
    model_alias: str = "champion"
    """Registry alias to follow; the service serves whatever version it points at."""
    refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often to check where the alias points once a model is loaded."""
    retry_seconds: float = Field(default=5.0, gt=0, le=600)
    """How soon to retry while no model could be loaded yet."""
    registry_timeout_seconds: int = Field(default=5, ge=1, le=120)
    """Each registry request's connect/read timeout in seconds (MLflow's default is 120)."""
    registry_retries: int = Field(default=1, ge=0, le=7)
    """Retries of a failed registry request within one refresh (MLflow's default is 7, with
    backoff: minutes before an outage shows)."""


def tune_registry_client(settings: RegistrySettings) -> None:
    """The registry client's own defaults (7 retries with backoff, 120 s timeouts) would hide an
    outage for minutes and hold a fresh instance's first answer as long. A service process talks
    to the registry only from its model holder (and the model download), so the settings are its.
    For the process that serves, once at its start: a test or benchmark leaves its own alone."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.registry_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.registry_timeout_seconds)


def features(rides: Sequence[Ride]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated rides -> pickup zones, dropoff zones, distances: what the predictors take."""
    return (
        np.array([r.PULocationID for r in rides], dtype=np.int64),
        np.array([r.DOLocationID for r in rides], dtype=np.int64),
        np.array([r.trip_distance for r in rides], dtype=np.float64),
    )


@dataclass(frozen=True)
class Loaded:
    version: str
    loaded_at: float
    predict_arrays: ArrayPredict
    path: str  # how predictions are made: "region table (...)", "direct (...)" or "pyfunc"

    def predict(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        return np.asarray(self.predict_arrays(pu, do, distance), dtype=np.float64).ravel()


class ModelHolder:
    def __init__(
        self, settings: RegistrySettings, after_swap: Callable[[], None] | None = None
    ) -> None:
        self.settings = settings
        # Run once a new model is served and the old one let go (the worker's settle_heap).
        self.after_swap = after_swap
        self.current: Loaded | None = None
        self.error: str | None = f"{self.uri}: not loaded yet, first attempt in progress"
        # Why no model, for machines (deploy scripts): loading, no_model_version (the alias points
        # nowhere: train first), registry_unreachable, load_failed.
        self.reason_code = "loading"
        # The last time the registry answered where the alias points (a successful refresh),
        # and what the last refresh found: ok, or the code of its failure.
        self.checked_at: float | None = None
        self.last_refresh = "loading"
        self._tried_at: float | None = None  # monotonic: the last refresh_if_due's refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.settings.model_name}@{self.settings.model_alias}"

    def refresh(self) -> bool:
        """Load the version the alias points at, if it is not the one served. True if swapped."""
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        name, alias = self.settings.model_name, self.settings.model_alias
        try:
            version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            missing = exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
            return self._failed(exc, "no_model_version" if missing else "registry_unreachable")
        except Exception as exc:  # connection refused, timeouts: the registry is not there
            return self._failed(exc, "registry_unreachable")
        self.checked_at = time.time()
        try:
            if self.current and self.current.version == version:
                self.error = None
                self.last_refresh = "ok"
                return False
            # By version, not alias: the alias may move again while we download.
            model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
            # One thread: each worker process has its core. Raises for a model that cannot
            # predict the API's rides (another signature), which is then never swapped in.
            scorer = choose(model, version, threads=1)
            predict, path = scorer.predict, scorer.path
        except Exception as exc:  # registry down, bad artifact, wrong signature: keep serving
            return self._failed(exc, "load_failed")
        previous = self.current.version if self.current else None
        self.current = Loaded(version, time.time(), predict, path)
        if self.after_swap:
            self.after_swap()
        self.error = None
        self.reason_code = "ready"
        self.last_refresh = "ok"
        log.info("serving %s v%s via %s (was %s)", name, version, path, previous)
        return True

    def refresh_if_due(self) -> None:
        """Refresh now if the background thread would have by now (refresh_seconds since the
        registry last answered with a model loaded, retry_seconds since the last try without):
        for a caller in which no thread runs between calls."""
        now = time.monotonic()
        wait = self.settings.refresh_seconds if self.current else self.settings.retry_seconds
        if self._tried_at is None or now - self._tried_at >= wait:
            self._tried_at = now
            self.refresh()

    def _failed(self, exc: Exception, code: str) -> bool:
        first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        # urllib3 buries the cause at the end of a long line: say it first.
        cause = re.search(r"Caused by (\w+)", first_line)
        if code == "registry_unreachable" and cause:
            s = self.settings
            first_line = (
                f"the registry did not answer: {cause.group(1)} (timeout "
                f"{s.registry_timeout_seconds} s, {s.registry_retries} retries)"
            )
        self.error = f"cannot load {self.uri}: {first_line[:300]}"
        self.last_refresh = code
        if self.current is None:
            self.reason_code = code
        log.warning(self.error)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            wait = self.settings.refresh_seconds if self.current else self.settings.retry_seconds
            self._stop.wait(wait)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
