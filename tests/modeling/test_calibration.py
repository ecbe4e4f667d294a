"""Tests for churnguard.modeling.calibration: the calibrators, and choosing one on held-out data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnguard.modeling.calibration import (
    IdentityCalibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrate,
    calibrate_raw,
    calibration_losses,
)
from churnguard.modeling.model import align_inputs
from churnguard.modeling.recipes import fit_estimator
from churnguard.training.dataset import Dataset, split_dates
from churnguard.training.evaluate import evaluate


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_platt_recovers_a_known_distortion() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.6, 20_000)
    true = 1 / (1 + np.exp(-(1.8 * _logit(raw) - 0.7)))
    y = (rng.random(len(raw)) < true).astype(int)
    cal = PlattCalibrator.fit(raw, y)
    assert cal.slope == pytest.approx(1.8, abs=0.1)
    assert cal.intercept == pytest.approx(-0.7, abs=0.15)
    out = cal.transform(raw)
    assert (np.diff(out[np.argsort(raw)]) >= 0).all()  # ranking kept


def test_platt_with_a_handful_of_positives_stays_near_the_identity() -> None:
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.01, 0.2, 60)
    y = np.zeros(60, dtype=int)
    y[np.argsort(raw)[-2:]] = 1  # two churners among 60
    cal = PlattCalibrator.fit(raw, y)
    assert 0.3 < cal.slope < 2.0 and abs(cal.intercept) < 2.0
    assert np.isfinite(cal.transform(np.array([1e-9, 0.5, 1 - 1e-9]))).all()


def test_isotonic_is_monotone_and_stays_inside_zero_one() -> None:
    rng = np.random.default_rng(2)
    raw = rng.random(5_000)
    y = (rng.random(5_000) < raw**2).astype(int)
    cal = IsotonicCalibrator.fit(raw, y)
    grid = np.linspace(-0.5, 1.5, 101)
    out = cal.transform(grid)
    assert (np.diff(out) >= 0).all() and ((out > 0) & (out < 1)).all()
    assert np.abs(cal.transform(raw) - raw**2).mean() < 0.05


def test_isotonic_keeps_the_models_ranking() -> None:
    # its flat steps must not tie rows the model ranks apart: calibrated AUC = raw AUC
    rng = np.random.default_rng(3)
    raw = rng.random(2_000)
    y = (rng.random(2_000) < raw).astype(int)
    cal = IsotonicCalibrator.fit(raw, y)
    out = cal.transform(raw)
    assert len(np.unique(out)) == len(np.unique(raw)) > len(np.unique(np.interp(raw, cal.x, cal.y)))
    assert roc_auc_score(y, out) == roc_auc_score(y, raw)
    stepped = np.clip(np.interp(raw, cal.x, cal.y), 1e-6, 1 - 1e-6)  # inside (0, 1) as before
    assert np.abs(out - stepped).max() < 2e-7


def _windows(ds: Dataset) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    split = split_dates(ds.dates, 90)
    categories = {c: list(ds.features[c].cat.categories) for c in ds.feature_set.categorical}
    X = align_inputs(ds.features, ds.feature_set.names, categories)
    return X, {k: ds.rows(getattr(split, k)) for k in ("train", "validation", "test")}


class _Distorted:
    """A fitted model whose probabilities are inflated and flattened, as class weights do."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.estimator.predict_proba(X)[:, 1]
        q = 1 / (1 + np.exp(-(0.6 * np.log(p / (1 - p)) + 1.5)))
        return np.c_[1 - q, q]


def test_calibration_fixes_distorted_probabilities_on_the_test_window(dataset: Dataset) -> None:
    X, rows = _windows(dataset)
    y = dataset.labels["churned"].to_numpy()
    tr, val, te = rows["train"], rows["validation"], rows["test"]
    fitted, _ = fit_estimator(
        "lightgbm",
        {"num_leaves": 4},
        X[tr],
        y[tr],
        X[val],
        y[val],
        dataset.feature_set.categorical,
        7,
    )
    distorted = _Distorted(fitted)
    calibrator = calibrate(distorted, X[val], y[val])  # validation window only
    raw = distorted.predict_proba(X[te])[:, 1]
    before, after = evaluate(y[te], raw), evaluate(y[te], calibrator.transform(raw))
    assert after["brier"] < 0.8 * before["brier"]
    assert after["ece"] < 0.3 * before["ece"]
    assert after["roc_auc"] == pytest.approx(before["roc_auc"])  # Platt keeps the ranking
    assert isinstance(calibrator, PlattCalibrator)  # few positives: Platt, not isotonic
    assert calibrator.slope > 1.2 and calibrator.intercept < -1  # it undid the distortion


def test_the_calibrator_with_the_lowest_held_out_log_loss_is_chosen() -> None:
    rng = np.random.default_rng(4)
    raw = rng.uniform(0.01, 0.3, 5_000)
    honest = (rng.random(len(raw)) < raw).astype(int)
    chosen = calibrate_raw(raw, honest)
    assert isinstance(chosen, IdentityCalibrator)  # calibrated already: left alone
    step = np.where(raw < 0.15, 0.05, 0.4)  # a step: no logistic curve fits it
    bent = (rng.random(len(raw)) < step).astype(int)
    assert isinstance(calibrate_raw(raw, bent), IsotonicCalibrator)
    losses = calibration_losses(raw, bent)
    assert list(losses) == ["none", "sigmoid", "isotonic"]
    assert losses["isotonic"] < losses["sigmoid"] < losses["none"]


def test_too_few_positives_to_split_falls_back_to_platt() -> None:
    raw = np.linspace(0.05, 0.3, 40)
    y = np.zeros(40, dtype=int)
    y[-1] = 1
    assert calibration_losses(raw, y) == {}
    assert isinstance(calibrate_raw(raw, y), PlattCalibrator)
