"""How the model API predicts (trip_model.predict.choose, as the scoring job): a LightGBM model's
region table, or the model's own pipeline called directly, but only where that gives the pyfunc's
predictions; otherwise the pyfunc."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from training.data import load
from training.features import split_pair
from training.models import Candidate
from trip_model.predict import check_set, choose
from trip_model.rides import Ride
from trip_model.serving import features


@pytest.fixture(scope="module")
def fitted(months):
    X, y, _ = load(str(months.train))
    return X, y


def save_and_load(tmp_path, candidate: Candidate, X, y, name="m"):
    pipeline = candidate.build().fit(X, y, **candidate.fit_params())
    mlflow.sklearn.save_model(
        pipeline,
        tmp_path / name,
        input_example=X.head(3),
        skops_trusted_types=candidate.trusted_types(),
    )
    return mlflow.pyfunc.load_model(str(tmp_path / name)), pipeline


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("linear", "direct (FunctionTransformer -> DictVectorizer -> LinearRegression)"),
        ("lightgbm", "region table ("),
    ],
)
def test_the_api_predicts_without_the_pyfunc_and_identically(tmp_path, fitted, model, path):
    pyfunc, _ = save_and_load(tmp_path, Candidate(model), *fitted)
    scorer = choose(pyfunc, "1", threads=1)
    assert scorer.path.startswith(path)
    X = fitted[0].head(500)
    rides = [
        Ride(PULocationID=int(pu), DOLocationID=int(do), trip_distance=d)
        for (pu, do), d in zip(X["PU_DO"].str.split("_"), X["trip_distance"], strict=True)
    ]
    np.testing.assert_allclose(
        scorer.predict(*features(rides)), pyfunc.predict(X), rtol=1e-12, atol=1e-12
    )


def test_a_direct_path_that_disagrees_is_not_used(tmp_path, fitted):
    pyfunc, _ = save_and_load(tmp_path, Candidate("linear"), *fitted)
    X, y = fitted
    _, other = save_and_load(tmp_path, Candidate("linear"), X, y * 2, name="other")

    class Mismatched:  # the pyfunc of one model with the raw pipeline of another
        predict = staticmethod(pyfunc.predict)

        @staticmethod
        def get_raw_model():
            return other

    assert choose(Mismatched(), "1").path == "pyfunc"


def test_other_kinds_of_model_are_served_through_the_pyfunc(tmp_path):
    class Mean(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return np.full(len(model_input), 12.5)

    mlflow.pyfunc.save_model(tmp_path / "mean", python_model=Mean())
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "mean"))
    scorer = choose(pyfunc, "1")
    assert scorer.path == "pyfunc"
    pu, do, distance = check_set()
    assert list(scorer.predict(pu[:2], do[:2], distance[:2])) == [12.5, 12.5]


def test_a_model_that_cannot_take_the_api_input_is_refused(tmp_path):
    class NeedsRoute(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return np.zeros(len(model_input))

    example = pd.DataFrame({"route": ["43-151"], "trip_distance": [1.8]})
    mlflow.pyfunc.save_model(
        tmp_path / "route", python_model=NeedsRoute(), signature=infer_signature(example)
    )
    pyfunc = mlflow.pyfunc.load_model(str(tmp_path / "route"))
    with pytest.raises(MlflowException, match="route"):
        choose(pyfunc, "1")


def test_split_pair_reads_two_zone_numbers_and_marks_anything_else_missing():
    frame = pd.DataFrame(
        {
            "PU_DO": ["43_151", "1_265", "43", "x_1", "1_2_3", None, " 4_5", "1_2.5", "١_2"],
            "trip_distance": np.arange(9, dtype=float),
        }
    )
    out = split_pair(frame)
    assert out[:2, :2].tolist() == [[43, 151], [1, 265]]
    assert np.isnan(out[2:, :2]).all()
    assert out[:, 2].tolist() == list(range(9))
