"""The CRM data contract: tables, columns, types and the typed container the pipeline works on.

This module is the one place that says which tables and columns churnguard reads, how a mapping
file renames a real CRM export onto them, and how raw tables are validated. Reading files and
databases lives in ``data.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from difflib import get_close_matches
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from churnguard.domain.timeaxis import EARLIEST_TIME, LATEST_TIME


class Kind(StrEnum):
    """How a column's values are typed once validated."""

    ID = "id"  # non-empty string
    TEXT = "text"  # free string, may be empty
    DATETIME = "datetime"  # UTC timestamp, second resolution
    NUMBER = "number"  # float64
    BOOL = "bool"  # True/False, empty = False
    CHOICE = "choice"  # one of a fixed set of lowercase strings (categorical over that set)
    CATEGORY = "category"  # a label from an open set (categorical, categories as found)


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    required: bool = False
    choices: tuple[str, ...] = ()
    non_negative: bool = False
    description: str = ""


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
                _C("name", _K.TEXT),
                _C("account_manager", _K.TEXT, description="empty = unassigned"),
                _C("segment", _K.CATEGORY),
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

# Pairs (earlier, later) that must be in order within a row, checked by validation.
ORDERED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "contracts": (("start_date", "end_date"), ("start_date", "cancelled_at")),
    "invoices": (
        ("issued_at", "due_at"),
        ("disputed_at", "dispute_resolved_at"),
    ),
    "tickets": (("opened_at", "resolved_at"),),
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

    def table(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def for_clients(self, client_ids: list[str] | pd.Index) -> CRMData:
        """The subset of every table that belongs to the given clients."""
        ids = pd.Index(client_ids)
        return from_frames(
            {name: df[df["client_id"].isin(ids)] for name, df in self.tables().items()}
        )

    @property
    def n_rows(self) -> int:
        return sum(len(df) for df in self.tables().values())


def from_frames(frames: dict[str, pd.DataFrame]) -> CRMData:
    """A CRMData from already-typed frames; missing optional tables become empty tables.

    Frames are not validated here (see ``validate``): columns missing from a frame are added
    empty so that every table carries the full contract, and ``client_id`` in every table but
    ``clients`` becomes categorical over the clients' ids (rows of unknown clients get NaN, which
    is why validation rejects them first).
    """
    clients = _complete(frames.get("clients"), "clients").reset_index(drop=True)
    clients["client_id"] = clients["client_id"].astype("str")
    client_dtype = pd.CategoricalDtype(pd.Index(clients["client_id"]))
    out = {"clients": clients}
    for name in TABLES:
        if name != "clients":
            df = _complete(frames.get(name), name)
            out[name] = df.assign(client_id=df["client_id"].astype(client_dtype))
    return CRMData(**out)


def _complete(df: pd.DataFrame | None, name: str) -> pd.DataFrame:
    """The frame with every contract column of the table, in contract order."""
    if df is None:
        return empty_table(name)
    missing = {
        c.name: pd.Series(False if c.kind == Kind.BOOL else None, index=df.index, dtype=dtype_of(c))
        for c in TABLES[name].columns
        if c.name not in df.columns
    }
    return df.assign(**missing)[list(TABLES[name].column_names)]


# Columns that may only be set when another column of the same row is set: (column, needs).
DEPENDENT_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "invoices": (("dispute_resolved_at", "disputed_at"),),
}

# Validation results -----------------------------------------------------------------------------

