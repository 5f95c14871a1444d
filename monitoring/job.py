"""One monitoring run: the champion's drift and realised quality, a decision, one MLflow run.

Decision: `degraded` when the champion's RMSE on a new month with actual durations exceeds its
validation RMSE by more than `max_rmse_increase`; otherwise `drift` when the recent traffic (the
prediction log) drifted from the training reference; otherwise `ok`. A degraded champion starts
the training job (`retrain`), whose champion gate decides what is served next.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from monitoring import EXPERIMENT
from monitoring.data import COLUMNS, MonitoringError, logged_predictions, realised_quality
from monitoring.drift import dataset_drift
from monitoring.outcome import KINDS, REFERENCE, Outcome, Settings, decide
from monitoring.report import render

log = logging.getLogger(__name__)


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
        from trip_model.predict import choose

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
