"""Train, evaluate, log and register each candidate model, then run the promotion gate."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.models import infer_signature
from sklearn.metrics import root_mean_squared_error

import training
from training import registry
from training.data import CleaningReport, load
from training.models import Candidate

log = logging.getLogger(__name__)

EXPERIMENT = "nyc-taxi-duration"
PACKAGE_DIR = Path(training.__file__).resolve().parent


# What the monitoring job compares new traffic with: a sample of the training rides (features,
# target, the model's predictions), logged with every run as reference/reference.parquet.
REFERENCE_DIR, REFERENCE_FILE = "reference", "reference.parquet"
REFERENCE_ROWS = 20_000


def reference_sample(
    X: pd.DataFrame, y: pd.Series, predicted, rows: int = REFERENCE_ROWS
) -> pd.DataFrame:
    """Up to `rows` training rides, drawn without replacement (seeded), as the monitor reads
    rides: zone numbers, distance, the actual duration and the predicted one."""
    take = np.sort(np.random.default_rng(0).permutation(len(X))[:rows])
    zones = X["PU_DO"].iloc[take].str.partition("_")
    return pd.DataFrame(
        {
            "PULocationID": zones[0].astype("int64").to_numpy(),
            "DOLocationID": zones[2].astype("int64").to_numpy(),
            "trip_distance": X["trip_distance"].iloc[take].to_numpy(dtype="float64"),
            "duration": y.iloc[take].to_numpy(dtype="float64"),
            "predicted_duration": np.asarray(predicted, dtype="float64")[take],
        }
    )


@dataclass(frozen=True)
class Result:
    model: str
    run_id: str
    version: str
    val_rmse: float
    alias: str


def git_commit() -> str:
    """The commit the job runs from: GIT_COMMIT (set in images) or the checkout's HEAD."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _requirements() -> list[str]:
    # Pinned from this environment; inferring them would reload the model in a subprocess.
    # MLflow by its version, not its distribution: the training image has mlflow-skinny (the
    # client), which serves the model as well as the full package does.
    names = ["scikit-learn", "lightgbm", "pandas", "numpy", "scipy"]
    return [f"mlflow=={mlflow.__version__}", *(f"{n}=={metadata.version(n)}" for n in names)]


def _log_model(pipeline, candidate: Candidate, example, model_name: str, staging: Path):
    # Ship only what the pipeline calls (training/features.py) with the model, importable under
    # the same name, so `mlflow models serve` and the model API load it without this repo.
    package = staging / "training"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(PACKAGE_DIR / "features.py", package / "features.py")
    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        signature=infer_signature(example, pipeline.predict(example)),
        input_example=example,
        code_paths=[str(package)],
        # skops (not pickle) format: loading runs no code but these named types.
        skops_trusted_types=candidate.trusted_types(),
        pip_requirements=_requirements(),
        registered_model_name=model_name,
    )


def champion_rmse_on(client: MlflowClient, model_name: str, X: pd.DataFrame, y: pd.Series):
    """The current champion's RMSE on this validation month, so both are judged on the same data.

    Falls back to the RMSE recorded when the champion was registered if it cannot be loaded.
    """
    champion = registry.current_champion(client, model_name)
    if champion is None:
        return None, None
    try:
        model = mlflow.pyfunc.load_model(f"models:/{model_name}@{registry.CHAMPION}")
        return champion, float(root_mean_squared_error(y, model.predict(X)))
    except Exception as exc:  # any load failure: judge by the recorded figure instead
        recorded = champion.tags.get(registry.VAL_RMSE_TAG)
        log.warning("could not score %s v%s (%s)", model_name, champion.version, exc)
        return champion, float(recorded) if recorded else None


