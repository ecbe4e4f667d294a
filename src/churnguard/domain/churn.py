"""Activity, churn dates, contraction and snapshot labels: the project's churn definition.

All times are UTC; a day is 86,400 seconds; ``grace_days`` defaults to 30, ``horizon_days`` to 90.

- **Coverage.** A contract covers the half-open interval ``[start_date, ended_at)``, where
  ``ended_at`` is the earlier of ``end_date`` and ``cancelled_at``. With neither set the contract is
  rolling and covers forever. A contract with ``ended_at == start_date`` covers nothing.
- **Active.** A client is active at time t when at least one contract covers t. Its *activity
  periods* are the union of its coverage intervals in which a gap of at most ``grace_days`` between
  one coverage ending and the next starting is bridged: a renewal inside the grace period is not
  churn. Re-signing later than that starts a new activity period.
- **Churn.** A client churns at the end of an activity period (the ``ended_at`` of its last covering
  contract) once that end is known, i.e. the whole grace period lies inside the data:
  ``end + grace_days < observed_until``. ``observed_until`` is the exclusive end of the data, so a
  re-signing on day ``end + grace_days`` (which would still be bridged) can only be seen when that
  day is before it. Otherwise the end is *pending*: we cannot tell yet whether the client re-signs.
- **Monthly value** at t: the summed ``monthly_value`` of the contracts covering t. Inside a bridged
  renewal gap the value from before the gap carries on until the next contract starts.
- **Contraction.** A drop in monthly value within an activity period that is not its end: a service
  line ending while others continue, or a renewal (back to back or inside the grace period) at a
  lower value. It is dated when the lower value takes effect (the renewal's start for a renewal
  after a gap), and compares the value before with the value after (a gap's zero is never seen).
- **Snapshot.** ``(client_id, as_of)`` for each client covered without interruption through
  ``as_of``: some run of touching or overlapping contracts starts before ``as_of`` and ends after
  it. That is the rule "a contract with ``start_date < as_of < ended_at``" applied to runs of
  contracts, so that a renewal starting on the day its predecessor ends (often ``as_of`` itself)
  keeps the client in the snapshot; a client whose first contract starts on ``as_of`` is not in it.
- **Label.** ``churned = 1`` when a churn falls in ``(as_of, as_of + horizon_days]`` (that churn
  is ``churn_date``), else 0. ``contraction`` is True when the client did not churn and its monthly
  value at ``as_of + horizon_days`` is lower than at ``as_of`` (changes at ``as_of`` itself belong
  to the previous window). ``monthly_value`` is the value at ``as_of``. ``revenue_lost`` is the
  annualised monthly value lost within the horizon: ``12 * monthly_value`` on churn,
  ``12 * (value at as_of - value at as_of + horizon)`` on contraction, else 0.
- **Censoring.** A snapshot whose window cannot be fully known, ``as_of + horizon_days +
  grace_days >= observed_until``, is censored: ``churned`` and ``contraction`` are missing,
  ``churn_date`` is NaT and ``revenue_lost`` is NaN. Censoring depends only on ``as_of``, never on
  the outcome, so labelled snapshots carry no selection bias; censored rows are still returned for
  scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData
from churnguard.domain.timeaxis import DAY, utc_second, utc_seconds

_OPEN = np.iinfo(np.int64).max // 4  # an open end: later than any real time, safe to add days to
_TS = "datetime64[s, UTC]"
_MONTHS_PER_YEAR = 12

# Columns whose timestamps record something that already happened (end_date may lie ahead).
_HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "interactions": ("occurred_at",),
    "feedback": ("submitted_at",),
    "invoices": ("issued_at", "paid_at", "disputed_at", "dispute_resolved_at"),
    "tickets": ("opened_at", "resolved_at"),
    "events": ("occurred_at",),
    "contracts": ("start_date", "cancelled_at"),
}


@dataclass(frozen=True)
class _Timeline:
    """Each client's coverage change points, sorted by client then time."""

    clients: pd.Index  # client_id by client code, sorted
    code: np.ndarray  # client code of each point
    t: np.ndarray  # time of each point, int64 seconds
    n: np.ndarray  # contracts covering just after t
    value: np.ndarray  # monthly value just after t, carried over uncovered gaps


@dataclass(frozen=True)
class _Spans:
    """Runs of a timeline's points: where each opens and the time it starts and ends."""

    first: np.ndarray  # index of the opening point in the timeline
    code: np.ndarray
    start: np.ndarray
    end: np.ndarray  # _OPEN when still covered after its last point


