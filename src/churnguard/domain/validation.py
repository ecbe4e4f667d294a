"""Validation: every raw table typed per the contract and checked, with every problem collected.

Each problem names the file, the column (by its source name when a mapping renamed it), the rows
and why; ``validate`` raises ``DataContractError`` listing all of them, or returns the typed data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.domain.contract import (
    DEPENDENT_COLUMNS,
    ORDERED_COLUMNS,
    SCORE_RANGES,
    TABLES,
    Column,
    CRMData,
    Kind,
    Table,
    dtype_of,
    from_frames,
)
from churnguard.domain.problems import DataContractError, Problem, Severity, ValidationReport
from churnguard.domain.rawtable import RawTable, as_text
from churnguard.domain.timeaxis import EARLIEST_TIME, LATEST_TIME

_VALUES_SHOWN = 3  # offending values quoted per problem
_START_SHOWN = 30  # characters quoted of a long value
_RELEASE_ROWS = 100_000  # tables from this size give freed Arrow memory back after each column
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
    raw: dict[str, RawTable], problems: Iterable[Problem] = (), consume: bool = False
) -> tuple[CRMData, ValidationReport]:
    """Type every table per the contract and check it, collecting every problem.

    Args:
        raw: tables as read, by contract table name.
        problems: problems already found while reading; a required table that already has
            an error there is not reported missing again.
        consume: drop each contract column from its raw frame once typed, so that a large
            table is not held twice (as read and typed); the raw tables are not used after.

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
            frames[name], table_problems = _validate_table(raw[name], raw[name].spec, consume)
            found += table_problems
        elif spec.required and name not in failed:
            found.append(_missing_table(name))
    found += _check_client_ids(raw, frames)
    counts = {n: len(t.frame) for n, t in raw.items() if n in TABLES}
    dropped = {n: t.dropped for n, t in raw.items() if n in TABLES and t.dropped}
    report = ValidationReport(found, counts, dropped)
    if report.errors:
        raise DataContractError(report)
    attributes = tuple(a for t in raw.values() if t.name in TABLES for a in t.attributes)
    return from_frames(frames, attributes), report


def _missing_table(name: str) -> Problem:
    return Problem("error", name, name, None, (), f"required table {name} is missing")


def _unknown_table(table: RawTable) -> Problem:
    known = ", ".join(TABLES)
    return Problem(
        "warning", table.name, table.source, None, (), f"not a contract table ({known}); ignored"
    )


def _validate_table(
    raw: RawTable, spec: Table, consume: bool = False
) -> tuple[pd.DataFrame, list[Problem]]:
    """The table typed per the contract, and its problems (consume: see ``validate``)."""
    frame = raw.frame.reset_index(drop=True)
    problems = list(raw.problems) + _check_columns(raw, spec)
    if spec.required and len(frame) == 0:
        message = f"has a header but no rows; {spec.name} is a required table"
        problems.append(_problem(raw, None, np.zeros(0, bool), message))
    typed: dict[str, pd.Series] = {}
    for column in spec.columns:
        if column.name in frame.columns:
            reported = _reported_rows(raw, column.name)
            typed[column.name], issues = _type_column(frame[column.name], column, reported)
            problems += [_problem(raw, column.name, rows, msg) for rows, msg in issues]
            if consume:
                del frame[column.name], raw.frame[column.name]
            if len(frame) >= _RELEASE_ROWS:
                release_unused_memory()
    out = pd.DataFrame(typed, index=frame.index)
    issues_by_column = _check_rows(spec, out)
    problems += [_problem(raw, col, rows, msg) for col, (rows, msg) in issues_by_column]
    return out, problems


def release_unused_memory() -> None:
    """Give back to the system the freed memory pyarrow's pool keeps for reuse.

    Typing a column of millions of strings frees hundreds of MB of Arrow buffers that the pool
    (mimalloc) would otherwise hold while numpy asks the system for more: resident memory then
    counts both. A few milliseconds a call.
    """
    pa.default_memory_pool().release_unused()


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


