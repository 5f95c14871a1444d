"""Model API settings, from the environment (MODEL_API_*); MLflow reads its own MLFLOW_* variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
