"""Load CRM tables from a folder of CSV/Parquet files or a SQL database, then validate them.

Reading happens here; what the tables must contain, how a mapping renames them and how they are
checked lives in ``contract.py``, ``mapping.py`` and ``validation.py``.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from churnguard.domain.contract import TABLES, CRMData
from churnguard.domain.mapping import Mapping, load_mapping
from churnguard.domain.problems import Problem, Severity, ValidationReport
from churnguard.domain.rawtable import RawTable, map_table
from churnguard.domain.validation import validate

logger = logging.getLogger(__name__)

TRUTH_FILE_STEM = "true_churn_probability"  # the simulator's ground truth; never read as input
SUFFIXES = (".csv", ".parquet", ".pq")


def load_crm(
    source: str | Path, mapping_path: Path | None = None, log_warnings: bool = True
) -> tuple[CRMData, ValidationReport]:
    """Read and validate CRM tables from a folder or a database URL.

    Args:
        log_warnings: log each warning of the report; off when the caller prints the report.

    Raises:
        FileNotFoundError: the folder (or SQLite file) does not exist.
        DataContractError: the data breaks the contract; the report lists every problem.
    """
    mapping = load_mapping(mapping_path) if mapping_path is not None else None
    raw, problems = read_tables(source, mapping)
    data, report = validate(raw, problems)
    for problem in report.warnings if log_warnings else ():
        logger.warning("%s", problem)
    return data, report


def read_tables(
    source: str | Path, mapping: Mapping | None = None
) -> tuple[dict[str, RawTable], list[Problem]]:
    """Read every contract table found in a folder or database, untyped, with read problems.

    Args:
        source: a folder of ``<table>.csv`` / ``.parquet`` / ``.pq`` files, or a SQLAlchemy
            URL (anything containing ``://``).
        mapping: renames of tables, columns and values; file stems follow its table names.
    """
    mapping = mapping or Mapping()
    if "://" in str(source):
        return _read_database(str(source), mapping)
    return _read_folder(Path(source), mapping)


def sample_tables(source: str | Path, rows: int = 5_000) -> dict[str, pd.DataFrame]:
    """The first rows of every table in a folder or database, as read, by file stem or table name.

    For ``churnguard init``, which guesses a mapping from them; the simulator's truth file is left
    out. Raises FileNotFoundError for a folder that does not exist.
    """
    if "://" in str(source):
        _check_sqlite_file(str(source))
        engine = sa.create_engine(str(source))
        try:
            with engine.connect() as conn:
                names = sa.inspect(conn).get_table_names()
                return {n: _sample_query(conn, n, rows) for n in sorted(names)}
        finally:
            engine.dispose()
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"CRM data folder not found: {folder}")
    paths = [p for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and p.stat().st_size]
    return {p.stem: _sample_file(p, rows) for p in paths if p.stem != TRUTH_FILE_STEM}


def _sample_query(conn: sa.Connection, name: str, rows: int) -> pd.DataFrame:
    table = sa.table(name)
    return pd.read_sql(sa.select(sa.text("*")).select_from(table).limit(rows), conn)


def _sample_file(path: Path, rows: int) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, nrows=rows, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
    return batch.to_pandas() if batch is not None else pd.read_parquet(path)


# Folders of files -------------------------------------------------------------------------------


def _read_folder(folder: Path, mapping: Mapping) -> tuple[dict[str, RawTable], list[Problem]]:
    """Every contract table in a folder, and the problems met reading it."""
    if not folder.exists():
        raise FileNotFoundError(f"CRM data folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"expected a folder of CSV/Parquet files, got a file: {folder}")
    files = {p.name: p for p in sorted(folder.iterdir()) if not p.name.startswith(".")}
    raw: dict[str, RawTable] = {}
    problems: list[Problem] = []
    for name, spec in TABLES.items():
        stem = mapping.source_table(name)
        found = _take_table_files(stem, files)
        if not found:
            if spec.required:
                problems.append(_missing_file(name, stem, folder, files))
            continue
        if len(found) > 1:
            names = " and ".join(p.name for p in found)
            problems.append(_file_problem(name, found[0], f"both {names} found; keep one"))
            continue
        table, table_problems = _read_file(name, found[0], mapping)
        problems += table_problems
        if table is not None:
            raw[name] = table
    return raw, problems + _unknown_files(files.values())


def _take_table_files(stem: str, files: dict[str, Path]) -> list[Path]:
    """Take the files holding a table out of files: stem.csv, stem.parquet or stem.pq."""
    names = [f"{stem}{s}" for s in SUFFIXES]
    found = [n for n in names if n in files and (files[n].is_file() or not n.endswith(".csv"))]
    return [files.pop(n) for n in found]


def _missing_file(name: str, stem: str, folder: Path, files: dict[str, Path]) -> Problem:
    """The error for a required table with no file."""
    expected = ", ".join(f"{stem}{s}" for s in SUFFIXES)
    present = ", ".join(files) or "none"
    message = f"required table {name} not found in {folder}: expected {expected} (files: {present})"
    return Problem("error", name, f"{stem}.csv", None, (), message)


def _unknown_files(paths: Iterable[Path]) -> list[Problem]:
    """A warning per file that is no contract table; the simulator's truth file is skipped."""
    problems = []
    for path in paths:
        if path.name.partition(".")[0] == TRUTH_FILE_STEM:
            logger.info("ignoring %s: ground truth of the simulator, not CRM input", path.name)
            continue
        tables = ", ".join(TABLES)
        message = f"not a contract table, ignored (tables: {tables}; a mapping can rename files)"
        problems.append(Problem("warning", "", path.name, None, (), message))
    return problems


def _file_problem(name: str, path: Path, message: str, severity: Severity = "error") -> Problem:
    """A problem with a whole file."""
    return Problem(severity, name, path.name, None, (), message)


def _read_file(name: str, path: Path, mapping: Mapping) -> tuple[RawTable | None, list[Problem]]:
    """One table file, renamed per the mapping; None when it cannot be read."""
    if path.is_file() and path.stat().st_size == 0:
        if TABLES[name].required:
            return None, [_file_problem(name, path, f"file is empty (0 bytes); {name} is required")]
        message = "file is empty (0 bytes); read as a table with no rows"
        return None, [_file_problem(name, path, message, "warning")]
    if path.suffix == ".csv":
        frame, rows, problems = _read_csv(name, path)
    else:
        frame, rows, problems = _read_parquet(name, path)
    if frame is None:
        return None, problems
    return map_table(name, path.name, frame, rows, mapping), problems


def _read_parquet(name: str, path: Path) -> tuple[pd.DataFrame | None, np.ndarray, list[Problem]]:
    """A parquet file as typed by its writer; rows are numbered from 1."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        message = f"cannot read the parquet file (truncated or not parquet?): {exc}"
        return None, np.zeros(0, int), [_file_problem(name, path, message)]
    return frame, np.arange(1, len(frame) + 1), []


# CSV --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    """Where each record of a CSV file starts and how many fields it has."""

    lines: np.ndarray  # line number each data record starts on (header = line 1)
    fields: np.ndarray  # number of fields of each data record
    header_fields: int
    ends_with_newline: bool


def _csv_layout(data: bytes) -> _CsvLayout:
    """The record layout of comma-separated bytes; newlines and commas inside quotes are data."""
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    quotes = np.flatnonzero(buf == ord('"'))
    commas = np.flatnonzero(buf == ord(","))
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]  # outside quotes: record ends
    commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
    starts, stops = np.r_[0, ends + 1], np.r_[ends, buf.size]
    lines = np.r_[1, np.searchsorted(newlines, ends) + 2]
    fields = np.asarray(np.searchsorted(commas, stops) - np.searchsorted(commas, starts) + 1)
    length = stops - starts
    first = buf[np.minimum(starts, buf.size - 1)]
    blank = (length == 0) | ((length == 1) & (first == ord("\r")))  # pandas skips blank lines
    lines, fields = lines[~blank], fields[~blank]
    header = int(fields[0]) if fields.size else 0
    return _CsvLayout(lines[1:], fields[1:], header, data.endswith(b"\n"))


def _read_csv(name: str, path: Path) -> tuple[pd.DataFrame | None, np.ndarray, list[Problem]]:
    """A CSV file as text (empty = missing), the line number of each row, and read problems."""
    data = path.read_bytes()
    layout = _csv_layout(data)
    try:
        frame = _parse_csv(data).rename(columns=str.strip)  # " client_id" in a hand-made header
    except (ValueError, pd.errors.ParserWarning) as exc:  # ParserError, UnicodeDecodeError
        return None, np.zeros(0, int), [_csv_error(name, path, layout, exc)]
    problems = _separator_hint(name, path, frame)
    if len(layout.lines) != len(frame):
        message = "unusual quoting: row positions below are data rows + 1, not exact lines"
        problems.append(_file_problem(name, path, message, "warning"))
        return frame, np.arange(2, len(frame) + 2), problems
    length_problems, cut_off = _record_lengths(name, path, layout)
    if cut_off:  # the cut-off row is reported, not validated
        return frame.iloc[:-1], layout.lines[:-1], problems + length_problems
    return frame, layout.lines, problems + length_problems


def _record_lengths(name: str, path: Path, layout: _CsvLayout) -> tuple[list[Problem], bool]:
    """Rows with fewer fields than the header, and whether the last line is cut off."""
    lines, short = layout.lines, layout.fields < layout.header_fields
    problems = []
    cut_off = bool(short.size and short[-1] and not layout.ends_with_newline)
    if cut_off:
        got = int(layout.fields[-1])
        message = (
            f"the last line is cut off ({got} of {layout.header_fields} fields, no line end): "
            "the file looks truncated"
        )
        problems.append(Problem("error", name, path.name, None, (int(lines[-1]),), message))
        lines, short = lines[:-1], short[:-1]
    if short.any():
        message = f"fewer fields than the header's {layout.header_fields} (a missing comma?)"
        problems.insert(
            0, Problem("error", name, path.name, None, tuple(lines[short].tolist()), message)
        )
    return problems, cut_off


def _parse_csv(data: bytes) -> pd.DataFrame:
    """CSV bytes as strings, empty fields as ''; pyarrow (fast) unless a row length is off."""
    try:
        return _parse_csv_with(data, "pyarrow")
    except (ValueError, pa.ArrowException):
        return _parse_csv_with(data, "c")  # keeps short rows, which _read_csv reports


def _parse_csv_with(data: bytes, engine: Literal["pyarrow", "c"]) -> pd.DataFrame:
    """CSV bytes as a frame of strings with one pandas engine; a row too long raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)  # else pandas drops the extras
        return pd.read_csv(
            io.BytesIO(data),
            engine=engine,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            index_col=False if engine == "c" else None,
        )


