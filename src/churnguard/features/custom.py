"""Features that prefix sums cannot compute: the contracts in force, client attributes, and the
attributes a mapping declares on clients and contracts.

The engine (``engine.py``) calls these by feature name (``custom_group``); each function computes
a group of features at once, per snapshot, from what the engine exposes (``EngineView``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Protocol

import numpy as np

from churnguard.domain.contract import ATTRIBUTE_PREFIXES, Attribute, Kind
from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT, Columns, CRMArrays, TableArrays
from churnguard.features.catalog import STREAMS


class Snapshots(Protocol):
    """The snapshots being computed: client codes and as_of times (sorted)."""

    @property
    def codes(self) -> np.ndarray: ...

    @property
    def as_of(self) -> np.ndarray: ...


class EngineView(Protocol):
    """What the custom features read from the engine."""

    @property
    def data(self) -> CRMArrays: ...

    @property
    def snap(self) -> Snapshots: ...

    def contracts_started(self) -> tuple[np.ndarray, np.ndarray, Columns]: ...


def contract_state(e: EngineView) -> dict[str, np.ndarray]:
    """Per snapshot: days to the nearest fixed end, rolling contracts and service lines in force,
    and how the monthly value moved over the year: price (lines held then and now) and scope."""
    snap, rows, columns = e.contracts_started()
    as_of = e.snap.as_of[snap]
    ended = STREAMS["contract_end"].time(columns)[rows]  # contract stops
    in_force = (ended == NAT) | (ended >= as_of)
    end = columns("end_date")[rows]
    fixed = in_force & (end != NAT)
    n = len(e.snap.as_of)
    days_to_end = np.full(n, np.inf)
    np.minimum.at(days_to_end, snap[fixed], (end[fixed] - as_of[fixed]) / DAY)
    rolling = np.bincount(snap[in_force & (end == NAT)], minlength=n).astype(np.float64)
    lines = columns.codes("service_line")[rows][in_force].astype(np.int64) + 1  # 0 = empty
    width = int(lines.max(initial=0)) + 1
    held = np.bincount(snap[in_force] * width + lines, minlength=n * width).reshape(n, width)
    n_lines = (held > 0).sum(axis=1)
    return {
        "days_to_contract_end": np.where(np.isinf(days_to_end), np.nan, days_to_end),
        "rolling_contracts": rolling,
        "service_lines": n_lines.astype(np.float64),
        **_value_moves(snap, rows, columns, as_of, ended, n),
    }


def _value_moves(
    snap: np.ndarray,
    rows: np.ndarray,
    columns: Columns,
    as_of: np.ndarray,
    ended: np.ndarray,
    n: int,
) -> dict[str, np.ndarray]:
    """Monthly value by service line a year before as_of and at as_of: the relative change on the
    lines held at both times (price), and the value of lines taken up minus lines given up (scope).
    """
    start = STREAMS["contract_start"].time(columns)[rows]
    then_at = as_of - 365 * DAY
    now = (ended == NAT) | (ended >= as_of)
    then = (start < then_at) & ((ended == NAT) | (ended >= then_at))
    lines = columns.codes("service_line")[rows].astype(np.int64) + 1  # 0 = empty
    width = int(lines.max(initial=0)) + 1
    key, value = snap * width + lines, columns("monthly_value")[rows]
    cents = np.round(np.where(np.isnan(value), 0.0, value) * 100)  # whole: sums in any order agree

    def by_line(held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = np.bincount(key[held], minlength=n * width).reshape(n, width)
        total = np.bincount(key[held], cents[held], minlength=n * width).reshape(n, width)
        return count > 0, total

    (has_now, v_now), (had, v_then) = by_line(now), by_line(then)
    kept = has_now & had
    before = (v_then * kept).sum(axis=1)
    price = np.divide(
        (v_now * kept).sum(axis=1) - before, before, out=np.full(n, np.nan), where=before > 0
    )
    scope = (v_now * (has_now & ~had)).sum(axis=1) - (v_then * (had & ~has_now)).sum(axis=1)
    return {"price_change_365d": price, "scope_change_365d": scope / 100}


def client_attributes(e: EngineView) -> dict[str, np.ndarray]:
    """Per snapshot: the client's own attributes, as known at as_of."""
    clients = e.data.table("clients")
    codes = e.snap.codes
    since = clients("client_since")[codes]
    known = (since != NAT) & (since < e.snap.as_of)
    out: dict[str, np.ndarray] = {
        "client_age_days": np.where(known, (e.snap.as_of - since) / DAY, np.nan),
        "has_account_manager": clients("has_account_manager")[codes],
    }
    for name in ("segment", "industry", "region"):
        labels = np.array([*clients.categories[name], None], dtype=object)
        out[name] = labels[clients.codes(name)[codes]]  # code -1 picks the trailing None
    return out