Severity = Literal["error", "warning"]
_ROWS_SHOWN = 10  # row positions printed per problem; the rest are counted
_VALUES_SHOWN = 3  # offending values quoted per problem


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is (file, column, rows) and why."""

    severity: Severity
    table: str  # contract table name ("" for a file or setting that is not a table)
    source: str  # what the user calls it: "invoices.csv", "db table invoices", "mapping.yaml"
    column: str | None  # contract column name
    rows: tuple[int, ...]  # CSV: file line numbers (header = line 1); otherwise 1-based rows
    message: str
    source_column: str | None = None  # the column's name in the source when a mapping renamed it

    def __str__(self) -> str:
        parts = [self.source]
        if self.column is not None:
            renamed = self.source_column not in (None, self.column)
            shown = f"{self.source_column} ({self.column})" if renamed else self.column
            parts.append(f"column {shown}")
        if self.rows:
            parts.append(_format_rows(self.rows, "line" if self.source.endswith(".csv") else "row"))
        return f"{', '.join(parts)}: {self.message}"


def _format_rows(rows: tuple[int, ...], word: str) -> str:
    """'lines 5, 9, 12 (+3 more)': the first few row positions, the rest counted."""
    shown = ", ".join(str(r) for r in rows[:_ROWS_SHOWN])
    more = f" (+{len(rows) - _ROWS_SHOWN} more)" if len(rows) > _ROWS_SHOWN else ""
    return f"{word}{'s' if len(rows) > 1 else ''} {shown}{more}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class ValidationReport:
    """Every problem found in the input, and how many rows each table had."""

    problems: list[Problem] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        """One line per problem (errors first), then a summary with row counts."""
        lines = [f"{p.severity}: {p}" for p in self.errors + self.warnings]
        counts = ", ".join(f"{name} {_plural(n, 'row')}" for name, n in self.row_counts.items())
        summary = f"{_plural(len(self.errors), 'error')}, {_plural(len(self.warnings), 'warning')}"
        lines.append(f"{summary}; tables read: {counts}" if counts else summary)
        return "\n".join(lines)


class DataContractError(ValueError):
    """The input breaks the data contract; ``report`` holds every problem found."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


# Mapping a real CRM export onto the contract ----------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """How a real CRM export's tables, columns and values are named, read from a YAML file.

    ``tables``: contract table -> source table or file stem; ``columns``: contract table ->
    {contract column: source column}; ``values``: contract table -> column -> {source value:
    contract value}. Anything not mentioned keeps its contract name.
    """

    tables: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    values: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def source_table(self, table: str) -> str:
        """The source table or file stem a contract table is read from."""
        return self.tables.get(table, table)


_MAPPING_KEYS = ("tables", "columns", "values")
_RECODABLE = (Kind.CHOICE, Kind.CATEGORY, Kind.BOOL, Kind.TEXT, Kind.ID)


def load_mapping(path: Path) -> Mapping:
    """Read a mapping YAML file; raises DataContractError naming the file and every bad entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mapping file not found: {path}")
    try:
        # BaseLoader keeps every scalar a string, so `yes:` or `1:` stay the text the CRM writes.
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _mapping_error(path.name, [f"not a valid YAML file: {exc}"]) from exc
    return parse_mapping(doc, path.name)


def parse_mapping(doc: object, source: str = "mapping") -> Mapping:
    """A Mapping from a parsed YAML document; raises DataContractError listing every bad entry."""
    messages: list[str] = []
    doc = {} if doc in (None, "") else doc
    if not isinstance(doc, dict):
        raise _mapping_error(source, [f"expected sections {', '.join(_MAPPING_KEYS)}, got {doc!r}"])
    for key in sorted(set(doc) - set(_MAPPING_KEYS)):
        messages.append(f"unknown section {key!r} (expected {', '.join(_MAPPING_KEYS)})")
    tables = _mapping_tables(doc.get("tables"), messages)
    columns = _mapping_columns(doc.get("columns"), messages)
    values = _mapping_values(doc.get("values"), messages)
    if messages:
        raise _mapping_error(source, messages)
    return Mapping(tables, columns, values)


def _mapping_error(source: str, messages: list[str]) -> DataContractError:
    return DataContractError(
        ValidationReport([Problem("error", "", source, None, (), m) for m in messages])
    )


