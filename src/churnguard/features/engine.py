"""Point-in-time features for (client, as_of), computed by one engine from the catalog.

The same engine computes the catalog's declarations (``catalog.py``) for a million clients at many
as_of dates, or for one client's records in the online API, so the two cannot disagree.

How the engine works: each stream's events are sorted by (client, time) once. For a snapshot
(client, as_of) the events of a window [as_of - w, as_of) are then a contiguous run found by binary
search, and counts and sums over it are differences of prefix sums. Only events with a timestamp
strictly before as_of are ever read. Values are carried as integers in micro-units, so sums are
exact and do not depend on which other clients share the batch: one client's features are equal,
bit for bit, to the same client's row in any batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnguard.domain.churn import active_clients
from churnguard.domain.contract import TABLES, CRMData
from churnguard.domain.timeaxis import DAY, TIME_BITS, utc_second
from churnguard.features import scatter
from churnguard.features.arrays import (
    NAT,
    Columns,
    CRMArrays,
    Grouped,
    Reordered,
    client_slice,
    crm_arrays,
    encode_times,
    group_by_client,
    is_sorted,
)
from churnguard.features.catalog import (
    STREAMS,
    Agg,
    FeatureSet,
    Stream,
    check_attributes,
    feature_set_for,
)
from churnguard.features.custom import custom_group
from churnguard.features.dense import contracts_started, dense_aggregates
from churnguard.features.plan import (
    ALL_HISTORY,
    SCALE,
    Plan,
    Spans,
    StreamPlan,
    event_filter,
    micro_units,
    plan_for,
    run_steps,
)

_BLOCK = 1 << 16  # snapshots per block when combining formulas
DENSE_CELLS = 8_000  # snapshots x input rows up to which the dense executor is used
CHUNK_ROWS = 12_000_000  # input rows per chunk of clients in the bulk path (bounds memory)
ONE_DATE_CHUNKS = 16  # the one-date (scatter) path's chunks are this many times larger


_NOTHING = np.empty(0)
_KEPT = ("contract_start",)  # prepared streams the custom features read

_Found = tuple[np.ndarray, np.ndarray]  # per run: an event position, and whether it exists


@dataclass
class _Prepared:
    """One stream's events for a set of clients, sorted by (client, time), with prefix sums."""

    keys: np.ndarray  # (client code << 33) | encoded time, ascending
    times: np.ndarray  # epoch seconds, in key order
    columns: Columns  # the table's columns, in key order
    stream: Stream
    _cache: dict[tuple[str, str | None, str | None], np.ndarray] = field(default_factory=dict)

    def mask(self, where: str | None) -> np.ndarray | None:
        if where is None:
            return None
        return self._memo(
            "mask", where, None, lambda: event_filter(self.stream, where, self.columns)
        )

    def prefix_into(self, key: tuple[str, str | None, str | None], out: np.ndarray) -> None:
        """Write prefix counts ("count", where) or micro-unit sums ("sum", where, value) to out.

        out[i] is the total over the first i events, so a run [lo, hi) is out[hi] - out[lo].
        """
        how, where, value = key
        m = self.mask(where)
        out[0] = 0
        if how == "count":
            np.cumsum(np.ones(len(self.keys), np.int64) if m is None else m, out=out[1:])
            return
        v = micro_units(self.values_of(value or ""))
        np.cumsum(v if m is None else np.where(m, v, 0), out=out[1:])

    def positions(self, where: str | None) -> np.ndarray | None:
        """Positions of the filtered events, ascending (None: every event counts)."""
        m = self.mask(where)
        if m is None:
            return None
        return self._memo("positions", where, None, lambda: np.flatnonzero(m))

    def last_in(self, where: str | None, lo: np.ndarray, hi: np.ndarray) -> _Found:
        """Per run [lo, hi): the position of its last filtered event, and whether there is one."""
        pos = self.positions(where)
        if pos is None:
            return hi - 1, hi > lo
        k = np.searchsorted(pos, hi) - 1
        j = pos[np.maximum(k, 0)] if len(pos) else k
        return j, (k >= 0) & (j >= lo)

    def first_in(self, where: str | None, lo: np.ndarray, hi: np.ndarray) -> _Found:
        """Per run [lo, hi): the position of its first filtered event, and whether there is one."""
        pos = self.positions(where)
        if pos is None:
            return lo, lo < hi
        k = np.searchsorted(pos, lo)
        j = pos[np.minimum(k, len(pos) - 1)] if len(pos) else k
        return j, (k < len(pos)) & (j < hi)

    def values_of(self, value: str) -> np.ndarray:
        """A value of the stream's events, in key order."""
        return self._memo("values", None, value, lambda: self.stream.values[value](self.columns))

    def _memo(
        self, kind: str, where: str | None, value: str | None, build: Callable[[], np.ndarray]
    ) -> np.ndarray:
        key = (kind, where, value)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


