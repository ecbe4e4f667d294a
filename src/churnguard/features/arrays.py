"""CRM tables as the numpy arrays the feature engine reads, and the time encoding its sorts use.

Timestamps are int64 epoch seconds (``NAT`` when empty), numbers and booleans float64, categorical
columns integer codes. Events are sorted by (client, time) through packed integer keys: a client
code shifted left by ``TIME_BITS`` or'ed with the encoded time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData, Kind, Table
from churnguard.domain.timeaxis import EARLIEST_TIME, LATEST_TIME, TIME_BITS, TIME_MAX, TIME_OFFSET

NAT = np.iinfo(np.int64).min  # an empty time: NaT when viewed as datetime64


class Columns(Protocol):
    """A table's columns as numpy arrays, by name."""

    def __call__(self, name: str) -> np.ndarray: ...  # numbers, bools (0/1), times (NAT = empty)

    def codes(self, name: str) -> np.ndarray: ...  # a categorical column's codes (-1 = empty)

    def isin(self, name: str, values: Sequence[str]) -> np.ndarray: ...  # categorical membership


@dataclass(frozen=True)
class ColumnValue:
    """A declaration that reads one column as it is (the dense executor reads it directly)."""

    name: str

    def __call__(self, columns: Columns) -> np.ndarray:
        return columns(self.name)


@dataclass(frozen=True)
class CategoryTest:
    """A declaration that tests a categorical column for some labels (grouped per column)."""

    column: str
    values: tuple[str, ...]

    def __call__(self, columns: Columns) -> np.ndarray:
        return columns.isin(self.column, self.values)


def encode_times(times: np.ndarray) -> np.ndarray:
    """Epoch seconds as the engine's non-negative time codes (NAT and the far past: 0)."""
    encoded = times + TIME_OFFSET
    np.maximum(encoded, 0, out=encoded)  # np.clip's Python wrapper costs more than both calls
    return np.minimum(encoded, TIME_MAX, out=encoded)


def is_sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or (a[1:] >= a[:-1]).all())