def _section(value: object, where: str, messages: list[str]) -> dict[str, object]:
    """A YAML mapping section as a dict, or {} with a message when it has the wrong shape."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        messages.append(f"{where}: expected a mapping of names, got {value!r}")
        return {}
    return value


def _known(name: str, known: tuple[str, ...], what: str, where: str, messages: list[str]) -> bool:
    """Whether name is one of known; otherwise record a message suggesting the closest name."""
    if name in known:
        return True
    close = get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    messages.append(f"{where}: unknown {what} {name!r} ({hint}known: {', '.join(known)})")
    return False


def _renames(section: dict[str, object], where: str, messages: list[str]) -> dict[str, str]:
    """{contract name: source name} entries with a non-empty source name, one per source."""
    out: dict[str, str] = {}
    for name, source in section.items():
        if not isinstance(source, str) or not source:
            messages.append(f"{where}.{name}: expected a source name, got {source!r}")
        elif source in out.values():
            first = next(k for k, v in out.items() if v == source)
            messages.append(f"{where}: {source!r} is mapped to both {first!r} and {name!r}")
        else:
            out[name] = source
    return out


def _mapping_tables(value: object, messages: list[str]) -> dict[str, str]:
    """The `tables` section: contract table -> source table."""
    section = _section(value, "tables", messages)
    names = tuple(TABLES)
    known = {k: v for k, v in section.items() if _known(k, names, "table", "tables", messages)}
    return _renames(known, "tables", messages)


def _mapping_columns(value: object, messages: list[str]) -> dict[str, dict[str, str]]:
    """The `columns` section: contract table -> {contract column: source column}."""
    out: dict[str, dict[str, str]] = {}
    for table, cols in _section(value, "columns", messages).items():
        if not _known(table, tuple(TABLES), "table", "columns", messages):
            continue
        where = f"columns.{table}"
        section = _section(cols, where, messages)
        names = TABLES[table].column_names
        known = {k: v for k, v in section.items() if _known(k, names, "column", where, messages)}
        out[table] = _renames(known, where, messages)
    return out


def _mapping_values(value: object, messages: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """The `values` section: contract table -> column -> {source value: contract value}."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for table, cols in _section(value, "values", messages).items():
        if not _known(table, tuple(TABLES), "table", "values", messages):
            continue
        out[table] = {}
        for name, codes in _section(cols, f"values.{table}", messages).items():
            where = f"values.{table}"
            if not _known(name, TABLES[table].column_names, "column", where, messages):
                continue
            recodes = _recodes(TABLES[table].column(name), codes, f"{where}.{name}", messages)
            out[table][name] = recodes
    return out


def _recodes(column: Column, codes: object, where: str, messages: list[str]) -> dict[str, str]:
    """One column's {source value: contract value}, checked against the column's kind."""
    if column.kind not in _RECODABLE:
        messages.append(f"{where}: values of a {column.kind} column cannot be recoded")
        return {}
    section = _section(codes, where, messages)
    out = {str(k): v for k, v in section.items() if isinstance(v, str)}
    for source, target in section.items():
        if not isinstance(target, str):
            messages.append(f"{where}.{source}: expected a value, got {target!r}")
        elif column.kind == Kind.CHOICE and target.strip().lower() not in column.choices:
            allowed = ", ".join(column.choices)
            messages.append(f"{where}.{source}: {target!r} is not one of {allowed}")
    return out


# Raw tables: as read, renamed onto the contract, not yet typed ----------------------------------


@dataclass(frozen=True)
class RawTable:
    """A table as read, before typing: contract column names, values as read."""

    name: str  # contract table name
    source: str  # what to call it in messages ("clients.csv")
    frame: pd.DataFrame  # columns renamed to contract names; values as read
    row_numbers: np.ndarray  # what each row is called in messages (CSV line or 1-based row)
    renamed: dict[str, str] = field(default_factory=dict)  # contract column -> source column
    ignored: tuple[str, ...] = ()  # source columns shadowed by a mapped column of the same name


def map_table(
    name: str,
    source: str,
    frame: pd.DataFrame,
    row_numbers: np.ndarray | None = None,
    mapping: Mapping | None = None,
) -> RawTable:
    """A RawTable with the mapping's column renames and value recodes applied.

    Args:
        name: contract table name.
        source: what to call the table in messages.
        frame: the table as read, with its source column names.
        row_numbers: what each row is called in messages; 1-based positions when omitted.
        mapping: renames and recodes; none when the source already uses contract names.
    """
    mapping = mapping or Mapping()
    columns = mapping.columns.get(name, {})
    renames = {s: c for c, s in columns.items() if s in frame.columns}
    # a file column named like a contract column that the mapping takes from elsewhere
    ignored = tuple(c for c in frame.columns if c in columns and c not in columns.values())
    mapped = frame.drop(columns=list(ignored)).rename(columns=renames)
    recoded = _recode(mapped, TABLES[name], mapping.values.get(name, {}))
    rows = np.arange(1, len(frame) + 1) if row_numbers is None else np.asarray(row_numbers)
    return RawTable(name, source, recoded, rows, dict(columns), ignored)


