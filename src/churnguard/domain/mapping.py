"""Mapping a real CRM export onto the contract: the YAML mapping file, read, checked and applied.

A mapping renames tables and columns and recodes values; ``map_table`` applies it to a table as
read and gives the ``RawTable`` that validation types and checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from churnguard.domain.contract import TABLES, Column, Kind, Table
from churnguard.domain.problems import DataContractError, Problem, ValidationReport


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
        text = as_text(frame[name])
        if spec.column(name).kind in (Kind.CHOICE, Kind.BOOL):  # matched case-insensitively
            text = text.str.lower()
            recodes = {k.strip().lower(): v for k, v in recodes.items()}
        new = text.map(recodes)
        changed[name] = new.where(new.notna(), frame[name])
    return frame.assign(**changed) if changed else frame


def as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings (str dtype); missing and blank values become NaN."""
    if pd.api.types.is_float_dtype(values) and _integral(values.dropna()):
        values = values.astype("Int64")  # ids read as floats (1.0) because of a null
    text = values.astype("str").str.strip()
    return text.mask(text == "")


def _integral(values: pd.Series) -> bool:
    return bool((np.isfinite(values) & (values % 1 == 0)).all())
