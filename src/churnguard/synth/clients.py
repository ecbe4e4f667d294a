"""The client population: segments, managers, first contracts, and each client's rates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from churnguard.synth.activity import IN_RATE, OUT_RATE, UNASSIGNED_OUT_RATE
from churnguard.synth.sampling import pick
from churnguard.synth.state import (
    LATENT_MU_SD,
    LATENT_RHO,
    LATENT_SD,
    MAX_LINES,
    NEGLECT_EXIT,
    ROLLING,
    TERM_MONTHS,
    Risk,
)
from churnguard.synth.tickets import TICKET_RATE
from churnguard.synth.timeline import FAR_DAY, NAT, Array, Calendar, add_months, term_end
from churnguard.synth.vocabulary import (
    COMPANY_NOUNS,
    COMPANY_SUFFIXES,
    COMPANY_WORDS,
    FIRST_NAMES,
    INDUSTRIES,
    LAST_NAMES,
    REGION_SHARE,
    REGIONS,
    SERVICE_LINES,
    SERVICE_WEIGHT,
)

# --- what the business looks like ---
SEGMENT_SHARE = (0.12, 0.33, 0.55)
LINE_VALUE_MEDIAN = (16_000.0, 4_500.0, 1_200.0)  # monthly value of a first service line
LINES_SHARE = ((0.4, 0.4, 0.2, 0.0), (0.62, 0.3, 0.08, 0.0), (0.86, 0.14, 0.0, 0.0))
TERM_MIX = ((0.45, 0.45, 0.10), (0.55, 0.25, 0.20), (0.50, 0.10, 0.40))  # 12m, 24m, rolling
INITIAL_SHARE = 0.45  # clients already active at the start
AUTO_RENEW_SHARE = 0.45
UNASSIGNED_SHARE = 0.03
CLIENTS_PER_MANAGER = 50


@dataclass(frozen=True)
class Population:
    """Static client attributes and the contracts each client holds when it first appears."""

    seg: Array
    industry: Array
    region: Array
    manager: Array  # index into managers, -1 = unassigned
    managers: tuple[str, ...]
    name: Array  # (n, 3) word indices
    since_day: Array
    first_start: Array  # day the first recorded contract starts
    initial: Array
    auto: Array
    line_svc: Array  # (n, MAX_LINES), -1 = empty slot
    line_val: Array
    first_end: Array
    issue_offset: Array  # invoices are issued on this day of the month (0-based, 2..6)
    risk: Risk


def draw_population(n: int, cal: Calendar, rng: np.random.Generator) -> Population:
    """Static attributes, first contracts and initial state of `n` clients, ordered by arrival."""
    if n < 1:
        raise ValueError("clients must be positive")
    seg, kind, initial, first_start = _draw_arrivals(n, cal, rng)
    term = np.asarray(TERM_MONTHS)[kind]
    since = _client_since(initial, first_start, term, rng)
    line_svc, line_val = _draw_lines(seg, rng)
    n_managers = max(1, round(n / CLIENTS_PER_MANAGER))
    manager = _assign_managers(n, n_managers, rng)
    auto = (kind != ROLLING) & (rng.random(n) < AUTO_RENEW_SHARE)
    risk = _static_risk(seg, kind, term, auto, since, manager, n_managers, line_svc, rng)
    first_end = term_end(first_start, term)
    return Population(
        seg=seg,
        industry=rng.integers(0, len(INDUSTRIES), n),
        region=rng.choice(len(REGIONS), n, p=REGION_SHARE),
        manager=manager,
        managers=_manager_names(n_managers, rng),
        name=np.stack([rng.integers(0, m, n) for m in _name_sizes()], axis=1),
        since_day=since,
        first_start=first_start,
        initial=initial,
        auto=auto,
        line_svc=line_svc,
        line_val=line_val,
        first_end=first_end,
        issue_offset=rng.integers(2, 7, n),
        risk=replace(risk, end_day=first_end),
    )


def _draw_arrivals(n: int, cal: Calendar, rng: np.random.Generator) -> tuple[Array, ...]:
    """Segment, contract kind, active at the start, first contract start; in arrival order."""
    seg = rng.choice(3, n, p=SEGMENT_SHARE)
    kind = pick(rng, np.asarray(TERM_MIX)[seg])
    initial = rng.random(n) < INITIAL_SHARE
    first_start = _first_start(initial, np.asarray(TERM_MONTHS)[kind], cal, rng)
    order = np.lexsort((rng.random(n), first_start))  # ids follow arrival order
    return seg[order], kind[order], initial[order], first_start[order]


def _first_start(initial: Array, term: Array, cal: Calendar, rng: np.random.Generator) -> Array:
    """Start day of each client's first contract: before the start if active then, else later."""
    n = len(initial)
    dom = rng.integers(1, 28, n)  # never the 1st, so no term starts or ends on an as_of
    back = np.where(term > 0, rng.integers(1, np.maximum(term, 1) + 1), rng.integers(1, 37, n))
    before = add_months(np.full(n, cal.day[0]) + dom, -back)
    later = cal.day[rng.integers(0, cal.months, n)] + dom
    return np.where(initial, before, later)


