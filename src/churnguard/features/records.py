"""One client's CRM records as sent to the API: schemas generated from the contract, and arrays.

The request models are built from ``contract.TABLES`` so the API accepts exactly the contract's
columns and types, with no second copy of the contract to keep in step. ``client_arrays`` turns
validated records straight into the numpy arrays the feature engine reads, skipping pandas: this
is the online hot path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
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
from churnguard.domain.timeaxis import EARLIEST, LATEST, utc_datetime
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


def records_model(max_rows: int) -> type[BaseModel]:
    """The request body for one client: its own row and its rows of every other table."""
    tables: dict[str, Any] = {
        name: (_list_of(model), Field(default_factory=list, max_length=max_rows))
        for name, model in ROW_MODELS.items()
        if name != "clients"
    }
    tables["contracts"] = (
        _list_of(ROW_MODELS["contracts"]),
        Field(min_length=1, max_length=max_rows),
    )
    client: Any = ClientRecord | None
    return create_model(
        "ClientRecords",
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


def client_arrays(records: BaseModel, attributes: tuple[Attribute, ...] = ()) -> CRMArrays:
    """The feature engine's arrays for one client's validated records (client code 0), with the
    columns of the attributes a model reads (ValueError for a value it cannot read)."""
    client = getattr(records, "client", None) or ClientRecord()
    tables = {"clients": _table(TABLES["clients"], [client], attributes)}
    for name, spec in TABLES.items():
        if name != "clients":
            tables[name] = _table(spec, getattr(records, name), attributes)
    return CRMArrays(np.array([records.client_id], dtype=object), tables)  # type: ignore[attr-defined]
