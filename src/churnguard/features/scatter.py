"""The one-date executor: every client's aggregations at a single as_of, by scatter, no sort.

When every snapshot has the same as_of (a nightly batch, one training date), each window is a
fixed time range, so an aggregation is a filter of a stream's rows followed by a scatter into
one slot per client (``np.add.at``, ``np.maximum.at``): no sort, no binary search over clients,
no prefix arrays. Rows that do not count (outside the window, the filter or the clients) go to a
spare slot that is dropped, so no row is ever compressed out. When a stream's times are in order
(a CRM export usually lists rows by time) a window is a run of rows found by two binary searches,
and a windowed aggregation reads only its run. Every pass goes over blocks of ``BLOCK_ROWS``
rows, so temporaries stay a few MB whatever the table's size (fresh memory is costly here).
Sums are taken in int64 micro-units, counts and times as they are, so the results equal the
sorted executor's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from churnguard.domain.contract import TABLES
from churnguard.domain.timeaxis import DAY, TIME_OFFSET
from churnguard.features.arrays import NAT, TableArrays, encode_times, is_sorted
from churnguard.features.catalog import STREAMS, Agg
from churnguard.features.plan import SCALE, StreamPlan, event_filter, micro_units

_NEVER = np.iinfo(np.int64).max
BLOCK_ROWS = 1 << 20  # rows per pass: temporaries of a few MB, reused by the allocator

_Rows = Callable[[TableArrays], np.ndarray]


class Slots:
    """Each row's slot: its client's position in a range of clients, or ``len(clients)`` (the
    spare slot, dropped) for rows of clients outside it; worked out block by block."""

    def __init__(self, table: TableArrays, clients: range) -> None:
        self.codes = table("client_code")
        self.first, self.n = clients.start, len(clients)
        codes = self.codes
        self.as_is = not len(codes) or (
            not self.first and codes.min() >= 0 and codes.max() < self.n
        )

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        codes = self.codes[rows]
        if self.as_is:
            return codes
        slots = codes.astype(np.intp)
        slots -= self.first
        slots[(slots < 0) | (slots >= self.n)] = self.n
        return slots


def _blocks(run: slice) -> Iterator[slice]:
    for start in range(run.start, run.stop, BLOCK_ROWS):
        yield slice(start, min(start + BLOCK_ROWS, run.stop))


def _by_blocks(fn: _Rows, table: TableArrays, dtype: type) -> np.ndarray:
    """A row-wise function of a table, evaluated block by block into one array (a column as
    it is when the function only reads one)."""
    n = len(table("client_code"))
    if _reads_a_column(fn, table, dtype):
        return fn(table)
    out: np.ndarray = np.empty(n, dtype=dtype)
    for b in _blocks(slice(0, n)):
        out[b] = fn(_rows(table, b))
    return out


def _reads_a_column(fn: _Rows, table: TableArrays, dtype: type) -> bool:
    """Whether fn returns one of the table's columns as it is (tried on its first row)."""
    first = _rows(table, slice(0, 1))
    got = fn(first)
    return got.dtype == dtype and any(np.shares_memory(got, c) for c in first.columns.values())


def _rows(table: TableArrays, rows: slice) -> TableArrays:
    return TableArrays({k: v[rows] for k, v in table.columns.items()}, table.categories)


class _Stream:
    """One stream's rows of a table, with the filters, values and windows its aggregations read."""

    def __init__(self, table: TableArrays, sp: StreamPlan, as_of: int, slots: Slots) -> None:
        self.table = table
        self.stream = STREAMS[sp.stream]
        self.times = _by_blocks(self.stream.time, table, np.int64)
        self.slots = slots
        # a window [start, end) in encoded times is [start - OFFSET, end - OFFSET) in seconds
        end = as_of - sp.spans.offset[:, 0]
        start = np.where(sp.spans.bounded[:, 0], encode_times(end - sp.spans.window[:, 0]), 0)
        self.start = (start - TIME_OFFSET).tolist()
        self.end = (encode_times(end) - TIME_OFFSET).tolist()
        n = len(self.times)  # in order: each window is a run of rows
        self.in_order = all(
            is_sorted(self.times[b.start : b.stop + 1]) for b in _blocks(slice(0, n))
        )
        self._memo: dict[tuple[str, object], np.ndarray] = {}

    def run(self, span: int) -> slice:
        """The rows that may hold the span's window's events (all of them if not in order)."""
        if not self.in_order:
            return slice(0, len(self.times))
        lo, hi = np.searchsorted(self.times, [self.start[span], self.end[span]]).tolist()
        return slice(lo, hi)

    def keep(self, rows: slice, span: int, where: str | None) -> np.ndarray | None:
        """Which rows of a block of the span's run count (None: all of them)."""
        inside = None
        if not self.in_order:
            t = self.times[rows]
            inside = t >= self.start[span]
            inside &= t < self.end[span]
        if where is None:
            return inside
        mask = self.mask(where)[rows]
        return mask if inside is None else inside & mask

    def mask(self, where: str) -> np.ndarray:
        def build() -> np.ndarray:
            return _by_blocks(lambda t: event_filter(self.stream, where, t), self.table, bool)

        return self._cached(("mask", where), build)

    def value(self, name: str) -> np.ndarray:
        return self._cached(("value", name), lambda: self.stream.values[name](self.table))

    def micro(self, name: str, block: slice) -> np.ndarray:
        """A value of a block's rows in int64 micro-units (missing: 0), as every executor sums
        it; worked out per block, as a table-long copy would cost more than it saves."""
        with np.errstate(invalid="ignore", over="ignore"):  # rows no window reads, too
            return micro_units(self.stream.values[name](_rows(self.table, block)))

    def _cached(self, key: tuple[str, object], build: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]


