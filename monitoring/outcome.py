"""What a monitoring run is told (Settings), what it finds (Outcome) and how it decides: shared by
the run (monitoring.job) and its report (monitoring.report)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from monitoring import EXPERIMENT
from monitoring.data import Quality
from monitoring.drift import DatasetDrift

KINDS = {
    "PULocationID": "categorical",
    "DOLocationID": "categorical",
    "trip_distance": "numerical",
    "predicted_duration": "numerical",
}
REFERENCE = "reference/reference.parquet"  # logged by every training run


@dataclass(frozen=True)
class Settings:
    model_name: str = "nyc-taxi-duration"
    alias: str = "champion"
    prediction_log: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    actuals: str | None = None
    drift_threshold: float = 0.1
    drift_share: float = 0.5
    max_rmse_increase: float = 0.1


@dataclass
class Outcome:
    model_name: str
    version: str
    decision: str = "ok"
    drift: DatasetDrift | None = None
    quality: Quality | None = None
    val_rmse: float | None = None
    predictions: int = 0
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None
    retrain: str = "not needed"

    def summary(self, settings: Settings) -> str:
        parts = [f"{self.model_name} v{self.version}: {self.decision}"]
        if self.drift is not None:
            drifted = [c.column for c in self.drift.columns if c.drifted]
            parts.append(
                f"drift in {len(drifted)} of {len(self.drift.columns)} columns"
                + (f" ({', '.join(drifted)})" if drifted else "")
                + f" over {self.predictions:,} logged rides {settings.since}..{settings.until}"
            )
        if self.quality is not None and self.val_rmse is not None:
            change = self.quality.rmse / self.val_rmse - 1
            parts.append(
                f"RMSE {self.quality.rmse:.3f} on {self.quality.rides:,} rides of "
                f"{settings.actuals} vs {self.val_rmse:.3f} at validation ({change:+.0%})"
            )
        parts += self.notes
        parts.append(f"retraining: {self.retrain}")
        if self.run_id:
            parts.append(f"MLflow run {self.run_id} (experiment {EXPERIMENT}, report.html)")
        return "; ".join(parts)


def decide(outcome: Outcome, settings: Settings) -> str:
    if outcome.quality is not None and outcome.val_rmse is not None:
        if outcome.quality.rmse > outcome.val_rmse * (1 + settings.max_rmse_increase):
            return "degraded"
    if outcome.drift is not None and outcome.drift.drifted:
        return "drift"
    return "ok"
