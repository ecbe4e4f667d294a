"""Portfolio figures for the admin dashboard: client and revenue movements per calendar month, and
the churn risk in each client's latest score.

**Months.** A month is ``[month_start, next_month_start)`` in UTC; ``monthly_portfolio`` reports
the last ``months`` complete ones before ``until``. Churn is the project's definition in
``labels.py``: activity periods bridge renewal gaps of up to ``grace_days``, and a period's end is
a churn once its grace period lies inside the data. It is judged with all the data, up to
``labels.observation_end``, also when ``until`` is earlier: past months are restated as known now.

- **Active at a boundary** (``clients_start`` at the month's start; ``clients_end`` at its end,
  which is the next month's start, so ``clients_end`` equals the next ``clients_start``): in an
  activity period with ``start < boundary <= churn date``. That is the state just before the
  boundary, at the close of the previous day. A period ending exactly at the month start (its last
  contract has ``end_date`` = the 1st, covered until that midnight) is active at the start and
  churned in the month, the month ``labels.churn_dates`` dates it in; a period starting on the 1st
  is new in the month and not active at its start.
- **Not churned.** A period still covered, or whose end is pending (its grace period runs past the
  end of the data), is active from its start on and never counted as churned. So a client that
  left in the last ``grace_days`` of the data shows as active until it is known not to return,
  and recent months' churn can still rise: with the default 30 days, the last month of the data
  shows almost none. ``pending_clients`` counts the periods ending in the month whose churn is
  pending in this way (they are in ``clients_end``). A renewal inside the grace period is neither
  churn nor new: the client stays active, and its revenue carried, through the gap.
- ``new_clients``: activity periods starting in the month: a first contract, or a return after a
  churn (the client was counted as churned when it left).
- ``churned_clients``: activity periods whose churn date falls in the month.
- A period both new and churned in the month counts in ``new_clients`` and ``churned_clients`` and
  in neither ``clients_start`` nor ``clients_end``. So ``clients_end == clients_start +
  new_clients - churned_clients`` always. A client has at most one period at a time, so counting
  periods counts clients.
- ``retention_rate`` = ``(clients_end - new_clients) / clients_start * 100``, which by the identity
  is ``100 - churn_rate``: a client both new and churned in the month lowers it too.
- **Revenue** is the monthly value of ``labels.py`` (the summed ``monthly_value`` of the covering
  contracts, carried through a bridged gap) taken at the same instants as the counts, summed over
  the clients active then: ``revenue_start``, ``revenue_end``. A pending period keeps its last
  value, as it keeps its place in the count.
- ``revenue_churned``: each churned period's monthly value just before its churn date, i.e. its
  last value (a contraction earlier in the same month lowers it; it is not counted twice).
- ``revenue_new``: the value at the month's end of the clients new in the month (0 for one that
  also churned in it).
- ``revenue_churn_rate`` = ``revenue_churned / revenue_start * 100``; ``net_revenue_retention`` =
  ``(revenue_end - revenue_new) / revenue_start * 100``: the revenue of the month-start clients at
  the month's end against its start, raised by expansion, lowered by contraction and churn.
- Every percentage is NaN when its denominator is 0.

**Risk.** ``risk_summary`` aggregates each client's latest score (``current_scores``) in SQL,
in one read transaction (``ScoreStore.read_snapshot``) so that a batch written meanwhile cannot
make its figures disagree: clients, summed revenue at risk, clients per risk band (every band of
``explain.RISK_BANDS``, 0 when empty), a histogram of probability in ten bins ``[lo, hi)`` (the
last includes 1.0), and revenue at risk and clients by account manager and by segment, largest
revenue first, with scores that have none (NULL or empty) grouped as ``"Unassigned"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from churnguard.domain import churn as labels
from churnguard.domain.contract import CRMData
from churnguard.scoring.risk import RISK_BANDS
from churnguard.store.scores import ScoreStore

UNASSIGNED = "Unassigned"  # the group of scores without an account manager (or segment)
HISTOGRAM_BINS = 10
_DAY = 86_400  # seconds
_NEVER = np.iinfo(np.int64).max  # the end of a period that has not (knowably) churned


def retention_rate(clients_start: int, clients_end: int, new_clients: int) -> float:
    """((clients at end of period - new clients in the period) / clients at start) x 100.

    NaN when clients_start == 0.
    """
    return _percent(clients_end - new_clients, clients_start)


def _percent(part: float, whole: float) -> float:
    return 100 * part / whole if whole else math.nan


@dataclass(frozen=True)
class MonthStats:
    """One calendar month [month_start, next_month_start); the module docstring defines each."""

    month: date  # first day of the month
    clients_start: int
    clients_end: int
    new_clients: int
    churned_clients: int
    retention_rate: float
    churn_rate: float
    revenue_start: float
    revenue_end: float
    revenue_churned: float
    revenue_churn_rate: float
    net_revenue_retention: float
    revenue_new: float = math.nan  # value at month end of the month's new clients
    pending_clients: int = 0  # periods ended in the month whose churn is still pending


@dataclass(frozen=True)
class _Book:
    """Every activity period, and each client's monthly value between its change points."""

    start: np.ndarray  # per period: its start, seconds since the epoch
    end: np.ndarray  # its churn date, _NEVER when it has not churned (open or pending)
    pending: np.ndarray  # its end when that is pending, else _NEVER
    lost: np.ndarray  # its monthly value just before the churn date (0 when not churned)
    t: np.ndarray  # per change point (sorted by client, then time): its time
    next_t: np.ndarray  # the client's next change point, _NEVER after its last
    value: np.ndarray  # monthly value from t to next_t (0 after a churn)
    period: np.ndarray  # the period the point belongs to


