"""Risk bands and revenue at risk: what a churn probability means for the book of business."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RISK_BANDS = ("low", "medium", "high")


def risk_band(
    probability: float | np.ndarray, thresholds: tuple[float, float] = (0.1, 0.3)
) -> str | np.ndarray:
    """The risk band: "low" below thresholds[0], "high" from thresholds[1] on, else "medium".

    Raises:
        ValueError: thresholds not two ascending numbers in (0, 1), or a probability outside
            [0, 1] or missing.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (2,) or not (0 < t[0] < t[1] < 1):
        raise ValueError(f"thresholds must be two ascending numbers in (0, 1), got {thresholds}")
    p = np.asarray(probability, dtype=np.float64)
    if not ((p >= 0) & (p <= 1)).all():  # NaN fails both
        raise ValueError("probabilities must lie in [0, 1] and not be missing")
    bands = np.array(RISK_BANDS)[np.searchsorted(t, p, side="right")]
    return str(bands) if bands.ndim == 0 else bands


def revenue_at_risk(
    probability: float | np.ndarray, monthly_value: float | np.ndarray
) -> float | np.ndarray:
    """Expected yearly revenue lost: probability x monthly value x 12."""
    out = np.multiply(probability, monthly_value) * 12
    return float(out) if np.ndim(out) == 0 else out


__all__: Sequence[str] = ("RISK_BANDS", "revenue_at_risk", "risk_band")