def _recode(frame: pd.DataFrame, spec: Table, codes: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The frame with each mapped column's source values replaced by contract values."""
    changed: dict[str, pd.Series] = {}
    for name, recodes in codes.items():
        if name not in frame.columns or not recodes:
            continue
        text = _as_text(frame[name])
        if spec.column(name).kind in (Kind.CHOICE, Kind.BOOL):  # matched case-insensitively
            text = text.str.lower()
            recodes = {k.strip().lower(): v for k, v in recodes.items()}
        new = text.map(recodes)
        changed[name] = new.where(new.notna(), frame[name])
    return frame.assign(**changed) if changed else frame


# Validation -------------------------------------------------------------------------------------

_Issue = tuple[np.ndarray, str]  # (rows affected, message)

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# ASCII classes and no \s, so that pandas runs these patterns in pyarrow (RE2), not Python's re.
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
_OFFSET = r" ?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)"
_TIMESTAMP = rf"{_DATE}(?:{_TIME}{_OFFSET}?)?"
_AWARE = rf"{_TIME}{_OFFSET}$"


def validate(
    raw: dict[str, RawTable], problems: Iterable[Problem] = ()
) -> tuple[CRMData, ValidationReport]:
    """Type every table per the contract and check it, collecting every problem.

    Args:
        raw: tables as read, by contract table name.
        problems: problems already found while reading; a required table that already has
            an error there is not reported missing again.

    Returns:
        The typed CRMData and the report (warnings only).

    Raises:
        DataContractError: when any error was found; its report lists all of them.
    """
    found = list(problems)
    failed = {p.table for p in found if p.severity == "error"}
    found += [_unknown_table(t) for n, t in raw.items() if n not in TABLES]
    frames: dict[str, pd.DataFrame] = {}
    for name, spec in TABLES.items():
        if name in raw:
            frames[name], table_problems = _validate_table(raw[name], spec)
            found += table_problems
        elif spec.required and name not in failed:
            found.append(_missing_table(name))
    found += _check_client_ids(raw, frames)
    report = ValidationReport(found, {n: len(t.frame) for n, t in raw.items() if n in TABLES})
    if report.errors:
        raise DataContractError(report)
    return from_frames(frames), report


def _missing_table(name: str) -> Problem:
    return Problem("error", name, name, None, (), f"required table {name} is missing")


def _unknown_table(table: RawTable) -> Problem:
    known = ", ".join(TABLES)
    return Problem(
        "warning", table.name, table.source, None, (), f"not a contract table ({known}); ignored"
    )


def _validate_table(raw: RawTable, spec: Table) -> tuple[pd.DataFrame, list[Problem]]:
    """The table typed per the contract, and its problems."""
    frame = raw.frame.reset_index(drop=True)
    problems = _check_columns(raw, spec)
    if spec.required and len(frame) == 0:
        message = f"has a header but no rows; {spec.name} is a required table"
        problems.append(_problem(raw, None, np.zeros(0, bool), message))
    typed: dict[str, pd.Series] = {}
    for column in spec.columns:
        if column.name in frame.columns:
            typed[column.name], issues = _type_column(frame[column.name], column)
            problems += [_problem(raw, column.name, rows, msg) for rows, msg in issues]
    out = pd.DataFrame(typed, index=frame.index)
    issues_by_column = _check_rows(spec, out)
    problems += [_problem(raw, col, rows, msg) for col, (rows, msg) in issues_by_column]
    return out, problems


def _problem(
    raw: RawTable, column: str | None, mask: np.ndarray, message: str, severity: Severity = "error"
) -> Problem:
    """A problem in raw at the rows where mask is true."""
    rows = tuple(raw.row_numbers[mask].tolist()) if mask.size else ()
    source_column = raw.renamed.get(column) if column else None
    return Problem(severity, raw.name, raw.source, column, rows, message, source_column)


def _check_columns(raw: RawTable, spec: Table) -> list[Problem]:
    """Missing required columns (an error) and unknown columns (a warning: ignored)."""
    present = [raw.renamed.get(c, str(c)) for c in raw.frame.columns] + list(raw.ignored)
    problems = []
    missing = [c for c in spec.required_columns if c not in raw.frame.columns]
    if missing:
        named = [f"{c} (from {raw.renamed[c]!r})" if c in raw.renamed else c for c in missing]
        message = (
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(named)}; "
            f"the {'file' if '.' in raw.source else 'table'} has columns: {', '.join(present)}"
        )
        problems.append(_problem(raw, None, np.zeros(0, bool), message))
    extra = [str(c) for c in raw.frame.columns if c not in spec.column_names] + list(raw.ignored)
    if extra:
        message = f"unknown column{'s' if len(extra) > 1 else ''} ignored: {', '.join(extra)}"
        problems.append(_problem(raw, None, np.zeros(0, bool), message, "warning"))
    return problems


