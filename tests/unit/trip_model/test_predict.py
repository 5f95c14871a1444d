"""How the scoring job predicts: the LightGBM model compiled into a table over its decision
regions, bit-identical to the booster and the pyfunc, or a slower path that is."""

from __future__ import annotations

import lightgbm as lgb
import mlflow
import numpy as np
import pytest

from tests.unit.trip_model.test_predict_path import save_and_load as saved_pyfunc
from training.data import load
from training.models import Candidate
from trip_model.features import model_input
from trip_model.predict import check_set, choose
from trip_model.table import compile_booster


@pytest.fixture(scope="module")
def fitted(months):
    X, y, _ = load(str(months.train))
    return X, y


@pytest.fixture(scope="module")
def rides(months):
    """The validation month's rides as the three columns the scoring job reads."""
    X, _, _ = load(str(months.val))
    zones = X["PU_DO"].str.split("_", expand=True).astype("int64")
    return zones[0].to_numpy(), zones[1].to_numpy(), X["trip_distance"].to_numpy()


def save_and_load(tmp_path, candidate: Candidate, X, y, name="m"):
    return saved_pyfunc(tmp_path, candidate, X, y, name)[0]


def booster_for(X, y, **params) -> lgb.Booster:
    candidate = Candidate("lightgbm", {"n_estimators": 40, **params})
    pipeline = candidate.build().fit(X, y, **candidate.fit_params())
    return pipeline.named_steps["model"].booster_


def booster_predict(booster, pu, do, distance):
    return booster.predict(np.column_stack([pu, do, distance]).astype(float), num_threads=1)


def test_the_champion_is_scored_through_the_table_with_the_pyfunc_s_exact_predictions(
    tmp_path, fitted, rides
):
    """Batch predictions are the registered model's own, to the last bit."""
    pyfunc = save_and_load(tmp_path, Candidate("lightgbm"), *fitted)
    scorer = choose(pyfunc, "7")
    assert scorer.path.startswith("region table")
    assert (scorer.version, scorer.max_diff) == ("7", 0.0)
    pu, do, distance = rides
    expected = pyfunc.predict(model_input(pu, do, distance))
    got = scorer.predict(pu, do, distance)
    assert got.dtype == np.float64 and np.array_equal(got, expected)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"zero_as_missing": True},  # zero distances take the split's default direction
        {"max_bin": 15, "num_leaves": 7},
        {"min_child_samples": 2, "num_leaves": 63},
    ],
    ids=["defaults", "zero-as-missing", "coarse", "deep"],
)
def test_the_table_equals_the_booster_on_every_region_boundary(fitted, rides, params):
    """Every zone at both ends and both sides of every threshold: no ride falls in the wrong box."""
    X, y = fitted
    if params.get("zero_as_missing"):
        X = X.copy()
        X.loc[X.index[::7], "trip_distance"] = 0.0  # so zeros are seen in training
    booster = booster_for(X, y, **params)
    table = compile_booster(booster, 265)
    assert table is not None
    assert (table.zero_atom is not None) == bool(params.get("zero_as_missing"))
    for pu, do, distance in (check_set(table.thresholds), rides):
        expected = booster_predict(booster, pu, do, distance)
        assert np.array_equal(table.predict(pu, do, distance), expected)
    # One ride at a time takes the table's plain-Python path (the API's /predict): the same bits,
    # on every boundary, at zero (either sign, and below LightGBM's zero threshold) and far past
    # the last threshold.
    pu, do, distance = check_set(table.thresholds)
    odd = np.array([0.0, -0.0, 1e-40, 0.001, 0.0015, 249.99, 1e6])
    pu, do = np.concatenate([pu, pu[: len(odd)]]), np.concatenate([do, do[: len(odd)]])
    distance = np.concatenate([distance, odd])
    expected = booster_predict(booster, pu, do, distance)
    one_by_one = [
        table.predict_one(int(p), int(d), float(x))
        for p, d, x in zip(pu, do, distance, strict=True)
    ]
    assert np.array_equal(one_by_one, expected)
    assert np.array_equal([table.predict(pu[i : i + 1], do[i : i + 1], distance[i : i + 1])[0]
                           for i in range(0, len(pu), 7)], expected[::7])  # fmt: skip


