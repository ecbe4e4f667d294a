"""The computation plan of a feature set: which aggregations to run on which stream, then the
vectorised steps that combine them into formulas. Worked out once per feature set and cached."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from churnguard.domain.contract import TABLES
from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import (
    CategoryTest,
    Columns,
    ColumnValue,
    TableArrays,
    labels_lookup,
)
from churnguard.features.catalog import (
    STREAMS,
    Agg,
    Custom,
    Diff,
    FeatureSet,
    Formula,
    MeanAge,
    Ratio,
    Stream,
)

SCALE = 1_000_000  # values are summed as int64 micro-units: exact, whatever the batch


def micro_units(values: np.ndarray) -> np.ndarray:
    """Values as int64 micro-units (missing: 0), the form every executor sums them in."""
    v = np.asarray(values, dtype=np.float64) * SCALE
    v[np.isnan(v)] = 0.0
    return np.rint(v, out=v).astype(np.int64)


def event_filter(stream: Stream, where: str, columns: Columns) -> np.ndarray:
    """A stream's filter (or an event type, ``type:<name>``) over a table's rows."""
    if where.startswith("type:"):
        return columns.isin("event_type", (where.removeprefix("type:"),))
    return np.asarray(stream.filters[where](columns), dtype=bool)


@dataclass(frozen=True)
class Spans:
    """Windows [as_of - offset - window, as_of - offset), in seconds; window 0 where unbounded."""

    offset: np.ndarray  # int64 per span
    window: np.ndarray  # int64 per span
    bounded: np.ndarray  # bool per span; False: all history before as_of - offset

    @classmethod
    def of(cls, pairs: Sequence[tuple[int | None, int]]) -> Spans:
        """From (window days or None, offset days) pairs."""
        return cls(
            np.array([[offset * DAY] for _, offset in pairs], dtype=np.int64),
            np.array([[(window or 0) * DAY] for window, _ in pairs], dtype=np.int64),
            np.array([[window is not None] for window, _ in pairs], dtype=bool),
        )


ALL_HISTORY = Spans.of([(None, 0)])


def _prefix_key(a: Agg) -> tuple[str, str | None, str | None]:
    return (a.how, a.where, a.value if a.how == "sum" else None)


def _aggs_in(f: Formula) -> list[Agg]:
    """The aggregations a formula reads."""
    if isinstance(f, Agg):
        return [f]
    return [a for part in formula_parts(f) for a in _aggs_in(part)]


def formula_parts(f: Formula) -> tuple[Formula, ...]:
    """The formulas a formula combines."""
    if isinstance(f, Diff | Ratio):
        return f.a, f.b
    if isinstance(f, MeanAge):
        return f.count, f.day_sum
    return ()


@dataclass(frozen=True)
class StreamPlan:
    """What to compute on one stream, worked out once per feature set.

    Its aggregations' results are rows ``first ..`` of the engine's value matrix: the totals
    (answered by prefix sums) first, then the others (answered one by one).
    """

    stream: str
    aggs: tuple[Agg, ...]  # totals first
    spans: Spans  # distinct (window, offset) pairs
    span: tuple[int, ...]  # each agg's span
    prefix_keys: tuple[tuple[str, str | None, str | None], ...]
    rows: np.ndarray  # per total: its prefix row (column vector)
    cols: np.ndarray  # per total: its span
    sums: np.ndarray  # positions of the totals that are sums (micro-units, to scale)
    n_totals: int
    first: int  # the value matrix row of aggs[0]


@dataclass(frozen=True)
class Step:
    """One vectorised step of a program: value rows ``out`` = kind(rows a, rows b)."""

    kind: type[Diff | Ratio | MeanAge]
    a: np.ndarray
    b: np.ndarray
    out: slice


Read = Callable[[Columns], np.ndarray]  # a stream's declaration: time, value or filter


@dataclass(frozen=True)
class ReadGroup:
    """Declarations of one table made together in a call: a column read as it is, the category
    tests of one column (one gather of a cached lookup), or a declaration called as declared."""

    table: int  # position in the dense plan's tables
    column: str = ""  # the column read, or tested
    tests: tuple[tuple[str, ...], ...] = ()  # per category test: its labels
    call: Read | None = None


def read_all(tables: Sequence[TableArrays], groups: Sequence[ReadGroup]) -> list[np.ndarray]:
    """Every read of the groups, in order (a group of tests gives one array per test)."""
    got: list[np.ndarray] = []
    for g in groups:
        t = tables[g.table]
        if g.call is not None:
            got.append(g.call(t))
        elif g.tests:
            lookup = labels_lookup(tuple(t.categories[g.column]), g.tests)
            got.extend(lookup[:, t.columns[g.column]])
        else:
            got.append(t.columns[g.column])
    return got


def _read_groups(
    keys: Iterable[tuple[int, Read]],
) -> tuple[tuple[ReadGroup, ...], dict[tuple[int, Read], int]]:
    """Distinct (table, declaration) reads as groups, and each read's position in their output."""
    groups, order = [], []
    tests: dict[tuple[int, str], list[tuple[int, Read]]] = {}
    for key in dict.fromkeys(keys):
        table, declared = key
        if isinstance(declared, CategoryTest):
            tests.setdefault((table, declared.column), []).append(key)
            continue
        if isinstance(declared, ColumnValue):
            groups.append(ReadGroup(table, declared.name))
        else:
            groups.append(ReadGroup(table, call=declared))
        order.append(key)
    for (table, column), found in tests.items():
        labels = tuple(d.values for _, d in found if isinstance(d, CategoryTest))
        groups.append(ReadGroup(table, column, labels))
        order.extend(found)
    return tuple(groups), {key: i for i, key in enumerate(order)}


