"""The one-date executor: every client's aggregations at a single as_of, by scatter, no sort.

When every snapshot has the same as_of (a nightly batch, one training date), each window is a
fixed time range, so an aggregation is a filter of a stream's rows followed by a scatter into
one slot per client (``np.add.at``, ``np.maximum.at``): no sort, no binary search, no prefix
arrays, and memory of a few columns of the stream. Sums are taken in int64 micro-units, counts
and times as they are, so the results equal the sorted executor's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from churnguard.domain.contract import TABLES
from churnguard.domain.timeaxis import DAY, TIME_OFFSET
from churnguard.features.arrays import NAT, TableArrays, encode_times
from churnguard.features.catalog import STREAMS, Agg
from churnguard.features.plan import SCALE, StreamPlan, event_filter, micro_units

_NEVER = np.iinfo(np.int64).max


class _Stream:
    """One stream's rows of a table, with the filters, values and windows its aggregations read."""

    def __init__(self, table: TableArrays, sp: StreamPlan, as_of: int, clients: range) -> None:
        self.table = table
        self.stream = STREAMS[sp.stream]
        self.times = self.stream.time(table)
        self.codes = table("client_code") - clients.start  # a slot per client of the range
        outside = (self.codes < 0) | (self.codes >= len(clients))
        if outside.any():  # rows of other (or unknown) clients: no event
            self.times = np.where(outside, NAT, self.times)
            self.codes = np.where(outside, 0, self.codes)
        # a window [start, end) in encoded times is [start - OFFSET, end - OFFSET) in seconds
        end = as_of - sp.spans.offset[:, 0]
        start = np.where(sp.spans.bounded[:, 0], encode_times(end - sp.spans.window[:, 0]), 0)
        self.start = (start - TIME_OFFSET).tolist()
        self.end = (encode_times(end) - TIME_OFFSET).tolist()
        self._memo: dict[tuple[str, object], np.ndarray] = {}

    def selected(self, span: int, where: str | None) -> np.ndarray:
        """Rows that are events of the span's window and pass the filter."""
        inside = self.in_span(span)
        if where is not None:
            inside = inside & self.mask(where)
        return np.flatnonzero(inside)

    def in_span(self, span: int) -> np.ndarray:
        def build() -> np.ndarray:
            inside = self.times >= self.start[span]
            inside &= self.times < self.end[span]
            return inside

        return self._cached(("span", span), build)

    def mask(self, where: str) -> np.ndarray:
        return self._cached(("mask", where), lambda: event_filter(self.stream, where, self.table))

    def value(self, name: str) -> np.ndarray:
        return self._cached(("value", name), lambda: self.stream.values[name](self.table))

    def _cached(self, key: tuple[str, object], build: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]


def stream_aggregates(table: TableArrays, sp: StreamPlan, as_of: int, clients: range) -> np.ndarray:
    """The stream's aggregations (rows, in the plan's order) for a range of client codes."""
    s = _Stream(table, sp, as_of, clients)
    out = np.empty((len(sp.aggs), len(clients)))
    for i, a in enumerate(sp.aggs):
        rows = s.selected(sp.span[i], a.where)
        out[i] = _aggregate(s, a, rows, as_of, len(clients))
    return out


def _aggregate(s: _Stream, a: Agg, rows: np.ndarray, as_of: int, n: int) -> np.ndarray:
    codes = s.codes[rows]
    if a.how == "count":
        return np.bincount(codes, minlength=n)
    if a.how == "sum":
        total = np.zeros(n, dtype=np.int64)  # int64 wraps like the sorted executor's prefix sums
        np.add.at(total, codes, micro_units(s.value(a.value or "")[rows]))
        return total / SCALE
    if a.how == "days_since_first":
        first = np.full(n, _NEVER)
        np.minimum.at(first, codes, s.times[rows])
        return _days_since(first, first != _NEVER, as_of)
    latest = np.full(n, NAT)
    np.maximum.at(latest, codes, s.times[rows])
    found = latest != NAT
    if a.how == "days_since":
        return _days_since(latest, found, as_of)
    last = _last_rows(s, rows, codes, latest, n)
    values = s.value(a.value or "")
    return np.where(found, values[np.where(found, last, 0)] if len(values) else 0.0, np.nan)


def _days_since(t: np.ndarray, found: np.ndarray, as_of: int) -> np.ndarray:
    return np.where(found, (as_of - np.where(found, t, as_of)) / DAY, np.nan)


def _last_rows(
    s: _Stream, rows: np.ndarray, codes: np.ndarray, latest: np.ndarray, n: int
) -> np.ndarray:
    """Per client, its last selected row in the sorted executor's order (time, table time, row)."""
    tied = latest[codes] == s.times[rows]
    rows, codes = rows[tied], codes[tied]
    time_column = TABLES[s.stream.table].time
    if time_column:  # ties in the event time: the table's own time, then the row, decide
        table_time = encode_times(s.table(time_column)[rows])
        best = np.full(n, -1, dtype=np.int64)
        np.maximum.at(best, codes, table_time)
        tied = best[codes] == table_time
        rows, codes = rows[tied], codes[tied]
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, codes, rows)
    return last


def contracts_started(
    data_contracts: TableArrays, snapshot_codes: np.ndarray, as_of: int, n_clients: int
) -> tuple[np.ndarray, np.ndarray]:
    """(snapshot, contract row) pairs of the contracts started before as_of (codes unique)."""
    snapshot_of = np.full(n_clients, -1, dtype=np.int64)
    snapshot_of[snapshot_codes] = np.arange(len(snapshot_codes))
    start = STREAMS["contract_start"].time(data_contracts)
    codes = data_contracts("client_code")
    ok = (codes >= 0) & (start != NAT)
    ok &= start < int(encode_times(np.array([as_of]))[0]) - TIME_OFFSET
    rows = np.flatnonzero(ok)
    snap = snapshot_of[codes[rows]]
    keep = snap >= 0
    return snap[keep], rows[keep]
