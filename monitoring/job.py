"""One monitoring run: the champion's drift and realised quality, a decision, one MLflow run.

Decision: `degraded` when the champion's RMSE on a new month with actual durations exceeds its
validation RMSE by more than `max_rmse_increase`; otherwise `drift` when the recent traffic (the
prediction log) drifted from the training reference; otherwise `ok`. A degraded champion starts
the training job (`retrain`), whose champion gate decides what is served next.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from monitoring import EXPERIMENT
from monitoring.data import COLUMNS, MonitoringError, Quality, logged_predictions, realised_quality
from monitoring.drift import DatasetDrift, dataset_drift
from monitoring.report import render

log = logging.getLogger(__name__)

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


def _reference(client, version) -> pd.DataFrame | None:
    import mlflow

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=REFERENCE, dst_path=tmp
            )
            return pd.read_parquet(path)
    except Exception as exc:  # MLflow raises several types for a missing artifact
        log.warning("no reference for v%s: %s", version.version, str(exc).splitlines()[0])
        return None


def _val_rmse(client, version) -> float | None:
    if "val_rmse" in (version.tags or {}):
        return float(version.tags["val_rmse"])
    return client.get_run(version.run_id).data.metrics.get("val_rmse")


def monitor(settings: Settings, retrain: Callable[[], str] | None = None) -> Outcome:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.get_model_version_by_alias(settings.model_name, settings.alias)
    outcome = Outcome(settings.model_name, str(version.version))
    reference = _reference(client, version)
    current = pd.DataFrame(columns=[*COLUMNS, "model_version"])

    if settings.prediction_log:
        current = logged_predictions(settings.prediction_log, settings.since, settings.until)
        outcome.predictions = len(current)
        if reference is None:
            outcome.notes.append(f"drift not computed: v{outcome.version} has no {REFERENCE}")
        elif current.empty:
            outcome.notes.append(
                f"drift not computed: no rides logged {settings.since}..{settings.until}"
            )
        else:
            # Predictions of another version are not this model's: compared only its own.
            current = current.copy()
            own = current["model_version"].astype(str) == outcome.version
            current.loc[~own, "predicted_duration"] = float("nan")
            outcome.drift = dataset_drift(
                reference, current, KINDS, settings.drift_threshold, settings.drift_share
            )
    if settings.actuals:
        from scoring.predict import choose

        model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{outcome.version}")
        outcome.quality = realised_quality(settings.actuals, choose(model, outcome.version))
        outcome.val_rmse = _val_rmse(client, version)
        if outcome.val_rmse is None:
            outcome.notes.append(f"quality not judged: v{outcome.version} has no val_rmse")
    if outcome.drift is None and outcome.quality is None:
        reasons = "; ".join(outcome.notes) or "give --prediction-log and/or --actuals"
        raise MonitoringError(f"nothing to monitor: {reasons}")

    outcome.decision = decide(outcome, settings)
    if outcome.decision == "degraded":
        if retrain is None:
            outcome.retrain = "off"
        else:
            try:
                outcome.retrain = f"started {retrain()}"
            except Exception as exc:  # reported in the run and the summary, not fatal
                outcome.retrain = f"failed to start: {str(exc).splitlines()[0][:300]}"
    _log_run(outcome, settings, reference, current)
    return outcome


def _log_run(outcome: Outcome, settings: Settings, reference, current) -> None:
    import mlflow

    mlflow.set_experiment(EXPERIMENT)
    name = f"v{outcome.version} {settings.since or ''}..{settings.until or ''}".strip()
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(
            {"model_name": outcome.model_name, "model_version": outcome.version,
             "decision": outcome.decision, "retrain": outcome.retrain[:5000]}
        )  # fmt: skip
        params = {k: v for k, v in asdict(settings).items() if v is not None}
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics: dict[str, float] = {"logged_rides": outcome.predictions}
        if outcome.drift is not None:
            metrics["drift_share"] = outcome.drift.drifted_share
            for column in outcome.drift.columns:
                metrics[f"drift_score_{column.column}"] = column.score
                metrics[f"drifted_{column.column}"] = float(column.drifted)
        if outcome.quality is not None:
            metrics |= {
                "realised_rmse": outcome.quality.rmse,
                "actual_rides": outcome.quality.rides,
            }
            if outcome.val_rmse is not None:
                metrics |= {"val_rmse": outcome.val_rmse,
                            "rmse_ratio": outcome.quality.rmse / outcome.val_rmse}  # fmt: skip
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.html"
            report.write_text(render(outcome, settings, reference, current))
            mlflow.log_artifact(str(report))
            summary = Path(tmp) / "summary.json"
            summary.write_text(
                json.dumps({"summary": outcome.summary(settings), **metrics}, indent=1)
            )
            mlflow.log_artifact(str(summary))
        outcome.run_id = run.info.run_id
