"""The CRM data contract: tables, columns, types and the typed container the pipeline works on.

This module is the one place that says which tables and columns churnguard reads. How a mapping
file renames a real CRM export onto them is in ``mapping.py``, how raw tables are typed and checked
in ``validation.py``, and reading files and databases in ``data.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

import pandas as pd


class Kind(StrEnum):
    """How a column's values are typed once validated."""

    ID = "id"  # non-empty string
    TEXT = "text"  # free string, may be empty
    DATETIME = "datetime"  # UTC timestamp, second resolution
    NUMBER = "number"  # float64
    BOOL = "bool"  # True/False, empty = False
    CHOICE = "choice"  # one of a fixed set of lowercase strings (categorical over that set)
    CATEGORY = "category"  # a label from an open set (categorical, categories as found)


ID_LENGTH = 100  # the longest id (the score store keys clients by theirs)
TEXT_LENGTH = 2000  # the longest free text or label, unless a column says less


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()
    non_negative: bool = False
    description: str = ""
    max_length: int | None = None  # text kinds: the longest value (default by kind)

    @property
    def text_length(self) -> int:
        """The longest value of a text column: the API admits it, the score store keeps it."""
        if self.max_length is not None:
            return self.max_length
        return ID_LENGTH if self.kind == Kind.ID else TEXT_LENGTH


@dataclass(frozen=True)
class Table:
    """One table of the contract: its columns, primary key and the time column rows are known at."""

    name: str
    columns: tuple[Column, ...]
    required: bool = False
    key: str | None = None  # unique id column, if any
    time: str | None = None  # the timestamp at which a row becomes known

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


CHANNELS = ("email", "call", "meeting", "review", "other")
DIRECTIONS = ("inbound", "outbound")
SURVEYS = ("nps", "csat")
PRIORITIES = ("low", "normal", "high", "urgent")
SCORE_RANGES = {"nps": (0.0, 10.0), "csat": (1.0, 5.0)}

_C = Column
_K = Kind

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "clients",
            (
                _C("client_id", _K.ID, required=True),
                _C("name", _K.TEXT, max_length=300),
                _C("account_manager", _K.TEXT, description="empty = unassigned", max_length=200),
                _C("segment", _K.CATEGORY, max_length=100),
                _C("industry", _K.CATEGORY),
                _C("region", _K.CATEGORY),
                _C("client_since", _K.DATETIME),
            ),
            required=True,
            key="client_id",
        ),
        Table(
            "contracts",
            (
                _C("contract_id", _K.ID, required=True),
                _C("client_id", _K.ID, required=True),
                _C("service_line", _K.CATEGORY),
                _C("start_date", _K.DATETIME, required=True),
                _C("end_date", _K.DATETIME, description="empty = rolling"),
                _C("monthly_value", _K.NUMBER, required=True, non_negative=True),
                _C("auto_renew", _K.BOOL),
                _C("cancelled_at", _K.DATETIME),
            ),
            required=True,
            key="contract_id",
            time="start_date",
        ),
        Table(
            "interactions",
            (
                _C("client_id", _K.ID, required=True),
                _C("occurred_at", _K.DATETIME, required=True),
                _C("channel", _K.CHOICE, choices=CHANNELS),
                _C("direction", _K.CHOICE, choices=DIRECTIONS),
            ),
            time="occurred_at",
        ),
        Table(
            "feedback",
            (
                _C("client_id", _K.ID, required=True),
                _C("submitted_at", _K.DATETIME, required=True),
                _C("survey", _K.CHOICE, choices=SURVEYS),
                _C("score", _K.NUMBER, required=True),
                _C("comment", _K.TEXT),
            ),
            time="submitted_at",
        ),
        Table(
            "invoices",
            (
                _C("invoice_id", _K.ID, required=True),
                _C("client_id", _K.ID, required=True),
                _C("issued_at", _K.DATETIME, required=True),
                _C("due_at", _K.DATETIME, required=True),
                _C("amount", _K.NUMBER, required=True, non_negative=True),
                _C("paid_at", _K.DATETIME),
                _C("disputed_at", _K.DATETIME),
                _C("dispute_resolved_at", _K.DATETIME),
                _C("dispute_reason", _K.TEXT),
            ),
            key="invoice_id",
            time="issued_at",
        ),
        Table(
            "tickets",
            (
                _C("ticket_id", _K.ID, required=True),
                _C("client_id", _K.ID, required=True),
                _C("opened_at", _K.DATETIME, required=True),
                _C("resolved_at", _K.DATETIME),
                _C("priority", _K.CHOICE, choices=PRIORITIES),
                _C("category", _K.CATEGORY),
            ),
            key="ticket_id",
            time="opened_at",
        ),
        Table(
            "events",
            (
                _C("client_id", _K.ID, required=True),
                _C("occurred_at", _K.DATETIME, required=True),
                _C("event_type", _K.CATEGORY, required=True),
                _C("value", _K.NUMBER),
            ),
            time="occurred_at",
        ),
    )
}

# Extra columns a mapping may declare as attributes: the table's prefix of their column names.
ATTRIBUTE_PREFIXES = {"clients": "client_", "contracts": "contract_"}
ATTRIBUTE_KINDS = (Kind.NUMBER, Kind.CATEGORY)
ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,59}")  # the name a mapping gives one
ATTRIBUTE_TEXT = 200  # the longest label of a category attribute (the API's limit too)


