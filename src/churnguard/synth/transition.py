"""One month of the client state, shared by the simulation and its forward simulation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from churnguard.synth.activity import contact_rates, draw_last_contact, office_hours
from churnguard.synth.billing import draw_invoices
from churnguard.synth.contracts import Renewal, draw_line_change, draw_renewal
from churnguard.synth.feedback import draw_nps
from churnguard.synth.sampling import poisson, thin
from churnguard.synth.state import (
    LATENT_RHO,
    LATENT_SD,
    NEGLECT_EXIT,
    SHOCK_DISPUTE,
    SHOCK_NEGLECT,
    SHOCK_TICKETS,
    Risk,
    renewing,
)
from churnguard.synth.tickets import RESOLVE_MONTHLY, RESOLVE_SAME_MONTH, ticket_rates
from churnguard.synth.timeline import DAY, MONTH_S, Array, Calendar


def next_risk(
    r: Risk,
    rng: np.random.Generator,
    *,
    last: Array,
    nps: tuple[Array, Array],
    counts: tuple[Array, Array, Array, Array, Array],
    change: Array,
    renew: Array,
    renewal: Renewal,
) -> Risk:
    """The state on the 1st of the next month from this month's outcomes."""
    answered, score = nps
    d_new, d_old, l_pend, l_old, hi_open = counts
    shock = (
        SHOCK_TICKETS * (r.hi_open > 0)
        + SHOCK_DISPUTE * (r.d_old > 0)
        + SHOCK_NEGLECT * r.neglected
    )
    u = rng.random(len(r.s))
    return replace(
        r,
        s=r.mu + LATENT_RHO * (r.s - r.mu) + LATENT_SD * rng.standard_normal(len(r.s)) - shock,
        neglected=np.where(r.neglected, u >= NEGLECT_EXIT, u < r.p_neglect),
        last_contact=np.maximum(r.last_contact, last),
        last_nps=np.where(answered, score, r.last_nps),
        prev_nps=np.where(answered, r.last_nps, r.prev_nps),
        d_new=d_new,
        d_old=d_old,
        l_pend=l_pend,
        l_old=l_old,
        hi_open=hi_open,
        n_lines=r.n_lines + change + renewal.delta,
        price_up=np.where(renew, renewal.price > 1.0, r.price_up),
        end_day=np.where(renew, renewal.end, r.end_day),
    )


def evolve(r: Risk, t: int, cal: Calendar, rng: np.random.Generator) -> Risk:
    """One month of the state for clients who stay all month, without writing records."""
    m0, m1 = int(cal.day[t]), int(cal.day[t + 1])
    n = len(r.s)
    renew = renewing(r, m0, m1)
    outbound, inbound = contact_rates(r)
    raw = draw_last_contact(outbound + inbound, np.full(n, m0 * DAY), np.full(n, m1 * DAY), rng)
    last = office_hours(raw)
    nps = draw_nps(r, t, rng)
    billed = np.repeat(np.arange(n), r.n_lines)  # one invoice per service line
    outcome = draw_invoices(r, billed, rng)
    high, _ = ticket_rates(r)
    new_high = poisson(high * (m1 - m0) * DAY / MONTH_S, rng)
    counts = (
        np.bincount(billed[outcome == 3], minlength=n),
        thin(r.d_new + r.d_old, 1 - r.r_dispute, rng),
        np.bincount(billed[outcome == 2], minlength=n),
        thin(r.l_pend + r.l_old, 1 - r.q_pay, rng),
        thin(r.hi_open, 1 - RESOLVE_MONTHLY[1], rng)
        + thin(new_high, 1 - RESOLVE_SAME_MONTH[1], rng),
    )
    change = draw_line_change(r, ~renew, m1, rng)
    renewal = draw_renewal(r, renew, m1, rng)
    return next_risk(
        r, rng, last=last, nps=nps, counts=counts, change=change, renew=renew, renewal=renewal
    )