def _prepare(stream: Stream, grouped: Grouped) -> _Prepared:
    """One stream's events sorted by (client, time), from its table grouped by client."""
    times = stream.time(grouped.columns)
    keep = np.flatnonzero(times != NAT)
    keys = grouped.codes[keep].astype(np.int64) << TIME_BITS
    keys |= encode_times(times[keep])
    if not is_sorted(keys):  # the stream's time differs from the table's: nearly sorted
        order = np.argsort(keys, kind="stable")
        keys, keep = keys[order], keep[order]
    elif len(keep) == len(times):  # every row is an event, in order: nothing to reorder
        return _Prepared(keys, times, grouped.columns, stream)
    return _Prepared(keys, times[keep], Reordered(grouped.columns, keep), stream)


class _Snapshots:
    """The (client code, as_of) pairs features are computed for."""

    def __init__(self, codes: np.ndarray, as_of: np.ndarray) -> None:
        self.codes = codes
        self.as_of = as_of  # epoch seconds
        self.base = codes << TIME_BITS

    def bounds(self, p: _Prepared, spans: Spans) -> tuple[np.ndarray, np.ndarray]:
        """Positions lo, hi (a row per span) of events in [as_of - offset - window, as_of - offset).

        One binary search answers every span of the stream, each distinct edge searched once
        (the 90 days before the last 90 end where the last 90 begin).
        """
        edges: list[int | None] = []  # seconds before as_of; None: the client's first event

        def edge(before: int | None) -> int:
            if before not in edges:
                edges.append(before)
            return edges.index(before)

        offsets, windows = spans.offset[:, 0].tolist(), spans.window[:, 0].tolist()
        bounded = spans.bounded[:, 0].tolist()
        lo = [edge(o + w if b else None) for o, w, b in zip(offsets, windows, bounded, strict=True)]
        hi = [edge(o) for o in offsets]
        queries = np.empty((len(edges), len(self.as_of)), dtype=np.int64)
        for k, before in enumerate(edges):
            queries[k] = self.base
            if before is not None:
                queries[k] |= encode_times(self.as_of - before)
        found = np.searchsorted(p.keys, queries.ravel()).reshape(queries.shape)
        return found[lo], found[hi]


def _one_date(snap: _Snapshots) -> bool:
    """Whether every snapshot has the same as_of and no client comes twice (codes sorted)."""
    codes, as_of = snap.codes, snap.as_of
    return bool(len(codes) and (as_of == as_of[0]).all() and (codes[1:] != codes[:-1]).all())


