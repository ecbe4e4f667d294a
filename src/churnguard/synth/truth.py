"""Ground truth: P(churn in (as_of, as_of + horizon] | simulator state at as_of), per client.

Exact for the first month, then a Rao-Blackwellised Monte Carlo forward simulation of
``TRUTH_PATHS``` paths (see ``business.py``).
"""

from __future__ import annotations

import numpy as np

from churnguard.synth.state import Risk, monthly_hazard, take_rows
from churnguard.synth.timeline import Array, Calendar
from churnguard.synth.transition import evolve

TRUTH_PATHS = 16  # Monte Carlo paths per (client, as_of) for months after the first


def _window_weight(
    end_day: Array, renew: Array, as_of: int, m: int, dim: int, horizon: int
) -> Array:
    """Share of the month's possible churn dates inside the window (as_of, as_of + horizon]."""
    last = as_of + horizon
    cancel = np.clip(last - m, 0, dim - 1) / (dim - 1)  # cancellations fall on days 2..dim
    at_end = ((end_day > as_of) & (end_day <= last)).astype(float)
    return np.where(renew, at_end, cancel)


def true_probability(r: Risk, t: int, cal: Calendar, rng: np.random.Generator) -> Array:
    """P(churn in (as_of, as_of + horizon] | state on as_of = 1st of month t) for each row of r."""
    as_of, horizon = int(cal.day[t]), cal.horizon_days
    hazard, renew = monthly_hazard(r, as_of, int(cal.day[t + 1]))
    dim = int(cal.day[t + 1] - as_of)
    prob = hazard * _window_weight(r.end_day, renew, as_of, as_of, dim, horizon)
    paths = take_rows(r, np.repeat(np.arange(len(r.s)), TRUTH_PATHS))
    alive = np.repeat(1.0 - hazard, TRUTH_PATHS)
    total = np.zeros(len(alive))
    k = 1
    while cal.day[t + k] < as_of + horizon:
        paths = evolve(paths, t + k - 1, cal, rng)
        m, dim = int(cal.day[t + k]), int(cal.day[t + k + 1] - cal.day[t + k])
        hazard, renew = monthly_hazard(paths, m, m + dim)
        total += alive * hazard * _window_weight(paths.end_day, renew, as_of, m, dim, horizon)
        alive *= 1.0 - hazard
        k += 1
    return prob + total.reshape(-1, TRUTH_PATHS).mean(axis=1)
