"""Tests for churnguard.modeling.calibration: Platt scaling and isotonic regression."""

from __future__ import annotations

import numpy as np
import pytest

from churnguard.modeling.calibration import IsotonicCalibrator, PlattCalibrator


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
