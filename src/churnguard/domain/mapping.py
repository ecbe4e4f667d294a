"""The mapping file: how a real CRM export's tables, columns and values map onto the contract.

A mapping renames tables and columns, derives the columns an export lacks (an id from row numbers
or from several columns, a constant, a scaled number, one source column used twice), drops rows
(add-ons, test accounts), recodes values, reads dates written in another format, and declares
extra client and contract columns as attributes (features). This module reads and checks the YAML
file, keeping the line of every entry so that each message names it; ``rawtable.py`` applies a
mapping to a table as read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from difflib import get_close_matches
from pathlib import Path

import yaml

from churnguard.domain.contract import (
    ATTRIBUTE_KINDS,
    ATTRIBUTE_NAME,
    ATTRIBUTE_PREFIXES,
    TABLES,
    Attribute,
    Column,
    Kind,
)
from churnguard.domain.problems import DataContractError, Problem, ValidationReport

Path_ = tuple[str, ...]  # where an entry is in the YAML document: ("columns", "clients", "name")


@dataclass(frozen=True)
class Derived:
    """A contract column made from a source table (the mapping form of a column entry).

    Exactly one of ``column``, ``concat``, ``constant`` and ``row_number`` is set.
    """

    column: str | None = None  # a source column, copied (several contract columns may share one)
    scale: float | None = None  # multiply the numbers by this (cents -> units, minutes -> hours)
    concat: tuple[str, ...] = ()  # source columns joined by ``sep``: an id made of parts
    sep: str = "-"
    constant: str | None = None  # the same value on every row
    row_number: bool = False  # the row's 1-based position in the source: an id for rows lacking one

    @property
    def sources(self) -> tuple[str, ...]:
        """The source columns it reads."""
        return (self.column,) if self.column else self.concat

    def __str__(self) -> str:
        if self.column:
            return self.column if self.scale is None else f"{self.column} x {self.scale:g}"
        if self.concat:
            return f"{self.sep.join(self.concat)} joined by {self.sep!r}"
        return "row numbers" if self.row_number else f"the constant {self.constant!r}"


Source = str | Derived  # a source column's name, or how the column is derived


@dataclass(frozen=True)
class RowFilter:
    """Which source rows to read: ``drop`` rows whose column holds one of the values, ``keep``
    only rows whose column holds one (values compared as trimmed text)."""

    drop: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keep: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.drop, *self.keep]))


@dataclass(frozen=True)
class MappedAttribute:
    """An attribute a mapping declares, and the source column it is read from."""

    attribute: Attribute
    source: Derived


@dataclass(frozen=True)
class Mapping:
    """How a real CRM export's tables, columns and values are named, read from a YAML file.

    ``tables``: contract table -> source table or file stem; ``columns``: contract table ->
    {contract column: source column or Derived}; ``filters``: contract table -> RowFilter;
    ``values``: contract table -> column -> {source value: contract value}; ``date_formats``:
    contract table -> {date column: strptime format}; ``attributes``: contract table -> the extra
    columns read as features. Anything not mentioned keeps its contract name. ``lines`` are the
    file lines of its entries.
    """

    tables: dict[str, str] = field(default_factory=dict)
    columns: dict[str, dict[str, Source]] = field(default_factory=dict)
    values: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    filters: dict[str, RowFilter] = field(default_factory=dict)
    source: str = "mapping"
    lines: dict[Path_, int] = field(default_factory=dict)
    date_formats: dict[str, dict[str, str]] = field(default_factory=dict)
    attributes: dict[str, tuple[MappedAttribute, ...]] = field(default_factory=dict)

    @property
    def declared(self) -> tuple[Attribute, ...]:
        """Every attribute the mapping declares, clients' first."""
        return tuple(m.attribute for t in TABLES for m in self.attributes.get(t, ()))

    def source_table(self, table: str) -> str:
        """The source table or file stem a contract table is read from."""
        return self.tables.get(table, table)

    def where(self, *path: str) -> str:
        """'mapping.yaml line 12 (columns.contracts.contract_id)': an entry, as messages name it."""
        return _where(self.source, _line_of(self.lines, path), path)


