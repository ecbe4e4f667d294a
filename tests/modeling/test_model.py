"""Tests for model.py: inputs as strings or categoricals, calibrators, the fitted internals a hot
path needs, joblib round trips and the atomic local copy."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from churnguard.modeling.calibration import PlattCalibrator
from churnguard.modeling.model import (
    CARD_FILE,
    MODEL_FILE,
    ChurnModel,
    load_local_model,
    load_model_card,
    model_card,
    save_local_model,
)
from churnguard.training.train import Dataset
from tests.factories import ModelFactory


@pytest.fixture(scope="module", params=["logistic", "lightgbm"])
def model(request: pytest.FixtureRequest, make_model: ModelFactory) -> ChurnModel:
    params = {"C": 0.1} if request.param == "logistic" else {"num_leaves": 4}
    return make_model(request.param, params)


@pytest.fixture(scope="module")
def features(dataset: Dataset) -> pd.DataFrame:
    """Recent snapshots' features (client_id and as_of included, as compute_features gives)."""
    return dataset.features.tail(400).reset_index(drop=True)


def test_predictions_are_probabilities_one_per_row(
    model: ChurnModel, features: pd.DataFrame
) -> None:
    p = model.predict_proba(features)
    assert p.shape == (len(features),)
    assert ((p > 0) & (p < 1)).all()
    assert p.std() > 0.01  # it ranks clients, not a constant


def test_categoricals_may_come_as_strings_and_columns_in_any_order(
    model: ChurnModel, features: pd.DataFrame
) -> None:
    as_text = features.astype({c: object for c in model.categories})
    shuffled = as_text[list(reversed(as_text.columns))]
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(features))


def test_unseen_categories_and_missing_values_are_scored(
    model: ChurnModel, features: pd.DataFrame
) -> None:
    odd = features.head(20).astype({c: object for c in model.categories})
    odd["segment"] = "a segment never seen"
    odd["industry"] = None
    odd.loc[odd.index[:10], "days_since_contact"] = np.nan
    odd.loc[odd.index[10:], "nps_last"] = np.nan
    p = model.predict_proba(odd)
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_a_missing_feature_column_is_an_error(model: ChurnModel, features: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="days_since_contact"):
        model.predict_proba(features.drop(columns="days_since_contact"))


def test_calibration_is_applied_on_top_of_the_estimator(
    model: ChurnModel, features: pd.DataFrame
) -> None:
    raw = model.raw_proba(features)
    np.testing.assert_array_equal(model.predict_proba(features), model.calibrator.transform(raw))
    # the chosen calibrator may be none (a monotone LightGBM is often calibrated already): one
    # that is not moves the probabilities
    moved = replace(model, calibrator=PlattCalibrator.fit(raw, (raw > np.median(raw)).astype(int)))
    assert not np.allclose(raw, moved.predict_proba(features))


def test_hot_path_internals_reproduce_the_estimator(
    model: ChurnModel, features: pd.DataFrame
) -> None:
    X = model.inputs(features)
    raw = model.raw_proba(features)
    if model.kind == "lightgbm":
        assert model.booster is not None and model.coefficients is None
        np.testing.assert_allclose(model.booster.predict(X), raw, rtol=1e-12)
    else:
        coef = model.coefficients
        assert coef is not None and model.booster is None
        Z = model.estimator[:-1].transform(X)
        logit = np.asarray(Z) @ coef.drop("intercept").to_numpy() + coef["intercept"]
        np.testing.assert_allclose(1 / (1 + np.exp(-logit)), raw, rtol=1e-10)


def test_feature_importance_covers_every_feature_and_sums_to_one(model: ChurnModel) -> None:
    importance = model.feature_importance()
    assert list(importance.index) == model.feature_names
    assert importance.sum() == pytest.approx(1.0)
    assert (importance >= 0).all()
    assert importance.nlargest(5).sum() > 5 / len(importance)  # some features matter more


def test_joblib_round_trip_predicts_the_same(
    model: ChurnModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    joblib.dump(model, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))
    assert loaded.feature_set == model.feature_set
    assert "features" not in loaded.feature_set.__dict__  # the catalogue is rebuilt, not pickled


# --- local copy ---------------------------------------------------------------------------------


def test_local_copy_round_trip_with_card(
    model: ChurnModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    card = model_card(model, version=4, run_id="abc")
    path = save_local_model(model, card, tmp_path / "models")
    assert path == tmp_path / "models" / MODEL_FILE
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [MODEL_FILE, CARD_FILE]
    loaded = load_local_model(tmp_path / "models")
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))
    saved = load_model_card(tmp_path / "models")
    assert saved["version"] == 4 and saved["features"] == model.feature_names
    assert len(saved["model_sha256"]) == 64 and saved["kind"] == model.kind


def test_saving_again_replaces_both_files_and_leaves_no_temp_files(
    model: ChurnModel, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    save_local_model(model, model_card(model, 1, "a"), folder)
    save_local_model(model, model_card(model, 2, "b"), folder)
    assert json.loads((folder / CARD_FILE).read_text())["version"] == 2
    assert sorted(p.name for p in folder.iterdir()) == [MODEL_FILE, CARD_FILE]


def test_loading_without_a_local_copy_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train or promote"):
        load_local_model(tmp_path)
    assert load_model_card(tmp_path) == {}
