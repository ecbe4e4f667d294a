"""A score's risk over several horizons and at the renewal (the model's ``HorizonModel``).

``horizons`` are P(churn within 30, 90, 180 days) of ``modeling.horizons``: a non-decreasing
curve. ``renewal`` is, for a client whose next fixed-term contract end (``days_to_contract_end``)
falls within the curve's longest horizon, that date and P(churn by that date): the curve at the
renewal, which is the chance the client has left by then (not renewing it, or leaving earlier).
Both are empty for a model trained without a horizon model. The probability, band and revenue at
risk of a score stay those of the model's own horizon.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from churnguard.modeling.horizons import HorizonModel, Predict, cumulative

RENEWAL_FEATURE = "days_to_contract_end"


@dataclass(frozen=True, slots=True)
class Renewal:
    """The next contract end within the longest horizon and P(churn by then)."""

    date: dt.date
    probability: float


@dataclass(frozen=True, slots=True)
class RiskCurve:
    """P(churn within days) per horizon, and the renewal (None when none is near)."""

    horizons: tuple[tuple[int, float], ...] = ()
    renewal: Renewal | None = None


NO_CURVE = RiskCurve()


def risk_curves(
    model: HorizonModel | None,
    X: np.ndarray,
    days_to_end: np.ndarray,
    when: dt.datetime,
    predict: Predict | None = None,
) -> list[RiskCurve]:
    """One curve per input row (the churn model's float64 inputs) scored at ``when``;
    ``predict``: the horizon booster's predictions as ``HorizonModel.hazards`` takes them."""
    if model is None:
        return [NO_CURVE] * len(X)
    hazards = model.hazards(X, predict)  # once: the curve and the renewal both read them
    curve = model.curve_of(hazards)
    days = np.asarray(days_to_end, dtype=np.float64)
    near = np.isfinite(days) & (days > 0) & (days <= model.max_days)
    at_renewal = cumulative(hazards, np.where(near, days, 0.0))
    out = []
    for i in range(len(X)):
        horizons = tuple(
            (int(d), float(p)) for d, p in zip(model.horizons_days, curve[i], strict=True)
        )
        renewal = None
        if near[i]:
            date = (when + dt.timedelta(days=float(days[i]))).date()
            renewal = Renewal(date, float(at_renewal[i]))
        out.append(RiskCurve(horizons, renewal))
    return out


def curve_json(curve: RiskCurve) -> dict[str, Any] | None:
    """The curve as the store keeps it (None when there is none)."""
    if not curve.horizons:
        return None
    r = curve.renewal
    return {
        "horizons": [{"days": d, "probability": p} for d, p in curve.horizons],
        "renewal": None
        if r is None
        else {"date": r.date.isoformat(), "probability": r.probability},
    }


def curve_of(stored: dict[str, Any] | None) -> RiskCurve:
    """A stored curve (``curve_json``) back as a RiskCurve."""
    if not stored:
        return NO_CURVE
    r = stored.get("renewal")
    renewal = None if r is None else Renewal(dt.date.fromisoformat(r["date"]), r["probability"])
    horizons = tuple((int(h["days"]), float(h["probability"])) for h in stored["horizons"])
    return RiskCurve(horizons, renewal)
