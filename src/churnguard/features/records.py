"""One client's CRM records as sent to the API: schemas generated from the contract, and arrays.

The request models are built from ``contract.TABLES`` so the API accepts exactly the contract's
columns and types, with no second copy of the contract to keep in step. ``client_arrays`` turns
validated records straight into the numpy arrays the feature engine reads, skipping pandas: this
is the online hot path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from churnguard.domain.contract import (
    ATTRIBUTE_PREFIXES,
    ATTRIBUTE_TEXT,
    ORDERED_COLUMNS,
    SCORE_RANGES,
    TABLES,
    Attribute,
    Column,
    Kind,
    Table,
)
from churnguard.domain.timeaxis import EARLIEST, EARLIEST_TIME, LATEST, LATEST_TIME, utc_datetime
from churnguard.features.arrays import NAT, CRMArrays, TableArrays
from churnguard.features.custom import attribute_columns

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)
_MAX_NUMBER = 1e12


def storable(value: str) -> str:
    """``value`` if a database can keep it: no NUL character, no lone surrogate."""
    if "\x00" in value:
        raise ValueError("text may not contain a NUL character (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text may not contain a lone surrogate (\\ud800-\\udfff)") from None
    return value


STORABLE = AfterValidator(storable)


def _numeric(value: object) -> bool:
    """Whether ``value`` is a number or the text of one (a bool is neither)."""
    if isinstance(value, str):
        return value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    return isinstance(value, int | float) and not isinstance(value, bool)


def not_a_time(value: Any) -> Any:
    """``value`` unless it is a number (or its text), which pydantic would read as Unix time."""
    if _numeric(value) or isinstance(value, bool):
        raise PydanticCustomError(
            "datetime_type",
            "Input should be a date or time as ISO 8601 text (2025-06-02, 2025-06-02T09:30:00Z), "
            "not a number",
        )
    return value


def not_a_number(value: Any) -> Any:
    """``value`` unless it is a number (or its text): a boolean is true or false, not 0 or 1."""
    if _numeric(value):
        raise PydanticCustomError("bool_type", "Input should be true or false, not a number")
    return value


ISO_TIME = BeforeValidator(not_a_time)
IsoDatetime = Annotated[datetime, ISO_TIME]
Boolean = Annotated[bool, BeforeValidator(not_a_number)]


def text(max_length: int, min_length: int = 0) -> Any:
    """A string type of at most ``max_length`` characters that a database can store."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length), STORABLE]


def _field_type(column: Column) -> Any:
    """The pydantic type of one contract column (client_id excluded: it comes from the client)."""
    base: Any
    if column.kind == Kind.DATETIME:  # a naive time is UTC, here as in the engine
        base = Annotated[datetime, Field(ge=EARLIEST, le=LATEST), ISO_TIME]
    elif column.kind == Kind.NUMBER:  # finite and bounded: the engine sums in int64 micro-units
        low = 0 if column.non_negative else -_MAX_NUMBER
        base = Annotated[float, Field(ge=low, le=_MAX_NUMBER, allow_inf_nan=False)]
    elif column.kind == Kind.BOOL:
        base = Boolean
    elif column.kind == Kind.CHOICE:
        base = Literal[column.choices]
    elif column.kind == Kind.ID:
        base = text(column.text_length, min_length=1)
    else:  # free text and open categories; empty means not given
        base = text(column.text_length)
    return base if column.required else base | None


def _ordered(table: str) -> Any:
    """A validator that rejects rows whose dates are out of order (end before start, ...).

    It runs once per row, so it compares the datetimes as they are and converts them to UTC only
    when one has a zone and the other has not (a naive time is UTC).
    """
    pairs = ORDERED_COLUMNS.get(table, ())
    scored = table == "feedback"

    def check(row: BaseModel) -> BaseModel:
        for earlier, later in pairs:
            a, b = getattr(row, earlier), getattr(row, later)
            if a is not None and b is not None and _before(b, a):
                raise ValueError(f"{later} is before {earlier}")
        if scored and row.survey in SCORE_RANGES:  # type: ignore[attr-defined]
            low, high = SCORE_RANGES[row.survey]  # type: ignore[attr-defined]
            if not low <= row.score <= high:  # type: ignore[attr-defined]
                raise ValueError(f"score is outside {low:g}..{high:g}, this survey's range")
        return row

    return model_validator(mode="after")(check)


