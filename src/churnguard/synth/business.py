"""Seeded simulator of a service business: every contract table plus the true churn probability.

The simulator steps month by month, vectorised over clients with numpy. Each client carries a
state that is mostly visible in its records (days since last contact, last NPS and its fall, open
billing disputes, overdue invoices, open high-priority tickets, a renewal due, a price increase on
the current term, tenure, segment) plus a latent satisfaction that drifts (AR(1) around a client
mean) and also drives what is recorded: survey scores and response, inbound contact, disputes,
late payment, ticket volume and priority, usage events, upsell and contraction. Account managers
neglect some clients for a while (a hidden Markov state that cuts outbound contact). Hidden from
the records: the latent satisfaction, the neglect state, and which unpaid invoices will be late.

Hazard. In each month a client leaves with probability ``sigmoid(base + _risk_score(state))``,
the state taken on the 1st of the month (the COEF_* constants). ``base`` is the decision point: a
term ending this month (renewal, lowered by auto-renew), a rolling contract, or a mid-term
cancellation. Leaving at a renewal ends every contract on its end date; otherwise all contracts
are cancelled on a day of the month. Clients who stay renew (back to back, or a few days late;
sometimes with a price increase, upsell or contraction) and may add or cancel a service line
mid-term.

Dates follow ``labels.py``: a contract covers [start_date, end_date or cancelled_at), a renewal
starts on its predecessor's end_date, and churn is the end of the last contract. No contract
starts, ends or is cancelled on the 1st of a month, so a client is unambiguously active or not at
each monthly as_of.

Ground truth. For each client active on the 1st of a month (from the second month on),
``truth.true_probability`` is P(churn date in (as_of, as_of + horizon] | simulator state at
as_of). The first month is exact: the hazard of the as_of state times the share of that month's
possible churn dates inside the window. Later months come from a Rao-Blackwellised Monte Carlo
forward simulation: ``TRUTH_PATHS`` state paths per client follow the simulator's own transition
and the survival-weighted hazards are averaged (churn outcomes are never sampled). Resolutions of
disputes, late invoices and tickets are memoryless in the simulator, so the paths redraw them. On
the default data the Monte Carlo standard error is 0.008 (root mean square; 0.02 where the
probability exceeds 0.1) and doubling the paths moves the oracle AUC by under 0.001. The paths use
their own random stream, so they never change the records.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churnguard.domain.contract import (
    CHANNELS,
    DIRECTIONS,
    PRIORITIES,
    SURVEYS,
    TABLES,
    Column,
    CRMData,
    Kind,
    from_frames,
)
from churnguard.domain.data import TRUTH_FILE_STEM

DEFAULT_START = pd.Timestamp("2023-01-01", tz="UTC")
TRUTH_PATHS = 16  # Monte Carlo paths per (client, as_of) for months after the first

Array = np.ndarray
Chunk = dict[str, Array]

DAY = 86_400
MONTH_S = 30.4375 * DAY  # rates below are per average month
NAT = np.iinfo(np.int64).min  # int64 view of NaT
FAR_DAY = 10**7  # "no end" for rolling contracts, in days since the epoch
MAX_LINES = 4

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
OUT_RATE = (3.2, 2.2, 1.3)  # outbound contacts a month from an attentive manager, by segment
IN_RATE = (1.3, 0.9, 0.6)
UNASSIGNED_OUT_RATE = 0.25

# --- signals driven by the state ---
NPS_MEAN, NPS_SLOPE, NPS_SD, NPS_RESPONSE, NPS_RESPONSE_SLOPE = 7.3, 1.6, 1.1, 0.1, 0.6
DISPUTE_LOGIT, DISPUTE_SLOPE = -4.3, -0.8
LATE_LOGIT, LATE_SLOPE, LATE_SEGMENT, LATE_AFTER_DISPUTE = -3.0, -0.6, (-0.3, 0.0, 0.4), 0.6
TICKET_RATE, TICKET_SLOPE, HIGH_LOGIT, HIGH_SLOPE = (1.5, 0.8, 0.35), -0.45, -1.7, -0.45
RESOLVE_SAME_MONTH = (0.65, 0.55)  # (low/normal, high/urgent) tickets resolved in their month
RESOLVE_MONTHLY = (0.45, 0.50)  # then each later month
UPSELL_RATE, UPSELL_SLOPE, CONTRACTION_RATE, CONTRACTION_SLOPE = 0.004, 0.6, 0.005, -0.6
RENEWAL_UPSELL, RENEWAL_CONTRACTION, PRICE_INCREASE_SHARE, RENEWAL_GAP_SHARE = 0.08, 0.10, 0.3, 0.2

# --- what the business looks like ---
SEGMENTS = ("enterprise", "mid-market", "small business")
SEGMENT_SHARE = (0.12, 0.33, 0.55)
LINE_VALUE_MEDIAN = (16_000.0, 4_500.0, 1_200.0)  # monthly value of a first service line
LINES_SHARE = ((0.4, 0.4, 0.2, 0.0), (0.62, 0.3, 0.08, 0.0), (0.86, 0.14, 0.0, 0.0))
TERM_MIX = ((0.45, 0.45, 0.10), (0.55, 0.25, 0.20), (0.50, 0.10, 0.40))  # 12m, 24m, rolling
TERM_MONTHS = (12, 24, 0)
ROLLING = 2
INITIAL_SHARE = 0.45  # clients already active at the start
AUTO_RENEW_SHARE = 0.45
UNASSIGNED_SHARE = 0.03
CLIENTS_PER_MANAGER = 50
HOURLY_RATE = 140.0
LOGIN_RATE, DELIVERABLE_RATE = (3.0, 2.0, 1.2), (1.2, 0.6, 0.3)
CSAT_SHARE = 0.3

SERVICE_LINES = (
    "managed it",
    "consulting",
    "accounting",
    "staffing",
    "cloud hosting",
    "cybersecurity",
    "payroll",
    "digital marketing",
)
SERVICE_WEIGHT = (0.22, 0.16, 0.14, 0.1, 0.1, 0.1, 0.09, 0.09)
INDUSTRIES = (
    "healthcare",
    "manufacturing",
    "retail",
    "financial services",
    "legal",
    "construction",
    "education",
    "hospitality",
    "logistics",
    "nonprofit",
    "real estate",
    "technology",
)
REGIONS = ("northeast", "southeast", "midwest", "southwest", "west", "canada", "uk")
FIRST_NAMES = [
    "Dana",
    "Alex",
    "Jordan",
    "Priya",
    "Marcus",
    "Elena",
    "Sam",
    "Hannah",
    "Victor",
    "Chloe",
    "Omar",
    "Grace",
    "Luis",
    "Megan",
    "Tobias",
    "Aisha",
    "Ben",
    "Carmen",
    "Derek",
    "Fiona",
    "Gareth",
    "Ines",
    "Jamal",
    "Kira",
    "Liam",
    "Maya",
    "Nikhil",
    "Olivia",
    "Pablo",
    "Quinn",
    "Rosa",
    "Stefan",
    "Tara",
    "Umar",
    "Vera",
    "Wes",
    "Yuki",
    "Zoe",
    "Colin",
    "Nadia",
]
LAST_NAMES = [
    "Whitfield",
    "Okafor",
    "Lindqvist",
    "Moreno",
    "Patel",
    "Brennan",
    "Castillo",
    "Nakamura",
    "Fischer",
    "Delgado",
    "Harper",
    "Kowalski",
    "Osei",
    "Reyes",
    "Sullivan",
    "Tanaka",
    "Varga",
    "Walsh",
    "Young",
    "Abbott",
    "Bauer",
    "Chen",
    "Dubois",
    "Ellis",
    "Garcia",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Khan",
    "Larsen",
    "Murphy",
    "Novak",
    "Ortiz",
    "Price",
    "Quist",
    "Rossi",
    "Schmidt",
    "Thornton",
    "Underwood",
    "Vance",
]
COMPANY_WORDS = [
    "Harbor",
    "Summit",
    "Cedar",
    "Northgate",
    "Bluebird",
    "Ironwood",
    "Keystone",
    "Riverside",
    "Granite",
    "Meadow",
    "Pioneer",
    "Beacon",
    "Silverline",
    "Oakridge",
    "Lakeshore",
    "Redwood",
    "Sterling",
    "Atlas",
    "Crescent",
    "Evergreen",
]
COMPANY_NOUNS = [
    "Dental",
    "Logistics",
    "Builders",
    "Partners",
    "Foods",
    "Clinic",
    "Motors",
    "Design",
    "Legal",
    "Realty",
    "Labs",
    "Systems",
    "Outfitters",
    "Bakery",
    "Freight",
    "Capital",
    "Studios",
    "Health",
    "Supply",
    "Academy",
]
COMPANY_SUFFIXES = ("LLC", "Inc", "Ltd", "Group", "Co", "& Sons", "Holdings", "")
OUT_CHANNELS = (
    (0.40, 0.22, 0.22, 0.10, 0.06),
    (0.45, 0.25, 0.17, 0.07, 0.06),
    (0.55, 0.27, 0.10, 0.03, 0.05),
)
IN_CHANNELS = (0.62, 0.33, 0.0, 0.0, 0.05)
NPS_COMMENTS = (
    (
        "Response times have been slow lately",
        "We rarely hear from our account manager",
        "Invoices keep having errors",
        "Too expensive for what we get",
        "Quality has slipped since last year",
        "Hard to get problems fixed",
        "We are looking at other providers",
    ),
    ("Fine overall", "Does the job", "Some hiccups but OK", "Would like more proactive advice"),
    (
        "Great team, very responsive",
        "Our account manager is excellent",
        "Reliable and easy to work with",
        "Helped us grow this year",
        "Always on top of things",
    ),
)
CSAT_COMMENTS = (
    ("Took too long to resolve", "The issue came back", "Nobody kept us updated"),
    ("Resolved eventually", "OK"),
    ("Quick fix, thanks", "Very helpful technician", "Sorted the same day"),
)
REGION_SHARE = (0.2, 0.17, 0.17, 0.12, 0.18, 0.08, 0.08)
COMMENT_SHARE = 0.45
COMMENTS = tuple(c for pools in (NPS_COMMENTS, CSAT_COMMENTS) for pool in pools for c in pool)
DISPUTE_REASONS = (
    "hours not agreed",
    "rate above contract",
    "duplicate charge",
    "work not delivered",
    "missing purchase order",
    "service credit owed",
)
TICKET_CATEGORIES = (
    "incident",
    "service request",
    "access",
    "billing question",
    "change request",
    "data issue",
    "reporting",
    "performance",
)
EVENT_TYPES = ("billable_hours", "portal_login", "deliverable")
DATE_COLUMNS = {  # written as dates (YYYY-MM-DD) in CSV; every other timestamp as a datetime
    "clients": ("client_since",),
    "contracts": ("start_date", "end_date", "cancelled_at"),
    "invoices": ("issued_at", "due_at", "paid_at", "disputed_at", "dispute_resolved_at"),
    TRUTH_FILE_STEM: ("as_of",),
}


@dataclass(frozen=True)
class SimulatedBusiness:
    """Simulated CRM data, the true churn probability per (client, as_of), and the data's end."""

    data: CRMData
    truth: pd.DataFrame
    observed_until: pd.Timestamp