@dataclass(frozen=True)
class DensePlan:
    """The aggregations compiled for few snapshots: one event axis over every stream read.

    Per aggregation, in value-matrix row order: its filter row, its window, and the reduction
    that answers it (count, sum, latest time, earliest time, latest value), as index arrays,
    so one snapshot's aggregations are a handful of array operations whatever their number.
    The streams' declarations are compiled into ``reads``, each distinct read made once a call.
    """

    streams: tuple[str, ...]  # the event axis: each stream's table rows, in this order
    tables: tuple[str, ...]  # the tables read
    reads: tuple[ReadGroup, ...]  # every distinct declaration of each table, read once a call
    stream_table: tuple[int, ...]  # per stream: its table's position
    stream_time: tuple[int, ...]  # per stream: the read of its event time
    masks: tuple[tuple[int, int | None], ...]  # per mask row: (stream position, filter's read)
    values: tuple[tuple[int, int], ...]  # per value row: (stream position, the value's read)
    mask: np.ndarray  # per aggregation: its mask row
    window: np.ndarray  # per aggregation: its window
    edges: np.ndarray  # (2 x windows, 1): seconds before as_of each window starts, then ends
    counts: np.ndarray  # aggregations answered by counting
    sums: np.ndarray  # aggregations answered by summing ...
    sum_values: np.ndarray  # ... these value rows
    latest: np.ndarray  # days since the latest event
    earliest: np.ndarray  # days since the earliest event
    lasts: np.ndarray  # the latest event's value ...
    last_values: np.ndarray  # ... of these value rows
    recency: np.ndarray  # latest, earliest and lasts: missing where the window has no event
    ranked: tuple[tuple[int, int | None], ...]  # (stream, read of its table's time) for lasts


_UNBOUNDED = 1 << 30  # days: a window start this far back encodes as the first time code