def _where(source: str, line: int | None, path: Path_) -> str:
    at = f" line {line}" if line else ""
    return f"{source}{at} ({'.'.join(path)})"


_SECTIONS = ("tables", "columns", "filters", "values", "date_format", "attributes")
_RECODABLE = (Kind.CHOICE, Kind.CATEGORY, Kind.BOOL, Kind.TEXT, Kind.ID)
_DERIVED_KEYS = ("column", "scale", "concat", "sep", "constant", "row_number")
_YES = ("true", "yes", "y", "1")


def load_mapping(path: Path) -> Mapping:
    """Read a mapping YAML file; raises DataContractError naming the file, line and bad entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mapping file not found: {path}")
    try:
        # BaseLoader keeps every scalar a string, so `yes:` or `1:` stay the text the CRM writes.
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        rows = () if line is None else (line + 1,)
        message = f"not a valid YAML file: {exc}"
        raise DataContractError(ValidationReport([_error(path.name, message, rows)])) from exc
    lines: dict[Path_, int] = {}
    return parse_mapping(_plain(node, (), lines), path.name, lines)


def _plain(node: yaml.Node | None, path: Path_, lines: dict[Path_, int]) -> object:
    """A composed YAML node as dicts, lists and strings; records each key's line under its path."""
    if isinstance(node, yaml.MappingNode):
        out: dict[str, object] = {}
        for key, value in node.value:
            name = str(key.value)
            lines[(*path, name)] = key.start_mark.line + 1
            out[name] = _plain(value, (*path, name), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, path, lines) for item in node.value]
    return None if node is None else node.value


def _line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of an entry, or of its nearest enclosing entry that has one."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _error(source: str, message: str, rows: tuple[int, ...] = ()) -> Problem:
    return Problem("error", "", source, None, rows, message)


class _Messages:
    """Problems found in a mapping document, each at the line of its entry."""

    def __init__(self, source: str, lines: dict[Path_, int]) -> None:
        self.source, self.lines, self.found = source, lines, list[Problem]()

    def add(self, path: Path_, text: str, at: Path_ | None = None) -> None:
        """A message about the entry at path (its line: that of ``at`` when given)."""
        where = f"{'.'.join(path)}: " if path else ""
        line = _line_of(self.lines, path if at is None else at)
        self.found.append(_error(self.source, f"{where}{text}", () if line is None else (line,)))


def parse_mapping(
    doc: object, source: str = "mapping", lines: dict[Path_, int] | None = None
) -> Mapping:
    """A Mapping from a parsed YAML document; raises DataContractError listing every bad entry."""
    lines = lines or {}
    m = _Messages(source, lines)
    doc = {} if doc in (None, "") else doc
    if not isinstance(doc, dict):
        m.add((), f"expected sections {', '.join(_SECTIONS)}, got {doc!r}")
        raise DataContractError(ValidationReport(m.found))
    for key in sorted(set(doc) - set(_SECTIONS)):
        m.add((), f"unknown section {key!r} (expected {', '.join(_SECTIONS)})", (key,))
    tables = _mapping_tables(doc.get("tables"), m)
    columns = _mapping_columns(doc.get("columns"), m)
    filters = _mapping_filters(doc.get("filters"), m)
    values = _mapping_values(doc.get("values"), m)
    date_formats = _mapping_date_formats(doc.get("date_format"), m)
    attributes = _mapping_attributes(doc.get("attributes"), source, m)
    if m.found:
        raise DataContractError(ValidationReport(m.found))
    return Mapping(tables, columns, values, filters, source, lines, date_formats, attributes)


