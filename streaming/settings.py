"""The stream handler's settings, from the environment (STREAMING_*); MLflow reads its own
MLFLOW_* variables. The served model and how it follows the registry are the model API's
(trip_model.serving.RegistrySettings), under this prefix."""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from trip_model.prediction_log import destination
from trip_model.serving import RegistrySettings


class SettingsError(ValueError):
    """A STREAMING_* setting is invalid; one line naming the variable and what is allowed."""


class Settings(RegistrySettings):
    model_config = SettingsConfigDict(env_prefix="STREAMING_", frozen=True)

    output: str = Field(min_length=1)
    """Where predictions go: a Kinesis stream's name or ARN; on GCP a topic,
    projects/P/topics/T."""
    dead_letter: str = Field(min_length=1)
    """Where bad records go, with their reasons: an SQS queue URL; on GCP a topic."""
    put_attempts: int = Field(default=5, ge=1, le=20)
    """Tries to put a batch's predictions (each retry only the records not taken), with backoff."""
    put_backoff_seconds: float = Field(default=0.1, ge=0, le=30)
    """The first retry's wait; each next one doubles it."""
    prediction_log: str = ""
    """Where to log predictions: an s3:// or gs:// prefix or a folder; empty or `off`: no log."""
    password_secret: str = ""
    """AWS: the ARN of the secret holding this workload's MLflow password, read once at start (a
    Lambda function's environment cannot refer to a secret)."""

    _prediction_log = field_validator("prediction_log")(destination)


def load() -> Settings:
    """The settings, or SettingsError naming each variable at fault."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"STREAMING_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise SettingsError("; ".join(problems)) from None
