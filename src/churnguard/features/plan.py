"""The computation plan of a feature set: which aggregations to run on which stream, then the
vectorised steps that combine them into formulas. Worked out once per feature set and cached."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from churnguard.domain.timeaxis import DAY
from churnguard.features.catalog import (
    STREAMS,
    Agg,
    Custom,
    Diff,
    FeatureSet,
    Formula,
    MeanAge,
    Ratio,
)


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
    return Plan(tables, n_aggs, customs, steps, len(row), outputs)


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