@dataclass(frozen=True)
class _Calendar:
    """Month starts (days since the epoch) from the first simulated month on."""

    day: Array  # day[t] = first day of month t; runs past the end for forward simulation
    months: int
    horizon_days: int

    @property
    def end(self) -> int:
        return int(self.day[self.months])


@dataclass(frozen=True)
class _Risk:
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


@dataclass(frozen=True)
class _Population:
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
    risk: _Risk


@dataclass
class _Book:
    """Service lines each client holds now and the contract rows written so far (mutable)."""

    line_svc: Array
    line_val: Array
    line_row: Array  # contract row of each line, -1 = not written (starts after the data ends)
    next_row: int


@dataclass(frozen=True)
class _Renewal:
    """What happens at a renewal for clients who stay."""

    price: Array  # factor on every line's value
    delta: Array  # +1 add a line, -1 drop a line, 0 none
    cut: Array  # factor on the value when a single-line client contracts
    start: Array  # day the new term starts
    end: Array  # day the new term ends


def simulate(
    clients: int = 1000,
    months: int = 36,
    seed: int = 7,
    start: pd.Timestamp = DEFAULT_START,
    horizon_days: int = 90,
) -> SimulatedBusiness:
    """Simulate a service business and return its CRM tables and the true churn probabilities."""
    cal = _calendar(start, months, horizon_days)
    main_seq, truth_seq = np.random.SeedSequence(seed).spawn(2)
    rng, rng_truth = np.random.default_rng(main_seq), np.random.default_rng(truth_seq)
    pop = _draw_population(clients, cal, rng)
    log = _run(pop, cal, rng, rng_truth)
    data = _assemble(pop, log)
    truth = _truth_frame(log["truth"], clients)
    return SimulatedBusiness(data, truth, _timestamp(cal.end))