class _Engine:
    """Evaluates feature formulas for a set of snapshots over prepared streams.

    Aggregations are computed stream by stream and each stream's sorted arrays are dropped
    as soon as its aggregations are done, so memory holds one table's work at a time (two when
    tables are processed in parallel).
    """

    def __init__(self, data: CRMArrays, snapshots: _Snapshots, plan: Plan, dense: bool) -> None:
        self.data = data
        self.snap = snapshots
        self.plan = plan
        self.dense = dense  # few snapshots: the dense executor (dense.py), not prefix sums
        self.one_date = not dense and _one_date(snapshots)  # the scatter executor (scatter.py)
        self.values = np.empty((plan.n_aggs + len(plan.customs), len(snapshots.as_of)))
        self._customs: dict[str, np.ndarray] = {}
        self._kept: dict[str, _Prepared] = {}  # streams the custom features read again

    def prepared(self, name: str) -> _Prepared:
        """One stream, prepared (used by the contract-state features)."""
        if name in self._kept:
            return self._kept[name]
        s = STREAMS[name]
        return _prepare(s, group_by_client(self.data.table(s.table), TABLES[s.table].time or ""))

    def precompute(self, workers: int = 1) -> None:
        """Compute every aggregation of the plan, one table (and stream) at a time."""
        jobs = list(self.plan.tables.items())
        if self.dense:
            aggs = dense_aggregates(self.data, self.snap.codes, self.snap.as_of, self.plan.dense)
            self.values[: self.plan.n_aggs] = aggs
        elif workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda job: self._table_aggs(*job), jobs))
        else:
            for job in jobs:
                self._table_aggs(*job)
        for i, name in enumerate(self.plan.customs):
            self.values[self.plan.n_aggs + i] = self._custom(name)

    def contracts_started(self) -> tuple[np.ndarray, np.ndarray, Columns]:
        """(snapshot, row) pairs of the contracts started before as_of, and the rows' columns."""
        if self.dense:
            return contracts_started(self.data, self.snap.codes, self.snap.as_of)
        if self.one_date:
            table = self.data.table("contracts")
            n = len(self.data.client_ids)
            snap, rows = scatter.contracts_started(table, self.snap.codes, self.snap.as_of[0], n)
            return snap, rows, table
        p = self.prepared("contract_start")
        lo, hi = (b[0] for b in self.snap.bounds(p, ALL_HISTORY))
        lengths = hi - lo
        snap = np.repeat(np.arange(len(lo)), lengths)
        rows = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return snap, rows, p.columns

    def _table_aggs(self, table: str, streams: list[StreamPlan]) -> None:
        if self.one_date:  # a slot per client from the first snapshot's to the last's
            codes, data = self.snap.codes, self.data.table(table)
            clients, as_of = range(int(codes[0]), int(codes[-1]) + 1), int(self.snap.as_of[0])
            slots = scatter.Slots(data, clients)
            every = len(codes) == len(clients)  # each slot a snapshot: write the rows in place
            for sp in streams:
                rows = slice(sp.first, sp.first + len(sp.aggs))
                if every:
                    scatter.stream_aggregates(data, sp, as_of, slots, self.values[rows])
                    continue
                by_client = np.empty((len(sp.aggs), len(clients)))
                scatter.stream_aggregates(data, sp, as_of, slots, by_client)
                self.values[rows] = by_client[:, codes - codes[0]]
            return
        grouped = group_by_client(self.data.table(table), TABLES[table].time or "")
        for sp in streams:
            p = _prepare(STREAMS[sp.stream], grouped)
            self._stream_aggs(p, sp)
            if sp.stream in _KEPT:
                self._kept[sp.stream] = p

    def _stream_aggs(self, p: _Prepared, sp: StreamPlan) -> None:
        """Every aggregation of one stream: windowed totals in one gather, the rest one by one."""
        lo, hi = self.snap.bounds(p, sp.spans)
        if sp.n_totals:  # one prefix array at a time: memory stays one stream column
            prefix = np.empty(len(p.keys) + 1, dtype=np.int64)
            totals = self.values[sp.first : sp.first + sp.n_totals]
            for row, key in enumerate(sp.prefix_keys):
                p.prefix_into(key, prefix)
                mine = np.flatnonzero(sp.rows[:, 0] == row)
                totals[mine] = prefix[hi[sp.cols[mine]]] - prefix[lo[sp.cols[mine]]]
            del prefix
            totals[sp.sums] /= SCALE
        for i in range(sp.n_totals, len(sp.aggs)):
            k = sp.span[i]
            self.values[sp.first + i] = self._agg(p, sp.aggs[i], lo[k], hi[k])

    def features(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Every feature, in the snapshots' original order (``order``: their sorted positions)."""
        plan, n = self.plan, len(order)
        combined = np.empty((len(plan.numeric_rows), n))
        for start in range(0, n, _BLOCK):  # blocks bound the formulas' temporaries
            block = slice(start, start + _BLOCK)
            v = np.empty((plan.n_rows, min(_BLOCK, n - start)))
            v[: len(self.values)] = self.values[:, block]
            run_steps(plan.steps, v, self.snap.as_of[block] // DAY)
            combined[:, block] = v[plan.numeric_rows]
        self.values = np.empty((0, 0))  # done: free it before the reordered copy
        in_order = n < 2 or is_sorted(order)
        if not in_order:  # back to the snapshots' order: a gather (faster than a scatter)
            where = np.empty_like(order)
            where[order] = np.arange(n)
            combined = np.take(combined, where, axis=1)
        out = dict.fromkeys(plan.names, _NOTHING)  # the features' order, every value set below
        out.update(zip(plan.numeric, combined, strict=True))
        for name, source in plan.custom_outputs:
            value = self._custom(source)
            if in_order:
                out[name] = value.copy()
            else:
                out[name] = np.empty_like(value)
                out[name][order] = value
        return out

    def _agg(self, p: _Prepared, a: Agg, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if a.how == "count":  # unfiltered: the run's length
            return (hi - lo).astype(np.float64)
        if a.how == "days_since_first":
            return self._days_since(p, *p.first_in(a.where, lo, hi))
        j, found = p.last_in(a.where, lo, hi)
        if a.how == "days_since":
            return self._days_since(p, j, found)
        values = p.values_of(a.value or "")
        return np.where(found, values[np.where(found, j, 0)] if len(values) else 0.0, np.nan)

    def _days_since(self, p: _Prepared, j: np.ndarray, found: np.ndarray) -> np.ndarray:
        t = p.times[np.where(found, j, 0)] if len(p.times) else np.zeros(len(j), np.int64)
        return np.where(found, (self.snap.as_of - t) / DAY, np.nan)

    def _custom(self, name: str) -> np.ndarray:
        if name not in self._customs:
            self._customs.update(custom_group(name)(self))
        return self._customs[name]


# ---------------------------------------------------------------------------------------------
# Public entry points


def compute_features(
    data: CRMData, snapshots: pd.DataFrame, feature_set: FeatureSet | None = None
) -> pd.DataFrame:
    """Features for given (client_id, as_of) snapshots, in their order.

    Args:
        data: validated CRM tables; only rows timestamped strictly before each as_of are used.
        snapshots: columns client_id (ids present in data.clients) and as_of (UTC timestamps).
        feature_set: which features; default: the base catalogue plus data's event types.

    Returns:
        client_id, as_of, then one column per feature (float64; categorical attributes as
        pandas categoricals).
    """
    fs = feature_set or feature_set_for(data)
    check_attributes(fs, data.attributes)  # a model's attributes the data lacks: a clear error
    codes = _client_codes(data, snapshots["client_id"])
    as_of = pd.to_datetime(snapshots["as_of"], utc=True).dt.as_unit("s")
    seconds = as_of.to_numpy(dtype="datetime64[s]").view(np.int64)
    columns = feature_columns(crm_arrays(data), codes, seconds, fs)
    out: dict[str, object] = {"client_id": snapshots["client_id"].array, "as_of": as_of.array}
    for f in fs.features:
        out[f.name] = pd.Categorical(columns[f.name]) if f.categorical else columns[f.name]
    return pd.DataFrame(out, copy=False)


def feature_columns(
    data: CRMArrays, codes: np.ndarray, as_of: np.ndarray, feature_set: FeatureSet
) -> dict[str, np.ndarray]:
    """The engine itself: one array per feature for snapshots (client codes, as_of seconds).

    Large inputs are computed in chunks of clients (``CHUNK_ROWS`` input rows each), so memory
    stays bounded; a client's features depend on its own rows only, so the result is the same.
    """
    codes, as_of = np.asarray(codes, np.int64), np.asarray(as_of, np.int64)
    n_rows = _n_rows(data)
    if len(codes) * n_rows <= DENSE_CELLS:  # few snapshots (one client online): one piece
        return _chunk_columns(data, codes, as_of, feature_set, n_rows)
    one_date = len(as_of) > 0 and bool((as_of == as_of[0]).all())
    # one date: the scatter executor's memory is a few columns of one table plus ~1.2 kB per
    # client, so chunks (each a copy of its clients' rows) only for far larger inputs
    n_chunks = -(-n_rows // (CHUNK_ROWS * (ONE_DATE_CHUNKS if one_date else 1)))
    if n_chunks <= 1 or not len(codes):
        return _chunk_columns(data, codes, as_of, feature_set, n_rows)
    size = -(-len(data.client_ids) // n_chunks)
    out: dict[str, np.ndarray] = {}
    for first in range(0, len(data.client_ids), size):
        mine = np.flatnonzero((codes >= first) & (codes < first + size))
        if len(mine):
            chunk = client_slice(data, first, first + size)
            part = _chunk_columns(chunk, codes[mine], as_of[mine], feature_set, _n_rows(chunk))
            del chunk
            for name, values in part.items():
                out.setdefault(name, np.empty(len(codes), values.dtype))[mine] = values
            del part
    return out


def _chunk_columns(
    data: CRMArrays, codes: np.ndarray, as_of: np.ndarray, feature_set: FeatureSet, n_rows: int
) -> dict[str, np.ndarray]:
    # In (client, as_of) order every binary search below walks the events front to back.
    if len(codes) > 1:
        order = np.lexsort((as_of, codes))
        codes, as_of = codes[order], as_of[order]
    else:  # one snapshot (the online path): in order already
        order = np.arange(len(codes))
    dense = len(codes) * n_rows <= DENSE_CELLS
    engine = _Engine(data, _Snapshots(codes, as_of), plan_for(feature_set), dense)
    engine.precompute(workers=_workers(n_rows))
    return engine.features(order)


def _n_rows(data: CRMArrays) -> int:
    return sum(len(t.columns.get("client_code", ())) for t in data.tables.values())


def _workers(n_rows: int) -> int:
    """Threads for the bulk path: numpy releases the GIL; one client is faster on one thread."""
    return min(2, os.cpu_count() or 1) if n_rows > 200_000 else 1


def _client_codes(data: CRMData, client_ids: pd.Series) -> np.ndarray:
    """Positions of the ids in data.clients; an unknown id is an error."""
    codes = pd.Index(data.clients["client_id"]).get_indexer(client_ids.astype("str"))
    if (codes < 0).any():
        missing = client_ids[codes < 0].astype("str").unique()[:5].tolist()
        raise KeyError(f"clients not in the clients table: {missing}")
    return codes.astype(np.int64)


def build_features(
    data: CRMData,
    as_of_dates: Iterable[pd.Timestamp] | pd.Timestamp,
    feature_set: FeatureSet | None = None,
) -> pd.DataFrame:
    """Features for every client active at each as_of date (one row per active client and date)."""

    dates = [as_of_dates] if isinstance(as_of_dates, pd.Timestamp) else list(as_of_dates)
    parts = [
        pd.DataFrame({"client_id": active_clients(data.contracts, d), "as_of": utc_second(d)})
        for d in dates
    ]
    snapshots = pd.concat(parts, ignore_index=True) if parts else _no_snapshots()
    return compute_features(data, snapshots, feature_set)


def _no_snapshots() -> pd.DataFrame:
    return pd.DataFrame(
        {"client_id": pd.Series(dtype="str"), "as_of": pd.Series(dtype="datetime64[s, UTC]")}
    )