def _dense_plan(stream_plans: Sequence[StreamPlan]) -> DensePlan:
    aggs = [a for sp in sorted(stream_plans, key=lambda sp: sp.first) for a in sp.aggs]
    streams = list(dict.fromkeys(a.stream for a in aggs))
    tables = list(dict.fromkeys(STREAMS[s].table for s in streams))
    masks = list(dict.fromkeys((streams.index(a.stream), a.where) for a in aggs))
    valued = [a for a in aggs if a.how in ("sum", "last")]
    values = list(dict.fromkeys((streams.index(a.stream), a.value or "") for a in valued))

    def read(stream: int, declared: Read) -> tuple[int, Read]:
        return (tables.index(STREAMS[streams[stream]].table), declared)

    def where(stream: int, name: str | None) -> tuple[int, Read] | None:
        if name is None:
            return None
        if name.startswith("type:"):  # an event type: one category test
            return read(stream, CategoryTest("event_type", (name.removeprefix("type:"),)))
        return read(stream, STREAMS[streams[stream]].filters[name])

    def rows(*hows: str) -> np.ndarray:
        return np.array([i for i, a in enumerate(aggs) if a.how in hows], dtype=np.intp)

    def value_rows(how: str) -> np.ndarray:
        found = [(streams.index(a.stream), a.value or "") for a in aggs if a.how == how]
        return np.array([values.index(v) for v in found], dtype=np.intp)

    times = [read(i, STREAMS[s].time) for i, s in enumerate(streams)]
    mask_reads = [(i, where(i, name)) for i, name in masks]
    value_reads = [(i, read(i, STREAMS[streams[i]].values[name])) for i, name in values]
    ranked = tuple(dict.fromkeys(streams.index(a.stream) for a in aggs if a.how == "last"))
    table_time = [TABLES[STREAMS[streams[i]].table].time for i in ranked]
    ranked_reads = [
        (i, None if t is None else read(i, ColumnValue(t)))
        for i, t in zip(ranked, table_time, strict=True)
    ]
    every = [*times, *(r for _, r in mask_reads + value_reads + ranked_reads if r is not None)]
    groups, at = _read_groups(every)
    spans = [(a.offset + (_UNBOUNDED if a.window is None else a.window), a.offset) for a in aggs]
    windows = list(dict.fromkeys(spans))
    return DensePlan(
        tuple(streams),
        tuple(tables),
        groups,
        tuple(tables.index(STREAMS[s].table) for s in streams),
        tuple(at[r] for r in times),
        tuple((i, None if r is None else at[r]) for i, r in mask_reads),
        tuple((i, at[r]) for i, r in value_reads),
        np.array([masks.index((streams.index(a.stream), a.where)) for a in aggs], dtype=np.intp),
        np.array([windows.index(w) for w in spans], dtype=np.intp),
        np.array([[w[k] * DAY] for k in (0, 1) for w in windows], dtype=np.int64),
        rows("count"),
        rows("sum"),
        value_rows("sum"),
        rows("days_since"),
        rows("days_since_first"),
        rows("last"),
        value_rows("last"),
        rows("days_since", "days_since_first", "last"),
        tuple((i, None if r is None else at[r]) for i, r in ranked_reads),
    )


@dataclass(frozen=True)
class Plan:
    """A feature set's computation: aggregations by table and stream, then formula steps.

    The value matrix holds a row per aggregation, then a row per custom value a formula reads,
    then a row per combined formula; ``steps`` fill the latter level by level, all formulas of a
    kind and level at once, so one client costs a few array operations, not one per feature.
    """

    tables: dict[str, list[StreamPlan]]
    n_aggs: int
    customs: tuple[str, ...]  # custom values formulas read, rows n_aggs ..
    steps: tuple[Step, ...]
    n_rows: int
    outputs: tuple[tuple[str, int | str], ...]  # per feature: its value row, or a custom's name
    dense: DensePlan  # the same aggregations for the dense executor (few snapshots)
    names: tuple[str, ...] = ()  # every feature, in the feature set's order
    numeric: tuple[str, ...] = ()  # the features read from a value row ...
    numeric_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))  # ... these
    custom_outputs: tuple[tuple[str, str], ...] = ()  # the others: (feature, custom's name)


def _stream_plan(stream: str, found: list[Agg], first: int) -> StreamPlan:
    aggs = sorted(found, key=lambda a: not _by_prefix(a))  # stable: totals first
    pairs = list(dict.fromkeys((a.window, a.offset) for a in aggs))
    span = [pairs.index((a.window, a.offset)) for a in aggs]
    totals = [a for a in aggs if _by_prefix(a)]
    keys = list(dict.fromkeys(_prefix_key(a) for a in totals))
    return StreamPlan(
        stream,
        tuple(aggs),
        Spans.of(pairs),
        tuple(span),
        tuple(keys),
        np.array([keys.index(_prefix_key(a)) for a in totals], dtype=np.intp)[:, None],
        np.array(span[: len(totals)], dtype=np.intp),
        np.array([i for i, a in enumerate(totals) if a.how == "sum"], dtype=np.intp),
        len(totals),
        first,
    )