@dataclass(frozen=True)
class Attribute:
    """An extra column of clients or contracts, declared in a mapping file, read as a feature.

    Its column in the typed table, and its feature's name, is the table's prefix and its name
    (``client_seats``, ``contract_plan_tier``), so it cannot take the name of an event feature;
    ``mapping.py`` refuses one that would take a contract column's or a built-in feature's.
    """

    table: str  # clients or contracts
    name: str  # as the mapping names it: seats, plan_tier
    kind: Kind  # NUMBER or CATEGORY
    label: str = ""  # plain words for reasons ("Seats"); default: the name, capitalised
    direction: str = "context"  # numbers: more_risk or less_risk makes it a possible reason
    where: str = field(default="", compare=False)  # its mapping entry, for messages

    @property
    def column(self) -> str:
        """Its column in the typed table, and its feature's name."""
        return f"{ATTRIBUTE_PREFIXES[self.table]}{self.name}"

    @property
    def words(self) -> str:
        """Its label in plain words."""
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def spec(self) -> Column:
        """The column validation types it as."""
        return Column(self.column, self.kind, description=self.words, max_length=ATTRIBUTE_TEXT)


# Pairs (earlier, later) that must be in order within a row, checked by validation.
ORDERED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "contracts": (("start_date", "end_date"), ("start_date", "cancelled_at")),
    "invoices": (
        ("issued_at", "due_at"),
        ("disputed_at", "dispute_resolved_at"),
    ),
    "tickets": (("opened_at", "resolved_at"),),
}


# Columns that may only be set when another column of the same row is set: (column, needs).
DEPENDENT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "invoices": (("dispute_resolved_at", "disputed_at"),),
}

_DTYPES: dict[Kind, str] = {
    Kind.ID: "str",
    Kind.TEXT: "str",
    Kind.CATEGORY: "category",
    Kind.DATETIME: "datetime64[s, UTC]",
    Kind.NUMBER: "float64",
    Kind.BOOL: "bool",
}


def dtype_of(column: Column) -> str | pd.CategoricalDtype:
    """The pandas dtype a validated column has.

    ``client_id`` outside ``clients`` is the exception: ``from_frames`` makes it categorical over
    the clients' ids, so that every table refers to clients by the same integer codes.
    """
    if column.kind == Kind.CHOICE:
        return pd.CategoricalDtype(list(column.choices))
    return _DTYPES[column.kind]


def empty_table(name: str) -> pd.DataFrame:
    """A typed table with no rows, used for optional tables that were not supplied."""
    spec = TABLES[name]
    return pd.DataFrame({c.name: pd.Series(dtype=dtype_of(c)) for c in spec.columns})


@dataclass(frozen=True)
class CRMData:
    """Validated CRM tables: every contract column present and typed, timestamps in UTC.

    Optional tables that were not supplied are empty tables with the right columns, so no code
    downstream needs to ask whether a table exists.
    """

    clients: pd.DataFrame
    contracts: pd.DataFrame
    interactions: pd.DataFrame
    feedback: pd.DataFrame
    invoices: pd.DataFrame
    tickets: pd.DataFrame
    events: pd.DataFrame
    attributes: tuple[Attribute, ...] = ()  # extra columns of clients and contracts (a mapping's)

    def table(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    def spec(self, name: str) -> Table:
        """A table's contract, with the columns of its attributes."""
        return table_spec(name, self.attributes)

    def for_clients(self, client_ids: list[str] | pd.Index) -> CRMData:
        """The subset of every table that belongs to the given clients."""
        ids = pd.Index(client_ids)
        return from_frames(
            {name: df[df["client_id"].isin(ids)] for name, df in self.tables().items()},
            self.attributes,
        )

    @property
    def n_rows(self) -> int:
        return sum(len(df) for df in self.tables().values())


def table_spec(name: str, attributes: tuple[Attribute, ...] = ()) -> Table:
    """A table's contract with the columns of the attributes declared on it."""
    extra = tuple(a.spec for a in attributes if a.table == name)
    return replace(TABLES[name], columns=TABLES[name].columns + extra) if extra else TABLES[name]


def from_frames(frames: dict[str, pd.DataFrame], attributes: tuple[Attribute, ...] = ()) -> CRMData:
    """A CRMData from already-typed frames; missing optional tables become empty tables.

    Frames are not validated here (see ``validate``): columns missing from a frame are added
    empty so that every table carries the full contract (and its attributes' columns), and
    ``client_id`` in every table but ``clients`` becomes categorical over the clients' ids (rows
    of unknown clients get NaN, which is why validation rejects them first).
    """
    attributes = tuple(attributes)
    clients = _complete(frames.get("clients"), table_spec("clients", attributes))
    clients = clients.reset_index(drop=True)
    clients["client_id"] = clients["client_id"].astype("str")
    client_dtype = pd.CategoricalDtype(pd.Index(clients["client_id"]))
    out = {"clients": clients}
    for name in TABLES:
        if name != "clients":
            df = _complete(frames.get(name), table_spec(name, attributes))
            out[name] = df.assign(client_id=df["client_id"].astype(client_dtype))
    return CRMData(**out, attributes=attributes)


def _complete(df: pd.DataFrame | None, spec: Table) -> pd.DataFrame:
    """The frame with every column of the table's spec, in its order."""
    if df is None:
        df = empty_table(spec.name)
    missing = {
        c.name: pd.Series(False if c.kind == Kind.BOOL else None, index=df.index, dtype=dtype_of(c))
        for c in spec.columns
        if c.name not in df.columns
    }
    return df.assign(**missing)[list(spec.column_names)]