def write_demo_data(
    out: Path,
    clients: int = 1000,
    months: int = 36,
    seed: int = 7,
    fmt: Literal["csv", "parquet"] = "csv",
    horizon_days: int = 90,
) -> SimulatedBusiness:
    """Write one file per contract table named after it (clients.csv, contracts.csv, ... or
    .parquet) plus true_churn_probability.csv|parquet (never an input to features/training).

    Creates `out`. Writes each file atomically (temp file + os.replace) so an interrupted run
    never leaves a half-written table.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    biz = simulate(clients, months, seed, horizon_days=horizon_days)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = {**biz.data.tables(), TRUTH_FILE_STEM: biz.truth}
    for name, df in frames.items():
        table = _arrow_table(df, DATE_COLUMNS.get(name, ()) if fmt == "csv" else None)
        _write_atomic(out / f"{name}.{fmt}", table, fmt)
    return biz


# ---------------------------------------------------------------------------------------------
# calendar and dates


def _calendar(start: pd.Timestamp, months: int, horizon_days: int) -> _Calendar:
    """Month starts from `start` (the 1st of a month, UTC midnight) with room to look ahead."""
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.normalize() or ts.day != 1:
        raise ValueError(f"start must be midnight on the 1st of a month, not {start}")
    if months < 1 or horizon_days < 1:
        raise ValueError("months and horizon_days must be positive")
    first = np.datetime64(ts.strftime("%Y-%m"), "M")
    extra = horizon_days // 28 + 30  # forward simulation and renewal terms run past the end
    day = (first + np.arange(months + extra + 1)).astype("M8[D]").astype(np.int64)
    return _Calendar(day, months, horizon_days)


def _add_months(day: Array, k: Array | int) -> Array:
    """Days `k` months after `day`, clamped to the end of shorter months."""
    d = day.astype("M8[D]")
    month = d.astype("M8[M]")
    dom = (d - month.astype("M8[D]")).astype(np.int64)
    target = month + np.asarray(k).astype("m8[M]")
    length = ((target + 1).astype("M8[D]") - target.astype("M8[D]")).astype(np.int64)
    return target.astype("M8[D]").astype(np.int64) + np.minimum(dom, length - 1)


def _term_end(start: Array, term: Array) -> Array:
    """End date of a term starting on `start`: coverage is [start, end) (FAR_DAY when rolling)."""
    return np.where(term > 0, _add_months(start, term), FAR_DAY)


def _timestamp(day: int) -> pd.Timestamp:
    """A UTC midnight timestamp from days since the epoch."""
    return pd.Timestamp(day * DAY, unit="s", tz="UTC")


def _uniform_time(rng: np.random.Generator, a: Array, b: Array) -> Array:
    """Uniform second in [a, b)."""
    return a + np.floor(rng.random(len(a)) * (b - a)).astype(np.int64)


def _sigmoid(z: Array) -> Array:
    """Logistic function (computed in place on a fresh array)."""
    out = np.negative(z, dtype=np.float64)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


# ---------------------------------------------------------------------------------------------
# the population


def _draw_population(n: int, cal: _Calendar, rng: np.random.Generator) -> _Population:
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
    first_end = _term_end(first_start, term)
    return _Population(
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


def _draw_arrivals(n: int, cal: _Calendar, rng: np.random.Generator) -> tuple[Array, ...]:
    """Segment, contract kind, active at the start, first contract start; in arrival order."""
    seg = rng.choice(3, n, p=SEGMENT_SHARE)
    kind = _pick(rng, np.asarray(TERM_MIX)[seg])
    initial = rng.random(n) < INITIAL_SHARE
    first_start = _first_start(initial, np.asarray(TERM_MONTHS)[kind], cal, rng)
    order = np.lexsort((rng.random(n), first_start))  # ids follow arrival order
    return seg[order], kind[order], initial[order], first_start[order]


def _pick(rng: np.random.Generator, probs: Array) -> Array:
    """One category per row of a (n, k) probability matrix."""
    return (rng.random(len(probs))[:, None] > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)


def _first_start(initial: Array, term: Array, cal: _Calendar, rng: np.random.Generator) -> Array:
    """Start day of each client's first contract: before the start if active then, else later."""
    n = len(initial)
    dom = rng.integers(1, 28, n)  # never the 1st, so no term starts or ends on an as_of
    back = np.where(term > 0, rng.integers(1, np.maximum(term, 1) + 1), rng.integers(1, 37, n))
    before = _add_months(np.full(n, cal.day[0]) + dom, -back)
    later = cal.day[rng.integers(0, cal.months, n)] + dom
    return np.where(initial, before, later)


def _client_since(initial: Array, first: Array, term: Array, rng: np.random.Generator) -> Array:
    """Client since: earlier terms (not in the data) for some clients active at the start."""
    n = len(first)
    renewals = np.where(initial, rng.choice(5, n, p=(0.35, 0.25, 0.2, 0.12, 0.08)), 0)
    rolling_back = np.where(initial & (rng.random(n) < 0.4), rng.integers(0, 5 * 365, n), 0)
    return np.where(term > 0, _add_months(first, -term * renewals), first - rolling_back)


def _draw_lines(seg: Array, rng: np.random.Generator) -> tuple[Array, Array]:
    """Service lines (distinct per client) and their monthly values."""
    n = len(seg)
    count = _pick(rng, np.asarray(LINES_SHARE)[seg]) + 1
    keys = np.log(rng.random((n, len(SERVICE_LINES)))) / np.asarray(SERVICE_WEIGHT)
    svc = np.argsort(-keys, axis=1, kind="stable")[:, :MAX_LINES]
    svc = np.where(np.arange(MAX_LINES) < count[:, None], svc, -1)
    value = _line_value(seg[:, None], rng, (n, MAX_LINES))
    value[:, 1:] *= 0.6  # extra lines are smaller than the main one
    return svc, np.where(svc >= 0, value, 0.0)