def _section(value: object, path: Path_, m: _Messages) -> dict[str, object]:
    """A YAML mapping section as a dict, or {} with a message when it has the wrong shape."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        m.add(path, f"expected a mapping of names, got {value!r}")
        return {}
    return value


def _known(name: str, known: tuple[str, ...], what: str, path: Path_, m: _Messages) -> bool:
    """Whether name is one of known; otherwise record a message suggesting the closest name."""
    if name in known:
        return True
    close = get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    m.add(path, f"unknown {what} {name!r} ({hint}known: {', '.join(known)})", (*path, name))
    return False


def _tables_in(section: dict[str, object], path: Path_, m: _Messages) -> dict[str, object]:
    """The entries of a section whose keys are contract tables."""
    return {k: v for k, v in section.items() if _known(k, tuple(TABLES), "table", path, m)}


def _mapping_tables(value: object, m: _Messages) -> dict[str, str]:
    """The `tables` section: contract table -> source table, one contract table per source."""
    out: dict[str, str] = {}
    for name, source in _tables_in(_section(value, ("tables",), m), ("tables",), m).items():
        if not isinstance(source, str) or not source:
            m.add(("tables", name), f"expected a source name, got {source!r}")
        elif source in out.values():
            first = next(k for k, v in out.items() if v == source)
            m.add(("tables", name), f"{source!r} is mapped to both {first!r} and {name!r}")
        else:
            out[name] = source
    return out


def _mapping_columns(value: object, m: _Messages) -> dict[str, dict[str, Source]]:
    """The `columns` section: contract table -> {contract column: source column or Derived}."""
    out: dict[str, dict[str, Source]] = {}
    for table, cols in _tables_in(_section(value, ("columns",), m), ("columns",), m).items():
        path = ("columns", table)
        out[table] = {}
        for name, entry in _section(cols, path, m).items():
            if _known(name, TABLES[table].column_names, "column", path, m):
                source = _column_source(TABLES[table].column(name), entry, (*path, name), m)
                if source is not None:
                    out[table][name] = source
    return out


def _column_source(column: Column, entry: object, path: Path_, m: _Messages) -> Source | None:
    """One column entry: a source column's name, or a mapping saying how to derive the column."""
    if isinstance(entry, str) and entry:
        return entry
    if not isinstance(entry, dict):
        m.add(path, f"expected a source column or a mapping ({', '.join(_DERIVED_KEYS)})")
        return None
    unknown = [k for k in entry if k not in _DERIVED_KEYS]
    if unknown:
        m.add(path, f"unknown key {unknown[0]!r} (expected {', '.join(_DERIVED_KEYS)})")
        return None
    try:
        derived = _derived(entry)
    except ValueError as exc:
        m.add(path, str(exc))
        return None
    if derived.scale is not None and column.kind != Kind.NUMBER:
        m.add(path, f"scale applies to numbers; {column.name} is a {column.kind} column")
        return None
    return derived


def _derived(entry: dict[str, object]) -> Derived:
    """A Derived from its YAML mapping; ValueError saying what is wrong."""
    ways = [k for k in ("column", "concat", "constant", "row_number") if k in entry]
    if len(ways) != 1:
        raise ValueError("give exactly one of column, concat, constant, row_number")
    concat = entry.get("concat", [])
    if not isinstance(concat, list) or not all(isinstance(c, str) and c for c in concat):
        raise ValueError(f"concat: expected a list of source columns, got {concat!r}")
    if "concat" in entry and len(concat) < 2:
        raise ValueError("concat: name two or more source columns (or use column:)")
    texts = {k: entry.get(k) for k in ("column", "sep", "constant", "scale", "row_number")}
    for key, text in texts.items():
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{key}: expected a single value, got {text!r}")
    if "scale" in entry and "column" not in entry:
        raise ValueError("scale: applies to a column (column: ..., scale: ...)")
    return Derived(
        column=texts["column"] or None,  # type: ignore[arg-type]
        scale=_number(texts["scale"]),
        concat=tuple(str(c) for c in concat),
        sep=str(texts["sep"]) if texts["sep"] is not None else "-",
        constant=texts["constant"],  # type: ignore[arg-type]
        row_number=str(texts["row_number"]).strip().lower() in _YES,
    )


