"""One client's CRM records as sent to the API: schemas generated from the contract, and arrays.

The request models are built from ``contract.TABLES`` so the API accepts exactly the contract's
columns and types, with no second copy of the contract to keep in step. ``client_arrays`` turns
validated records straight into the numpy arrays the feature engine reads, skipping pandas: this
is the online hot path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from churnguard.contract import (
    ORDERED_COLUMNS,
    SCORE_RANGES,
    TABLES,
    Column,
    Kind,
    Table,
)
from churnguard.features import NAT, CRMArrays, TableArrays

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)
_MAX_NUMBER = 1e12


def _field_type(column: Column) -> Any:
    """The pydantic type of one contract column (client_id excluded: it comes from the client)."""
    base: Any
    if column.kind == Kind.DATETIME:
        base = datetime
    elif column.kind == Kind.NUMBER:  # finite and bounded: the engine sums in int64 micro-units
        low = 0 if column.non_negative else -_MAX_NUMBER
        base = Annotated[float, Field(ge=low, le=_MAX_NUMBER, allow_inf_nan=False)]
    elif column.kind == Kind.BOOL:
        base = bool
    elif column.kind == Kind.CHOICE:
        base = Literal[column.choices]
    elif column.kind == Kind.ID:
        base = Annotated[str, Field(min_length=1, max_length=200)]
    else:  # free text and open categories; empty means not given
        base = Annotated[str, Field(max_length=2000)]
    return base if column.required else base | None


def _ordered(table: str) -> Any:
    """A validator that rejects rows whose dates are out of order (end before start, ...)."""

    def check(row: BaseModel) -> BaseModel:
        for earlier, later in ORDERED_COLUMNS.get(table, ()):
            a, b = getattr(row, earlier), getattr(row, later)
            if a is not None and b is not None and _utc(b) < _utc(a):
                raise ValueError(f"{later} ({b.isoformat()}) is before {earlier} ({a.isoformat()})")
        if table == "feedback" and row.survey in SCORE_RANGES:  # type: ignore[attr-defined]
            low, high = SCORE_RANGES[row.survey]  # type: ignore[attr-defined]
            if not low <= row.score <= high:  # type: ignore[attr-defined]
                raise ValueError(f"{row.survey} score {row.score} is outside {low:g}..{high:g}")  # type: ignore[attr-defined]
        return row

    return model_validator(mode="after")(check)


def _row_model(spec: Table) -> type[BaseModel]:
    fields: dict[str, Any] = {
        c.name: (_field_type(c), ... if c.required else None)
        for c in spec.columns
        if c.name != "client_id"
    }
    return create_model(
        f"{spec.name.title()}Record",
        __config__=_STRICT,
        __validators__={"ordered": _ordered(spec.name)},
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
        client_id=(Annotated[str, Field(min_length=1, max_length=200)], ...),
        client=(client, None),
        as_of=(datetime | None, None),
        **tables,
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seconds(values: list[datetime | None]) -> np.ndarray:
    return np.array(
        [NAT if v is None else int(_utc(v).timestamp()) for v in values], dtype=np.int64
    )


def _codes(values: list[str | None], labels: tuple[str, ...]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    return np.array([-1 if v is None else index[v] for v in values], dtype=np.int64)


def _table(spec: Table, rows: list[BaseModel]) -> TableArrays:
    columns: dict[str, np.ndarray] = {"client_code": np.zeros(len(rows), dtype=np.int64)}
    categories: dict[str, tuple[str, ...]] = {}
    for col in spec.columns:
        if col.name == "client_id":
            continue
        values = [getattr(r, col.name) for r in rows]
        if col.kind == Kind.CATEGORY:
            values = [v or None for v in values]
        if col.kind == Kind.DATETIME:
            columns[col.name] = _seconds(values)
        elif col.kind in (Kind.NUMBER, Kind.BOOL):
            columns[col.name] = np.array(
                [np.nan if v is None else float(v) for v in values], dtype=np.float64
            )
        elif col.kind in (Kind.CHOICE, Kind.CATEGORY):
            labels = col.choices or tuple(sorted({v for v in values if v is not None}))
            columns[col.name] = _codes(values, labels)
            categories[col.name] = labels
        elif col.name == "account_manager":
            columns["has_account_manager"] = np.array([1.0 if v else 0.0 for v in values])
    return TableArrays(columns, categories)


def client_arrays(records: BaseModel) -> CRMArrays:
    """The feature engine's arrays for one client's validated records (client code 0)."""
    client = getattr(records, "client", None) or ClientRecord()
    tables = {"clients": _table(TABLES["clients"], [client])}
    for name, spec in TABLES.items():
        if name != "clients":
            tables[name] = _table(spec, getattr(records, name))
    return CRMArrays(np.array([records.client_id], dtype=object), tables)  # type: ignore[attr-defined]
