"""Invoices: on-time and late payment, billing disputes and their resolution."""

from __future__ import annotations

import numpy as np

from churnguard.synth.sampling import sigmoid
from churnguard.synth.state import Risk
from churnguard.synth.timeline import (
    NAT,
    Array,
    Calendar,
    Chunk,
    day_in_month,
    geometric_month,
    known_before,
    schedule_resolutions,
)
from churnguard.synth.vocabulary import DISPUTE_REASONS

DISPUTE_LOGIT, DISPUTE_SLOPE = -4.3, -0.8
LATE_LOGIT, LATE_SLOPE, LATE_SEGMENT, LATE_AFTER_DISPUTE = -3.0, -0.6, (-0.3, 0.0, 0.4), 0.6


def draw_invoices(r: Risk, client: Array, rng: np.random.Generator) -> Array:
    """Outcome of each invoice (issued to `client`): 1 paid on time, 2 late, 3 disputed."""
    s = r.s[client]
    p_dispute = sigmoid(DISPUTE_LOGIT + DISPUTE_SLOPE * s)
    late_logit = LATE_LOGIT + LATE_SLOPE * s + np.asarray(LATE_SEGMENT)[r.seg[client]]
    p_late = sigmoid(late_logit + LATE_AFTER_DISPUTE * (r.d_old[client] > 0))
    u = rng.random(len(client))
    return np.where(u < p_dispute, 3, np.where(u < p_dispute + (1 - p_dispute) * p_late, 2, 1))


def invoice_chunk(
    client: Array,
    cat: Array,
    value: Array,
    issue: Array,
    t: int,
    r: Risk,
    schedule: Array,
    cal: Calendar,
    rng: np.random.Generator,
) -> Chunk:
    """Invoice rows for the month with payment, late payment and disputes."""
    n = len(client)
    issued = issue[client]
    due = issued + 30
    paid = issued + 8 + (rng.random(n) * 22).astype(np.int64)  # on time
    late_month = np.minimum(geometric_month(t, r.q_pay[client], rng), len(cal.day) - 2)
    due_end = cal.day[np.searchsorted(cal.day, due, side="right")]  # 1st after the due month
    after_due = due + 1 + (rng.random(n) * (due_end - due - 1)).astype(np.int64)
    late_paid = np.where(late_month == t + 1, after_due, day_in_month(late_month, cal, rng))
    month_end = cal.day[t + 1]
    disputed = issued + 1 + (rng.random(n) * (month_end - issued - 2)).astype(np.int64)
    resolve_month = np.minimum(geometric_month(t, r.r_dispute[client], rng), len(cal.day) - 2)
    resolved = day_in_month(resolve_month, cal, rng)
    schedule_resolutions(schedule[0], client[cat == 3], resolve_month[cat == 3], cal.months)
    schedule_resolutions(schedule[1], client[cat == 2], late_month[cat == 2], cal.months)
    paid = np.select([cat == 1, cat == 2], [paid, late_paid], resolved)
    return {
        "client": client,
        "issued": issued,
        "due": due,
        "amount": np.round(value * np.exp(0.06 * rng.standard_normal(n)), 2),
        "paid": known_before(paid, cal.end),
        "disputed": np.where(cat == 3, disputed, NAT),
        "resolved": np.where(cat == 3, known_before(resolved, cal.end), NAT),
        "reason": np.where(cat == 3, rng.integers(0, len(DISPUTE_REASONS), n), -1),
    }
