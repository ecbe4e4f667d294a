"""Features that prefix sums cannot compute: the contracts in force, and client attributes.

The engine (``engine.py``) calls these by feature name (``CUSTOM_GROUPS``); each function computes
a group of features at once, per snapshot, from what the engine exposes (``EngineView``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT, Columns, CRMArrays
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