def _csv_error(name: str, path: Path, layout: _CsvLayout, exc: Exception) -> Problem:
    """The problem for a CSV pandas cannot read, with every over-long line when known."""
    long = layout.lines[layout.fields > layout.header_fields]
    if long.size:
        message = f"more fields than the header's {layout.header_fields} (a stray comma?)"
        return Problem("error", name, path.name, None, tuple(long.tolist()), message)
    if isinstance(exc, UnicodeDecodeError):
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start}); export the file as UTF-8"
        return _file_problem(name, path, message)
    match = re.search(r"line (\d+)", str(exc))
    rows = (int(match.group(1)),) if match else ()
    return Problem("error", name, path.name, None, rows, f"cannot read the CSV file: {exc}")


def _separator_hint(name: str, path: Path, frame: pd.DataFrame) -> list[Problem]:
    """A warning when a one-column header looks separated by ';' or tabs instead of commas."""
    if len(frame.columns) != 1 or not any(s in str(frame.columns[0]) for s in ";\t"):
        return []
    message = "the header looks ';'- or tab-separated; churnguard reads comma-separated files"
    return [_file_problem(name, path, message, "warning")]


# SQL databases ----------------------------------------------------------------------------------


def _read_database(url: str, mapping: Mapping) -> tuple[dict[str, RawTable], list[Problem]]:
    """Every contract table in a database; rows are numbered from 1 in the order read."""
    _check_sqlite_file(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            present = set(inspector.get_table_names()) | set(inspector.get_view_names())
            return _read_database_tables(conn, present, mapping)
    except sa.exc.SQLAlchemyError as exc:
        safe = sa.make_url(url).render_as_string(hide_password=True)
        raise ConnectionError(f"cannot read the CRM database {safe}: {exc}") from exc
    finally:
        engine.dispose()


def _check_sqlite_file(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist (SQLAlchemy would create an empty one)."""
    parsed = sa.make_url(url)
    database = parsed.database or ""
    is_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if is_file and not database.startswith("file:") and not Path(database).exists():
        raise FileNotFoundError(f"SQLite database not found: {database}")


def _read_database_tables(
    conn: sa.Connection, present: set[str], mapping: Mapping
) -> tuple[dict[str, RawTable], list[Problem]]:
    """The contract tables among the database's tables and views."""
    raw: dict[str, RawTable] = {}
    problems: list[Problem] = []
    for name, spec in TABLES.items():
        stem = mapping.source_table(name)
        source = f"db table {stem}"
        if stem in present:
            frame = pd.read_sql_table(stem, conn)
            raw[name] = map_table(name, source, frame, np.arange(1, len(frame) + 1), mapping)
        elif spec.required:
            tables = ", ".join(sorted(present)) or "none"
            message = f"required table {name} not found (database tables: {tables})"
            problems.append(Problem("error", name, source, None, (), message))
    return raw, problems