def _reported_rows(raw: RawTable, column: str) -> np.ndarray:
    """Rows of the column the mapping already reported (e.g. a date not in its format)."""
    rows = [r for p in raw.problems if p.column == column for r in p.rows]
    return np.isin(raw.row_numbers, rows) if rows else np.zeros(len(raw.row_numbers), bool)


def _type_column(
    values: pd.Series, column: Column, reported: np.ndarray | None = None
) -> tuple[pd.Series, list[_Issue]]:
    """The column converted to its contract dtype, and the issues found on the way.

    Rows in ``reported`` were already reported as errors (and left empty), so they are not
    reported again as empty values.
    """
    typed, missing, issues = _TYPERS[column.kind](values, column)
    if reported is not None:
        missing = missing & ~reported
    if column.required and missing.any():
        issues.insert(0, (missing, "empty value in a required column"))
    if column.non_negative:
        negative = (typed < 0).to_numpy(dtype=bool, na_value=False)
        if negative.any():
            shown = _examples(typed[negative])
            issues.append((negative, f"negative value {shown} ({column.name} must be >= 0)"))
    return typed, issues


_Typed = tuple[pd.Series, np.ndarray, list[_Issue]]  # (typed values, missing rows, issues)


def _type_text(values: pd.Series, column: Column) -> _Typed:
    """Ids, free text and categories: strings (categorical where the contract says so)."""
    text = as_text(values)
    return text.astype(_dtype(column)), text.isna().to_numpy(), _unstorable(text, column)


def _unstorable(text: pd.Series, column: Column) -> list[_Issue]:
    """Text longer than the contract's limit for the column, or with a NUL character.

    The API refuses both and the score store's columns are no longer (PostgreSQL refuses a NUL
    in any text), so a row that breaks them is reported here, before a scoring run fails.
    """
    issues: list[_Issue] = []
    limit = column.text_length
    lengths = text.str.len()
    long = (lengths > limit).to_numpy(dtype=bool, na_value=False)
    if long.any():
        message = (
            f"text longer than {limit} characters {_examples(_shortened(text[long]))} (the "
            f"longest has {int(lengths[long].max())}; {column.name} may be at most {limit})"
        )
        issues.append((long, message))
    nul = text.str.contains("\x00", regex=False).to_numpy(dtype=bool, na_value=False)
    if nul.any():
        shown = _shortened(text[nul].str.replace("\x00", "\\u0000", regex=False))
        message = f"NUL character (\\u0000) in {_examples(shown)} (a database cannot store it)"
        issues.append((nul, message))
    return issues


def _shortened(text: pd.Series) -> pd.Series:
    """Values cut to their first characters, with an ellipsis where cut."""
    long = text.str.len() > _START_SHOWN
    return text.where(~long, text.str.slice(0, _START_SHOWN) + "…")


def _type_choice(values: pd.Series, column: Column) -> _Typed:
    """Choices: lower-cased, checked against the allowed values, categorical over them."""
    text = as_text(values).str.lower()
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


_DECIMAL_COMMA = r"\s*[+-]?[\d.]*,\d+\s*"  # "12,50", "1.234,50", "1,234": spreadsheet exports