def _before(b: datetime, a: datetime) -> bool:
    if (a.tzinfo is None) is (b.tzinfo is None):
        return b < a
    return utc_datetime(b) < utc_datetime(a)


# The values of the attributes a mapping declares (clients and contracts), by attribute name
_ATTRIBUTE_VALUE = Annotated[float, Field(ge=-_MAX_NUMBER, le=_MAX_NUMBER, allow_inf_nan=False)]
_ATTRIBUTE_TEXT = Annotated[str, Field(max_length=ATTRIBUTE_TEXT), STORABLE]
_ATTRIBUTES = Annotated[
    dict[Annotated[str, Field(max_length=60)], _ATTRIBUTE_VALUE | _ATTRIBUTE_TEXT | None],
    Field(max_length=50),
]


def _row_model(spec: Table) -> type[BaseModel]:
    fields: dict[str, Any] = {
        c.name: (_field_type(c), ... if c.required else None)
        for c in spec.columns
        if c.name != "client_id"
    }
    if spec.name in ATTRIBUTE_PREFIXES:
        fields["attributes"] = (_ATTRIBUTES | None, None)
    checked = spec.name in ORDERED_COLUMNS or spec.name == "feedback"
    return create_model(
        f"{spec.name.title()}Record",
        __config__=_STRICT,
        __validators__={"ordered": _ordered(spec.name)} if checked else None,
        **fields,
    )


ROW_MODELS: dict[str, type[BaseModel]] = {name: _row_model(spec) for name, spec in TABLES.items()}
ClientRecord = ROW_MODELS["clients"]


def _list_of(model: type[BaseModel]) -> Any:
    return list[model]  # type: ignore[valid-type]


def records_model(max_rows: int, raw_rows: bool = False) -> type[BaseModel]:
    """The request body for one client: its own row and its rows of every other table.

    ``raw_rows``: the tables of ``RAW_TABLES`` are kept as the JSON objects sent, for
    ``read_columns`` to check a column at a time (the API's fast path).
    """

    def rows(name: str) -> Any:
        return (
            list[dict[str, Any]] if raw_rows and name in RAW_TABLES else _list_of(ROW_MODELS[name])
        )

    tables: dict[str, Any] = {
        name: (rows(name), Field(default_factory=list, max_length=max_rows))
        for name in ROW_MODELS
        if name != "clients"
    }
    tables["contracts"] = (rows("contracts"), Field(min_length=1, max_length=max_rows))
    client: Any = ClientRecord | None
    return create_model(
        "ClientRows" if raw_rows else "ClientRecords",
        __config__=_STRICT,
        client_id=(text(TABLES["clients"].column("client_id").text_length, min_length=1), ...),
        client=(client, None),
        as_of=(IsoDatetime | None, None),
        **tables,
    )


def _seconds(values: tuple[datetime | None, ...]) -> np.ndarray:
    """Epoch seconds (truncated, as ``int(datetime.timestamp())``), NAT where empty.

    An aware datetime's timestamp does not depend on its zone; a naive one is UTC.
    """
    return np.array(
        [
            NAT
            if v is None
            else int(v.timestamp() if v.tzinfo is not None else v.replace(tzinfo=UTC).timestamp())
            for v in values
        ],
        dtype=np.int64,
    )


def _codes(values: tuple[str | None, ...], labels: tuple[str, ...]) -> np.ndarray:
    index: dict[str | None, int] = {label: i for i, label in enumerate(labels)}
    index[None] = -1
    return np.array([index[v] for v in values], dtype=np.int64)