def _type_column(values: pd.Series, column: Column) -> tuple[pd.Series, list[_Issue]]:
    """The column converted to its contract dtype, and the issues found on the way."""
    typed, missing, issues = _TYPERS[column.kind](values, column)
    if column.required and missing.any():
        issues.insert(0, (missing, "empty value in a required column"))
    if column.non_negative:
        negative = (typed < 0).to_numpy(dtype=bool, na_value=False)
        if negative.any():
            shown = _examples(typed[negative])
            issues.append((negative, f"negative value {shown} ({column.name} must be >= 0)"))
    return typed, issues


_Typed = tuple[pd.Series, np.ndarray, list[_Issue]]  # (typed values, missing rows, issues)


def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings (str dtype); missing and blank values become NaN."""
    if pd.api.types.is_float_dtype(values) and _integral(values.dropna()):
        values = values.astype("Int64")  # ids read as floats (1.0) because of a null
    text = values.astype("str").str.strip()
    return text.mask(text == "")


def _integral(values: pd.Series) -> bool:
    return bool((np.isfinite(values) & (values % 1 == 0)).all())


def _type_text(values: pd.Series, column: Column) -> _Typed:
    """Ids, free text and categories: strings (categorical where the contract says so)."""
    text = _as_text(values)
    return text.astype(_dtype(column)), text.isna().to_numpy(), []


def _type_choice(values: pd.Series, column: Column) -> _Typed:
    """Choices: lower-cased, checked against the allowed values, categorical over them."""
    text = _as_text(values).str.lower()
    unknown = (~text.isin(column.choices) & text.notna()).to_numpy()
    issues: list[_Issue] = []
    if unknown.any():
        allowed = ", ".join(column.choices)
        message = (
            f"unknown {column.name} {_examples(text[unknown])} (allowed: {allowed}; "
            "a mapping file can recode other values)"
        )
        issues.append((unknown, message))
    return text.where(~unknown).astype(_dtype(column)), text.isna().to_numpy(), issues


def _dtype(column: Column) -> Any:
    """dtype_of, typed loosely enough for Series.astype's overloads."""
    return dtype_of(column)


def _type_number(values: pd.Series, column: Column) -> _Typed:
    """Numbers as float64; text that is not a finite number is an issue."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        number = values.astype("float64")
        return number, number.isna().to_numpy(), []
    text = _as_text(values)
    number = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = (text.notna() & ~np.isfinite(number)).to_numpy()
    issues: list[_Issue] = []
    if bad.any():
        issues.append((bad, f"unparseable number {_examples(text[bad])}"))
    return number.where(~bad), text.isna().to_numpy(), issues


def _type_bool(values: pd.Series, column: Column) -> _Typed:
    """Booleans; empty is False, yes/no words and 1/0 are accepted in any case."""
    if pd.api.types.is_bool_dtype(values):
        flags = values.fillna(False).astype(bool)
        return flags, values.isna().to_numpy(), []
    text = _as_text(values)
    lower = text.str.lower()
    bad = (text.notna() & ~lower.isin(_TRUE + _FALSE)).to_numpy()
    issues: list[_Issue] = []
    if bad.any():
        words = "true/false, yes/no, t/f, y/n or 1/0"
        issues.append((bad, f"not a yes/no value {_examples(text[bad])} (use {words})"))
    return lower.isin(_TRUE).astype(bool), text.isna().to_numpy(), issues


def _type_datetime(values: pd.Series, column: Column) -> _Typed:
    """Timestamps in UTC (second resolution); naive values are taken as UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.Series(values)
        utc = stamps.dt.tz_convert("UTC") if stamps.dt.tz else stamps.dt.tz_localize("UTC")
        seconds = _to_seconds(utc)
        outside, range_issues = _unencodable(seconds, values, column)
        return seconds.where(~outside), values.isna().to_numpy(), range_issues
    text = _as_text(values).str.upper()
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    valid = text.str.fullmatch(_TIMESTAMP).fillna(False).astype(bool)
    bad = (text.notna() & (parsed.isna() | ~valid)).to_numpy()
    issues: list[_Issue] = []
    if bad.any():
        message = (
            f"unparseable date {_examples(_as_text(values)[bad])} "
            "(expected YYYY-MM-DD or an ISO 8601 datetime such as 2024-03-01T09:30:00+02:00)"
        )
        issues.append((bad, message))
    issues += _mixed_timezones(text, bad)
    seconds = _to_seconds(parsed.where(~bad))
    outside, range_issues = _unencodable(seconds, values, column)
    return seconds.where(~outside), text.isna().to_numpy(), issues + range_issues


