"""The served model: loaded from the registry alias in the background, swapped in whole.

A `Loaded` value (model + version) is replaced by a single reference assignment, so a request sees
either the old model or the new one, never a half-loaded one. While nothing is loaded, `error`
says why and the loader keeps retrying.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pandas as pd

from services.model_api.settings import Settings

log = logging.getLogger(__name__)

WARM_UP = pd.DataFrame({"PU_DO": ["43_151"], "trip_distance": [1.8]})


@dataclass(frozen=True)
class Loaded:
    model: object
    version: str
    loaded_at: float

    def predict(self, frame: pd.DataFrame) -> list[float]:
        return [float(x) for x in self.model.predict(frame)]


def features(rides: list[dict]) -> pd.DataFrame:
    """Request rides -> the model input (same features as training.data.features)."""
    return pd.DataFrame(
        {
            "PU_DO": [f"{r['PULocationID']}_{r['DOLocationID']}" for r in rides],
            "trip_distance": [float(r["trip_distance"]) for r in rides],
        }
    )


class ModelHolder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: Loaded | None = None
        self.error: str | None = f"{self.uri}: not loaded yet, first attempt in progress"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.settings.model_name}@{self.settings.model_alias}"

    def refresh(self) -> bool:
        """Load the version the alias points at, if it is not the one served. True if swapped."""
        import mlflow
        from mlflow import MlflowClient

        name, alias = self.settings.model_name, self.settings.model_alias
        try:
            version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
            if self.current and self.current.version == version:
                self.error = None
                return False
            # By version, not alias: the alias may move again while we download.
            model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
            model.predict(WARM_UP)  # a model that cannot predict is never swapped in
        except Exception as exc:  # registry down, alias missing, bad artifact: keep serving
            first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            self.error = f"cannot load {self.uri}: {first_line[:300]}"
            log.warning(self.error)
            return False
        previous = self.current.version if self.current else None
        self.current = Loaded(model=model, version=version, loaded_at=time.time())
        self.error = None
        log.info("serving %s v%s (was %s)", name, version, previous)
        return True

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
