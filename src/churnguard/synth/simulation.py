"""The month-by-month simulation: who leaves, and every record each month writes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from churnguard.domain.contract import TABLES
from churnguard.synth.activity import (
    contact_chunk,
    contact_rates,
    event_chunk,
    office_hours,
    write_contacts,
)
from churnguard.synth.billing import draw_invoices, invoice_chunk
from churnguard.synth.clients import Population
from churnguard.synth.contracts import (
    Book,
    apply_line_changes,
    apply_renewals,
    cancel_lines,
    draw_line_change,
    draw_renewal,
    open_rows,
)
from churnguard.synth.feedback import NPS_MEAN, NPS_SD, NPS_SLOPE, draw_nps, survey_chunk
from churnguard.synth.sampling import uniform_time
from churnguard.synth.state import MAX_LINES, Risk, merge_rows, monthly_hazard, take_rows
from churnguard.synth.tickets import write_tickets
from churnguard.synth.timeline import DAY, MONTH_S, Array, Calendar, Chunk
from churnguard.synth.transition import next_risk
from churnguard.synth.truth import true_probability


def run(
    pop: Population, cal: Calendar, rng: np.random.Generator, rng_truth: np.random.Generator
) -> dict[str, list[Chunk]]:
    """Simulate month by month and collect every record."""
    n = len(pop.seg)
    log: dict[str, list[Chunk]] = {k: [] for k in (*TABLES, "cancels", "truth")}
    book = Book(pop.line_svc.copy(), pop.line_val.copy(), np.full((n, MAX_LINES), -1), 0)
    open_rows(book, log, np.arange(n), pop.first_start, pop.first_end, pop.auto, cal)
    r = _seed_history(pop, cal, rng, log)
    schedule = np.zeros((3, n, cal.months + 1), dtype=np.int32)  # resolutions due per month
    alive = np.ones(n, dtype=bool)
    for t in range(cal.months):
        r, alive = _simulate_month(t, r, alive, pop, book, schedule, cal, rng, rng_truth, log)
    return log


def _seed_history(
    pop: Population, cal: Calendar, rng: np.random.Generator, log: dict[str, list[Chunk]]
) -> Risk:
    """Initial state with its visible trace: a last contact and often an NPS answer before it."""
    r = pop.risk
    n = len(r.s)
    outbound, inbound = contact_rates(r)
    back = (rng.standard_exponential(n) * MONTH_S / (outbound + inbound)).astype(np.int64)
    onboarding = pop.first_start * DAY + 10 * 3600
    before = np.maximum(office_hours(cal.day[0] * DAY - 1 - back), onboarding)
    last = np.where(pop.initial, before, onboarding)
    log["interactions"].append(contact_chunk(np.arange(n), last, rng.random(n) < 0.8, r.seg, rng))
    answered = pop.initial & (rng.random(n) < 0.6)
    idx = np.flatnonzero(answered)
    score = np.full(n, np.nan)
    raw = NPS_MEAN + NPS_SLOPE * r.s[idx] + NPS_SD * rng.standard_normal(len(idx))
    score[idx] = np.clip(np.round(raw), 0, 10)
    when = cal.day[0] * DAY - rng.integers(DAY, 90 * DAY, len(idx))
    when = np.maximum(when, pop.first_start[idx] * DAY + DAY)
    log["feedback"].append(survey_chunk(idx, when, 0, score[idx], rng))
    return replace(r, last_contact=last, last_nps=score)


def _simulate_month(
    t: int,
    r: Risk,
    alive: Array,
    pop: Population,
    book: Book,
    schedule: Array,
    cal: Calendar,
    rng: np.random.Generator,
    rng_truth: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> tuple[Risk, Array]:
    """Decide who leaves in month t, write the month's records and return the next state."""
    m0, m1 = int(cal.day[t]), int(cal.day[t + 1])
    active = alive & (pop.first_start < m0)  # active on the 1st: exposed to the hazard
    hazard, renew = monthly_hazard(r, m0, m1)
    if t >= 1:  # truth from the second month on
        idx = np.flatnonzero(active)
        prob = true_probability(take_rows(r, idx), t, cal, rng_truth)
        log["truth"].append({"client": idx, "as_of": np.full(len(idx), m0), "p": prob})
    leave = active & (rng.random(len(r.s)) < hazard)
    cancel_day = m0 + 1 + (rng.random(len(r.s)) * (m1 - m0 - 1)).astype(np.int64)
    churn_day = np.where(renew, r.end_day, cancel_day)
    present = alive & (pop.first_start < m1)
    stay = present & ~leave
    a = np.maximum(pop.first_start, m0) * DAY
    b = np.where(leave, churn_day, m1) * DAY
    counts, last, nps = _write_activity(
        t, r, present, active, a, b, pop, book, schedule, cal, rng, log
    )
    cancel_lines(book, log, leave & ~renew, book.line_svc >= 0, churn_day)
    change = draw_line_change(r, stay & active & ~renew, m1, rng)
    renewal = draw_renewal(r, stay & renew, m1, rng)
    apply_renewals(book, log, stay & renew, renewal, pop, cal, rng)
    apply_line_changes(book, log, change, r.end_day, pop, m0, m1, cal, rng)
    new = next_risk(
        r, rng, last=last, nps=nps, counts=counts, change=change, renew=renew, renewal=renewal
    )
    return merge_rows(present, new, r), alive & ~leave


def _write_activity(
    t: int,
    r: Risk,
    present: Array,
    active: Array,
    a: Array,
    b: Array,
    pop: Population,
    book: Book,
    schedule: Array,
    cal: Calendar,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> tuple[tuple[Array, Array, Array, Array, Array], Array, tuple[Array, Array]]:
    """Write the month's contacts, surveys, invoices, tickets and usage; return the new counts."""
    n = len(r.s)
    last = write_contacts(r, present, a, b, rng, log)
    answered, score = draw_nps(r, t, rng)
    answered &= present
    idx = np.flatnonzero(answered)
    when = uniform_time(rng, a[idx], b[idx])
    log["feedback"].append(survey_chunk(idx, when, 0, score[idx], rng))
    issue = cal.day[t] + pop.issue_offset
    client, slot = np.nonzero((book.line_svc >= 0) & (active & (issue * DAY < b))[:, None])
    outcome = draw_invoices(r, client, rng)
    amount = book.line_val[client, slot]
    log["invoices"].append(
        invoice_chunk(client, outcome, amount, issue, t, r, schedule[0:2], cal, rng)
    )
    new_high = write_tickets(t, r, present, a, b, schedule[2], cal, rng, log)
    log["events"].append(event_chunk(r, present, a, b, book.line_val, rng))
    counts = (
        np.bincount(client[outcome == 3], minlength=n),
        r.d_old + r.d_new - schedule[0, :, t],
        np.bincount(client[outcome == 2], minlength=n),
        r.l_old + r.l_pend - schedule[1, :, t],
        r.hi_open + new_high - schedule[2, :, t],
    )
    return counts, last, (answered, score)