def _book(contracts: pd.DataFrame, grace_days: int, observed: pd.Timestamp) -> _Book:
    """Activity periods and churns from labels.py, with labels' timeline of monthly values."""
    periods = labels.activity_periods(contracts, grace_days, observed)
    tl = labels._timeline(contracts)  # the monthly value rule, carried through bridged gaps
    opens = labels._span_starts(tl, grace_days * _DAY)  # the points activity_periods starts at
    assert len(periods) == opens.sum(), "labels' timeline and activity periods disagree"
    closes = np.append(opens[1:], True)[: len(opens)]  # last point of its period
    churned, pending = periods["churned"].to_numpy(bool), periods["pending"].to_numpy(bool)
    period = np.cumsum(opens) - 1
    same_client = np.append(tl.code[1:] == tl.code[:-1], False)[: len(opens)]
    return _Book(
        start=tl.t[opens],
        end=np.where(churned, tl.t[closes], _NEVER),
        pending=np.where(pending, tl.t[closes], _NEVER),
        lost=np.where(churned, tl.value[closes], 0.0),  # the end point carries the value before
        t=tl.t,
        next_t=np.where(same_client, np.append(tl.t[1:], 0)[: len(opens)], _NEVER),
        value=np.where(closes & churned[period], 0.0, tl.value),
        period=period,
    )


