"""Tests for churnguard.modeling.linear: the logistic recipe and its compiled linear terms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from churnguard.modeling.linear import HeavyTailLog, linear_terms, make_logistic
from churnguard.modeling.model import ChurnModel
from churnguard.training.train import Dataset
from tests.factories import ModelFactory


@pytest.fixture(scope="module")
def logistic(make_model: ModelFactory) -> ChurnModel:
    return make_model("logistic", {"C": 0.1})


def _codes(model: ChurnModel, X: pd.DataFrame) -> np.ndarray:
    """Input rows as float64 arrays, categoricals as their codes (missing: NaN)."""
    columns = [
        np.where(X[n].cat.codes < 0, np.nan, X[n].cat.codes) if n in model.categories else X[n]
        for n in model.feature_names
    ]
    return np.column_stack(columns).astype(np.float64)


def test_linear_terms_sum_to_the_pipelines_log_odds(logistic: ChurnModel, dataset: Dataset) -> None:
    X = logistic.inputs(dataset.features.tail(300))
    X.loc[X.index[:20], "days_since_contact"] = np.nan
    X.loc[X.index[20:40], "segment"] = np.nan
    terms = logistic.linear_terms()
    contributions = terms.contributions(_codes(logistic, X))
    assert contributions.shape == (len(X), len(logistic.feature_names))
    logit = contributions.sum(axis=1) + terms.intercept
    np.testing.assert_allclose(logit, logistic.estimator.decision_function(X), rtol=1e-9)


def test_only_a_make_logistic_pipeline_compiles(
    logistic: ChurnModel, make_model: ModelFactory
) -> None:
    with pytest.raises(TypeError, match="no linear terms"):
        make_model("lightgbm", {"num_leaves": 4}).linear_terms()
    renamed = Pipeline([("other", logistic.estimator[0]), ("clf", logistic.estimator[-1])])
    with pytest.raises(TypeError, match="make_logistic"):
        linear_terms(renamed, logistic.feature_names, logistic.categories)


def test_make_logistic_names_the_steps_linear_terms_reads() -> None:
    pipe = make_logistic(["a"], ["b"], C=1.0)
    assert list(pipe.named_steps) == ["prep", "clf"]


def test_heavy_tail_log_only_touches_heavy_tailed_columns() -> None:
    rng = np.random.default_rng(3)
    X = np.c_[rng.lognormal(3, 1.5, 1000), rng.random(1000), rng.normal(5, 1, 1000)]
    out = HeavyTailLog().fit(X).transform(X)
    np.testing.assert_array_equal(out[:, 1:], X[:, 1:])
    np.testing.assert_allclose(out[:, 0], np.log1p(X[:, 0]))


def test_a_logistic_models_probability_never_depends_on_the_rows_predicted_with_it(
    logistic: ChurnModel, dataset: Dataset
) -> None:
    features = dataset.features.tail(300)
    whole = logistic.predict_proba(features)
    one_by_one = [logistic.predict_proba(features.iloc[[i]])[0] for i in range(len(features))]
    np.testing.assert_array_equal(np.array(one_by_one), whole)  # chunks of 1 == one call
    chunks = [logistic.predict_proba(features.iloc[s : s + 7]) for s in range(0, 300, 7)]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    pipeline = logistic.estimator.predict_proba(logistic.inputs(features))[:, 1]
    np.testing.assert_allclose(logistic.raw_proba(features), pipeline, rtol=0, atol=1e-12)
