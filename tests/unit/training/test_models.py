"""The candidate models on generated data, and the promotion gate's rule."""

from __future__ import annotations

import pytest
from sklearn.metrics import root_mean_squared_error

from training.data import load
from training.models import MODEL_NAMES, Candidate
from training.registry import decide


def test_stronger_model_beats_the_baseline_on_the_validation_month(months):
    """The generator has structure (zone speeds, non-linear distance) the baseline cannot fit."""
    X_train, y_train, _ = load(str(months.train))
    X_val, y_val, _ = load(str(months.val))
    rmse = {}
    for name in MODEL_NAMES:
        candidate = Candidate(name)
        model = candidate.build().fit(X_train, y_train, **candidate.fit_params())
        rmse[name] = root_mean_squared_error(y_val, model.predict(X_val))
    assert rmse["lightgbm"] < 0.95 * rmse["linear"], rmse


def test_models_predict_for_unseen_zone_pairs(months):
    X_train, y_train, _ = load(str(months.train))
    for name in MODEL_NAMES:
        candidate = Candidate(name)
        model = candidate.build().fit(X_train, y_train, **candidate.fit_params())
        unseen = X_train.head(1).assign(PU_DO="264_265")
        assert model.predict(unseen)[0] > 0


def test_gate_promotes_when_there_is_no_champion():
    assert decide(5.0, None, margin=0.0).promote


def test_gate_promotes_only_a_strictly_better_model():
    assert decide(4.9, 5.0, margin=0.0).promote
    assert not decide(5.0, 5.0, margin=0.0).promote
    assert not decide(5.1, 5.0, margin=0.0).promote


def test_gate_margin_is_relative():
    assert not decide(4.96, 5.0, margin=0.01).promote  # 0.8% better: not enough
    assert decide(4.94, 5.0, margin=0.01).promote  # 1.2% better


def test_gate_rejects_a_margin_outside_0_to_1():
    with pytest.raises(ValueError, match="margin"):
        decide(1.0, 2.0, margin=1.5)