def _seconds(s: pd.Series) -> np.ndarray:
    """Int64 seconds since the epoch; NaT becomes the open sentinel."""
    secs = utc_seconds(s).dt.tz_localize(None).to_numpy("datetime64[s]").astype(np.int64)
    return np.where(s.isna().to_numpy(), _OPEN, secs)


def _second(ts: pd.Timestamp | str) -> int:
    """Int64 seconds since the epoch of one timestamp."""
    return int(utc_second(ts).value // 10**9)


def _times(secs: np.ndarray) -> pd.Series:
    """Seconds since the epoch (open sentinel = NaT) as a datetime64[s, UTC] column."""
    stamps = np.where(secs >= _OPEN, np.datetime64("NaT"), secs.astype("datetime64[s]"))
    return pd.Series(stamps.astype("datetime64[s]")).dt.tz_localize("UTC")


def _check_days(**days: int) -> None:
    """Reject negative day counts with a message naming the argument."""
    for name, value in days.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def stop_times(end_date: np.ndarray, cancelled_at: np.ndarray) -> np.ndarray:
    """When contracts stop covering their client: the earlier of end_date and cancelled_at.

    The one statement of the rule, on datetime64 arrays: NaT where neither is set (a rolling
    contract never cancelled). Labels, the feature engine and the dashboard all come here.
    """
    return np.fmin(end_date, cancelled_at)  # fmin skips NaT: a single date wins


def contract_stops(contracts: pd.DataFrame) -> pd.Series:
    """``stop_times`` of a contracts frame (UTC datetime columns), indexed like it."""
    end, cancelled = (contracts[c].to_numpy("datetime64[s]") for c in ("end_date", "cancelled_at"))
    stops = pd.Series(stop_times(end, cancelled), index=contracts.index)
    return stops.dt.tz_localize("UTC")


def coverage(contracts: pd.DataFrame) -> pd.DataFrame:
    """What each contract covers: [start, end), end = earlier of end_date and cancelled_at.

    Returns one row per contract, in input order: client_id (str), contract_id, start,
    end (NaT = open: a rolling contract never cancelled), monthly_value. A row with
    end == start covers nothing.
    """
    end = contract_stops(
        pd.DataFrame(
            {c: utc_seconds(contracts[c]) for c in ("end_date", "cancelled_at")}, copy=False
        )
    )
    out = pd.DataFrame(
        {
            "client_id": contracts["client_id"].astype("str"),  # may come in categorical
            "contract_id": contracts["contract_id"],
            "start": utc_seconds(contracts["start_date"]),
            "end": end,
            "monthly_value": contracts["monthly_value"].astype("float64"),
        }
    )
    return out.reset_index(drop=True)


def _timeline(contracts: pd.DataFrame) -> _Timeline:
    """Change points of coverage: +1 contract and +value at a start, -1 and -value at an end."""
    cov = coverage(contracts)
    if cov[["client_id", "start"]].isna().any(axis=None):
        raise ValueError("contracts has rows without client_id or start_date; validate first")
    start, end = _seconds(cov["start"]), _seconds(cov["end"])
    keep = end > start  # empty intervals cover nothing
    code, clients = pd.factorize(cov["client_id"][keep], sort=True)
    start, end = start[keep], end[keep]
    value = cov["monthly_value"].to_numpy(np.float64)[keep]
    closes = end < _OPEN
    return _accumulate(
        pd.Index(clients, name="client_id"),
        np.concatenate([code, code[closes]]),
        np.concatenate([start, end[closes]]),
        np.concatenate([value, -value[closes]]),
        np.concatenate([np.ones(len(code), np.int64), -np.ones(int(closes.sum()), np.int64)]),
    )


def _accumulate(
    clients: pd.Index, code: np.ndarray, t: np.ndarray, dv: np.ndarray, dn: np.ndarray
) -> _Timeline:
    """Net changes per (client, time), then running contract count and monthly value."""
    order = np.lexsort((t, code))
    code, t, dv, dn = code[order], t[order], dv[order], dn[order]
    first = np.flatnonzero((np.diff(code, prepend=-1) != 0) | (np.diff(t, prepend=-1) != 0))
    code, t = code[first], t[first]
    if len(first):
        dv, dn = np.add.reduceat(dv, first), np.add.reduceat(dn, first)
    n = pd.Series(dn).groupby(code).cumsum().to_numpy()
    value = pd.Series(dv).groupby(code).cumsum().round(6).to_numpy()  # drop float noise
    carried = np.maximum.accumulate(np.where(n > 0, np.arange(len(n)), 0))
    return _Timeline(clients, code, t, n, value[carried])


def _span_starts(tl: _Timeline, gap_s: int) -> np.ndarray:
    """Points that open a span: a client's first, or a restart after more than gap_s uncovered."""
    new_client = np.diff(tl.code, prepend=-1) != 0
    prev_n = np.concatenate([[0], tl.n[:-1]])[: len(tl.n)]
    gap = np.diff(tl.t, prepend=0)
    return new_client | ((prev_n == 0) & (gap > gap_s))


def _spans(tl: _Timeline, gap_s: int) -> _Spans:
    """Spans of coverage bridging gaps of at most gap_s seconds (0: touching contracts only)."""
    first = np.flatnonzero(_span_starts(tl, gap_s))
    last = np.concatenate([first[1:], [len(tl.t)]])[: len(first)] - 1
    end = np.where(tl.n[last] == 0, tl.t[last], _OPEN)
    return _Spans(first, tl.code[first], tl.t[first], end)


def _observed_until(contracts: pd.DataFrame, observed_until: pd.Timestamp | None) -> int:
    """The end of the data in seconds; without one, the day after the contracts' last event."""
    if observed_until is not None:
        return _second(observed_until)
    latest = _latest(contracts, _HISTORY_COLUMNS["contracts"])
    return _OPEN if latest is None else _second(_end_of(latest))  # None: no contracts at all


def activity_periods(
    contracts: pd.DataFrame, grace_days: int = 30, observed_until: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Each client's activity periods, with whether each end is a known churn or still pending.

    Returns client_id, start, end (NaT = open: still covered), churned, pending; sorted by
    client_id, start. Without ``observed_until`` the data is taken to end the day after the
    latest contract start or cancellation (pass ``observation_end(data)`` when you have all tables).
    """
    _check_days(grace_days=grace_days)
    tl = _timeline(contracts)
    periods = _spans(tl, grace_days * DAY)
    churned = periods.end + grace_days * DAY < _observed_until(contracts, observed_until)
    return pd.DataFrame(
        {
            "client_id": tl.clients.take(periods.code).astype("str"),
            "start": _times(periods.start),
            "end": _times(periods.end),
            "churned": churned,
            "pending": (periods.end < _OPEN) & ~churned,
        }
    )


def churn_dates(
    contracts: pd.DataFrame, grace_days: int = 30, observed_until: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Every known churn: client_id, churn_date; a client can churn more than once."""
    periods = activity_periods(contracts, grace_days, observed_until)
    churns = periods.loc[periods["churned"], ["client_id", "end"]]
    return churns.rename(columns={"end": "churn_date"}).reset_index(drop=True)


def contraction_events(contracts: pd.DataFrame, grace_days: int = 30) -> pd.DataFrame:
    """Every drop in monthly value inside an activity period.

    Returns client_id, at, value_before, value_after; sorted by client_id, at.

    ``at`` is when the lower value takes effect; a contract term ending in the future while another
    continues gives an ``at`` after the end of the data, so filter on ``at`` for point-in-time use.
    """
    _check_days(grace_days=grace_days)
    tl = _timeline(contracts)
    period = np.cumsum(_span_starts(tl, grace_days * DAY))
    covered = np.flatnonzero(tl.n > 0)  # renewal gaps are skipped, so before/after spans them
    before, after = covered[:-1], covered[1:]
    drop = (period[before] == period[after]) & (tl.value[after] < tl.value[before])
    before, after = before[drop], after[drop]
    return pd.DataFrame(
        {
            "client_id": tl.clients.take(tl.code[after]).astype("str"),
            "at": _times(tl.t[after]),
            "value_before": tl.value[before],
            "value_after": tl.value[after],
        }
    )


def active_clients(contracts: pd.DataFrame, as_of: pd.Timestamp) -> pd.Index:
    """Client ids (sorted) covered without interruption through as_of (see the module docstring)."""
    tl = _timeline(contracts)
    runs = _spans(tl, 0)
    q = _second(as_of)
    inside = (runs.start < q) & (runs.end > q)
    return pd.Index(tl.clients.take(np.unique(runs.code[inside])), name="client_id", dtype="str")


def _latest(table: pd.DataFrame, columns: Sequence[str]) -> pd.Timestamp | None:
    """The latest timestamp over the given columns of a table, None when there is none."""
    stamps = [utc_seconds(table[c]).max() for c in columns if c in table.columns and len(table)]
    stamps = [s for s in stamps if pd.notna(s)]
    return max(stamps) if stamps else None


def _end_of(latest: pd.Timestamp | None) -> pd.Timestamp:
    """The exclusive end of data whose latest timestamp is ``latest``: the next midnight."""
    if latest is None:
        raise ValueError("no timestamps in the data, so there is no end of observation")
    return (latest.floor("D") + pd.Timedelta(days=1)).as_unit("s")


def observation_end(data: CRMData) -> pd.Timestamp:
    """The exclusive end of the data: midnight UTC after its latest historical timestamp.

    Contract ``end_date`` is left out because a contract term can end in the future.
    """
    found = [_latest(data.table(name), cols) for name, cols in _HISTORY_COLUMNS.items()]
    stamps = [s for s in found if s is not None]
    return _end_of(max(stamps) if stamps else None)


def snapshot_dates(
    data: CRMData, freq: str = "MS", observed_until: pd.Timestamp | None = None
) -> pd.DatetimeIndex:
    """Snapshot dates at ``freq`` after the first contract start, up to observed_until inclusive.

    At ``as_of == observed_until`` features see all the data: that is the scoring snapshot.
    """
    starts = data.contracts["start_date"]
    if starts.isna().all():
        return pd.DatetimeIndex([], dtype=_TS)
    end = observation_end(data) if observed_until is None else utc_second(observed_until)
    first = utc_second(starts.min())
    dates = pd.date_range(first, end, freq=freq, unit="s")
    return dates[dates > first]


def _as_of_seconds(as_of_dates: Sequence[pd.Timestamp] | pd.DatetimeIndex) -> np.ndarray:
    """Sorted unique as_of dates in seconds; naive dates are taken as UTC."""
    dates = pd.DatetimeIndex(list(as_of_dates))
    if dates.hasnans:
        raise ValueError("as_of_dates contains NaT")
    return np.unique(_seconds(pd.Series(dates)))


def _snapshots(runs: _Spans, dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(run index, date index) of every date strictly inside a run of coverage."""
    lo = np.searchsorted(dates, runs.start, side="right")
    hi = np.searchsorted(dates, runs.end, side="left")
    count = np.maximum(hi - lo, 0)
    run = np.repeat(np.arange(len(lo)), count)
    offset = np.arange(len(run)) - np.repeat(np.cumsum(count) - count, count)
    return run, lo[run] + offset


def _value_at(tl: _Timeline, code: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Monthly value of each client at q, which must be inside one of its activity periods."""
    times = np.unique(tl.t)
    key = tl.code * len(times) + np.searchsorted(times, tl.t)  # sorted, as tl is
    q_key = code * len(times) + np.searchsorted(times, q, side="right") - 1
    return tl.value[np.searchsorted(key, q_key, side="right") - 1]


def build_labels(
    data: CRMData,
    as_of_dates: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    horizon_days: int = 90,
    grace_days: int = 30,
    observed_until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One labelled row per active (client_id, as_of), sorted by as_of, client_id.

    Returns client_id, as_of, churned (Int8, NA when censored), censored, churn_date,
    contraction (boolean, NA when censored), monthly_value, revenue_lost (annualised, NaN when
    censored). Definitions are in the module docstring.
    """
    _check_days(horizon_days=horizon_days, grace_days=grace_days)
    obs = _second(observation_end(data) if observed_until is None else observed_until)
    tl = _timeline(data.contracts)
    runs = _spans(tl, 0)
    period_of = np.cumsum(_span_starts(tl, grace_days * DAY)) - 1  # period id of each point
    period_end = _spans(tl, grace_days * DAY).end
    dates = _as_of_seconds(as_of_dates)
    run, d = _snapshots(runs, dates)
    as_of = dates[d]
    order = np.lexsort((runs.code[run], as_of))
    run, as_of = run[order], as_of[order]
    end = period_end[period_of[runs.first[run]]]
    return _label_frame(tl, runs.code[run], as_of, end, horizon_days * DAY, grace_days * DAY, obs)


def _label_frame(
    tl: _Timeline, code: np.ndarray, as_of: np.ndarray, end: np.ndarray, h: int, g: int, obs: int
) -> pd.DataFrame:
    """Label columns for snapshots given the end of the activity period each lies in."""
    censored = as_of + h + g >= obs
    churned = (end <= as_of + h) & ~censored  # not censored, so end + g < obs: a known churn
    value_now = _value_at(tl, code, as_of)
    value_then = np.where(churned, 0.0, _value_at(tl, code, as_of + h))
    lost = np.maximum(value_now - value_then, 0.0) * _MONTHS_PER_YEAR
    return pd.DataFrame(
        {
            "client_id": tl.clients.take(code).astype("str"),
            "as_of": _times(as_of),
            "churned": pd.arrays.IntegerArray(churned.astype(np.int8), censored),
            "censored": censored,
            "churn_date": _times(np.where(churned, end, _OPEN)),
            "contraction": pd.arrays.BooleanArray(~churned & (value_then < value_now), censored),
            "monthly_value": value_now,
            "revenue_lost": np.where(censored, np.nan, lost),
        }
    )