def _to_seconds(stamps: pd.Series) -> pd.Series:
    return stamps.dt.floor("s").dt.as_unit("s")


def _unencodable(
    seconds: pd.Series, values: pd.Series, column: Column
) -> tuple[np.ndarray, list[_Issue]]:
    """Rows whose time (typed from values) the feature engine cannot encode, and why.

    pandas holds years 1 to 9999 at second resolution; the engine far fewer (see features.py).
    """
    earliest, latest = (pd.Timestamp(t, unit="s", tz="UTC") for t in (EARLIEST_TIME, LATEST_TIME))
    outside = ((seconds < earliest) | (seconds > latest)).to_numpy(dtype=bool, na_value=False)
    if not outside.any():
        return outside, []
    typed = pd.api.types.is_datetime64_any_dtype(values)
    shown = seconds[outside] if typed else _as_text(values[outside])
    message = (
        f"date {_examples(shown)} outside the range churnguard can use "
        f"({earliest:%Y-%m-%d %H:%M:%S} to {latest:%Y-%m-%d %H:%M:%S} UTC)"
    )
    if not column.required:  # placeholders such as 9999-12-31 stand for "no date"
        message += "; write an open end or unknown date as an empty value, not a placeholder"
    return outside, [(outside, message)]


def _mixed_timezones(text: pd.Series, bad: np.ndarray) -> list[_Issue]:
    """An issue when a column mixes datetimes with and without a UTC offset (dates are neutral)."""
    has_time = text.str.contains(":", regex=False).fillna(False).to_numpy(dtype=bool) & ~bad
    aware = text.str.contains(_AWARE).fillna(False).to_numpy(dtype=bool) & has_time
    naive = has_time & ~aware
    if not (aware.any() and naive.any()):
        return []
    few, many = (naive, aware) if naive.sum() <= aware.sum() else (aware, naive)
    kind = "without" if few is naive else "with"
    message = (
        f"timestamp {_examples(text[few])} {kind} a UTC offset while {many.sum()} other "
        f"values {'have' if kind == 'without' else 'do not have'} one "
        f"(e.g. '{text[many].iloc[0]}'); a column must not mix timezone-naive and "
        "timezone-aware timestamps"
    )
    return [(few, message)]


_TYPERS: dict[Kind, Callable[[pd.Series, Column], _Typed]] = {
    Kind.ID: _type_text,
    Kind.TEXT: _type_text,
    Kind.CATEGORY: _type_text,
    Kind.CHOICE: _type_choice,
    Kind.NUMBER: _type_number,
    Kind.BOOL: _type_bool,
    Kind.DATETIME: _type_datetime,
}


def _examples(values: pd.Series, limit: int = _VALUES_SHOWN) -> str:
    """The first few distinct values, quoted: "'a', 'b' (+4 more values)"."""
    distinct = values.drop_duplicates()
    shown = ", ".join(f"'{_show(v)}'" for v in distinct.iloc[:limit])
    more = len(distinct) - limit
    return f"{shown} (+{more} more value{'s' if more > 1 else ''})" if more > 0 else shown