def _line_value(seg: Array, rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
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
) -> _Risk:
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
    return _Risk(
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


# ---------------------------------------------------------------------------------------------
# hazard and the state transition shared by the simulation and its forward (truth) simulation


def _renewing(r: _Risk, m0: int, m1: int) -> Array:
    """Clients whose term ends in the month [m0, m1)."""
    return (r.kind != ROLLING) & (r.end_day >= m0) & (r.end_day < m1)


def _risk_score(r: _Risk, m0: int) -> Array:
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


def _hazard(r: _Risk, m0: int, m1: int) -> tuple[Array, Array]:
    """Probability of leaving in the month [m0, m1), and whether it is a renewal month."""
    renew = _renewing(r, m0, m1)
    base = np.where(
        renew,
        BASE_RENEWAL + BASE_AUTO_RENEW * r.auto,
        np.where(r.kind == ROLLING, BASE_ROLLING, BASE_MIDTERM),
    )
    return _sigmoid(base + _risk_score(r, m0)), renew


def _contact_rates(r: _Risk) -> tuple[Array, Array]:
    """Outbound and inbound contacts a month."""
    outbound = r.out_rate * np.where(r.neglected, NEGLECT_FACTOR, 1.0)
    return outbound, r.in_rate * np.exp(0.35 * r.s)


def _draw_last_contact(rate: Array, a: Array, b: Array, rng: np.random.Generator) -> Array:
    """Time of the last contact of a Poisson stream in [a, b) seconds (NAT if none)."""
    back = rng.standard_exponential(len(rate)) * MONTH_S / rate
    return np.where(back < b - a, np.floor(b - back).astype(np.int64), NAT)


def _office_hours(seconds: Array) -> Array:
    """Each time squeezed into 08:00-18:00 of its day (keeps the order and the day; NAT stays)."""
    day = seconds // DAY * DAY
    return np.where(seconds == NAT, NAT, day + 8 * 3600 + (seconds - day) * 10 // 24)


def _draw_nps(r: _Risk, t: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """Who answers this month's NPS survey (asked quarterly) and their score."""
    asked = np.flatnonzero((t - r.phase) % 3 == 0)
    s = r.s[asked]
    idx = asked[rng.random(len(asked)) < _sigmoid(NPS_RESPONSE + NPS_RESPONSE_SLOPE * s)]
    answered = np.zeros(len(r.s), dtype=bool)
    answered[idx] = True
    score = np.full(len(r.s), np.nan)
    raw = NPS_MEAN + NPS_SLOPE * r.s[idx] + NPS_SD * rng.standard_normal(len(idx))
    score[idx] = np.clip(np.round(raw), 0, 10)
    return answered, score


def _draw_invoices(r: _Risk, client: Array, rng: np.random.Generator) -> Array:
    """Outcome of each invoice (issued to `client`): 1 paid on time, 2 late, 3 disputed."""
    s = r.s[client]
    p_dispute = _sigmoid(DISPUTE_LOGIT + DISPUTE_SLOPE * s)
    late_logit = LATE_LOGIT + LATE_SLOPE * s + np.asarray(LATE_SEGMENT)[r.seg[client]]
    p_late = _sigmoid(late_logit + LATE_AFTER_DISPUTE * (r.d_old[client] > 0))
    u = rng.random(len(client))
    return np.where(u < p_dispute, 3, np.where(u < p_dispute + (1 - p_dispute) * p_late, 2, 1))


def _ticket_rates(r: _Risk) -> tuple[Array, Array]:
    """High/urgent and low/normal tickets a month."""
    rate = r.ticket_rate * np.exp(TICKET_SLOPE * r.s)
    high = _sigmoid(HIGH_LOGIT + HIGH_SLOPE * r.s)
    return rate * high, rate * (1 - high)


def _draw_line_change(r: _Risk, eligible: Array, m1: int, rng: np.random.Generator) -> Array:
    """Mid-term change: +1 a service line added, -1 one cancelled (others stay), 0 none."""
    room = (r.n_lines < MAX_LINES) & (r.end_day - m1 > 60)  # no add-on just before a renewal
    up = UPSELL_RATE * np.exp(UPSELL_SLOPE * r.s) * room
    down = CONTRACTION_RATE * np.exp(CONTRACTION_SLOPE * r.s) * (r.n_lines > 1)
    u = rng.random(len(r.s))
    return np.where(eligible, np.where(u < up, 1, np.where(u < up + down, -1, 0)), 0)


def _draw_renewal(r: _Risk, renew: Array, m1: int, rng: np.random.Generator) -> _Renewal:
    """Price, scope and timing of each renewal (the decision to stay is made before)."""
    n, idx = len(r.s), np.flatnonzero(renew)
    u = rng.random((len(idx), 5))
    s, lines, end = r.s[idx], r.n_lines[idx], r.end_day[idx]
    up = RENEWAL_UPSELL * np.exp(0.4 * s) * (lines < MAX_LINES)
    down = RENEWAL_CONTRACTION * np.exp(-0.5 * s)
    change = np.where(u[:, 2] < up, 1, np.where(u[:, 2] < up + down, -1, 0))
    room = np.maximum(m1 - 1 - end, 0)  # a late renewal still starts within the month
    late = np.minimum(1 + (20 * u[:, 4]).astype(np.int64), room)
    start = end + np.where(u[:, 3] < RENEWAL_GAP_SHARE, late, 0)  # back to back or a few days
    price, delta, cut = np.ones(n), np.zeros(n, dtype=np.int64), np.ones(n)
    price[idx] = np.where(u[:, 0] < PRICE_INCREASE_SHARE, 1.03 + 0.09 * u[:, 1], 1.0)
    delta[idx] = np.where((change > 0) | (lines > 1), change, 0)
    cut[idx] = np.where((change < 0) & (lines == 1), 0.75 + 0.15 * u[:, 1], 1.0)
    starts, ends = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    starts[idx], ends[idx] = start, _term_end(start, r.term[idx])
    return _Renewal(price, delta, cut, starts, ends)


def _next_risk(
    r: _Risk,
    rng: np.random.Generator,
    *,
    last: Array,
    nps: tuple[Array, Array],
    counts: tuple[Array, Array, Array, Array, Array],
    change: Array,
    renew: Array,
    renewal: _Renewal,
) -> _Risk:
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


def _thin(n: Array, p: Array | float, rng: np.random.Generator) -> Array:
    """Binomial(n, p) per element, fast when most n are 0."""
    out = np.zeros_like(n)
    idx = np.flatnonzero(n > 0)
    out[idx] = rng.binomial(n[idx], p[idx] if isinstance(p, np.ndarray) else p)
    return out


def _poisson(lam: Array, rng: np.random.Generator) -> Array:
    """Poisson(lam) per element by inversion; faster than Generator.poisson for small rates."""
    u = rng.random(len(lam))
    k = np.zeros(len(lam), dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    idx = np.flatnonzero(u > cdf)
    j = 0
    while idx.size and j < 100:
        j += 1
        k[idx] += 1
        p[idx] *= lam[idx] / j
        cdf[idx] += p[idx]
        idx = idx[u[idx] > cdf[idx]]
    return k


def _evolve(r: _Risk, t: int, cal: _Calendar, rng: np.random.Generator) -> _Risk:
    """One month of the state for clients who stay all month, without writing records."""
    m0, m1 = int(cal.day[t]), int(cal.day[t + 1])
    n = len(r.s)
    renew = _renewing(r, m0, m1)
    outbound, inbound = _contact_rates(r)
    raw = _draw_last_contact(outbound + inbound, np.full(n, m0 * DAY), np.full(n, m1 * DAY), rng)
    last = _office_hours(raw)
    nps = _draw_nps(r, t, rng)
    billed = np.repeat(np.arange(n), r.n_lines)  # one invoice per service line
    outcome = _draw_invoices(r, billed, rng)
    high, _ = _ticket_rates(r)
    new_high = _poisson(high * (m1 - m0) * DAY / MONTH_S, rng)
    counts = (
        np.bincount(billed[outcome == 3], minlength=n),
        _thin(r.d_new + r.d_old, 1 - r.r_dispute, rng),
        np.bincount(billed[outcome == 2], minlength=n),
        _thin(r.l_pend + r.l_old, 1 - r.q_pay, rng),
        _thin(r.hi_open, 1 - RESOLVE_MONTHLY[1], rng)
        + _thin(new_high, 1 - RESOLVE_SAME_MONTH[1], rng),
    )
    change = _draw_line_change(r, ~renew, m1, rng)
    renewal = _draw_renewal(r, renew, m1, rng)
    return _next_risk(
        r, rng, last=last, nps=nps, counts=counts, change=change, renew=renew, renewal=renewal
    )


def _take(r: _Risk, idx: Array) -> _Risk:
    """The rows `idx` of every state array."""
    return _Risk(**{f.name: getattr(r, f.name)[idx] for f in fields(r)})


def _merge(mask: Array, new: _Risk, old: _Risk) -> _Risk:
    """`new` where mask, else `old`."""
    return _Risk(
        **{f.name: np.where(mask, getattr(new, f.name), getattr(old, f.name)) for f in fields(new)}
    )


# ---------------------------------------------------------------------------------------------
# ground truth


def _window_weight(
    end_day: Array, renew: Array, as_of: int, m: int, dim: int, horizon: int
) -> Array:
    """Share of the month's possible churn dates inside the window (as_of, as_of + horizon]."""
    last = as_of + horizon
    cancel = np.clip(last - m, 0, dim - 1) / (dim - 1)  # cancellations fall on days 2..dim
    at_end = ((end_day > as_of) & (end_day <= last)).astype(float)
    return np.where(renew, at_end, cancel)


def _true_probability(r: _Risk, t: int, cal: _Calendar, rng: np.random.Generator) -> Array:
    """P(churn in (as_of, as_of + horizon] | state on as_of = 1st of month t) for each row of r."""
    as_of, horizon = int(cal.day[t]), cal.horizon_days
    hazard, renew = _hazard(r, as_of, int(cal.day[t + 1]))
    dim = int(cal.day[t + 1] - as_of)
    prob = hazard * _window_weight(r.end_day, renew, as_of, as_of, dim, horizon)
    paths = _take(r, np.repeat(np.arange(len(r.s)), TRUTH_PATHS))
    alive = np.repeat(1.0 - hazard, TRUTH_PATHS)
    total = np.zeros(len(alive))
    k = 1
    while cal.day[t + k] < as_of + horizon:
        paths = _evolve(paths, t + k - 1, cal, rng)
        m, dim = int(cal.day[t + k]), int(cal.day[t + k + 1] - cal.day[t + k])
        hazard, renew = _hazard(paths, m, m + dim)
        total += alive * hazard * _window_weight(paths.end_day, renew, as_of, m, dim, horizon)
        alive *= 1.0 - hazard
        k += 1
    return prob + total.reshape(-1, TRUTH_PATHS).mean(axis=1)


# ---------------------------------------------------------------------------------------------
# the simulation


def _run(
    pop: _Population, cal: _Calendar, rng: np.random.Generator, rng_truth: np.random.Generator
) -> dict[str, list[Chunk]]:
    """Simulate month by month and collect every record."""
    n = len(pop.seg)
    log: dict[str, list[Chunk]] = {k: [] for k in (*TABLES, "cancels", "truth")}
    book = _Book(pop.line_svc.copy(), pop.line_val.copy(), np.full((n, MAX_LINES), -1), 0)
    _open_rows(book, log, np.arange(n), pop.first_start, pop.first_end, pop.auto, cal)
    r = _seed_history(pop, cal, rng, log)
    schedule = np.zeros((3, n, cal.months + 1), dtype=np.int32)  # resolutions due per month
    alive = np.ones(n, dtype=bool)
    for t in range(cal.months):
        r, alive = _simulate_month(t, r, alive, pop, book, schedule, cal, rng, rng_truth, log)
    return log


def _seed_history(
    pop: _Population, cal: _Calendar, rng: np.random.Generator, log: dict[str, list[Chunk]]
) -> _Risk:
    """Initial state with its visible trace: a last contact and often an NPS answer before it."""
    r = pop.risk
    n = len(r.s)
    outbound, inbound = _contact_rates(r)
    back = (rng.standard_exponential(n) * MONTH_S / (outbound + inbound)).astype(np.int64)
    onboarding = pop.first_start * DAY + 10 * 3600
    before = np.maximum(_office_hours(cal.day[0] * DAY - 1 - back), onboarding)
    last = np.where(pop.initial, before, onboarding)
    log["interactions"].append(_contact_chunk(np.arange(n), last, rng.random(n) < 0.8, r.seg, rng))
    answered = pop.initial & (rng.random(n) < 0.6)
    idx = np.flatnonzero(answered)
    score = np.full(n, np.nan)
    raw = NPS_MEAN + NPS_SLOPE * r.s[idx] + NPS_SD * rng.standard_normal(len(idx))
    score[idx] = np.clip(np.round(raw), 0, 10)
    when = cal.day[0] * DAY - rng.integers(DAY, 90 * DAY, len(idx))
    when = np.maximum(when, pop.first_start[idx] * DAY + DAY)
    log["feedback"].append(_survey_chunk(idx, when, 0, score[idx], rng))
    return replace(r, last_contact=last, last_nps=score)


def _simulate_month(
    t: int,
    r: _Risk,
    alive: Array,
    pop: _Population,
    book: _Book,
    schedule: Array,
    cal: _Calendar,
    rng: np.random.Generator,
    rng_truth: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> tuple[_Risk, Array]:
    """Decide who leaves in month t, write the month's records and return the next state."""
    m0, m1 = int(cal.day[t]), int(cal.day[t + 1])
    active = alive & (pop.first_start < m0)  # active on the 1st: exposed to the hazard
    hazard, renew = _hazard(r, m0, m1)
    if t >= 1:  # truth from the second month on
        idx = np.flatnonzero(active)
        prob = _true_probability(_take(r, idx), t, cal, rng_truth)
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
    _cancel_lines(book, log, leave & ~renew, book.line_svc >= 0, churn_day)
    change = _draw_line_change(r, stay & active & ~renew, m1, rng)
    renewal = _draw_renewal(r, stay & renew, m1, rng)
    _apply_renewals(book, log, stay & renew, renewal, pop, cal, rng)
    _apply_line_changes(book, log, change, r.end_day, pop, m0, m1, cal, rng)
    new = _next_risk(
        r, rng, last=last, nps=nps, counts=counts, change=change, renew=renew, renewal=renewal
    )
    return _merge(present, new, r), alive & ~leave


def _write_activity(
    t: int,
    r: _Risk,
    present: Array,
    active: Array,
    a: Array,
    b: Array,
    pop: _Population,
    book: _Book,
    schedule: Array,
    cal: _Calendar,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> tuple[tuple[Array, Array, Array, Array, Array], Array, tuple[Array, Array]]:
    """Write the month's contacts, surveys, invoices, tickets and usage; return the new counts."""
    n = len(r.s)
    last = _write_contacts(r, present, a, b, rng, log)
    answered, score = _draw_nps(r, t, rng)
    answered &= present
    idx = np.flatnonzero(answered)
    when = _uniform_time(rng, a[idx], b[idx])
    log["feedback"].append(_survey_chunk(idx, when, 0, score[idx], rng))
    issue = cal.day[t] + pop.issue_offset
    client, slot = np.nonzero((book.line_svc >= 0) & (active & (issue * DAY < b))[:, None])
    outcome = _draw_invoices(r, client, rng)
    amount = book.line_val[client, slot]
    log["invoices"].append(
        _invoice_chunk(client, outcome, amount, issue, t, r, schedule[0:2], cal, rng)
    )
    new_high = _write_tickets(t, r, present, a, b, schedule[2], cal, rng, log)
    log["events"].append(_event_chunk(r, present, a, b, book.line_val, rng))
    counts = (
        np.bincount(client[outcome == 3], minlength=n),
        r.d_old + r.d_new - schedule[0, :, t],
        np.bincount(client[outcome == 2], minlength=n),
        r.l_old + r.l_pend - schedule[1, :, t],
        r.hi_open + new_high - schedule[2, :, t],
    )
    return counts, last, (answered, score)


# ---------------------------------------------------------------------------------------------
# records


def _contact_chunk(
    client: Array, when: Array, outbound: Array, seg: Array, rng: np.random.Generator
) -> Chunk:
    """Interaction rows; the channel mix depends on direction and segment."""
    probs = np.where(outbound[:, None], np.asarray(OUT_CHANNELS)[seg[client]], IN_CHANNELS)
    channel = _pick(rng, probs) if len(client) else np.zeros(0, dtype=np.int64)
    return {"client": client, "at": when, "channel": channel, "direction": outbound.astype(int)}


def _write_contacts(
    r: _Risk,
    present: Array,
    a: Array,
    b: Array,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> Array:
    """Write the month's interactions; return each client's last contact time (NAT if none)."""
    outbound, inbound = _contact_rates(r)
    rate = outbound + inbound
    last = np.where(present, _draw_last_contact(rate, a, b, rng), NAT)
    has = np.flatnonzero(last != NAT)
    earlier = rng.poisson(rate[has] * (last[has] - a[has]) / MONTH_S)
    client = np.concatenate([has, np.repeat(has, earlier)])
    start = np.concatenate([last[has], np.repeat(a[has], earlier)])
    stop = np.concatenate([last[has] + 1, np.repeat(last[has], earlier)])
    when = _office_hours(_uniform_time(rng, start, stop))
    out = rng.random(len(client)) < (outbound / rate)[client]
    log["interactions"].append(_contact_chunk(client, when, out, r.seg, rng))
    return _office_hours(last)


def _survey_chunk(
    client: Array, when: Array, survey: int, score: Array, rng: np.random.Generator
) -> Chunk:
    """Feedback rows; some carry a comment (detractors complain, promoters praise)."""
    return {
        "client": client,
        "at": when,
        "survey": np.full(len(client), survey),
        "score": score,
        "comment": _draw_comment(survey, score, rng),
    }


def _draw_comment(survey: int, score: Array, rng: np.random.Generator) -> Array:
    """Index into COMMENTS matching the score band, or -1 for no comment."""
    pools = NPS_COMMENTS if survey == 0 else CSAT_COMMENTS
    band = np.searchsorted((6.5, 8.5) if survey == 0 else (2.5, 3.5), score)
    sizes = np.asarray([len(p) for p in pools])
    first = len(COMMENTS) - sum(len(p) for p in CSAT_COMMENTS) if survey else 0
    offsets = first + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = offsets[band] + (rng.random(len(score)) * sizes[band]).astype(np.int64)
    return np.where(rng.random(len(score)) < COMMENT_SHARE, pick, -1)


def _geometric_month(t: int, p: Array, rng: np.random.Generator) -> Array:
    """Month of an outcome that happens each month from t + 1 on with probability p."""
    return t + rng.geometric(p)


def _day_in_month(month: Array, cal: _Calendar, rng: np.random.Generator) -> Array:
    """A uniform day in each given month."""
    m0 = cal.day[month]
    return m0 + (rng.random(len(month)) * (cal.day[month + 1] - m0)).astype(np.int64)


def _schedule(schedule: Array, client: Array, month: Array, months: int) -> None:
    """Count resolutions due in each month inside the data."""
    keep = month < months
    np.add.at(schedule, (client[keep], month[keep]), 1)


def _invoice_chunk(
    client: Array,
    cat: Array,
    value: Array,
    issue: Array,
    t: int,
    r: _Risk,
    schedule: Array,
    cal: _Calendar,
    rng: np.random.Generator,
) -> Chunk:
    """Invoice rows for the month with payment, late payment and disputes."""
    n = len(client)
    issued = issue[client]
    due = issued + 30
    paid = issued + 8 + (rng.random(n) * 22).astype(np.int64)  # on time
    late_month = np.minimum(_geometric_month(t, r.q_pay[client], rng), len(cal.day) - 2)
    due_end = cal.day[np.searchsorted(cal.day, due, side="right")]  # 1st after the due month
    after_due = due + 1 + (rng.random(n) * (due_end - due - 1)).astype(np.int64)
    late_paid = np.where(late_month == t + 1, after_due, _day_in_month(late_month, cal, rng))
    month_end = cal.day[t + 1]
    disputed = issued + 1 + (rng.random(n) * (month_end - issued - 2)).astype(np.int64)
    resolve_month = np.minimum(_geometric_month(t, r.r_dispute[client], rng), len(cal.day) - 2)
    resolved = _day_in_month(resolve_month, cal, rng)
    _schedule(schedule[0], client[cat == 3], resolve_month[cat == 3], cal.months)
    _schedule(schedule[1], client[cat == 2], late_month[cat == 2], cal.months)
    paid = np.select([cat == 1, cat == 2], [paid, late_paid], resolved)
    return {
        "client": client,
        "issued": issued,
        "due": due,
        "amount": np.round(value * np.exp(0.06 * rng.standard_normal(n)), 2),
        "paid": _before(paid, cal.end),
        "disputed": np.where(cat == 3, disputed, NAT),
        "resolved": np.where(cat == 3, _before(resolved, cal.end), NAT),
        "reason": np.where(cat == 3, rng.integers(0, len(DISPUTE_REASONS), n), -1),
    }


def _before(day: Array, end: int) -> Array:
    """Days on or after the end of the data are not known yet (NAT)."""
    return np.where(day < end, day, NAT)


def _write_tickets(
    t: int,
    r: _Risk,
    present: Array,
    a: Array,
    b: Array,
    schedule: Array,
    cal: _Calendar,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> Array:
    """Write the month's tickets and CSAT answers; return new high tickets open at month end."""
    high_rate, low_rate = _ticket_rates(r)
    span = np.where(present, (b - a) / MONTH_S, 0.0)
    n_high, n_low = rng.poisson(high_rate * span), rng.poisson(low_rate * span)
    everyone = np.arange(len(span))
    client = np.concatenate([np.repeat(everyone, n_high), np.repeat(everyone, n_low)])
    high = np.arange(len(client)) < n_high.sum()
    opened = _uniform_time(rng, a[client], b[client])
    resolved, month = _resolve_tickets(t, opened, high, cal, rng)
    carried = high & (month > t)  # high tickets still open at the end of the month
    _schedule(schedule, client[carried], month[carried], cal.months)
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
    _write_csat(r, client, resolved, month > t, cal, rng, log)
    return np.bincount(client[carried], minlength=len(span))


def _resolve_tickets(
    t: int, opened: Array, high: Array, cal: _Calendar, rng: np.random.Generator
) -> tuple[Array, Array]:
    """Resolution time (NAT if after the data) and month of tickets opened in month t.

    Most are fixed within days in their own month; the rest close in a later month, each month
    with a fixed probability (memoryless, so the forward simulation can redraw them).
    """
    n = len(opened)
    same = rng.random(n) < np.where(high, RESOLVE_SAME_MONTH[1], RESOLVE_SAME_MONTH[0])
    later = _geometric_month(t, np.where(high, RESOLVE_MONTHLY[1], RESOLVE_MONTHLY[0]), rng)
    later = np.minimum(later, len(cal.day) - 2)
    later_at = _uniform_time(rng, cal.day[later] * DAY, cal.day[later + 1] * DAY)
    month_end = cal.day[t + 1] * DAY
    quick = opened + (rng.random(n) ** 3 * (month_end - opened)).astype(np.int64)
    resolved = np.where(same, quick, later_at)
    return np.where(resolved < cal.end * DAY, resolved, NAT), np.where(same, t, later)


def _write_csat(
    r: _Risk,
    client: Array,
    resolved: Array,
    slow: Array,
    cal: _Calendar,
    rng: np.random.Generator,
    log: dict[str, list[Chunk]],
) -> None:
    """CSAT answers after some resolved tickets."""
    at = resolved + rng.integers(1800, 2 * DAY, len(client))
    keep = (resolved != NAT) & (at < cal.end * DAY) & (rng.random(len(client)) < CSAT_SHARE)
    c = client[keep]
    raw = 4.3 + 0.7 * r.s[c] - 0.6 * slow[keep] + 0.7 * rng.standard_normal(len(c))
    log["feedback"].append(_survey_chunk(c, at[keep], 1, np.clip(np.round(raw), 1, 5), rng))


def _event_chunk(
    r: _Risk, present: Array, a: Array, b: Array, line_val: Array, rng: np.random.Generator
) -> Chunk:
    """Usage events: monthly billable hours, portal logins and deliverables."""
    idx = np.flatnonzero(present & (b > a))
    span = (b[idx] - a[idx]) / MONTH_S
    noise = np.exp(0.2 * r.s[idx] + 0.12 * rng.standard_normal(len(idx)))
    hours = np.round(line_val[idx].sum(axis=1) / HOURLY_RATE * noise * span * 4) / 4
    hours_at = (b[idx] - 1) // DAY * DAY
    logins = rng.poisson(np.asarray(LOGIN_RATE)[r.seg[idx]] * np.exp(0.5 * r.s[idx]) * span)
    delivered = rng.poisson(
        np.asarray(DELIVERABLE_RATE)[r.seg[idx]] * np.exp(0.2 * r.s[idx]) * span
    )
    repeat = np.concatenate([np.repeat(idx, logins), np.repeat(idx, delivered)])
    when = _uniform_time(rng, a[repeat], b[repeat])
    minutes = np.round(np.exp(2.7 + 0.6 * rng.standard_normal(logins.sum())))
    return {
        "client": np.concatenate([idx, repeat]),
        "at": np.concatenate([hours_at, when]),
        "type": np.concatenate(
            [np.zeros(len(idx)), np.ones(logins.sum()), np.full(delivered.sum(), 2)]
        ).astype(int),
        "value": np.concatenate([hours, minutes, np.ones(delivered.sum())]),
    }


# ---------------------------------------------------------------------------------------------
# contracts


def _open_rows(
    book: _Book,
    log: dict[str, list[Chunk]],
    client: Array,
    start: Array,
    end: Array,
    auto: Array,
    cal: _Calendar,
) -> None:
    """Write a contract row for every line of the given clients, starting on `start`."""
    c, slot = np.nonzero(book.line_svc[client] >= 0)
    c_start = start[c]
    written = c_start < cal.end  # a renewal starting after the data ends is not known yet
    rows = np.full(len(c), -1)
    rows[written] = book.next_row + np.arange(written.sum())
    book.next_row += int(written.sum())
    book.line_row[client[c], slot] = rows
    w = written
    log["contracts"].append(
        {
            "row": rows[w],
            "client": client[c][w],
            "svc": book.line_svc[client[c], slot][w],
            "start": c_start[w],
            "end": np.where(end[c] >= FAR_DAY, NAT, end[c])[w],
            "value": book.line_val[client[c], slot][w],
            "auto": auto[c][w],
        }
    )


def _cancel_lines(
    book: _Book, log: dict[str, list[Chunk]], who: Array, slots: Array, day: Array
) -> None:
    """Cancel the chosen lines of the chosen clients on `day` and free their slots."""
    c, slot = np.nonzero(slots & who[:, None])
    rows = book.line_row[c, slot]
    log["cancels"].append({"row": rows[rows >= 0], "day": day[c][rows >= 0]})
    book.line_svc[c, slot] = -1
    book.line_val[c, slot] = 0.0
    book.line_row[c, slot] = -1


def _random_slot(rng: np.random.Generator, usable: Array) -> Array:
    """A random usable slot per row, as a one-hot mask."""
    keys = np.where(usable, rng.random(usable.shape), np.inf)
    hot = np.zeros(usable.shape, dtype=bool)
    rows = np.flatnonzero(usable.any(axis=1))
    hot[rows, np.argmin(keys[rows], axis=1)] = True
    return hot


def _add_line(book: _Book, who: Array, seg: Array, rng: np.random.Generator) -> Array:
    """Add a service line the client does not hold yet; return the one-hot mask of new slots."""
    n = len(who)
    held = np.zeros((n, len(SERVICE_LINES)), dtype=bool)
    rows, slots = np.nonzero(book.line_svc >= 0)
    held[rows, book.line_svc[rows, slots]] = True
    keys = np.where(held, np.inf, -np.log(rng.random(held.shape)) / np.asarray(SERVICE_WEIGHT))
    svc = np.argmin(keys, axis=1)
    slot = _random_slot(rng, (book.line_svc < 0) & who[:, None])
    c, s = np.nonzero(slot)
    book.line_svc[c, s] = svc[c]
    book.line_val[c, s] = _line_value(seg[c], rng, (len(c),)) * 0.6
    return slot


def _apply_renewals(
    book: _Book,
    log: dict[str, list[Chunk]],
    who: Array,
    ren: _Renewal,
    pop: _Population,
    cal: _Calendar,
    rng: np.random.Generator,
) -> None:
    """Renew every line of the clients who stay: drop or add a line, reprice, write new rows."""
    drop = _random_slot(rng, (book.line_svc >= 0) & (who & (ren.delta < 0))[:, None])
    c, s = np.nonzero(drop)
    book.line_svc[c, s], book.line_val[c, s], book.line_row[c, s] = -1, 0.0, -1
    _add_line(book, who & (ren.delta > 0), pop.seg, rng)
    factor = (ren.price * ren.cut)[:, None]
    book.line_val[:] = np.where(
        who[:, None], np.round(book.line_val * factor / 10) * 10, book.line_val
    )
    idx = np.flatnonzero(who)
    _open_rows(book, log, idx, ren.start[idx], ren.end[idx], pop.auto[idx], cal)


def _apply_line_changes(
    book: _Book,
    log: dict[str, list[Chunk]],
    change: Array,
    end_day: Array,
    pop: _Population,
    m0: int,
    m1: int,
    cal: _Calendar,
    rng: np.random.Generator,
) -> None:
    """Mid-term upsell (a new co-terminous line) and contraction (one line cancelled)."""
    day = m0 + 7 + (rng.random(len(change)) * (m1 - m0 - 8)).astype(np.int64)  # after invoicing
    dropped = _random_slot(rng, (book.line_svc >= 0) & (change < 0)[:, None])
    _cancel_lines(book, log, change < 0, dropped, day)
    added = _add_line(book, change > 0, pop.seg, rng)
    c, s = np.nonzero(added)
    row = book.next_row + np.arange(len(c))
    book.next_row += len(c)
    book.line_row[c, s] = row
    log["contracts"].append(
        {
            "row": row,
            "client": c,
            "svc": book.line_svc[c, s],
            "start": day[c],
            "end": np.where(end_day[c] >= FAR_DAY, NAT, end_day[c]),
            "value": book.line_val[c, s],
            "auto": pop.auto[c],
        }
    )


# ---------------------------------------------------------------------------------------------
# typed tables


@dataclass(frozen=True)
class _Coded:
    """A text column as integer codes into labels (-1 = missing)."""

    codes: Array
    labels: tuple[str, ...]


ColumnData: TypeAlias = Array | pa.Array | _Coded  # seconds for timestamps, numbers, flags, text


def _assemble(pop: _Population, log: dict[str, list[Chunk]]) -> CRMData:
    """The contract tables, each column typed as the contract says."""
    ids = _ids("C", len(pop.seg), _id_width(len(pop.seg)))
    client_dtype = pd.CategoricalDtype(pd.Index(_text(ids), name="client_id"))
    columns = {
        "clients": _clients_columns(pop, ids),
        "contracts": _contracts_columns(log),
        "interactions": _interactions_columns(_concat(log["interactions"])),
        "feedback": _feedback_columns(_concat(log["feedback"])),
        "invoices": _invoices_columns(_concat(log["invoices"])),
        "tickets": _tickets_columns(_concat(log["tickets"])),
        "events": _events_columns(_concat(log["events"])),
    }
    return from_frames(
        {name: _typed_frame(name, cols, client_dtype) for name, cols in columns.items()}
    )


def _typed_frame(
    name: str, cols: dict[str, ColumnData], client_dtype: pd.CategoricalDtype
) -> pd.DataFrame:
    """A frame with every column of the contract table, typed per its kind."""
    spec = TABLES[name]
    return pd.DataFrame(
        {c.name: _typed(c, cols[c.name], client_dtype) for c in spec.columns if c.name in cols}
    )


def _typed(column: Column, value: ColumnData, client_dtype: pd.CategoricalDtype) -> pd.Series:
    """One column in the contract dtype (child tables' client_id: categorical over all clients)."""
    if isinstance(value, _Coded):
        return _typed_codes(column, value, client_dtype)
    if column.kind == Kind.DATETIME:
        return pd.Series(np.asarray(value, dtype=np.int64).view("M8[s]")).dt.tz_localize("UTC")
    if column.kind == Kind.NUMBER:
        return pd.Series(np.asarray(value, dtype=np.float64))
    if column.kind == Kind.BOOL:
        return pd.Series(np.asarray(value, dtype=bool))
    return _text(value)


def _typed_codes(column: Column, value: _Coded, client_dtype: pd.CategoricalDtype) -> pd.Series:
    """A coded text column as str or categorical, per the contract."""
    codes, labels = value.codes, value.labels
    if column.name == "client_id":
        return pd.Series(pd.Categorical.from_codes(codes, dtype=client_dtype))
    if column.kind in (Kind.CHOICE, Kind.CATEGORY):
        found = np.unique(codes[codes >= 0])
        kept = column.choices if column.kind == Kind.CHOICE else sorted(labels[i] for i in found)
        where = {label: i for i, label in enumerate(kept)}
        recode = np.asarray([where.get(label, -1) for label in labels] + [-1])
        return pd.Series(pd.Categorical.from_codes(recode[codes], categories=pd.Index(kept)))
    return _text(pa.array(labels).take(pa.array(codes, mask=codes < 0)))


def _concat(chunks: list[Chunk]) -> Chunk:
    """One array per column from the monthly chunks."""
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _sorted(cols: Chunk, *keys: str) -> Chunk:
    """Rows ordered by the given columns (first key most significant)."""
    order = np.lexsort([cols[k] for k in reversed(keys)])
    return {k: v[order] for k, v in cols.items()}


def _id_width(n: int) -> int:
    """Digits in client ids."""
    return max(6, len(str(n)))


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """Identifiers like C000001."""
    digits = pc.utf8_lpad(pa.array(np.arange(1, n + 1)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _text(values: pa.Array | pa.ChunkedArray | Array) -> pd.Series:
    """A pandas str column."""
    return pd.Series(values, dtype="str")


def _seconds(days: Array) -> Array:
    """Midnights in seconds from days since the epoch (NAT stays NAT)."""
    return np.where(days == NAT, NAT, days * DAY)


def _clients_columns(pop: _Population, ids: pa.Array) -> dict[str, ColumnData]:
    """The clients table."""
    words = pa.array((*COMPANY_WORDS, *LAST_NAMES))
    suffixes = pa.array([f" {s}" if s else "" for s in COMPANY_SUFFIXES])
    name = pc.binary_join_element_wise(
        words.take(pop.name[:, 0]),
        " ",
        pa.array(COMPANY_NOUNS).take(pop.name[:, 1]),
        suffixes.take(pop.name[:, 2]),
        "",
    )
    return {
        "client_id": ids,
        "name": name,
        "account_manager": _Coded(pop.manager, pop.managers),
        "segment": _Coded(pop.seg, SEGMENTS),
        "industry": _Coded(pop.industry, INDUSTRIES),
        "region": _Coded(pop.region, REGIONS),
        "client_since": _seconds(pop.since_day),
    }


def _contracts_columns(log: dict[str, list[Chunk]]) -> dict[str, ColumnData]:
    """The contracts table, cancellations applied, in start order."""
    rows = _concat(log["contracts"])
    rows = {k: v[np.argsort(rows["row"])] for k, v in rows.items()}
    cancels = _concat(log["cancels"])
    cancelled = np.full(len(rows["row"]), NAT)
    cancelled[cancels["row"]] = cancels["day"]
    rows = _sorted({**rows, "cancelled": cancelled}, "start", "client", "svc")
    return {
        "contract_id": _ids("K", len(rows["row"]), 7),
        "client_id": _Coded(rows["client"], ()),
        "service_line": _Coded(rows["svc"], SERVICE_LINES),
        "start_date": _seconds(rows["start"]),
        "end_date": _seconds(rows["end"]),
        "monthly_value": rows["value"],
        "auto_renew": rows["auto"],
        "cancelled_at": _seconds(rows["cancelled"]),
    }


def _interactions_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The interactions table in time order."""
    cols = _sorted(cols, "at", "client")
    return {
        "client_id": _Coded(cols["client"], ()),
        "occurred_at": cols["at"],
        "channel": _Coded(cols["channel"], CHANNELS),
        "direction": _Coded(cols["direction"], DIRECTIONS),
    }


def _feedback_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The feedback table in time order."""
    cols = _sorted(cols, "at", "client", "survey")
    return {
        "client_id": _Coded(cols["client"], ()),
        "submitted_at": cols["at"],
        "survey": _Coded(cols["survey"], SURVEYS),
        "score": cols["score"],
        "comment": _Coded(cols["comment"], COMMENTS),
    }


def _invoices_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The invoices table in issue order."""
    cols = _sorted(cols, "issued", "client", "amount")
    return {
        "invoice_id": _ids("INV-", len(cols["client"]), 8),
        "client_id": _Coded(cols["client"], ()),
        "issued_at": _seconds(cols["issued"]),
        "due_at": _seconds(cols["due"]),
        "amount": cols["amount"],
        "paid_at": _seconds(cols["paid"]),
        "disputed_at": _seconds(cols["disputed"]),
        "dispute_resolved_at": _seconds(cols["resolved"]),
        "dispute_reason": _Coded(cols["reason"], DISPUTE_REASONS),
    }


def _tickets_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The tickets table in opening order."""
    cols = _sorted(cols, "opened", "client", "priority")
    return {
        "ticket_id": _ids("T", len(cols["client"]), 7),
        "client_id": _Coded(cols["client"], ()),
        "opened_at": cols["opened"],
        "resolved_at": cols["resolved"],
        "priority": _Coded(cols["priority"], PRIORITIES),
        "category": _Coded(cols["category"], TICKET_CATEGORIES),
    }


def _events_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The events table in time order."""
    cols = _sorted(cols, "at", "client", "type")
    return {
        "client_id": _Coded(cols["client"], ()),
        "occurred_at": cols["at"],
        "event_type": _Coded(cols["type"], EVENT_TYPES),
        "value": cols["value"],
    }


def _truth_frame(chunks: list[Chunk], n: int) -> pd.DataFrame:
    """The true churn probability per (client, as_of), in as_of then client order."""
    cols = _concat(chunks) if chunks else {k: np.zeros(0, np.int64) for k in ("client", "as_of")}
    ids = _ids("C", n, _id_width(n))
    return pd.DataFrame(
        {
            "client_id": _text(ids.take(cols["client"])),
            "as_of": pd.Series(_seconds(cols["as_of"]).view("M8[s]")).dt.tz_localize("UTC"),
            "true_probability": cols.get("p", np.zeros(0)).astype(np.float64),
        }
    )


# ---------------------------------------------------------------------------------------------
# files


def _arrow_table(df: pd.DataFrame, date_columns: tuple[str, ...] | None) -> pa.Table:
    """An Arrow table of `df`; for CSV (date_columns given) timestamps become ISO 8601 text."""
    columns = {}
    for name, series in df.items():
        column = _arrow_column(series)
        if date_columns is not None and pa.types.is_timestamp(column.type):
            column = _iso(column, name in date_columns)
        columns[str(name)] = column
    return pa.table(columns)


def _arrow_column(series: pd.Series) -> pa.Array:
    """One column as Arrow: timestamps in UTC seconds, categoricals as dictionaries."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        seconds = series.dt.tz_convert(None).to_numpy().astype("M8[s]")
        return pa.array(seconds, type=pa.timestamp("s", tz="UTC"), from_pandas=True)
    return pa.array(series.array, from_pandas=True)


def _iso(column: pa.Array, date: bool) -> pa.Array:
    """2024-03-01 for dates, 2024-03-01T14:05:00Z for datetimes; nulls stay null."""
    seconds = column.cast(pa.int64())
    if date:
        days = pc.divide(seconds, DAY).cast(pa.int32()).cast(pa.date32())
        return days.cast(pa.string())
    text = seconds.cast(pa.timestamp("s")).cast(pa.string())
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T"), "Z", "")


def _write_atomic(path: Path, table: pa.Table, fmt: str) -> None:
    """Write `table` to a temp file beside `path`, then move it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if fmt == "csv":
            pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