def train_one(
    candidate: Candidate,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    reports: dict[str, CleaningReport],
    data_uris: dict[str, str],
    model_name: str,
    margin: float,
) -> Result:
    client = MlflowClient()
    with mlflow.start_run(run_name=candidate.name) as run:
        pipeline = candidate.build()
        mlflow.log_params({"model": candidate.name, **pipeline.named_steps["model"].get_params()})
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "train_data": data_uris["train"],
                "val_data": data_uris["val"],
                "model_family": candidate.name,
            }
        )
        pipeline.fit(X_train, y_train, **candidate.fit_params())
        train_pred = pipeline.predict(X_train)
        train_rmse = float(root_mean_squared_error(y_train, train_pred))
        val_pred = pipeline.predict(X_val)
        val_rmse = float(root_mean_squared_error(y_val, val_pred))
        metrics = {"train_rmse": train_rmse, "val_rmse": val_rmse}
        for split, report in reports.items():
            metrics[f"{split}_rows_read"] = report.rows_read
            metrics[f"{split}_rows_kept"] = report.rows_kept
            metrics[f"{split}_rows_dropped"] = report.rows_read - report.rows_kept
        mlflow.log_metrics(metrics)
        log.info("%s: train RMSE %.4f, val RMSE %.4f", candidate.name, train_rmse, val_rmse)

        example = X_val.head(5)
        with tempfile.TemporaryDirectory() as staging:
            reference = Path(staging) / REFERENCE_FILE
            reference_sample(X_train, y_train, train_pred).to_parquet(reference, index=False)
            mlflow.log_artifact(str(reference), REFERENCE_DIR)
            info = _log_model(pipeline, candidate, example, model_name, Path(staging))
        version = str(info.registered_model_version)
        client.set_model_version_tag(model_name, version, registry.VAL_RMSE_TAG, f"{val_rmse:.6f}")

        # The gate runs last: anything that failed above left the aliases untouched.
        champion, champion_rmse = champion_rmse_on(client, model_name, X_val, y_val)
        decision = registry.decide(val_rmse, champion_rmse, margin)
        alias = registry.apply(client, model_name, version, decision)
        # The run's last values in one request (each request is a round trip and, on the
        # tracking server, an authorization check).
        now = int(time.time() * 1000)
        compared = champion is not None and champion_rmse is not None
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("champion_val_rmse", champion_rmse, now, 0)] if compared else [],
            tags=[RunTag("alias", alias)],
        )
    return Result(candidate.name, run.info.run_id, version, val_rmse, alias)


def load_months(uris: list[str]) -> tuple[pd.DataFrame, pd.Series, CleaningReport]:
    """Several months as one training set (continuous training's window)."""
    parts = [load(uri) for uri in uris]
    if len(parts) == 1:
        return parts[0]
    reports = [report for _, _, report in parts]
    dropped: dict[str, int] = {}
    for report in reports:
        for why, n in report.dropped.items():
            dropped[why] = dropped.get(why, 0) + n
    report = CleaningReport(
        rows_read=sum(r.rows_read for r in reports),
        rows_kept=sum(r.rows_kept for r in reports),
        dropped=dropped,
    )
    X = pd.concat([x for x, _, _ in parts], ignore_index=True)
    y = pd.concat([y for _, y, _ in parts], ignore_index=True)
    return X, y, report


def run(
    train_uri: str | list[str],
    val_uri: str,
    candidates: list[Candidate],
    model_name: str = training.REGISTERED_MODEL,
    experiment: str = EXPERIMENT,
    margin: float = 0.0,
) -> list[Result]:
    train_uris = [train_uri] if isinstance(train_uri, str) else list(train_uri)
    X_train, y_train, train_report = load_months(train_uris)
    X_val, y_val, val_report = load(val_uri)
    mlflow.set_experiment(experiment)
    reports = {"train": train_report, "val": val_report}
    uris = {"train": ", ".join(train_uris), "val": val_uri}
    return [
        train_one(c, X_train, y_train, X_val, y_val, reports, uris, model_name, margin)
        for c in candidates
    ]