def _by_prefix(a: Agg) -> bool:
    """Whether prefix totals answer an aggregation (an unfiltered count is a run's length)."""
    return a.how == "sum" or (a.how == "count" and a.where is not None)


@lru_cache(maxsize=32)
def plan_for(feature_set: FeatureSet) -> Plan:
    """The computation plan of a feature set (cached: the online path reuses it every call)."""
    by_stream: dict[str, list[Agg]] = {}
    for a in dict.fromkeys(a for f in feature_set.features for a in _aggs_in(f.formula)):
        by_stream.setdefault(a.stream, []).append(a)
    tables: dict[str, list[StreamPlan]] = {}
    row: dict[Formula, int] = {}
    for stream, found in by_stream.items():
        sp = _stream_plan(stream, found, len(row))
        row.update((a, sp.first + i) for i, a in enumerate(sp.aggs))
        tables.setdefault(STREAMS[stream].table, []).append(sp)
    n_aggs = len(row)
    combined = [f.formula for f in feature_set.features if not isinstance(f.formula, Custom)]
    customs, steps, row = _combine(combined, row)
    outputs = tuple(
        (f.name, f.formula.name if isinstance(f.formula, Custom) else row[f.formula])
        for f in feature_set.features
    )
    dense = _dense_plan([sp for streams in tables.values() for sp in streams])
    numeric = [(name, r) for name, r in outputs if isinstance(r, int)]
    return Plan(
        tables,
        n_aggs,
        customs,
        steps,
        len(row),
        outputs,
        dense,
        tuple(name for name, _ in outputs),
        tuple(name for name, _ in numeric),
        np.array([r for _, r in numeric], dtype=np.intp),
        tuple((name, r) for name, r in outputs if isinstance(r, str)),
    )


def run_steps(steps: Sequence[Step], v: np.ndarray, as_of_day: np.ndarray) -> None:
    """Fill the combined formulas' rows of a value matrix (columns: snapshots).

    A ratio is missing where its divisor is 0, a mean age where it counts no event: those
    cells keep the NaN they are filled with, the others are divided (``where``).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in steps:
            a, b, out = v[s.a], v[s.b], v[s.out]  # out: a view of the value matrix
            if s.kind is Diff:
                np.subtract(a, b, out=out)
                continue
            out.fill(np.nan)
            if s.kind is Ratio:
                np.divide(a, b, out=out, where=b != 0)
            else:  # MeanAge: a counts events, b sums their epoch days
                np.divide(a * as_of_day - b, a, out=out, where=a > 0)


def _combine(
    formulas: Sequence[Formula], leaves: dict[Formula, int]
) -> tuple[tuple[str, ...], tuple[Step, ...], dict[Formula, int]]:
    """The custom values the formulas read, the steps that combine the rest, and every row.

    ``leaves`` are the aggregations' rows; customs get the next rows, then each step's formulas.
    """
    levels = _levels(formulas)
    customs = tuple(dict.fromkeys(c.name for c in levels.pop(0, []) if isinstance(c, Custom)))
    row = dict(leaves)
    row.update((Custom(name), len(leaves) + i) for i, name in enumerate(customs))
    steps = []
    for level in sorted(levels):
        for kind in (Diff, Ratio, MeanAge):
            nodes = [f for f in levels[level] if type(f) is kind]
            if nodes:
                start = len(row)
                row.update((f, start + i) for i, f in enumerate(nodes))
                a, b = ([row[formula_parts(f)[k]] for f in nodes] for k in (0, 1))
                steps.append(Step(kind, np.array(a), np.array(b), slice(start, len(row))))
    return customs, tuple(steps), row


def _levels(formulas: Iterable[Formula]) -> dict[int, list[Formula]]:
    """Distinct formulas by level: 0 for aggregations and customs, else 1 + their parts' highest."""
    level: dict[Formula, int] = {}

    def visit(f: Formula) -> int:
        if f not in level:
            parts = formula_parts(f)
            level[f] = 1 + max(visit(p) for p in parts) if parts else 0
        return level[f]

    for f in formulas:
        visit(f)
    out: dict[int, list[Formula]] = {}
    for f, n in level.items():
        out.setdefault(n, []).append(f)
    return out