def _client_since(initial: Array, first: Array, term: Array, rng: np.random.Generator) -> Array:
    """Client since: earlier terms (not in the data) for some clients active at the start."""
    n = len(first)
    renewals = np.where(initial, rng.choice(5, n, p=(0.35, 0.25, 0.2, 0.12, 0.08)), 0)
    rolling_back = np.where(initial & (rng.random(n) < 0.4), rng.integers(0, 5 * 365, n), 0)
    return np.where(term > 0, add_months(first, -term * renewals), first - rolling_back)


def _draw_lines(seg: Array, rng: np.random.Generator) -> tuple[Array, Array]:
    """Service lines (distinct per client) and their monthly values."""
    n = len(seg)
    count = pick(rng, np.asarray(LINES_SHARE)[seg]) + 1
    keys = np.log(rng.random((n, len(SERVICE_LINES)))) / np.asarray(SERVICE_WEIGHT)
    svc = np.argsort(-keys, axis=1, kind="stable")[:, :MAX_LINES]
    svc = np.where(np.arange(MAX_LINES) < count[:, None], svc, -1)
    value = line_value(seg[:, None], rng, (n, MAX_LINES))
    value[:, 1:] *= 0.6  # extra lines are smaller than the main one
    return svc, np.where(svc >= 0, value, 0.0)


def line_value(seg: Array, rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    """Monthly value of a service line, rounded to 50."""
    median = np.asarray(LINE_VALUE_MEDIAN)[seg]
    value = median * np.exp(0.55 * rng.standard_normal(shape))
    return np.maximum(np.round(value / 50.0) * 50.0, 300.0)


def _assign_managers(n: int, n_managers: int, rng: np.random.Generator) -> Array:
    """Account manager of each client (-1 = unassigned), with uneven books."""
    weights = rng.dirichlet(np.full(n_managers, 8.0))
    manager = rng.choice(n_managers, n, p=weights)
    return np.where(rng.random(n) < UNASSIGNED_SHARE, -1, manager)


def _manager_names(n_managers: int, rng: np.random.Generator) -> tuple[str, ...]:
    """Distinct realistic names ("Dana Whitfield")."""
    firsts, lasts = len(FIRST_NAMES), len(LAST_NAMES)
    picks = rng.permutation(firsts * lasts)[np.arange(n_managers) % (firsts * lasts)]
    names = [f"{FIRST_NAMES[p % firsts]} {LAST_NAMES[p // firsts]}" for p in picks]
    return tuple(
        name if i < firsts * lasts else f"{name} {i // (firsts * lasts) + 1}"
        for i, name in enumerate(names)
    )


def _name_sizes() -> tuple[int, int, int]:
    """How many words each part of a company name is drawn from."""
    return len(COMPANY_WORDS) + len(LAST_NAMES), len(COMPANY_NOUNS), len(COMPANY_SUFFIXES)


def _static_risk(
    seg: Array,
    kind: Array,
    term: Array,
    auto: Array,
    since: Array,
    manager: Array,
    n_managers: int,
    line_svc: Array,
    rng: np.random.Generator,
) -> Risk:
    """Per-client rates and the state before the first month (latent at its stationary law)."""
    n = len(seg)
    attention = np.exp(0.35 * rng.standard_normal(n_managers))[np.maximum(manager, 0)]
    neglect = (0.045 * np.exp(0.5 * rng.standard_normal(n_managers)))[np.maximum(manager, 0)]
    assigned = manager >= 0
    quality = np.exp(0.4 * rng.standard_normal(n))  # > 1: more tickets (poorer service)
    mu = LATENT_MU_SD * rng.standard_normal(n) + 0.25 * np.log(attention) - 0.3 * np.log(quality)
    stationary_sd = LATENT_SD / np.sqrt(1 - LATENT_RHO**2)
    p_neglect = np.where(assigned, neglect, 0.0)
    zeros = np.zeros(n, dtype=np.int64)
    return Risk(
        s=mu + stationary_sd * rng.standard_normal(n),
        neglected=rng.random(n) < p_neglect / (p_neglect + NEGLECT_EXIT),
        last_contact=np.full(n, NAT),
        last_nps=np.full(n, np.nan),
        prev_nps=np.full(n, np.nan),
        d_new=zeros,
        d_old=zeros,
        l_pend=zeros,
        l_old=zeros,
        hi_open=zeros,
        n_lines=(line_svc >= 0).sum(axis=1),
        price_up=np.zeros(n, dtype=bool),
        end_day=np.full(n, FAR_DAY),
        mu=mu,
        seg=seg,
        kind=kind,
        term=term,
        auto=auto,
        since_day=since,
        out_rate=np.where(assigned, np.asarray(OUT_RATE)[seg] * attention, UNASSIGNED_OUT_RATE),
        in_rate=np.asarray(IN_RATE)[seg] * np.exp(0.3 * rng.standard_normal(n)),
        p_neglect=p_neglect,
        r_dispute=np.clip(0.45 * np.sqrt(attention), 0.2, 0.8),
        q_pay=np.asarray((0.55, 0.5, 0.4))[seg],
        ticket_rate=np.asarray(TICKET_RATE)[seg] * quality,
        phase=rng.integers(0, 3, n),
    )
