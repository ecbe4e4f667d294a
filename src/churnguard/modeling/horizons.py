"""Risk over several horizons: a discrete-time hazard model whose curve never decreases.

Time after ``as_of`` is cut into periods of ``PERIOD_DAYS`` (30) days. The model gives, for one
snapshot and period k (1..``periods``), the hazard h_k = P(churn in period k | no churn before
it): one LightGBM classifier over person-period rows, the snapshot's features plus ``k``
("periods ahead"), with each feature's declared direction as a monotone constraint. Its hazards
are Platt-calibrated on out-of-time person-periods (one logistic map of the logit, increasing, so
the ranking is kept).

P(churn within d days) = 1 - prod_{k <= d/30} (1 - h_k), the partial period taken as
(1 - h_k) ** fraction. Every factor is in [0, 1], so the curve is non-decreasing in d by
construction, for every client: no running maximum is needed.

Inputs are float64 matrices in the churn model's column order, categoricals as its training
category codes (missing NaN): the scorer's batch matrix and its one-client row alike, so batch and
API give the same curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from lightgbm import Booster

PERIOD_DAYS = 30
HORIZONS_DAYS: tuple[int, ...] = (30, 90, 180)
_EPS = 1e-12
Predict = Callable[[np.ndarray], np.ndarray]  # rows -> the booster's raw probabilities


@dataclass
class HorizonModel:
    """A fitted discrete-time hazard model over the churn model's inputs.

    Attributes:
        booster: LightGBM over [churn-model inputs..., periods ahead].
        periods: how many 30-day periods it models (180 days: 6).
        platt: (a, b) of the calibration: logit(h) -> a * logit(h) + b.
        horizons_days: the horizons a score reports.
    """

    booster: Booster
    periods: int
    platt: tuple[float, float]
    horizons_days: tuple[int, ...] = HORIZONS_DAYS

    @property
    def max_days(self) -> int:
        """The longest time the curve covers."""
        return self.periods * PERIOD_DAYS

    def hazards(self, X: np.ndarray, predict: Predict | None = None) -> np.ndarray:
        """Calibrated hazard of each period, shape (rows, periods).

        ``predict`` stands in for ``booster.predict(rows, num_threads=1)`` with the same bits
        (``modeling.rowpredict.RowPredictor``, for a few rows).
        """
        n = len(X)
        k = np.tile(np.arange(1, self.periods + 1, dtype=np.float64), n)
        rows = np.column_stack([np.repeat(X, self.periods, axis=0), k])
        if predict is None:
            raw = np.asarray(self.booster.predict(rows, num_threads=1), dtype=np.float64)
        else:
            raw = predict(rows)
        return platt_transform(raw, self.platt).reshape(n, self.periods)

    def within(self, X: np.ndarray, days: Sequence[float] | np.ndarray) -> np.ndarray:
        """P(churn within days[i] of as_of) per row; days broadcast (one value or one per row)."""
        return cumulative(self.hazards(X), np.broadcast_to(np.asarray(days, np.float64), len(X)))

    def curve(self, X: np.ndarray) -> np.ndarray:
        """P(churn within each of horizons_days), shape (rows, horizons)."""
        return self.curve_of(self.hazards(X))

    def curve_of(self, hazards: np.ndarray) -> np.ndarray:
        """``curve`` from the rows' hazards (``hazards``), when they are needed twice."""
        n = len(hazards)
        return np.column_stack(
            [cumulative(hazards, np.full(n, float(d))) for d in self.horizons_days]
        )


def cumulative(hazards: np.ndarray, days: np.ndarray) -> np.ndarray:
    """1 - survival through days (clipped to [0, periods * 30]) from per-period hazards."""
    periods = hazards.shape[1]
    t = np.clip(days / PERIOD_DAYS, 0.0, periods)
    k = np.arange(periods)
    share = np.clip(t[:, None] - k[None, :], 0.0, 1.0)  # how much of each period is covered
    log_survival = (share * np.log1p(-np.clip(hazards, 0.0, 1.0 - _EPS))).sum(axis=1)
    return 1.0 - np.exp(log_survival)


def platt_transform(p: np.ndarray, platt: tuple[float, float]) -> np.ndarray:
    """Apply (a, b) to logit(p): an increasing map of probabilities."""
    q = np.clip(p, _EPS, 1 - _EPS)
    z = platt[0] * np.log(q / (1 - q)) + platt[1]
    return 1.0 / (1.0 + np.exp(-z))