@lru_cache(maxsize=16)
def _fields(spec: Table) -> tuple[tuple[Column, ...], attrgetter[Any]]:
    """A table's columns as records carry them, and a getter of them all (a tuple per row)."""
    columns = tuple(c for c in spec.columns if c.name != "client_id")
    if len(columns) < 2:
        raise ValueError(f"table {spec.name}: records need two columns besides client_id")
    return columns, attrgetter(*(c.name for c in columns))


def _table(spec: Table, rows: list[BaseModel], attributes: tuple[Attribute, ...]) -> TableArrays:
    columns: dict[str, np.ndarray] = {"client_code": np.zeros(len(rows), dtype=np.int64)}
    categories: dict[str, tuple[str, ...]] = {}
    specs, getter = _fields(spec)
    empty: tuple[Any, ...] = ()
    by_column = list(zip(*map(getter, rows), strict=True)) if rows else [empty] * len(specs)
    for col, values in zip(specs, by_column, strict=True):
        if col.kind == Kind.CATEGORY:
            values = tuple(v or None for v in values)
        if col.kind == Kind.DATETIME:
            columns[col.name] = _seconds(values)
        elif col.kind in (Kind.NUMBER, Kind.BOOL):  # None -> NaN
            columns[col.name] = np.array(values, dtype=np.float64)
        elif col.kind in (Kind.CHOICE, Kind.CATEGORY):
            labels = col.choices or tuple(sorted({v for v in values if v is not None}))
            columns[col.name] = _codes(values, labels)
            categories[col.name] = labels
        elif col.name == "account_manager":
            columns["has_account_manager"] = np.array([1.0 if v else 0.0 for v in values])
    if spec.name in ATTRIBUTE_PREFIXES:  # the model's attributes, from each row's attributes
        given = [getattr(row, "attributes", None) for row in rows]
        extra, found = attribute_columns(spec.name, given, attributes)
        columns.update(extra)
        categories.update(found)
    return TableArrays(columns, categories)


def client_arrays(
    records: BaseModel | ClientColumns, attributes: tuple[Attribute, ...] = ()
) -> CRMArrays:
    """The feature engine's arrays for one client's validated records (client code 0), with the
    columns of the attributes a model reads (ValueError for a value it cannot read).

    ``records``: a ``records_model`` instance, or the columns ``read_columns`` read.
    """
    client = getattr(records, "client", None) or ClientRecord()
    tables = {"clients": _table(TABLES["clients"], [client], attributes)}
    read = records.tables if isinstance(records, ClientColumns) else {}
    for name, spec in TABLES.items():
        if name in read:
            tables[name] = read[name]
        elif name != "clients":
            tables[name] = _table(spec, getattr(records, name), attributes)
    return CRMArrays(np.array([records.client_id], dtype=object), tables)  # type: ignore[union-attr]


def record_count(records: BaseModel | ClientColumns) -> int:
    """How many rows a client's records carry, its own row aside."""
    if isinstance(records, ClientColumns):
        return records.records
    return sum(len(getattr(records, name)) for name in TABLES if name != "clients")


# --- the API's fast path: the bulk tables as raw JSON rows, checked a column at a time ---------
# A score request's rows are mostly interactions, feedback, invoices, tickets and events: read
# as plain JSON objects and checked here column by column, they skip building a pydantic model
# per row. The checks are the row models' rules, narrowed: a value is read here only when the
# row models would take it as it is (no space to strip, a number as a number, a time in the
# ISO 8601 shapes below); anything else makes ``read_columns`` answer None, and the caller
# validates the body with the row models, which read every shape they accept and say what is
# wrong and where. A client's own row and its contracts (a few rows, with the attributes a
# mapping declares) keep their row models.

RAW_TABLES = tuple(name for name in TABLES if name not in ATTRIBUTE_PREFIXES)
# times read here lie a day inside the engine's range; those nearer its ends go to the models
_FIRST_TIME = EARLIEST_TIME + 86_400
_LAST_TIME = LATEST_TIME - 86_400
_NONE = type(None)
_TYPES: dict[Kind, frozenset[type]] = {
    Kind.DATETIME: frozenset({str}),
    Kind.NUMBER: frozenset({int, float}),
    Kind.BOOL: frozenset({bool}),
    Kind.CHOICE: frozenset({str}),
    Kind.ID: frozenset({str}),
    Kind.TEXT: frozenset({str}),
    Kind.CATEGORY: frozenset({str}),
}