def stream_aggregates(
    table: TableArrays, sp: StreamPlan, as_of: int, slots: Slots, out: np.ndarray
) -> None:
    """Write the stream's aggregations (rows of out, in the plan's order; a column per slot but
    the spare one) for the clients the slots are of."""
    s = _Stream(table, sp, as_of, slots)
    n = out.shape[1] + 1  # the spare slot last
    for i, a in enumerate(sp.aggs):
        if a.how == "last":
            out[i] = _last_value(s, a, sp.span[i], n)[:-1]
            continue
        out[i] = _aggregate(s, a, sp.span[i], as_of, n)[:-1]


def _aggregate(s: _Stream, a: Agg, span: int, as_of: int, n: int) -> np.ndarray:
    """A count, sum, or earliest or latest time per slot, scattered block by block."""
    ufunc: np.ufunc
    if a.how in ("count", "sum"):
        ufunc, acc = np.add, np.zeros(n, dtype=np.int64)  # int64 wraps like prefix sums do
    elif a.how == "days_since_first":
        ufunc, acc = np.minimum, np.full(n, _NEVER)
    else:
        ufunc, acc = np.maximum, np.full(n, NAT)
    for b in _blocks(s.run(span)):
        keep = s.keep(b, span, a.where)
        rows: slice | np.ndarray = slice(None)  # of the block
        slots = s.slots[b]
        if keep is not None:
            k = np.count_nonzero(keep)
            if 4 * k < len(keep):  # few rows count: take them
                rows = np.flatnonzero(keep)
                slots = slots[rows]
            else:  # most do: the others to the spare slot, cheaper than taking the rows
                slots = np.where(keep, slots, np.intp(n - 1))
        if a.how == "count":
            ufunc.at(acc, slots, 1)
        else:
            values = s.micro(a.value or "", b) if a.how == "sum" else s.times[b]
            ufunc.at(acc, slots, values[rows])
    if a.how == "count":
        return acc
    if a.how == "sum":
        return acc / SCALE
    found = acc != (_NEVER if a.how == "days_since_first" else NAT)
    return np.where(found, (as_of - np.where(found, acc, as_of)) / DAY, np.nan)


def _last_value(s: _Stream, a: Agg, span: int, n: int) -> np.ndarray:
    """Per slot, the value of its latest selected event (ties: table time, then row)."""
    run = s.run(span)
    keep = s.keep(run, span, a.where)
    rows = np.arange(run.start, run.stop) if keep is None else np.flatnonzero(keep) + run.start
    slots = s.slots[rows]
    latest = np.full(n, NAT)
    np.maximum.at(latest, slots, s.times[rows])
    found = latest != NAT
    last = _last_rows(s, rows, slots, latest, n)
    values = s.value(a.value or "")
    return np.where(found, values[np.where(found, last, 0)] if len(values) else 0.0, np.nan)


def _last_rows(
    s: _Stream, rows: np.ndarray, slots: np.ndarray, latest: np.ndarray, n: int
) -> np.ndarray:
    """Per client, its last selected row in the sorted executor's order (time, table time, row)."""
    tied = latest[slots] == s.times[rows]
    rows, slots = rows[tied], slots[tied]
    time_column = TABLES[s.stream.table].time
    if time_column:  # ties in the event time: the table's own time, then the row, decide
        table_time = encode_times(s.table(time_column)[rows])
        best = np.full(n, -1, dtype=np.int64)
        np.maximum.at(best, slots, table_time)
        tied = best[slots] == table_time
        rows, slots = rows[tied], slots[tied]
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, slots, rows)
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
