"""The dense executor: aggregations of few snapshots as window masks over one axis of events.

The engine's sorted executor (prefix sums and binary search, ``engine.py``) pays a fixed cost per
stream and per aggregation that dominates when there are only a few snapshots, as for one
client in the online API. Here every stream the plan reads is laid end to end on one event axis
and every aggregation of every snapshot is a row of one boolean matrix (aggregation x snapshot
x event: in its window, its stream and its filter, and the snapshot's client), so all of them
cost a handful of array operations. Counts and micro-unit sums are exact integers and times are
taken as they are, so the results equal the sorted executor's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT, CRMArrays, TableArrays, encode_times
from churnguard.features.catalog import STREAMS
from churnguard.features.plan import SCALE, DensePlan, micro_units, read_all

_PAST, _FUTURE = -(1 << 40), 1 << 40  # seconds: no event's time (max and min of none)


@dataclass(frozen=True)
class _Axis:
    """Every event of the plan's streams, stream after stream (table rows, NAT times included)."""

    codes: np.ndarray  # client code per event
    times: np.ndarray  # epoch seconds (NAT: no event)
    encoded: np.ndarray  # encoded times, as the sorted executor compares them
    masks: np.ndarray  # bool (mask rows, events): the event is of the row's stream and filter
    values: np.ndarray  # float64 (value rows, events), 0 outside the row's stream
    rank: np.ndarray  # per event, its position in the sorted executor's order (ranked streams)


def _event_axis(data: CRMArrays, dp: DensePlan) -> _Axis:
    tables = [data.tables[name] for name in dp.tables]
    got = read_all(tables, dp.reads)  # each declaration once
    times = [got[i] for i in dp.stream_time]
    spans, first = [], 0
    for t in times:
        spans.append(slice(first, first + len(t)))
        first += len(t)
    all_times = np.concatenate(times)
    masks = np.zeros((len(dp.masks), first), dtype=bool)
    for k, (i, where) in enumerate(dp.masks):
        masks[k, spans[i]] = True if where is None else got[where]
    no_event = all_times == NAT
    masks[:, no_event] = False
    values = np.zeros((len(dp.values), first))
    for k, (i, value) in enumerate(dp.values):
        values[k, spans[i]] = got[value]
    values[:, no_event] = 0.0  # rows that are no event of their stream may hold anything
    encoded = encode_times(all_times)
    rank = np.zeros(first, dtype=np.int64)
    for i, table_time in dp.ranked:
        codes = tables[dp.stream_table[i]].columns["client_code"]
        later = got[table_time] if table_time is not None else None
        rank[spans[i]] = _order_rank(codes, encoded[spans[i]], later)
    codes = np.concatenate([tables[t].columns["client_code"] for t in dp.stream_table])
    return _Axis(codes, all_times, encoded, masks, values, rank)


def _order_rank(
    codes: np.ndarray, encoded: np.ndarray, table_time: np.ndarray | None
) -> np.ndarray:
    """Each row's position in the sorted executor's order: client, event time, table time, row."""
    later = encode_times(table_time) if table_time is not None else np.zeros_like(encoded)
    order = np.lexsort((np.arange(len(encoded)), later, encoded, codes))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _inside(axis: _Axis, codes: np.ndarray, as_of: np.ndarray, dp: DensePlan) -> np.ndarray:
    """(aggregations, snapshots, events): the event counts towards the snapshot's aggregation."""
    edges = encode_times(as_of - dp.edges)  # (2 x windows, snapshots): starts, then ends
    n = len(edges) // 2
    in_window = (axis.encoded >= edges[:n, :, None]) & (axis.encoded < edges[n:, :, None])
    in_window &= axis.codes == codes[:, None]  # (windows, snapshots, events)
    return axis.masks[dp.mask][:, None, :] & in_window[dp.window]


def dense_aggregates(
    data: CRMArrays, codes: np.ndarray, as_of: np.ndarray, dp: DensePlan
) -> np.ndarray:
    """Every aggregation of the plan (rows, in value-matrix order) for each snapshot (columns)."""
    axis = _event_axis(data, dp)
    inside = _inside(axis, codes, as_of, dp)
    counts = inside.sum(axis=2)
    out = counts.astype(np.float64)  # the counts' rows; every other row is overwritten below
    if len(dp.sums):
        micro = micro_units(axis.values[dp.sum_values])[:, None, :]
        out[dp.sums] = (inside[dp.sums] * micro).sum(axis=2) / SCALE
    if len(dp.latest):  # events found are never NAT: the sentinels only fill empty windows
        latest = np.where(inside[dp.latest], axis.times, _PAST).max(axis=2)
        out[dp.latest] = (as_of - latest) / DAY
    if len(dp.earliest):
        earliest = np.where(inside[dp.earliest], axis.times, _FUTURE).min(axis=2)
        out[dp.earliest] = (as_of - earliest) / DAY
    if len(dp.lasts) and len(axis.times):
        j = np.where(inside[dp.lasts], axis.rank, -1).argmax(axis=2)
        out[dp.lasts] = axis.values[dp.last_values[:, None], j]
    if len(dp.recency):
        out[dp.recency] = np.where(counts[dp.recency] > 0, out[dp.recency], np.nan)
    return out


def contracts_started(
    data: CRMArrays, codes: np.ndarray, as_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray, TableArrays]:
    """(snapshot, contract row) pairs of the contracts started before each as_of, and the table."""
    table = data.table("contracts")
    start = STREAMS["contract_start"].time(table)
    started = (table("client_code") == codes[:, None]) & (start != NAT)
    started &= encode_times(start) < encode_times(as_of)[:, None]
    snap, rows = np.nonzero(started)
    return snap, rows, table
