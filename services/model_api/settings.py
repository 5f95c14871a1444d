"""Model API settings, from the environment (MODEL_API_*); MLflow reads its own MLFLOW_* variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODEL_API_", frozen=True)

    model_name: str = "nyc-taxi-duration"
    """Registered model to serve."""
    model_alias: str = "champion"
    """Registry alias to follow; the API serves whatever version it points at."""
    refresh_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often to check where the alias points once a model is loaded."""
    retry_seconds: float = Field(default=5.0, gt=0, le=600)
    """How soon to retry while no model could be loaded yet."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    """Largest request body read; a longer one is a 413 before it is read whole (a 1,000-ride
    batch is about 65 KB)."""
    registry_timeout_seconds: int = Field(default=5, ge=1, le=120)
    """Each registry request's connect/read timeout in seconds (MLflow's default is 120)."""
    registry_retries: int = Field(default=1, ge=0, le=7)
    """Retries of a failed registry request within one refresh (MLflow's default is 7, with
    backoff: minutes before an outage shows)."""
    prediction_log: str = ""
    """Where to log predictions: an s3:// or gs:// prefix or a folder; empty or `off`: no log."""
    prediction_log_max_rows: int = Field(default=100_000, ge=1, le=10_000_000)
    """Rides the log holds in memory at most; a request beyond that is not logged (counted)."""
    prediction_log_flush_rows: int = Field(default=20_000, ge=1, le=10_000_000)
    """Write as soon as this many rides wait."""
    prediction_log_flush_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Write at least this often."""

    @field_validator("prediction_log")
    @classmethod
    def _destination(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("", "off"):
            return ""
        if value.startswith(("s3://", "gs://")) and not value.split("://", 1)[1].strip("/"):
            raise ValueError("name a bucket, e.g. s3://bucket/predictions/")
        if "://" in value and not value.startswith(("s3://", "gs://", "file://")):
            raise ValueError("must be an s3:// or gs:// prefix, a folder, or off")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