@dataclass(frozen=True, slots=True)
class ClientColumns:
    """One client's records with the bulk tables read as columns (``read_columns``)."""

    client_id: str
    client: BaseModel | None
    as_of: datetime | None
    contracts: list[BaseModel]
    tables: dict[str, TableArrays]  # the RAW_TABLES, checked, as the engine's arrays
    records: int  # rows sent, the client's own row aside


def read_columns(rows: BaseModel) -> ClientColumns | None:
    """A ``records_model(raw_rows=True)`` instance with its raw tables checked and read as
    columns; None when a row is not one the row models would take as it is."""
    tables = {}
    for name in RAW_TABLES:
        table = _raw_table(TABLES[name], getattr(rows, name))
        if table is None:
            return None
        tables[name] = table
    contracts: list[BaseModel] = rows.contracts  # type: ignore[attr-defined]
    count = len(contracts) + sum(len(getattr(rows, name)) for name in RAW_TABLES)
    return ClientColumns(
        rows.client_id,  # type: ignore[attr-defined]
        rows.client,  # type: ignore[attr-defined]
        rows.as_of,  # type: ignore[attr-defined]
        contracts,
        tables,
        count,
    )


def _raw_table(spec: Table, rows: list[dict[str, Any]]) -> TableArrays | None:
    """A table's raw rows as the engine's arrays, each column checked; None for a doubtful row."""
    columns, _ = _fields(spec)
    if rows and not _names(spec).issuperset(set().union(*rows)):
        return None  # a column the contract does not have
    arrays: dict[str, np.ndarray] = {"client_code": np.zeros(len(rows), dtype=np.int64)}
    categories: dict[str, tuple[str, ...]] = {}
    dated: list[str] = []  # the time columns, read together (one call per table)
    texts: list[str | None] = []
    for col in columns:
        values = list(map(dict.get, rows, repeat(col.name)))  # a missing column: None
        kinds = set(map(type, values))
        if not col.required:
            kinds.discard(_NONE)
        if not kinds <= _TYPES[col.kind]:
            return None
        if col.kind == Kind.DATETIME:
            dated.append(col.name)
            texts += values
        elif col.kind in (Kind.NUMBER, Kind.BOOL):
            number = _numbers(values, col)
            if number is None:
                return None
            arrays[col.name] = number
        elif not _plain_texts([v for v in values if v is not None], col):
            return None
        elif col.kind in (Kind.CHOICE, Kind.CATEGORY):
            labels = col.choices or tuple(sorted({v for v in values if v}))
            if col.kind == Kind.CATEGORY:
                values = [v or None for v in values]
            elif not {v for v in values if v is not None} <= set(labels):
                return None
            arrays[col.name] = _codes(tuple(values), labels)
            categories[col.name] = labels
    stamps = _timestamps(texts)
    if stamps is None:
        return None
    times = dict(zip(dated, stamps.reshape(len(dated), len(rows)), strict=True))
    arrays |= {name: _seconds_of(stamp) for name, stamp in times.items()}
    if not _rules_hold(spec.name, arrays, times, categories):
        return None
    return TableArrays(arrays, categories)


@lru_cache(maxsize=16)
def _names(spec: Table) -> frozenset[str]:
    return frozenset(c.name for c in _fields(spec)[0])


def _time_shapes() -> frozenset[str]:
    """The ISO 8601 shapes read here, every digit written 9: a date; a date, ``T`` and a time
    to the second, up to six digits of fraction, then nothing (UTC), ``Z`` or an offset."""
    fractions = ["", *("." + "9" * k for k in range(1, 7))]
    zones = ["", "Z", "+99:99", "-99:99"]
    return frozenset(
        ["9999-99-99", *(f"9999-99-99T99:99:99{f}{z}" for f in fractions for z in zones)]
    )