def _client_counts(book: _Book, bounds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Clients active at each boundary; new, churned and pending clients in each month."""
    started, churned, pending = (
        np.searchsorted(np.sort(times), bounds, side="left")  # how many are before each boundary
        for times in (book.start, book.end, book.pending)
    )
    return started - churned, np.diff(started), np.diff(churned), np.diff(pending)


def _revenue(book: _Book, bounds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Monthly value at each boundary: of all active clients, and of those new in the month ending
    there; and the value churned in each month."""
    n = len(bounds)
    # a point's value is the client's at every boundary b with t < b <= next_t
    first = np.searchsorted(bounds, book.t, side="right")
    last = np.searchsorted(bounds, book.next_t, side="right") - 1
    held = first <= last
    v = book.value[held]
    total = np.cumsum(np.bincount(first[held], v, n + 1) - np.bincount(last[held] + 1, v, n + 1))
    # the boundary closing the month each point's period started in (0: before the first month)
    closing = np.searchsorted(bounds, book.start, side="right")[book.period]
    new = held & (first <= closing) & (closing <= last)
    new_total = np.bincount(closing[new], book.value[new], n)
    month = np.searchsorted(bounds, book.end, side="right") - 1
    in_range = (month >= 0) & (month < n - 1)
    lost = np.bincount(month[in_range], book.lost[in_range], n - 1)
    return np.round(total[:n], 6), np.round(new_total, 6), np.round(lost, 6)  # drop float noise


def _month_starts(until: pd.Timestamp, months: int) -> pd.DatetimeIndex:
    """The starts of the last ``months`` whole months before ``until``, and the last one's end."""
    u = until.tz_localize("UTC") if until.tzinfo is None else until.tz_convert("UTC")
    last = pd.Timestamp(year=u.year, month=u.month, day=1, tz="UTC")
    return pd.date_range(end=last, periods=months + 1, freq="MS", unit="s")


def monthly_portfolio(
    crm: CRMData, *, months: int = 12, until: pd.Timestamp | None = None, grace_days: int = 30
) -> list[MonthStats]:
    """The last `months` complete calendar months before `until`, oldest first.

    `until` defaults to the data's observed end (``labels.observation_end``); months ending after
    that are refused, since the data does not cover them. The module docstring defines the figures.
    """
    if months < 1:
        raise ValueError(f"months must be >= 1, got {months}")
    observed = labels.observation_end(crm)
    starts = _month_starts(pd.Timestamp(observed if until is None else until), months)
    if starts[-1] > observed:
        raise ValueError(
            f"the data ends at {observed:%Y-%m-%d}, so the month of {starts[-2]:%Y-%m} is not "
            "complete in it; pass an earlier until"
        )
    return _periods(_book(crm.contracts, grace_days, observed), starts)


def period_portfolio(crm: CRMData, *, start: date, end: date, grace_days: int = 30) -> MonthStats:
    """The figures of the period [start, end) taken as one (trailing twelve months, say).

    The definitions are the months': ``month`` is the period's first day, "new" a period
    starting in it, "churned" one whose churn date falls in it, and the rates over its start.
    """
    observed = labels.observation_end(crm)
    bounds = pd.DatetimeIndex([pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")])
    if not bounds[0] < bounds[1] <= observed:
        raise ValueError(f"need start < end <= the data's end ({observed:%Y-%m-%d})")
    return _periods(_book(crm.contracts, grace_days, observed), bounds.as_unit("s"))[0]


def _periods(book: _Book, starts: pd.DatetimeIndex) -> list[MonthStats]:
    """The figures of each period between consecutive ``starts``."""
    bounds = starts.asi8
    clients, new, churned, pending = _client_counts(book, bounds)
    revenue, new_revenue, lost = _revenue(book, bounds)
    return [
        _month_stats(
            starts[i].date(),
            (int(clients[i]), int(clients[i + 1]), int(new[i]), int(churned[i])),
            (float(revenue[i]), float(revenue[i + 1]), float(new_revenue[i + 1]), float(lost[i])),
            int(pending[i]),
        )
        for i in range(len(starts) - 1)
    ]


def _month_stats(
    month: date,
    counts: tuple[int, int, int, int],
    values: tuple[float, float, float, float],
    pending: int,
) -> MonthStats:
    """One month's figures from its counts (start, end, new, churned) and values (the same)."""
    start, end, new, churned = counts
    revenue_start, revenue_end, revenue_new, revenue_churned = values
    return MonthStats(
        month=month,
        clients_start=start,
        clients_end=end,
        new_clients=new,
        churned_clients=churned,
        retention_rate=retention_rate(start, end, new),
        churn_rate=_percent(churned, start),
        revenue_start=revenue_start,
        revenue_end=revenue_end,
        revenue_churned=revenue_churned,
        revenue_churn_rate=_percent(revenue_churned, revenue_start),
        net_revenue_retention=_percent(revenue_end - revenue_new, revenue_start),
        revenue_new=revenue_new,
        pending_clients=pending,
    )


@dataclass(frozen=True)
class RiskSummary:
    """The churn risk in each client's latest score; the module docstring defines each figure."""

    clients: int
    revenue_at_risk: float
    by_band: dict[str, int]  # band -> clients, every band of RISK_BANDS
    histogram: list[tuple[float, float, int]]  # (lo, hi, clients) of probability
    by_manager: list[tuple[str, float, int]]  # (manager or UNASSIGNED, revenue at risk, clients)
    by_segment: list[tuple[str, float, int]]  # the same by segment


def risk_summary(store: ScoreStore) -> RiskSummary:
    """Totals, bands, histogram and groups over each client's latest score, aggregated in SQL
    on one snapshot of the store."""
    with store.read_snapshot() as conn:
        clients, revenue = store.latest_totals(conn)
        bands = store.band_counts(conn)
        histogram = store.probability_histogram(HISTOGRAM_BINS, conn)
        by_manager = store.revenue_at_risk_by("account_manager", conn)
        by_segment = store.revenue_at_risk_by("segment", conn)
    return RiskSummary(
        clients=clients,
        revenue_at_risk=revenue,
        by_band={**{band: bands.get(band, 0) for band in RISK_BANDS}, **bands},  # odd bands last
        histogram=histogram,
        by_manager=_named(by_manager),
        by_segment=_named(by_segment),
    )


def _named(groups: list[tuple[str | None, float, int]]) -> list[tuple[str, float, int]]:
    return [(UNASSIGNED if key is None else key, revenue, n) for key, revenue, n in groups]