def _number(text: object) -> float | None:
    if text is None:
        return None
    try:
        return float(str(text))
    except ValueError:
        raise ValueError(f"scale: expected a number such as 0.01, got {text!r}") from None


def _mapping_filters(value: object, m: _Messages) -> dict[str, RowFilter]:
    """The `filters` section: contract table -> {drop|keep: {source column: [values]}}."""
    out: dict[str, RowFilter] = {}
    for table, entry in _tables_in(_section(value, ("filters",), m), ("filters",), m).items():
        path = ("filters", table)
        section = _section(entry, path, m)
        for key in sorted(set(section) - {"drop", "keep"}):
            m.add((*path, key), "expected drop: or keep: ({source column: [values]})")
        drop, keep = (_filter_values(section.get(k), (*path, k), m) for k in ("drop", "keep"))
        out[table] = RowFilter(drop, keep)
    return out


def _filter_values(value: object, path: Path_, m: _Messages) -> dict[str, tuple[str, ...]]:
    """{source column: values} of a drop or keep entry; a single value stands for a list of one."""
    out: dict[str, tuple[str, ...]] = {}
    for column, values in _section(value, path, m).items():
        listed = [values] if isinstance(values, str) else values
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            m.add((*path, column), f"expected a value or a list of values, got {values!r}")
        else:
            out[column] = tuple(v.strip() for v in listed)
    return out