CUSTOM_GROUPS: dict[str, Callable[[EngineView], dict[str, np.ndarray]]] = {
    "days_to_contract_end": contract_state,
    "rolling_contracts": contract_state,
    "service_lines": contract_state,
    "price_change_365d": contract_state,
    "scope_change_365d": contract_state,
    "client_age_days": client_attributes,
    "has_account_manager": client_attributes,
    "segment": client_attributes,
    "industry": client_attributes,
    "region": client_attributes,
}


def client_attribute(e: EngineView, column: str) -> dict[str, np.ndarray]:
    """Per snapshot: a client attribute's value, as the clients table has it."""
    return {column: _values(e.data.table("clients"), e.data.table("clients"), column, e.snap.codes)}


def contract_attribute(e: EngineView, column: str) -> dict[str, np.ndarray]:
    """Per snapshot: a contract attribute's value on the contract in force at as_of, the latest
    started when several are (the later row when they started together); empty when none is."""
    snap, rows, columns = e.contracts_started()
    as_of = e.snap.as_of[snap]
    ended = STREAMS["contract_end"].time(columns)[rows]
    in_force = (ended == NAT) | (ended >= as_of)
    snap, rows = snap[in_force], rows[in_force]
    start = STREAMS["contract_start"].time(columns)[rows]
    order = np.lexsort((rows, start, snap))  # each snapshot's latest-started contract last
    snap, rows = snap[order], rows[order]
    last = np.r_[snap[1:] != snap[:-1], True] if len(snap) else np.zeros(0, bool)
    pick = np.full(len(e.snap.as_of), -1, dtype=np.int64)
    pick[snap[last]] = rows[last]
    return {column: _values(columns, e.data.table("contracts"), column, pick)}


def _values(columns: Columns, table: TableArrays, column: str, rows: np.ndarray) -> np.ndarray:
    """A column's values at rows (-1: none): floats (NaN), or a category's labels (None)."""
    has, at = rows >= 0, np.maximum(rows, 0)
    if column in table.categories:
        labels = np.array([*table.categories[column], None], dtype=object)
        codes = columns.codes(column)
        return labels[np.where(has, codes[at], -1) if len(codes) else np.full(len(rows), -1)]
    values = columns(column)
    return np.where(has, values[at], np.nan) if len(values) else np.full(len(rows), np.nan)


def custom_group(name: str) -> Callable[[EngineView], dict[str, np.ndarray]]:
    """The function that computes a custom feature (and the others of its group)."""
    if name in CUSTOM_GROUPS:
        return CUSTOM_GROUPS[name]
    if name.startswith(ATTRIBUTE_PREFIXES["contracts"]):
        return partial(contract_attribute, column=name)
    if name.startswith(ATTRIBUTE_PREFIXES["clients"]):
        return partial(client_attribute, column=name)
    raise KeyError(f"no custom feature {name!r}")


def attribute_columns(
    table: str, given: Sequence[Mapping[str, object] | None], attributes: Sequence[Attribute]
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """The columns (and a category's labels) of a table's attributes, from the values records
    give each row (None: none given); ValueError naming the attribute for a value of the wrong
    kind, or for one the model does not read."""
    mine = {a.name: a for a in attributes if a.table == table}
    unknown = sorted({k for row in given if row for k in row} - set(mine))
    if unknown:
        known = ", ".join(mine) or "none"
        raise ValueError(f"{table}: unknown attribute {unknown[0]!r} (the model reads: {known})")
    columns: dict[str, np.ndarray] = {}
    categories: dict[str, tuple[str, ...]] = {}
    for name, a in mine.items():
        values = [None if row is None else row.get(name) for row in given]
        if a.kind == Kind.NUMBER:
            if any(isinstance(v, str | bool) for v in values):
                raise ValueError(f"{table}: attribute {name!r} is a number, not text")
            columns[a.column] = np.array(values, dtype=np.float64)  # None -> NaN
            continue
        if any(v is not None and not isinstance(v, str) for v in values):
            raise ValueError(f"{table}: attribute {name!r} is a category: send it as text")
        text = [str(v) if v else None for v in values]
        labels = tuple(sorted({v for v in text if v is not None}))
        index = {label: i for i, label in enumerate(labels)}
        columns[a.column] = np.array([-1 if v is None else index[v] for v in text], np.int64)
        categories[a.column] = labels
    return columns, categories
