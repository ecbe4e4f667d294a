"""The simulated records as the contract's typed tables, and the truth table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.domain.contract import (
    CHANNELS,
    DIRECTIONS,
    PRIORITIES,
    SURVEYS,
    TABLES,
    Column,
    CRMData,
    Kind,
    from_frames,
)
from churnguard.synth.clients import Population
from churnguard.synth.timeline import DAY, NAT, Array, Chunk
from churnguard.synth.vocabulary import (
    COMMENTS,
    COMPANY_NOUNS,
    COMPANY_SUFFIXES,
    COMPANY_WORDS,
    DISPUTE_REASONS,
    EVENT_TYPES,
    INDUSTRIES,
    LAST_NAMES,
    REGIONS,
    SEGMENTS,
    SERVICE_LINES,
    TICKET_CATEGORIES,
)


@dataclass(frozen=True)
class _Coded:
    """A text column as integer codes into labels (-1 = missing)."""

    codes: Array
    labels: tuple[str, ...]


ColumnData: TypeAlias = Array | pa.Array | _Coded  # seconds for timestamps, numbers, flags, text


def assemble(pop: Population, log: dict[str, list[Chunk]]) -> CRMData:
    """The contract tables, each column typed as the contract says."""
    ids = _ids("C", len(pop.seg), _id_width(len(pop.seg)))
    client_dtype = pd.CategoricalDtype(pd.Index(_text(ids), name="client_id"))
    columns = {
        "clients": _clients_columns(pop, ids),
        "contracts": _contracts_columns(log),
        "interactions": _interactions_columns(_concat(log["interactions"])),
        "feedback": _feedback_columns(_concat(log["feedback"])),
        "invoices": _invoices_columns(_concat(log["invoices"])),
        "tickets": _tickets_columns(_concat(log["tickets"])),
        "events": _events_columns(_concat(log["events"])),
    }
    return from_frames(
        {name: _typed_frame(name, cols, client_dtype) for name, cols in columns.items()}
    )


def _typed_frame(
    name: str, cols: dict[str, ColumnData], client_dtype: pd.CategoricalDtype
) -> pd.DataFrame:
    """A frame with every column of the contract table, typed per its kind."""
    spec = TABLES[name]
    return pd.DataFrame(
        {c.name: _typed(c, cols[c.name], client_dtype) for c in spec.columns if c.name in cols}
    )


def _typed(column: Column, value: ColumnData, client_dtype: pd.CategoricalDtype) -> pd.Series:
    """One column in the contract dtype (child tables' client_id: categorical over all clients)."""
    if isinstance(value, _Coded):
        return _typed_codes(column, value, client_dtype)
    if column.kind == Kind.DATETIME:
        return pd.Series(np.asarray(value, dtype=np.int64).view("M8[s]")).dt.tz_localize("UTC")
    if column.kind == Kind.NUMBER:
        return pd.Series(np.asarray(value, dtype=np.float64))
    if column.kind == Kind.BOOL:
        return pd.Series(np.asarray(value, dtype=bool))
    return _text(value)


def _typed_codes(column: Column, value: _Coded, client_dtype: pd.CategoricalDtype) -> pd.Series:
    """A coded text column as str or categorical, per the contract."""
    codes, labels = value.codes, value.labels
    if column.name == "client_id":
        return pd.Series(pd.Categorical.from_codes(codes, dtype=client_dtype))
    if column.kind in (Kind.CHOICE, Kind.CATEGORY):
        found = np.unique(codes[codes >= 0])
        kept = column.choices if column.kind == Kind.CHOICE else sorted(labels[i] for i in found)
        where = {label: i for i, label in enumerate(kept)}
        recode = np.asarray([where.get(label, -1) for label in labels] + [-1])
        return pd.Series(pd.Categorical.from_codes(recode[codes], categories=pd.Index(kept)))
    return _text(pa.array(labels).take(pa.array(codes, mask=codes < 0)))


def _concat(chunks: list[Chunk]) -> Chunk:
    """One array per column from the monthly chunks."""
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _sorted(cols: Chunk, *keys: str) -> Chunk:
    """Rows ordered by the given columns (first key most significant)."""
    order = np.lexsort([cols[k] for k in reversed(keys)])
    return {k: v[order] for k, v in cols.items()}


def _id_width(n: int) -> int:
    """Digits in client ids."""
    return max(6, len(str(n)))


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    """Identifiers like C000001."""
    digits = pc.utf8_lpad(pa.array(np.arange(1, n + 1)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _text(values: pa.Array | pa.ChunkedArray | Array) -> pd.Series:
    """A pandas str column."""
    return pd.Series(values, dtype="str")


def _seconds(days: Array) -> Array:
    """Midnights in seconds from days since the epoch (NAT stays NAT)."""
    return np.where(days == NAT, NAT, days * DAY)


def _clients_columns(pop: Population, ids: pa.Array) -> dict[str, ColumnData]:
    """The clients table."""
    words = pa.array((*COMPANY_WORDS, *LAST_NAMES))
    suffixes = pa.array([f" {s}" if s else "" for s in COMPANY_SUFFIXES])
    name = pc.binary_join_element_wise(
        words.take(pop.name[:, 0]),
        " ",
        pa.array(COMPANY_NOUNS).take(pop.name[:, 1]),
        suffixes.take(pop.name[:, 2]),
        "",
    )
    return {
        "client_id": ids,
        "name": name,
        "account_manager": _Coded(pop.manager, pop.managers),
        "segment": _Coded(pop.seg, SEGMENTS),
        "industry": _Coded(pop.industry, INDUSTRIES),
        "region": _Coded(pop.region, REGIONS),
        "client_since": _seconds(pop.since_day),
    }


def _contracts_columns(log: dict[str, list[Chunk]]) -> dict[str, ColumnData]:
    """The contracts table, cancellations applied, in start order."""
    rows = _concat(log["contracts"])
    rows = {k: v[np.argsort(rows["row"])] for k, v in rows.items()}
    cancels = _concat(log["cancels"])
    cancelled = np.full(len(rows["row"]), NAT)
    cancelled[cancels["row"]] = cancels["day"]
    rows = _sorted({**rows, "cancelled": cancelled}, "start", "client", "svc")
    return {
        "contract_id": _ids("K", len(rows["row"]), 7),
        "client_id": _Coded(rows["client"], ()),
        "service_line": _Coded(rows["svc"], SERVICE_LINES),
        "start_date": _seconds(rows["start"]),
        "end_date": _seconds(rows["end"]),
        "monthly_value": rows["value"],
        "auto_renew": rows["auto"],
        "cancelled_at": _seconds(rows["cancelled"]),
    }


def _interactions_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The interactions table in time order."""
    cols = _sorted(cols, "at", "client")
    return {
        "client_id": _Coded(cols["client"], ()),
        "occurred_at": cols["at"],
        "channel": _Coded(cols["channel"], CHANNELS),
        "direction": _Coded(cols["direction"], DIRECTIONS),
    }


def _feedback_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The feedback table in time order."""
    cols = _sorted(cols, "at", "client", "survey")
    return {
        "client_id": _Coded(cols["client"], ()),
        "submitted_at": cols["at"],
        "survey": _Coded(cols["survey"], SURVEYS),
        "score": cols["score"],
        "comment": _Coded(cols["comment"], COMMENTS),
    }


def _invoices_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The invoices table in issue order."""
    cols = _sorted(cols, "issued", "client", "amount")
    return {
        "invoice_id": _ids("INV-", len(cols["client"]), 8),
        "client_id": _Coded(cols["client"], ()),
        "issued_at": _seconds(cols["issued"]),
        "due_at": _seconds(cols["due"]),
        "amount": cols["amount"],
        "paid_at": _seconds(cols["paid"]),
        "disputed_at": _seconds(cols["disputed"]),
        "dispute_resolved_at": _seconds(cols["resolved"]),
        "dispute_reason": _Coded(cols["reason"], DISPUTE_REASONS),
    }


def _tickets_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The tickets table in opening order."""
    cols = _sorted(cols, "opened", "client", "priority")
    return {
        "ticket_id": _ids("T", len(cols["client"]), 7),
        "client_id": _Coded(cols["client"], ()),
        "opened_at": cols["opened"],
        "resolved_at": cols["resolved"],
        "priority": _Coded(cols["priority"], PRIORITIES),
        "category": _Coded(cols["category"], TICKET_CATEGORIES),
    }


def _events_columns(cols: Chunk) -> dict[str, ColumnData]:
    """The events table in time order."""
    cols = _sorted(cols, "at", "client", "type")
    return {
        "client_id": _Coded(cols["client"], ()),
        "occurred_at": cols["at"],
        "event_type": _Coded(cols["type"], EVENT_TYPES),
        "value": cols["value"],
    }


def truth_frame(chunks: list[Chunk], n: int) -> pd.DataFrame:
    """The true churn probability per (client, as_of), in as_of then client order."""
    cols = _concat(chunks) if chunks else {k: np.zeros(0, np.int64) for k in ("client", "as_of")}
    ids = _ids("C", n, _id_width(n))
    return pd.DataFrame(
        {
            "client_id": _text(ids.take(cols["client"])),
            "as_of": pd.Series(_seconds(cols["as_of"]).view("M8[s]")).dt.tz_localize("UTC"),
            "true_probability": cols.get("p", np.zeros(0)).astype(np.float64),
        }
    )