def test_zones_split_as_numbers_work_too(fitted, rides):
    X, y = fitted
    pipeline = Candidate("lightgbm", {"n_estimators": 30}).build().fit(X, y)  # not categorical
    booster = pipeline.named_steps["model"].booster_
    table = compile_booster(booster, 265)
    pu, do, distance = check_set(table.thresholds)
    assert np.array_equal(
        table.predict(pu, do, distance), booster_predict(booster, pu, do, distance)
    )


def test_models_of_another_shape_are_not_compiled(fitted):
    """A link function (poisson: exp of the sum) is not a sum of leaves; the booster is used."""
    X, y = fitted
    assert compile_booster(booster_for(X, y, objective="poisson"), 265) is None
    assert compile_booster(booster_for(X, y), 265, max_cells=1000) is None


def test_a_table_that_disagrees_with_the_pyfunc_is_not_used(tmp_path, fitted, monkeypatch):
    """The table is checked against the pyfunc before use; a wrong one falls back to the booster."""
    import trip_model.predict as predict

    real = predict.compile_booster

    def off_by_one_zone(booster, max_zone, **kw):
        table = real(booster, max_zone, **kw)
        shifted = np.roll(table.zone_class[0], 1)
        return type(table)((shifted, table.zone_class[1]), table.thresholds, None, table.values)

    monkeypatch.setattr(predict, "compile_booster", off_by_one_zone)
    pyfunc = save_and_load(tmp_path, Candidate("lightgbm", {"n_estimators": 30}), *fitted)
    scorer = choose(pyfunc, "1")
    assert scorer.path == "LightGBM booster" and scorer.max_diff == 0.0


def test_a_table_whose_one_ride_path_disagrees_is_not_used(tmp_path, fitted, monkeypatch):
    """The single-ride path is checked ride by ride at load, not trusted because the batch path
    agrees."""
    from trip_model.table import RegionTable

    real = RegionTable.predict_one
    monkeypatch.setattr(
        RegionTable, "predict_one", lambda self, pu, do, x: real(self, pu, do, x + 0.5)
    )
    pyfunc = save_and_load(tmp_path, Candidate("lightgbm", {"n_estimators": 30}), *fitted)
    scorer = choose(pyfunc, "1")
    assert scorer.path == "LightGBM booster" and scorer.max_diff == 0.0


def test_the_baseline_is_scored_through_its_pipeline_and_other_models_through_the_pyfunc(
    tmp_path, fitted, rides
):
    pyfunc = save_and_load(tmp_path, Candidate("linear"), *fitted)
    scorer = choose(pyfunc, "1")
    assert scorer.path == "direct (FunctionTransformer -> DictVectorizer -> LinearRegression)"
    pu, do, distance = (a[:300] for a in rides)
    np.testing.assert_array_equal(
        scorer.predict(pu, do, distance), pyfunc.predict(model_input(pu, do, distance))
    )

    class Mean(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return np.full(len(model_input), 12.5)

    mlflow.pyfunc.save_model(tmp_path / "mean", python_model=Mean())
    scorer = choose(mlflow.pyfunc.load_model(str(tmp_path / "mean")), "3")
    assert scorer.path == "pyfunc"
    assert scorer.predict(pu[:2], do[:2], distance[:2]).tolist() == [12.5, 12.5]


def test_the_distance_grid_finds_the_same_interval_as_a_binary_search(fitted):
    """The lookup grid is a shortcut: for any distance, in a cell, on its edge or past the last
    threshold, it gives the interval a binary search over the thresholds gives."""
    from trip_model.table import GRID

    X, y = fitted
    table = compile_booster(booster_for(X, y), 265)
    rng = np.random.default_rng(3)
    edges = np.arange(0, 250 * GRID) / GRID
    t = table.thresholds
    distance = np.concatenate(
        [
            rng.uniform(0, 250, 200_000),
            np.round(rng.exponential(3, 200_000), 2),  # TLC's two decimals
            edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)[1:],
            t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf),
        ]
    )  # fmt: skip
    assert np.array_equal(table.distance_atoms(distance), table._exact_atoms(distance))
