"""Support tickets: volume and priority from the state, resolution over the months."""

from __future__ import annotations

import numpy as np

from churnguard.synth.feedback import write_csat
from churnguard.synth.sampling import sigmoid, uniform_time
from churnguard.synth.state import Risk
from churnguard.synth.timeline import (
    DAY,
    MONTH_S,
    NAT,
    Array,
    Calendar,
    Chunk,
    geometric_month,
    schedule_resolutions,
)
from churnguard.synth.vocabulary import TICKET_CATEGORIES

TICKET_RATE, TICKET_SLOPE, HIGH_LOGIT, HIGH_SLOPE = (1.5, 0.8, 0.35), -0.45, -1.7, -0.45
RESOLVE_SAME_MONTH = (0.65, 0.55)  # (low/normal, high/urgent) tickets resolved in their month
RESOLVE_MONTHLY = (0.45, 0.50)  # then each later month


def ticket_rates(r: Risk) -> tuple[Array, Array]:
    """High/urgent and low/normal tickets a month."""
    rate = r.ticket_rate * np.exp(TICKET_SLOPE * r.s)
    high = sigmoid(HIGH_LOGIT + HIGH_SLOPE * r.s)
    return rate * high, rate * (1 - high)


def write_tickets(
    t: int,
    r: Risk,
    present: Array,
    a: Array,
    b: Array,
    schedule: Array,
    cal: Calendar,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> Array:
    """Write the month's tickets and CSAT answers; return new high tickets open at month end."""
    high_rate, low_rate = ticket_rates(r)
    span = np.where(present, (b - a) / MONTH_S, 0.0)
    n_high, n_low = rng.poisson(high_rate * span), rng.poisson(low_rate * span)
    everyone = np.arange(len(span))
    client = np.concatenate([np.repeat(everyone, n_high), np.repeat(everyone, n_low)])
    high = np.arange(len(client)) < n_high.sum()
    opened = uniform_time(rng, a[client], b[client])
    resolved, month = _resolve_tickets(t, opened, high, cal, rng)
    carried = high & (month > t)  # high tickets still open at the end of the month
    schedule_resolutions(schedule, client[carried], month[carried], cal.months)
    level = np.where(high, 2 + (rng.random(len(client)) < 0.3), rng.random(len(client)) > 0.35)
    log["tickets"].append(
        {
            "client": client,
            "opened": opened,
            "resolved": resolved,
            "priority": level.astype(np.int64),
            "category": rng.integers(0, len(TICKET_CATEGORIES), len(client)),
        }
    )
    write_csat(r, client, resolved, month > t, cal, rng, log)
    return np.bincount(client[carried], minlength=len(span))


def _resolve_tickets(
    t: int, opened: Array, high: Array, cal: Calendar, rng: np.random.Generator
) -> tuple[Array, Array]:
    """Resolution time (NAT if after the data) and month of tickets opened in month t.

    Most are fixed within days in their own month; the rest close in a later month, each month
    with a fixed probability (memoryless, so the forward simulation can redraw them).
    """
    n = len(opened)
    same = rng.random(n) < np.where(high, RESOLVE_SAME_MONTH[1], RESOLVE_SAME_MONTH[0])
    later = geometric_month(t, np.where(high, RESOLVE_MONTHLY[1], RESOLVE_MONTHLY[0]), rng)
    later = np.minimum(later, len(cal.day) - 2)
    later_at = uniform_time(rng, cal.day[later] * DAY, cal.day[later + 1] * DAY)
    month_end = cal.day[t + 1] * DAY
    quick = opened + (rng.random(n) ** 3 * (month_end - opened)).astype(np.int64)
    resolved = np.where(same, quick, later_at)
    return np.where(resolved < cal.end * DAY, resolved, NAT), np.where(same, t, later)
