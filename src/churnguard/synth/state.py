"""Each client's hidden and visible state, and the monthly hazard of leaving it drives."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from churnguard.synth.sampling import sigmoid
from churnguard.synth.timeline import DAY, Array

MAX_LINES = 4  # service lines a client can hold at once
TERM_MONTHS = (12, 24, 0)  # contract kinds: 12-month, 24-month, rolling
ROLLING = 2

# --- hazard of leaving in a month: logit = base(decision point) + _risk_score(state) ---
BASE_RENEWAL = -1.9
BASE_AUTO_RENEW = -1.1  # added at a renewal when the contract auto-renews
BASE_ROLLING = -4.4
BASE_MIDTERM = -6.4
COEF_GAP = 0.6  # per 30 days since the last contact (capped at 180 days)
COEF_NPS = 0.22  # per point the last NPS is below 7
COEF_NPS_DROP = 0.12  # per point the last NPS fell from the one before
COEF_DISPUTE = 0.55  # per open billing dispute (up to 3)
COEF_OVERDUE = 0.30  # per overdue invoice (up to 4)
COEF_TICKETS = 0.40  # per open high/urgent ticket (up to 3)
COEF_PRICE = 0.60  # the current term started with a price increase
COEF_TENURE = -0.20  # per log(1 + years as a client)
COEF_SEGMENT = (-0.35, 0.0, 0.25)
COEF_LATENT = -0.35  # per unit of latent satisfaction

# --- latent satisfaction and account-manager attention ---
LATENT_RHO, LATENT_SD, LATENT_MU_SD = 0.85, 0.35, 0.55
SHOCK_TICKETS, SHOCK_DISPUTE, SHOCK_NEGLECT = 0.10, 0.12, 0.08
NEGLECT_EXIT, NEGLECT_FACTOR = 0.25, 0.06


@dataclass(frozen=True)
class Risk:
    """Per-client state the hazard and its forward simulation need (one row per client or path)."""

    s: Array  # latent satisfaction
    neglected: Array
    last_contact: Array  # seconds
    last_nps: Array
    prev_nps: Array
    d_new: Array  # open disputes raised last month (invoice not yet due)
    d_old: Array  # older open disputes (invoice past due)
    l_pend: Array  # invoices issued last month that will not be paid on time
    l_old: Array  # overdue unpaid invoices (not disputed)
    hi_open: Array  # open high/urgent tickets
    n_lines: Array
    price_up: Array
    end_day: Array  # end of the current term (FAR_DAY for rolling)
    mu: Array
    seg: Array
    kind: Array
    term: Array
    auto: Array
    since_day: Array
    out_rate: Array
    in_rate: Array
    p_neglect: Array
    r_dispute: Array
    q_pay: Array
    ticket_rate: Array
    phase: Array


def renewing(r: Risk, m0: int, m1: int) -> Array:
    """Clients whose term ends in the month [m0, m1)."""
    return (r.kind != ROLLING) & (r.end_day >= m0) & (r.end_day < m1)


def _risk_score(r: Risk, m0: int) -> Array:
    """The state part of the logit hazard, taken on day m0 (the 1st of a month)."""
    gap = np.minimum((m0 * DAY - r.last_contact) / DAY, 180.0)
    below = np.nan_to_num(7.0 - r.last_nps)  # no response yet counts as neutral
    drop = np.nan_to_num(np.maximum(r.prev_nps - r.last_nps, 0.0))
    tenure = np.maximum(m0 - r.since_day, 0) / 365.25
    return (
        COEF_GAP * gap / 30.0
        + COEF_NPS * below
        + COEF_NPS_DROP * drop
        + COEF_DISPUTE * np.minimum(r.d_new + r.d_old, 3)
        + COEF_OVERDUE * np.minimum(r.l_old + r.d_old, 4)
        + COEF_TICKETS * np.minimum(r.hi_open, 3)
        + COEF_PRICE * r.price_up
        + COEF_TENURE * np.log1p(tenure)
        + np.asarray(COEF_SEGMENT)[r.seg]
        + COEF_LATENT * r.s
    )


def monthly_hazard(r: Risk, m0: int, m1: int) -> tuple[Array, Array]:
    """Probability of leaving in the month [m0, m1), and whether it is a renewal month."""
    renew = renewing(r, m0, m1)
    base = np.where(
        renew,
        BASE_RENEWAL + BASE_AUTO_RENEW * r.auto,
        np.where(r.kind == ROLLING, BASE_ROLLING, BASE_MIDTERM),
    )
    return sigmoid(base + _risk_score(r, m0)), renew


def take_rows(r: Risk, idx: Array) -> Risk:
    """The rows `idx` of every state array."""
    return Risk(**{f.name: getattr(r, f.name)[idx] for f in fields(r)})


def merge_rows(mask: Array, new: Risk, old: Risk) -> Risk:
    """`new` where mask, else `old`."""
    return Risk(
        **{f.name: np.where(mask, getattr(new, f.name), getattr(old, f.name)) for f in fields(new)}
    )