def _mapping_values(value: object, m: _Messages) -> dict[str, dict[str, dict[str, str]]]:
    """The `values` section: contract table -> column -> {source value: contract value}."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for table, cols in _tables_in(_section(value, ("values",), m), ("values",), m).items():
        out[table] = {}
        path = ("values", table)
        for name, codes in _section(cols, path, m).items():
            if _known(name, TABLES[table].column_names, "column", path, m):
                column = TABLES[table].column(name)
                out[table][name] = _recodes(column, codes, (*path, name), m)
    return out


def _recodes(column: Column, codes: object, path: Path_, m: _Messages) -> dict[str, str]:
    """One column's {source value: contract value}, checked against the column's kind."""
    if column.kind not in _RECODABLE:
        m.add(path, f"values of a {column.kind} column cannot be recoded")
        return {}
    section = _section(codes, path, m)
    out = {str(k): v for k, v in section.items() if isinstance(v, str)}
    for source, target in section.items():
        if not isinstance(target, str):
            m.add((*path, source), f"expected a value, got {target!r}")
        elif column.kind == Kind.CHOICE and target.strip().lower() not in column.choices:
            m.add((*path, source), f"{target!r} is not one of {', '.join(column.choices)}")
    return out


def _mapping_date_formats(value: object, m: _Messages) -> dict[str, dict[str, str]]:
    """The `date_format` section: one format for every date column, or per table, or per column."""
    if isinstance(value, str):  # every date column of every table
        fmt = _date_format(value, ("date_format",), m)
        return {t: dict.fromkeys(_date_columns(t), fmt) for t in TABLES} if fmt else {}
    out: dict[str, dict[str, str]] = {}
    path = ("date_format",)
    for table, entry in _tables_in(_section(value, path, m), path, m).items():
        if isinstance(entry, str):  # every date column of the table
            fmt = _date_format(entry, (*path, table), m)
            out[table] = dict.fromkeys(_date_columns(table), fmt) if fmt else {}
            continue
        out[table] = {}
        for name, text in _section(entry, (*path, table), m).items():
            if _known(name, _date_columns(table), "date column", (*path, table), m):
                fmt = _date_format(text, (*path, table, name), m)
                if fmt:
                    out[table][name] = fmt
    return out


def _date_columns(table: str) -> tuple[str, ...]:
    return tuple(c.name for c in TABLES[table].columns if c.kind == Kind.DATETIME)


def _date_format(text: object, path: Path_, m: _Messages) -> str | None:
    """A strptime format that can read back the dates it writes, or None with a message."""
    sample = datetime(2024, 3, 21, 9, 30, 15)
    try:
        if not isinstance(text, str) or "%" not in text:
            raise ValueError
        datetime.strptime(sample.strftime(text), text)
    except ValueError:
        m.add(path, f'expected a date format such as "%d/%m/%Y" or "%m/%d/%Y %H:%M", got {text!r}')
        return None
    return text


_ATTRIBUTE_KEYS = ("column", "kind", "label", "scale", "direction")
_DIRECTIONS = ("more_risk", "less_risk", "context")


def _mapping_attributes(
    value: object, source: str, m: _Messages
) -> dict[str, tuple[MappedAttribute, ...]]:
    """The `attributes` section: clients/contracts -> {name: kind, or {column, kind, label,
    scale, direction}}: extra source columns read as features."""
    out: dict[str, tuple[MappedAttribute, ...]] = {}
    path = ("attributes",)
    for table, entries in _tables_in(_section(value, path, m), path, m).items():
        if table not in ATTRIBUTE_PREFIXES:
            m.add((*path, table), "attributes are read from clients and contracts only")
            continue
        found = []
        for name, entry in _section(entries, (*path, table), m).items():
            declared = _attribute(table, name, entry, source, (*path, table, name), m)
            if declared is not None:
                found.append(declared)
        out[table] = tuple(found)
    return out


def _attribute(
    table: str, name: str, entry: object, source: str, path: Path_, m: _Messages
) -> MappedAttribute | None:
    """One attribute entry, checked: its name, kind, direction and the column it would make."""
    spec = {"kind": entry} if isinstance(entry, str) else entry
    if not isinstance(spec, dict) or any(not isinstance(v, str) for v in spec.values()):
        m.add(path, f"expected number, category or a mapping ({', '.join(_ATTRIBUTE_KEYS)})")
        return None
    problems = _attribute_problems(table, name, spec)
    for text in problems:
        m.add(path, text)
    if problems:
        return None
    kind, direction = Kind(spec["kind"]), spec.get("direction", "context")
    where = _where(source, _line_of(m.lines, path), path)
    attribute = Attribute(table, name, kind, spec.get("label", ""), direction, where)
    scale = _number(spec.get("scale"))
    return MappedAttribute(attribute, Derived(column=spec.get("column", name), scale=scale))


def _attribute_problems(table: str, name: str, spec: dict[str, str]) -> list[str]:
    """What is wrong with an attribute entry (its values are strings)."""
    keys = ", ".join(_ATTRIBUTE_KEYS)
    problems = [f"unknown key {k!r} (expected {keys})" for k in spec if k not in _ATTRIBUTE_KEYS]
    if not ATTRIBUTE_NAME.fullmatch(name):
        problems.append("a name is lower-case letters, digits and underscores (seats, plan_tier)")
    kind, direction = spec.get("kind", ""), spec.get("direction", "context")
    if kind not in ATTRIBUTE_KINDS:
        problems.append(f"kind: expected number or category, got {kind!r}")
    if direction not in _DIRECTIONS:
        problems.append(f"direction: expected more_risk, less_risk or context, got {direction!r}")
    elif kind == Kind.CATEGORY and direction != "context":
        problems.append("a category is context beside the reasons, never one: no direction")
    if "scale" in spec and kind != Kind.NUMBER:
        problems.append("scale applies to numbers")
    try:
        _number(spec.get("scale"))
    except ValueError as exc:
        problems.append(str(exc))
    column = f"{ATTRIBUTE_PREFIXES[table]}{name}"
    if column in TABLES[table].column_names:
        problems.append(f"it would make the column {column}, which {table} already has; rename it")
    return problems