def _show(value: object) -> str:
    """A value as a user would write it in the file."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d" if value == value.normalize() else "%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check_rows(spec: Table, frame: pd.DataFrame) -> list[tuple[str | None, _Issue]]:
    """Row checks that span columns: unique keys, score ranges, ordered and dependent dates."""
    issues = _check_key(spec, frame) + _check_order(spec, frame) + _check_dependent(spec, frame)
    if spec.name == "feedback":
        issues += _check_scores(frame)
    return [(col, issue) for col, issue in issues if issue[0].any()]


def _check_key(spec: Table, frame: pd.DataFrame) -> list[tuple[str | None, _Issue]]:
    """Rows whose id appears more than once."""
    if spec.key is None or spec.key not in frame.columns:
        return []
    ids = frame[spec.key]
    dup = (ids.duplicated(keep=False) & ids.notna()).to_numpy()
    message = f"duplicate {spec.key} {_examples(ids[dup])} (each {spec.key} must appear once)"
    return [(spec.key, (dup, message))]


def _check_order(spec: Table, frame: pd.DataFrame) -> list[tuple[str | None, _Issue]]:
    """Rows where a later timestamp (end, due, resolved) comes before its earlier one."""
    issues: list[tuple[str | None, _Issue]] = []
    for earlier, later in ORDERED_COLUMNS.get(spec.name, ()):
        if earlier in frame.columns and later in frame.columns:
            wrong = (frame[later] < frame[earlier]).to_numpy(dtype=bool, na_value=False)
            if wrong.any():
                first = frame[wrong].iloc[0]
                example = f"{_show(first[later])} < {_show(first[earlier])}"
                message = f"{later} is before {earlier} (e.g. {example})"
                issues.append((later, (wrong, message)))
    return issues


def _check_dependent(spec: Table, frame: pd.DataFrame) -> list[tuple[str | None, _Issue]]:
    """Rows where a column is set although the column it depends on is empty."""
    issues: list[tuple[str | None, _Issue]] = []
    for column, needs in DEPENDENT_COLUMNS.get(spec.name, ()):
        if column in frame.columns:
            unmet = frame[needs].isna() if needs in frame.columns else True
            orphan = (frame[column].notna() & unmet).to_numpy()
            issues.append((column, (orphan, f"{column} is set but {needs} is empty")))
    return issues


def _check_scores(frame: pd.DataFrame) -> list[tuple[str | None, _Issue]]:
    """Feedback scores outside their survey's range (outside every range when no survey)."""
    if "score" not in frame.columns:
        return []
    score = frame["score"]
    survey = frame["survey"] if "survey" in frame.columns else pd.Series(np.nan, index=frame.index)
    issues: list[tuple[str | None, _Issue]] = []
    lows, highs = zip(*SCORE_RANGES.values(), strict=True)
    ranges = {**SCORE_RANGES, "": (min(lows), max(highs))}
    for name, (low, high) in ranges.items():
        rows = survey.isna() if name == "" else survey == name
        out = (rows & ((score < low) | (score > high))).to_numpy(dtype=bool, na_value=False)
        label = f"the {name} range" if name else "every survey's range"
        message = f"score {_examples(score[out])} outside {label} ({low:g} to {high:g})"
        issues.append(("score", (out, message)))
    return issues


def _isin(values: pd.Series, allowed: pd.Series) -> np.ndarray:
    """values.isin(allowed) for strings, through pyarrow: pandas' isin is slow on arrow strings."""
    value_set = pa.array(allowed.dropna(), type=pa.large_string())
    found = pc.is_in(pa.array(values, type=pa.large_string()), value_set=value_set)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _check_client_ids(raw: dict[str, RawTable], frames: dict[str, pd.DataFrame]) -> list[Problem]:
    """Rows whose client_id is not in the clients table."""
    clients = frames.get("clients")
    if clients is None or "client_id" not in clients.columns:
        return []
    problems = []
    for name, frame in frames.items():
        if name == "clients" or "client_id" not in frame.columns:
            continue
        ids = frame["client_id"]
        unknown = ids.notna().to_numpy() & ~_isin(ids, clients["client_id"])
        if unknown.any():
            message = f"client_id {_examples(ids[unknown])} not in clients"
            problems.append(_problem(raw[name], "client_id", unknown, message))
    return problems
