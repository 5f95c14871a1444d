"""The promotion gate: the `champion` alias moves only to a version that beats the current champion."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
VAL_RMSE_TAG = "val_rmse"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(new_rmse: float, champion_rmse: float | None, margin: float) -> Decision:
    """Promote when there is no champion, or when the new RMSE beats it by more than `margin`.

    `margin` is relative: 0.01 means the new model must be at least 1% better.
    """
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    if champion_rmse is None:
        return Decision(True, f"no {CHAMPION} yet; val RMSE {new_rmse:.4f}")
    threshold = champion_rmse * (1 - margin)
    if new_rmse < threshold:
        return Decision(
            True,
            f"val RMSE {new_rmse:.4f} beats {CHAMPION}'s {champion_rmse:.4f} (margin {margin:g})",
        )
    return Decision(
        False,
        f"val RMSE {new_rmse:.4f} does not beat {CHAMPION}'s {champion_rmse:.4f} (margin {margin:g})",
    )


def current_champion(client: MlflowClient, model_name: str):
    """The version the champion alias points at, or None when there is none."""
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def apply(client: MlflowClient, model_name: str, version: str, decision: Decision) -> str:
    """Point `champion` (or `challenger`) at `version`; the only write the gate makes."""
    alias = CHAMPION if decision.promote else CHALLENGER
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promotion", decision.reason)
    log.info("%s v%s -> @%s: %s", model_name, version, alias, decision.reason)
    return alias