_TIME_SHAPES = _time_shapes()
_NINES = str.maketrans("012345678", "999999999")
_OFFSET_MINUTES_OVER = re.compile(r"[+-]\d\d:[6-9]", re.ASCII)


def _timestamps(values: list[str | None]) -> np.ndarray | None:
    """Epoch seconds (float64, as ``datetime.timestamp`` gives them; NaN for None) of ISO 8601
    texts of the shapes read here, which pydantic reads the same; None for a text of another
    shape, a day or time that does not exist, or a time near either end of the engine's range.
    """
    texts = [v for v in values if v is not None]
    joined = "\x00".join(texts)
    if texts and not _TIME_SHAPES.issuperset(joined.translate(_NINES).split("\x00")):
        return None
    if _OFFSET_MINUTES_OVER.search(joined):  # fromisoformat takes +01:60 as +02:00
        return None
    try:
        times = list(map(datetime.fromisoformat, texts))
    except ValueError:  # a day or time that does not exist, an offset of a day or more
        return None
    given = np.array(
        [t.timestamp() if t.tzinfo is not None else t.replace(tzinfo=UTC).timestamp()
         for t in times],
        dtype=np.float64,
    )  # fmt: skip
    if len(given) and not (given.min() >= _FIRST_TIME and given.max() <= _LAST_TIME):
        return None
    if len(texts) == len(values):
        return given
    stamps = np.full(len(values), np.nan)
    stamps[[v is not None for v in values]] = given
    return stamps


def _seconds_of(stamps: np.ndarray) -> np.ndarray:
    """Whole epoch seconds as ``_seconds`` gives them (``int(timestamp())``), NAT for NaN."""
    seconds = np.full(len(stamps), NAT, dtype=np.int64)
    given = ~np.isnan(stamps)
    seconds[given] = stamps[given]  # truncated towards zero, as int() does
    return seconds


def _numbers(values: list[Any], col: Column) -> np.ndarray | None:
    """Numbers or booleans as float64 (None: NaN), or None for one out of the column's bounds."""
    try:
        a = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer past any float
        return None
    given = a[~np.isnan(a)]
    if len(given) != len(values) - values.count(None):
        return None  # a NaN sent as a number
    if col.kind == Kind.NUMBER and len(given):
        low = 0.0 if col.non_negative else -_MAX_NUMBER
        if not (low <= given.min() and given.max() <= _MAX_NUMBER):
            return None
    return a


def _plain_texts(texts: list[str], col: Column) -> bool:
    """Whether the texts pass the column's rules as they are: nothing to strip, a length in
    bounds (ids: not empty), storable (no NUL, no lone surrogate)."""
    distinct = set(texts)  # a few labels, mostly: each checked once
    if not distinct:
        return True
    joined = "".join(distinct)
    if "\x00" in joined or not (joined.isascii() or _encodes(joined)):
        return False
    lengths = list(map(len, distinct))
    shortest = 1 if col.kind == Kind.ID else 0
    if max(lengths) > col.text_length or min(lengths) < shortest:
        return False
    return distinct == set(map(str.strip, distinct))  # what the models' strip would change


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rules_hold(
    table: str,
    arrays: dict[str, np.ndarray],
    times: dict[str, np.ndarray],
    categories: dict[str, tuple[str, ...]],
) -> bool:
    """The row models' rules across columns: dates in order, a survey's score in its range."""
    for earlier, later in ORDERED_COLUMNS.get(table, ()):
        a, b = times[earlier], times[later]
        if ((a != NAT) & (b != NAT) & (b < a)).any():
            return False
    if table == "feedback" and len(arrays["score"]):
        for survey, (low, high) in SCORE_RANGES.items():
            code = categories["survey"].index(survey)
            score = arrays["score"][arrays["survey"] == code]
            if len(score) and not (low <= score.min() and score.max() <= high):
                return False
    return True
