"""A stream handler as a process runs it: the settings checked, the tracking server trusted, the
registry client tuned, the model holder and the prediction log made (trip_model), and the
`Handler` on the transport's output and dead-letter destination."""

from __future__ import annotations

import logging
import os
import sys

import tracking_ca
from streaming.handler import DeadLetter, Handler, Output
from streaming.settings import Settings, SettingsError, load
from trip_model.prediction_log import PredictionLog
from trip_model.serving import ModelHolder, tune_registry_client

log = logging.getLogger(__name__)


def settings_at_start() -> Settings | None:
    """A process's start (the consumer's, the push service's): its log lines' format, and its
    settings, or None once a bad one is said in one line on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return load()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def password_from_secret(settings: Settings) -> None:
    """AWS Lambda: the workload's MLflow password from Secrets Manager (its secret holds the
    password alone), once per process, never in the function's environment."""
    if not settings.password_secret or os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return
    import boto3

    answer = boto3.client("secretsmanager").get_secret_value(SecretId=settings.password_secret)
    os.environ["MLFLOW_TRACKING_PASSWORD"] = answer["SecretString"]


def handler(settings: Settings, output: Output, dead_letters: DeadLetter) -> Handler:
    tracking_ca.trust()
    password_from_secret(settings)
    tune_registry_client(settings)
    prediction_log = PredictionLog(settings.prediction_log) if settings.prediction_log else None
    return Handler(
        ModelHolder(settings),
        output,
        dead_letters,
        prediction_log,
        put_attempts=settings.put_attempts,
        backoff_seconds=settings.put_backoff_seconds,
    )
