"""Raw tables: a table as read, with the mapping applied (rows filtered, columns renamed or
derived, values recoded, dates in a declared format read, attributes' numbers read) but not yet
typed; ``validation.py`` types and checks them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from churnguard.domain.contract import TABLES, Attribute, Kind, Table, table_spec
from churnguard.domain.mapping import Derived, MappedAttribute, Mapping, RowFilter, Source
from churnguard.domain.problems import Problem


@dataclass(frozen=True)
class RawTable:
    """A table as read, before typing: contract column names, values as read."""

    name: str  # contract table name
    source: str  # what to call it in messages ("clients.csv")
    frame: pd.DataFrame  # columns renamed to contract names; values as read
    row_numbers: np.ndarray  # what each row is called in messages (CSV line or 1-based row)
    renamed: dict[str, str] = field(default_factory=dict)  # contract column -> source column
    ignored: tuple[str, ...] = ()  # source columns shadowed by a mapped column of the same name
    dropped: int = 0  # source rows the mapping's filters left out
    problems: tuple[Problem, ...] = ()  # mapping entries that could not be applied
    attributes: tuple[Attribute, ...] = ()  # extra columns read as features (the mapping's)

    @property
    def spec(self) -> Table:
        """The table's contract, with its attributes' columns: what validation types."""
        return table_spec(self.name, self.attributes)


def map_table(
    name: str,
    source: str,
    frame: pd.DataFrame,
    row_numbers: np.ndarray | None = None,
    mapping: Mapping | None = None,
) -> RawTable:
    """A RawTable with the mapping's filters, column renames and derivations, and recodes applied.

    Args:
        name: contract table name.
        source: what to call the table in messages.
        frame: the table as read, with its source column names.
        row_numbers: what each row is called in messages; 1-based positions when omitted.
        mapping: renames and recodes; none when the source already uses contract names.
    """
    mapping = mapping or Mapping()
    rows = np.arange(1, len(frame) + 1) if row_numbers is None else np.asarray(row_numbers)
    extras = mapping.attributes.get(name, ())
    columns = {**mapping.columns.get(name, {}), **{a.attribute.column: a.source for a in extras}}
    row_filter = mapping.filters.get(name, RowFilter())
    problems = _missing_sources(
        name, source, frame, mapping.columns.get(name, {}), row_filter, mapping
    )
    positions = pd.Series(np.arange(1, len(frame) + 1), index=frame.index)  # for row_number ids
    keep = _kept_rows(frame, row_filter)
    if not keep.all():
        frame, rows, positions = frame[keep], rows[keep], positions[keep]
    mapped, ignored = _mapped_columns(frame, columns, row_filter, positions)
    recoded = _recode(mapped, TABLES[name], mapping.values.get(name, {}))
    renamed = {c: s if isinstance(s, str) else (s.column or "") for c, s in columns.items()}
    renamed = {c: s for c, s in renamed.items() if s}  # derived columns have no source name
    typed, typing_problems = _read_attributes(recoded, rows, extras)
    dated, date_problems = _read_dates(typed, rows, name, mapping)
    problems += [
        replace(p, table=name, source=source, source_column=renamed.get(p.column or ""))
        for p in typing_problems + date_problems
    ]
    dropped = int((~keep).sum())
    attributes = tuple(a.attribute for a in extras)
    return RawTable(
        name, source, dated, rows, renamed, ignored, dropped, tuple(problems), attributes
    )


def _missing_sources(
    name: str,
    source: str,
    frame: pd.DataFrame,
    columns: dict[str, Source],
    row_filter: RowFilter,
    mapping: Mapping,
) -> list[Problem]:
    """Errors for derived columns and filters that read a column the source lacks.

    A plain rename of a missing column is left to validation, which names the source column.
    """
    has = ", ".join(str(c) for c in frame.columns)
    problems = []
    for column, entry in columns.items():
        absent = [s for s in _sources(entry) if s not in frame.columns]
        if isinstance(entry, Derived) and absent:
            where = mapping.where("columns", name, column)
            message = f"{where}: no column {absent[0]!r} to read (it has: {has})"
            problems.append(Problem("error", name, source, column, (), message))
    for extra in mapping.attributes.get(name, ()):
        column = extra.source.column or ""
        if column not in frame.columns:
            where = extra.attribute.where
            message = f"{where}: no column {column!r} to read (it has: {has})"
            problems.append(Problem("error", name, source, None, (), message))
    for kind, entries in (("drop", row_filter.drop), ("keep", row_filter.keep)):
        for column in entries:
            if column not in frame.columns:
                where = mapping.where("filters", name, kind, column)
                message = f"{where}: no column {column!r} to filter on (it has: {has})"
                problems.append(Problem("error", name, source, None, (), message))
    return problems


def _read_attributes(
    frame: pd.DataFrame, rows: np.ndarray, extras: tuple[MappedAttribute, ...]
) -> tuple[pd.DataFrame, list[Problem]]:
    """The frame with its number attributes read as numbers; text that is not one is reported
    (rows, mapping line; the value is not repeated) and left empty."""
    numbers: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for extra in extras:
        a = extra.attribute
        if a.kind != Kind.NUMBER or a.column not in frame.columns:
            continue
        values = frame[a.column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers[a.column] = values.astype("float64")
            continue
        text = as_text(values)
        number = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = (text.notna() & ~np.isfinite(number)).to_numpy()
        if bad.any():
            message = (
                f"{a.where}: not a number in {bad.sum():,} rows ({a.name} is declared a number)"
            )
            problems.append(Problem("error", "", "", a.column, tuple(rows[bad].tolist()), message))
        numbers[a.column] = number.where(~bad)
    return (frame.assign(**numbers) if numbers else frame), problems


def _read_dates(
    frame: pd.DataFrame, rows: np.ndarray, name: str, mapping: Mapping
) -> tuple[pd.DataFrame, list[Problem]]:
    """The frame with the columns a mapping gives a date format read by it (UTC unless the
    format has %z); a value that does not match is reported and left empty."""
    dates: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for column, fmt in mapping.date_formats.get(name, {}).items():
        if column not in frame.columns or pd.api.types.is_datetime64_any_dtype(frame[column]):
            continue  # missing: validation names it; typed by the file (parquet): nothing to read
        text = as_text(frame[column])
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        bad = (text.notna() & parsed.isna()).to_numpy()
        if bad.any():
            where = mapping.where("date_format", name, column)
            message = f"{where}: {bad.sum():,} dates do not match the date format {fmt!r}"
            problems.append(Problem("error", "", "", column, tuple(rows[bad].tolist()), message))
        dates[column] = parsed
    return (frame.assign(**dates) if dates else frame), problems


def _kept_rows(frame: pd.DataFrame, row_filter: RowFilter) -> np.ndarray:
    """Which rows the filter keeps (columns the frame lacks are reported, not applied)."""
    keep = np.ones(len(frame), dtype=bool)
    for column, values in row_filter.drop.items():
        if column in frame.columns:
            keep &= ~as_text(frame[column]).isin(values).to_numpy()
    for column, values in row_filter.keep.items():
        if column in frame.columns:
            keep &= as_text(frame[column]).isin(values).to_numpy()
    return keep


def _mapped_columns(
    frame: pd.DataFrame, columns: dict[str, Source], row_filter: RowFilter, positions: pd.Series
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The frame's columns under contract names, and the source columns shadowed and ignored.

    Source columns stay in their order, each replaced by the contract columns read from it (a
    source column may feed several); derived columns come last. A source column named like a
    contract column that the mapping takes from elsewhere is ignored.
    """
    used = {s for entry in columns.values() for s in _sources(entry)} | set(row_filter.columns)
    ignored = tuple(str(c) for c in frame.columns if c in columns and c not in used)
    readable = {c for c, entry in columns.items() if set(_sources(entry)) <= set(frame.columns)}
    out: dict[str, pd.Series] = {}
    for col in frame.columns:
        reads = [c for c, entry in columns.items() if col in _sources(entry) and c in readable]
        if col not in used and col not in ignored:
            out[str(col)] = frame[col]
        for contract in reads:
            if contract not in out:
                out[contract] = _derive(frame, columns[contract], positions)
    for contract in [c for c in columns if c in readable and c not in out]:  # read no column
        out[contract] = _derive(frame, columns[contract], positions)
    return pd.DataFrame(out, index=frame.index), ignored


def _sources(entry: Source) -> tuple[str, ...]:
    return (entry,) if isinstance(entry, str) else entry.sources


def _derive(frame: pd.DataFrame, entry: Source, positions: pd.Series) -> pd.Series:
    """One contract column's values, from its source column(s) or its derivation."""
    if isinstance(entry, str):
        return frame[entry]
    if entry.column is not None:
        values = frame[entry.column]
        return values if entry.scale is None else _scaled(values, entry.scale)
    if entry.concat:
        parts = [as_text(frame[c]) for c in entry.concat]
        others: Any = parts[1:]
        return parts[0].str.cat(others, sep=entry.sep)  # an empty part makes an empty id
    if entry.row_number:
        return positions.astype("str")
    return pd.Series(entry.constant, index=frame.index, dtype="str")


def _scaled(values: pd.Series, scale: float) -> pd.Series:
    """Numbers times scale; text that is not a number is kept for validation to report."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64") * scale
    text = as_text(values)
    number = pd.to_numeric(text, errors="coerce")
    return (number * scale).astype(object).where(number.notna() | text.isna(), text)


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
