"""Training against a real (sqlite-backed) MLflow store: runs, registration and the alias gate."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from training import train as train_module
from training.models import Candidate
from training.registry import CHALLENGER, CHAMPION


def aliases(name: str) -> dict[str, str]:
    return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}


def test_run_logs_params_metrics_tags_and_a_model_with_signature(local_store, months):
    [result] = train_module.run(
        str(months.train), str(months.val), [Candidate("linear")], model_name="m"
    )
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["model"] == "linear"
    for key in ("train_rmse", "val_rmse", "train_rows_kept", "val_rows_dropped"):
        assert key in run.data.metrics
    assert run.data.tags["train_data"] == str(months.train)
    assert run.data.tags["val_data"] == str(months.val)
    assert run.data.tags["git_commit"]
    version = MlflowClient().get_model_version("m", result.version)
    info = mlflow.models.get_model_info(f"models:/m/{version.version}")
    assert [c.name for c in info.signature.inputs] == ["PU_DO", "trip_distance"]
    assert info.saved_input_example_info is not None


def test_better_model_takes_champion_and_worse_gets_challenger(local_store, months):
    run = lambda *names: train_module.run(  # noqa: E731
        str(months.train), str(months.val), [Candidate(n) for n in names], model_name="gate"
    )
    [linear] = run("linear")
    assert linear.alias == CHAMPION and aliases("gate") == {CHAMPION: linear.version}
    [boosted] = run("lightgbm")
    assert boosted.alias == CHAMPION and aliases("gate")[CHAMPION] == boosted.version
    [again] = run("linear")
    assert again.alias == CHALLENGER
    assert aliases("gate") == {CHAMPION: boosted.version, CHALLENGER: again.version}
    # Each run records what the gate decided and what it compared against.
    first, last = (MlflowClient().get_run(r.run_id).data for r in (linear, again))
    assert first.tags["alias"] == CHAMPION and "champion_val_rmse" not in first.metrics
    assert last.tags["alias"] == CHALLENGER and last.metrics["champion_val_rmse"] > 0


def test_margin_keeps_the_champion_when_the_gain_is_too_small(local_store, months):
    args = (str(months.train), str(months.val))
    [first] = train_module.run(*args, [Candidate("linear")], model_name="margin")
    [second] = train_module.run(*args, [Candidate("lightgbm")], model_name="margin", margin=0.5)
    assert second.alias == CHALLENGER and aliases("margin")[CHAMPION] == first.version


def test_failure_mid_run_leaves_the_champion_where_it_was(local_store, months, monkeypatch):
    args = (str(months.train), str(months.val))
    [first] = train_module.run(*args, [Candidate("linear")], model_name="safe")

    def broken_upload(*a, **k):
        raise OSError("artifact store went away")

    monkeypatch.setattr(train_module, "_log_model", broken_upload)
    with pytest.raises(OSError):
        train_module.run(*args, [Candidate("lightgbm")], model_name="safe")
    assert aliases("safe") == {CHAMPION: first.version}
