"""Tests for churnguard.scoring.risk: risk bands and revenue at risk."""

from __future__ import annotations

import numpy as np
import pytest

from churnguard.scoring.risk import revenue_at_risk, risk_band


def test_risk_band_thresholds() -> None:
    assert [risk_band(p) for p in (0.0, 0.0999, 0.1, 0.2999, 0.3, 1.0)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    bands = risk_band(np.array([0.05, 0.5, 0.25]), thresholds=(0.2, 0.4))
    assert isinstance(bands, np.ndarray) and bands.tolist() == ["low", "high", "medium"]


@pytest.mark.parametrize("thresholds", [(0.3, 0.1), (0.0, 0.3), (0.1, 1.0), (0.2, 0.2), (0.1,)])
def test_risk_band_rejects_bad_thresholds(thresholds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="two ascending numbers in \\(0, 1\\)"):
        risk_band(0.5, thresholds=thresholds)  # type: ignore[arg-type]


@pytest.mark.parametrize("probability", [-0.1, 1.5, np.nan, np.array([0.2, np.nan])])
def test_risk_band_rejects_bad_probabilities(probability: float | np.ndarray) -> None:
    with pytest.raises(ValueError, match="probabilities must lie in"):
        risk_band(probability)


def test_revenue_at_risk_is_probability_times_a_year_of_monthly_value() -> None:
    assert revenue_at_risk(0.25, 1_000.0) == pytest.approx(3_000.0)
    assert isinstance(revenue_at_risk(0.25, 1_000), float)
    got = revenue_at_risk(np.array([0.1, 0.5, 0.0]), np.array([2_000.0, 100.0, 5_000.0]))
    np.testing.assert_allclose(got, [2_400.0, 600.0, 0.0])
