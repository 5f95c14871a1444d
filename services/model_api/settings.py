"""Model API settings, from the environment (MODEL_API_*); MLflow reads its own MLFLOW_* variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from trip_model.prediction_log import destination
from trip_model.serving import RegistrySettings


class Settings(RegistrySettings):
    """The served model and its registry (RegistrySettings), the requests, the prediction log."""

    model_config = SettingsConfigDict(env_prefix="MODEL_API_", frozen=True)

    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    """Largest request body read; a longer one is a 413 before it is read whole (a 1,000-ride
    batch is about 65 KB)."""
    prediction_log: str = ""
    """Where to log predictions: an s3:// or gs:// prefix or a folder; empty or `off`: no log."""
    prediction_log_max_rows: int = Field(default=100_000, ge=1, le=10_000_000)
    """Rides the log holds in memory at most; a request beyond that is not logged (counted)."""
    prediction_log_flush_rows: int = Field(default=20_000, ge=1, le=10_000_000)
    """Write as soon as this many rides wait."""
    prediction_log_flush_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Write at least this often."""

    _prediction_log = field_validator("prediction_log")(destination)


@lru_cache
def get_settings() -> Settings:
    return Settings()
