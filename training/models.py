"""The candidate models: the course baseline and a gradient-boosted model, as sklearn pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from training.features import split_pair, to_records


@dataclass(frozen=True)
class Candidate:
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Pipeline:
        return BUILDERS[self.name](self.params)

    def trusted_types(self) -> list[str]:
        return TRUSTED_TYPES[self.name]

    def fit_params(self) -> dict[str, Any]:
        # Zone numbers are categories, not quantities.
        return {"model__categorical_feature": [0, 1]} if self.name == "lightgbm" else {}


def _linear(params: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("records", FunctionTransformer(to_records)),
            ("vectorizer", DictVectorizer()),
            ("model", LinearRegression(**params)),
        ]
    )


# 200 trees at 0.15 score as 600 at 0.05 (val RMSE 2.078 vs 2.075 on the demo months) and cost a
# third as much to serve: every prediction walks every tree (docs/benchmarks.md).
LIGHTGBM_DEFAULTS = {
    "n_estimators": 200,
    "learning_rate": 0.15,
    "num_leaves": 31,
    "min_child_samples": 20,
    "random_state": 42,
    "n_jobs": 2,
    "verbose": -1,
}


def _lightgbm(params: dict[str, Any]) -> Pipeline:
    return Pipeline(
        [
            ("zones", FunctionTransformer(split_pair)),
            ("model", lgb.LGBMRegressor(**{**LIGHTGBM_DEFAULTS, **params})),
        ]
    )


BUILDERS = {"linear": _linear, "lightgbm": _lightgbm}
MODEL_NAMES = tuple(BUILDERS)

# What skops may rebuild on load beyond sklearn's own types: our feature functions and LightGBM.
TRUSTED_TYPES = {
    "linear": ["training.features.to_records"],
    "lightgbm": [
        "training.features.split_pair",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.basic.Booster",
        "collections.OrderedDict",
    ],
}
