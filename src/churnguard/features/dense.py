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
from itertools import pairwise

import numpy as np

from churnguard.domain.contract import TABLES
from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT, CRMArrays, TableArrays, encode_times
from churnguard.features.catalog import STREAMS
from churnguard.features.plan import SCALE, DensePlan, event_filter, micro_units

_NEVER = np.iinfo(np.int64).max


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
    tables = [data.table(STREAMS[s].table) for s in dp.streams]
    times = [STREAMS[s].time(t) for s, t in zip(dp.streams, tables, strict=True)]
    edges = np.cumsum([0] + [len(t) for t in times]).tolist()
    spans = [slice(a, b) for a, b in pairwise(edges)]
    all_times = np.concatenate(times)
    masks = np.zeros((len(dp.masks), len(all_times)), dtype=bool)
    for k, (i, where) in enumerate(dp.masks):
        stream = STREAMS[dp.streams[i]]
        masks[k, spans[i]] = True if where is None else event_filter(stream, where, tables[i])
    no_event = all_times == NAT
    masks[:, no_event] = False
    values = np.zeros((len(dp.values), len(all_times)))
    for k, (i, name) in enumerate(dp.values):
        values[k, spans[i]] = STREAMS[dp.streams[i]].values[name](tables[i])
    values[:, no_event] = 0.0  # rows that are no event of their stream may hold anything
    encoded = encode_times(all_times)
    rank = np.zeros(len(all_times), dtype=np.int64)
    for i in dp.ranked:
        table_time = TABLES[STREAMS[dp.streams[i]].table].time
        rank[spans[i]] = _order_rank(tables[i], encoded[spans[i]], table_time)
    codes = np.concatenate([t("client_code") for t in tables])
    return _Axis(codes, all_times, encoded, masks, values, rank)


def _order_rank(table: TableArrays, encoded: np.ndarray, time_column: str | None) -> np.ndarray:
    """Each row's position in the sorted executor's order: client, event time, table time, row."""
    table_time = encode_times(table(time_column)) if time_column else np.zeros_like(encoded)
    order = np.lexsort((np.arange(len(encoded)), table_time, encoded, table("client_code")))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _inside(axis: _Axis, codes: np.ndarray, as_of: np.ndarray, dp: DensePlan) -> np.ndarray:
    """(aggregations, snapshots, events): the event counts towards the snapshot's aggregation."""
    end = as_of - dp.offset  # (aggregations, snapshots)
    start = np.where(dp.bounded, encode_times(end - dp.window), 0)
    inside = axis.masks[dp.mask][:, None, :] & (axis.codes == codes[:, None])[None]
    inside &= axis.encoded >= start[:, :, None]
    inside &= axis.encoded < encode_times(end)[:, :, None]
    return inside


def dense_aggregates(
    data: CRMArrays, codes: np.ndarray, as_of: np.ndarray, dp: DensePlan
) -> np.ndarray:
    """Every aggregation of the plan (rows, in value-matrix order) for each snapshot (columns)."""
    axis = _event_axis(data, dp)
    inside = _inside(axis, codes, as_of, dp)
    counts = inside.sum(axis=2)
    found = counts > 0
    out = np.empty(counts.shape)
    out[dp.counts] = counts[dp.counts]
    if len(dp.sums):
        micro = micro_units(axis.values[dp.sum_values])[:, None, :]
        out[dp.sums] = (inside[dp.sums] * micro).sum(axis=2)
        out[dp.sums] /= SCALE
    latest = np.where(inside[dp.latest], axis.times, NAT).max(axis=2, initial=NAT)
    out[dp.latest] = _days_since(latest, as_of)
    earliest = np.where(inside[dp.earliest], axis.times, _NEVER).min(axis=2, initial=_NEVER)
    out[dp.earliest] = _days_since(earliest, as_of)
    if len(dp.lasts) and len(axis.times):
        j = np.where(inside[dp.lasts], axis.rank, -1).argmax(axis=2)
        out[dp.lasts] = axis.values[dp.last_values[:, None], j]
    for rows in (dp.latest, dp.earliest, dp.lasts):
        out[rows] = np.where(found[rows], out[rows], np.nan)
    return out


def _days_since(t: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """Days from times to as_of (where no event was found the time is a sentinel: masked later)."""
    known = (t != NAT) & (t != _NEVER)
    return (as_of - np.where(known, t, as_of)) / DAY


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