def _type_number(values: pd.Series, column: Column) -> _Typed:
    """Numbers as float64; text that is not a finite number is an issue."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        number = values.astype("float64")
        return number, number.isna().to_numpy(), []
    text = as_text(values)
    number = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = (text.notna() & ~np.isfinite(number)).to_numpy()
    issues: list[_Issue] = []
    if bad.any():
        message = f"unparseable number {_examples(text[bad])}"
        if text[bad].str.fullmatch(_DECIMAL_COMMA).any():
            message += " (a comma in a number? export plain numbers, a point for decimals: 1234.50)"
        issues.append((bad, message))
    return number.where(~bad), text.isna().to_numpy(), issues


def _type_bool(values: pd.Series, column: Column) -> _Typed:
    """Booleans; empty is False, yes/no words and 1/0 are accepted in any case."""
    if pd.api.types.is_bool_dtype(values):
        flags = values.fillna(False).astype(bool)
        return flags, values.isna().to_numpy(), []
    text = as_text(values)
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
    text = _upper(as_text(values))
    if len(text) >= _RELEASE_ROWS:
        release_unused_memory()  # as_text's intermediate copies
    parsed = _parse_timestamps(text)
    valid = text.str.fullmatch(_TIMESTAMP).fillna(False).astype(bool)
    bad = (text.notna() & (parsed.isna() | ~valid)).to_numpy()
    issues: list[_Issue] = []
    if bad.any():
        message = (
            f"unparseable date {_examples(as_text(values)[bad])} "
            "(expected YYYY-MM-DD or an ISO 8601 datetime such as 2024-03-01T09:30:00+02:00; "
            "a mapping's date_format reads other formats)"
        )
        issues.append((bad, message))
    issues += _mixed_timezones(text, bad)
    seconds = _to_seconds(parsed.where(~bad))
    outside, range_issues = _unencodable(seconds, values, column)
    return seconds.where(~outside), text.isna().to_numpy(), issues + range_issues


def _upper(text: pd.Series) -> pd.Series:
    """Text in upper case ('t' and 'z' of ISO 8601 as 'T' and 'Z'); no copy when it already is."""
    lower = text.str.contains("[a-z]").to_numpy(dtype=bool, na_value=False)
    return text.str.upper() if lower.any() else text


def _parse_timestamps(text: pd.Series) -> pd.Series:
    """ISO 8601 text as UTC timestamps, NaT where unparseable; naive values are UTC.

    Arrow parses a column whose values all have an offset, or all have none, at whole seconds, in
    C and without a Python object per value (5 million events: about 500 MB less); pandas takes
    any other column (fractions of seconds, mixed offsets, a bad value).
    """
    values = pa.array(text, type=pa.large_string(), from_pandas=True)
    for kind in (pa.timestamp("s", tz="UTC"), pa.timestamp("s")):
        try:
            parsed = pc.cast(values, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        stamps = parsed.to_numpy(zero_copy_only=False).astype("datetime64[s]")
        return pd.Series(stamps, index=text.index).dt.tz_localize("UTC")
    return pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")


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
    shown = seconds[outside] if typed else as_text(values[outside])
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


def _positions(values: pd.Series, known: pd.Series) -> np.ndarray:
    """Each value's position in known (-1: not there or empty), through pyarrow's hash join."""
    value_set = pa.array(known.dropna(), type=pa.large_string())
    found = pc.index_in(pa.array(values, type=pa.large_string(), from_pandas=True), value_set)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)


def _check_client_ids(raw: dict[str, RawTable], frames: dict[str, pd.DataFrame]) -> list[Problem]:
    """Rows whose client_id is not in the clients table.

    Every other table's client_id also becomes what ``from_frames`` makes it, categorical over the
    clients' ids, here from the positions already found (5 million ids: no string per row again).
    """
    clients = frames.get("clients")
    if clients is None or "client_id" not in clients.columns:
        return []
    known = clients["client_id"]
    usable = bool(known.notna().all() and not known.duplicated().any())  # else: errors already
    dtype = pd.CategoricalDtype(pd.Index(known)) if usable else None
    problems = []
    for name, frame in list(frames.items()):
        if name == "clients" or "client_id" not in frame.columns:
            continue
        ids = frame["client_id"]
        codes = _positions(ids, known)
        unknown = ids.notna().to_numpy() & (codes < 0)
        if unknown.any():
            message = f"client_id {_examples(ids[unknown])} not in clients"
            problems.append(_problem(raw[name], "client_id", unknown, message))
        elif dtype is not None:
            frames[name] = frame.assign(client_id=pd.Categorical.from_codes(codes, dtype=dtype))
    return problems