def group_order(codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Row order by (code, time, row): sorts of packed integers, far faster than argsort."""
    n = len(codes)
    bits = max(int(n - 1).bit_length(), 1)
    if n < 2 or bits + TIME_BITS > 63 or int(codes.max()) >= 1 << (63 - bits):
        return np.lexsort((np.arange(n), times, codes))
    rows = np.arange(n)
    # CRM exports usually list rows in time order; then the first sort is not needed
    by_time = rows if is_sorted(times) else _sorted_rows(encode_times(times), bits, rows)
    return by_time[_sorted_rows(codes[by_time], bits, rows)]


def _sorted_rows(sort_keys: np.ndarray, bits: int, rows: np.ndarray) -> np.ndarray:
    """Row positions in (key, position) order, by one sort of packed int64 (in place)."""
    packed = sort_keys.astype(np.int64) << bits
    packed |= rows
    packed.sort()
    packed &= (1 << bits) - 1
    return packed


@dataclass(frozen=True)
class TableArrays:
    """One contract table as numpy arrays, the form the engine reads.

    Timestamps are int64 epoch seconds (NAT when empty), numbers and booleans float64, and
    categorical columns signed integer codes (-1 when empty, as narrow as pandas keeps them)
    into ``categories[column]``; ``client_code`` is each row's position in the clients table.
    """

    columns: dict[str, np.ndarray]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __call__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def codes(self, name: str) -> np.ndarray:
        return self.columns[name]

    def isin(self, name: str, values: Sequence[str]) -> np.ndarray:
        return label_lookup(tuple(self.categories[name]), tuple(values))[self.columns[name]]


def label_lookup(labels: tuple[str, ...], values: tuple[str, ...]) -> np.ndarray:
    """Per code (the last slot: empty, code -1), whether its label is one of the values."""
    return labels_lookup(labels, (values,))[0]


@lru_cache(maxsize=256)
def labels_lookup(labels: tuple[str, ...], tests: tuple[tuple[str, ...], ...]) -> np.ndarray:
    """Per test (rows) and code (columns; the last: empty, code -1), whether the code's label is
    one of the test's values. Cached: the one-client path asks the same few questions of the
    same labels on every call."""
    lookup = np.zeros((len(tests), len(labels) + 1), dtype=bool)
    for row, values in zip(lookup, tests, strict=True):
        row[[labels.index(v) for v in values if v in labels]] = True
    lookup.flags.writeable = False
    return lookup


@dataclass(frozen=True)
class CRMArrays:
    """All contract tables as numpy arrays, with the clients' ids (row i = client code i)."""

    client_ids: np.ndarray
    tables: dict[str, TableArrays]

    def table(self, name: str) -> TableArrays:
        return self.tables[name]


def crm_arrays(data: CRMData) -> CRMArrays:
    """The engine's view of validated CRM data: each column converted to numpy once."""
    tables = {name: _table_arrays(df, data.spec(name)) for name, df in data.tables().items()}
    return CRMArrays(data.clients["client_id"].to_numpy(dtype=object), tables)


def client_slice(data: CRMArrays, first: int, stop: int) -> CRMArrays:
    """The rows of clients ``first .. stop - 1``, in their order; codes and clients table kept."""
    tables = {}
    for name, table in data.tables.items():
        codes = table("client_code")
        if name != "clients":
            rows = np.flatnonzero((codes >= first) & (codes < stop))
            table = TableArrays({k: v[rows] for k, v in table.columns.items()}, table.categories)
        tables[name] = table
    return CRMArrays(data.client_ids, tables)


def _table_arrays(df: pd.DataFrame, spec: Table) -> TableArrays:
    columns: dict[str, np.ndarray] = {}
    categories: dict[str, tuple[str, ...]] = {}
    for col in spec.columns:
        s = df[col.name]
        if col.name == "client_id":  # codes as pandas keeps them (int32 for a million clients)
            codes = s.array.codes if spec.name != "clients" else np.arange(len(s))
            columns["client_code"] = np.asarray(codes)
        elif col.kind in (Kind.CHOICE, Kind.CATEGORY):
            columns[col.name] = np.asarray(s.array.codes)
            categories[col.name] = tuple(str(c) for c in s.cat.categories)
        elif col.kind == Kind.DATETIME:
            seconds = _seconds(s)
            columns[col.name] = _encodable(seconds, f"{spec.name}.{col.name}")
        elif col.kind in (Kind.NUMBER, Kind.BOOL):
            columns[col.name] = _floats(s)
        elif col.name == "account_manager":
            columns["has_account_manager"] = (s.fillna("").str.strip() != "").to_numpy(float)
    return TableArrays(columns, categories)


def _floats(s: pd.Series) -> np.ndarray:
    """A number or bool column as float64 (NaN when empty): a read-only view when it is one."""
    if s.dtype != np.float64:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    values = s.to_numpy().view()
    values.flags.writeable = False
    return values


def _seconds(s: pd.Series) -> np.ndarray:
    """A datetime column as int64 epoch seconds: a read-only view when pandas holds seconds."""
    if getattr(s.dtype, "unit", None) != "s":
        return s.to_numpy(dtype="datetime64[s]").view(np.int64)
    seconds = s.array.view("i8")
    seconds.flags.writeable = False
    return seconds


def _encodable(times: np.ndarray, column: str) -> np.ndarray:
    """Epoch seconds the engine can encode (or NAT); ValueError for any other time."""
    earliest = _earliest(times) if len(times) else NAT
    if earliest != NAT and (earliest < EARLIEST_TIME or times.max() > LATEST_TIME):
        known = times[times != NAT]
        bad = known[(known < EARLIEST_TIME) | (known > LATEST_TIME)][0]
        raise ValueError(
            f"{column}: {np.datetime64(int(bad), 's')} is outside the range the feature engine "
            f"encodes: {np.datetime64(EARLIEST_TIME, 's')} .. {np.datetime64(LATEST_TIME, 's')} UTC"
        )
    return times


def _earliest(times: np.ndarray) -> int:
    """The earliest time that is not NAT (NAT if there is none), without a full-length copy."""
    earliest = int(times.min())
    for start in range(0, len(times), 1 << 20) if earliest == NAT else ():
        block = times[start : start + (1 << 20)]
        known = block[block != NAT]
        if len(known):
            earliest = int(known.min()) if earliest == NAT else min(earliest, int(known.min()))
    return earliest


class Reordered:
    """Columns taken in a given row order, converted once and on demand."""

    def __init__(self, columns: Columns, order: np.ndarray) -> None:
        self._columns = columns
        self._order = order
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        return self._memo("values", name, lambda: self._columns(name)[self._order])

    def codes(self, name: str) -> np.ndarray:
        return self._memo("codes", name, lambda: self._columns.codes(name)[self._order])

    def isin(self, name: str, values: Sequence[str]) -> np.ndarray:
        return self._columns.isin(name, values)[self._order]

    def _memo(self, kind: str, name: str, build: Callable[[], np.ndarray]) -> np.ndarray:
        if (kind, name) not in self._arrays:
            self._arrays[kind, name] = build()
        return self._arrays[kind, name]


@dataclass
class Grouped:
    """A table's rows grouped by client and ordered by the table's own time within a client."""

    codes: np.ndarray  # client code of each row, in group order
    columns: Reordered


def group_by_client(table: TableArrays, time_column: str) -> Grouped:
    codes = table("client_code")
    columns: Columns = table
    if len(codes) and codes.min() < 0:  # rows of clients not in the clients table
        known = np.flatnonzero(codes >= 0)
        codes = codes[known]
        columns = Reordered(columns, known)
    order = group_order(codes, columns(time_column))
    return Grouped(codes[order], Reordered(columns, order))
