"""The horizon curve: cumulative hazards never decrease and match survival at whole periods."""

from __future__ import annotations

import numpy as np

from churnguard.modeling.horizons import cumulative, platt_transform


def test_curve_never_decreases_in_days() -> None:
    rng = np.random.default_rng(0)
    hazards = rng.uniform(0, 1, (200, 6)) ** 3
    days = np.linspace(0, 200, 101)
    curve = np.column_stack([cumulative(hazards, np.full(200, d)) for d in days])
    assert (np.diff(curve, axis=1) >= 0).all()
    assert (curve >= 0).all() and (curve <= 1).all()


def test_whole_periods_are_one_minus_survival() -> None:
    hazards = np.array([[0.1, 0.2, 0.5]])
    assert np.allclose(cumulative(hazards, np.array([60.0])), 1 - 0.9 * 0.8)
    assert np.allclose(cumulative(hazards, np.array([15.0])), 1 - 0.9**0.5)
    assert np.allclose(cumulative(hazards, np.array([400.0])), 1 - 0.9 * 0.8 * 0.5)


def test_platt_keeps_the_order() -> None:
    p = np.linspace(0.001, 0.999, 50)
    assert (np.diff(platt_transform(p, (0.8, -0.3))) > 0).all()
