"""Load CRM tables from a folder of CSV/Parquet files or a SQL database, then validate them.

Reading happens here; what the tables must contain, how a mapping renames them and how they are
checked lives in ``contract.py``, ``mapping.py`` and ``validation.py``.
"""

from __future__ import annotations

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
from churnguard.domain.validation import release_unused_memory, validate

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
    data, report = validate(raw, problems, consume=True)
    del raw
    release_unused_memory()
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
        return pd.read_csv(
            path,
            nrows=rows,
            sep=csv_separator(path),
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
        )
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
        release_unused_memory()
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
        frame, rows, problems = _read_csv(name, path, _columns_read(name, mapping))
    else:
        frame, rows, problems = _read_parquet(name, path, _columns_read(name, mapping))
    if frame is None:
        return None, problems
    return map_table(name, path.name, frame, rows, mapping), problems


def _columns_read(name: str, mapping: Mapping) -> set[str]:
    """The source columns whose values a table's mapping can read: every other is only named."""
    entries = [*mapping.columns.get(name, {}).values()]
    entries += [a.source for a in mapping.attributes.get(name, ())]
    sources = {s for e in entries for s in ((e,) if isinstance(e, str) else e.sources)}
    row_filter = mapping.filters.get(name)
    filtered = set(row_filter.columns) if row_filter else set()
    return sources | filtered | set(TABLES[name].column_names)


def _read_parquet(
    name: str, path: Path, needed: set[str]
) -> tuple[pd.DataFrame | None, np.ndarray, list[Problem]]:
    """A parquet file as typed by its writer; rows are numbered from 1.

    Only the ``needed`` columns are read; the others stay as empty placeholders (a byte per row)
    so that their names are still reported, as for a CSV file.
    """
    try:
        names = pq.ParquetDataset(path).schema.names
        duplicated = len(set(names)) < len(names)  # read all, as ever
        read = names if duplicated else [c for c in names if str(c).strip() in needed]
        frame = pd.read_parquet(path, columns=None if read == names else read)
    except (OSError, ValueError, pa.ArrowException) as exc:
        message = f"cannot read the parquet file (truncated or not parquet?): {exc}"
        return None, np.zeros(0, int), [_file_problem(name, path, message)]
    if read != names:
        unread = _unread_column(len(frame))
        frame = pd.DataFrame(
            {c: frame[c] if c in read else unread for c in names}, index=frame.index, copy=False
        )
    return frame, np.arange(1, len(frame) + 1), []


def _unread_column(rows: int) -> pd.Categorical:
    """A placeholder for a column nothing reads: its name is kept, its values are not."""
    return pd.Categorical.from_codes(np.full(rows, -1, np.int8), dtype=_UNREAD)


# CSV --------------------------------------------------------------------------------------------


_BLOCK_BYTES = 1 << 22  # CSV bytes scanned at a time for the layout
_UNREAD: pd.CategoricalDtype = pd.CategoricalDtype([])  # a column nothing reads: no values


@dataclass(frozen=True)
class _CsvLayout:
    """Where each record of a CSV file starts and how many fields it has."""

    lines: np.ndarray  # line number each data record starts on (header = line 1)
    fields: np.ndarray  # number of fields of each data record
    header_fields: int
    ends_with_newline: bool


def _csv_layout(path: Path, separator: str = ",") -> _CsvLayout:
    """The record layout of a CSV file; newlines and separators inside quotes are data.

    The file is scanned in blocks, carrying the quote parity across them, so memory holds a block
    and a few numbers per record, not the file.
    """
    scan = _LayoutScan(separator)
    with path.open("rb") as f:
        buffer = bytearray(_BLOCK_BYTES)
        while n := f.readinto(buffer):
            scan.block(np.frombuffer(buffer, np.uint8, n))
    lines, fields, blank = scan.finish()
    keep = ~blank  # pandas skips blank lines
    lines, fields = lines[keep], fields[keep]
    header = int(fields[0]) if fields.size else 0
    return _CsvLayout(lines[1:], fields[1:], header, scan.last == ord("\n"))


class _LayoutScan:
    """Records of CSV bytes fed block by block: each record's first line, fields and blankness.

    A record ends at a newline outside quotes (an even number of quotes before it).
    """

    def __init__(self, separator: str = ",") -> None:
        self.separator = ord(separator)
        self.parity = self.last = self.size = self.n_separators = self.n_newlines = 0
        self.end, self.end_separators = -1, 0  # the latest record end, and the separators before it
        self.lines: list[np.ndarray] = [np.ones(1, np.int64)]  # the first record: line 1
        self.fields: list[np.ndarray] = []
        self.blank: list[np.ndarray] = []

    def block(self, data: np.ndarray) -> None:
        """Scan the next block of bytes."""
        inside = np.cumsum(data == ord('"'), dtype=np.uint8)  # wraps at 256: parity is kept
        inside += self.parity
        inside &= 1
        newlines = np.flatnonzero(data == ord("\n"))
        is_end = inside[newlines] == 0
        ends = newlines[is_end]
        separators = np.flatnonzero((data == self.separator) & (inside == 0))
        before = np.searchsorted(separators, ends) + self.n_separators  # before each end
        self.fields.append(np.diff(before, prepend=self.end_separators) + 1)
        length = np.diff(ends + self.size, prepend=self.end) - 1
        cr = data[np.maximum(ends - 1, 0)] == ord("\r")
        cr[ends == 0] = self.last == ord("\r")
        self.blank.append((length == 0) | ((length == 1) & cr))
        self.lines.append(np.flatnonzero(is_end) + self.n_newlines + 2)  # the next record's
        if len(ends):
            self.end, self.end_separators = int(ends[-1]) + self.size, int(before[-1])
        self.parity, self.last = int(inside[-1]), int(data[-1])
        self.n_separators += len(separators)
        self.n_newlines += len(newlines)
        self.size += len(data)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first line, fields, blank) of every record, the one after the last newline included."""
        length = self.size - self.end - 1
        blank = length == 0 or (length == 1 and self.last == ord("\r"))
        fields = np.concatenate([*self.fields, [self.n_separators - self.end_separators + 1]])
        return np.concatenate(self.lines), fields, np.concatenate([*self.blank, [blank]])


def _read_csv(
    name: str, path: Path, needed: set[str]
) -> tuple[pd.DataFrame | None, np.ndarray, list[Problem]]:
    """A CSV file as text (empty = missing), the line number of each row, and read problems.

    Only the ``needed`` columns' values are read (see ``_parse_csv``).
    """
    separator = csv_separator(path)
    layout = _csv_layout(path, separator)
    try:
        frame = _parse_csv(path, needed, separator).rename(columns=str.strip)  # " client_id"
    except (ValueError, pd.errors.ParserWarning) as exc:  # ParserError, UnicodeDecodeError
        return None, np.zeros(0, int), [_csv_error(name, path, layout, exc, separator)]
    problems = []
    if separator != ",":
        problems.append(_file_problem(name, path, separator_warning(separator), "warning"))
    if len(layout.lines) != len(frame):
        message = "unusual quoting: row positions below are data rows + 1, not exact lines"
        problems.append(_file_problem(name, path, message, "warning"))
        return frame, np.arange(2, len(frame) + 2), problems
    length_problems, cut_off = _record_lengths(name, path, layout, separator)
    if cut_off:  # the cut-off row is reported, not validated
        return frame.iloc[:-1], layout.lines[:-1], problems + length_problems
    return frame, layout.lines, problems + length_problems


def _record_lengths(
    name: str, path: Path, layout: _CsvLayout, separator: str = ","
) -> tuple[list[Problem], bool]:
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
        missing = _SEPARATOR_NAMES[separator]
        message = f"fewer fields than the header's {layout.header_fields} (a missing {missing}?)"
        problems.insert(
            0, Problem("error", name, path.name, None, tuple(lines[short].tolist()), message)
        )
    return problems, cut_off


def _parse_csv(path: Path, needed: set[str], separator: str = ",") -> pd.DataFrame:
    """A CSV file as strings, empty fields as ''; pyarrow (fast) unless a row length is off.

    pyarrow reads only the ``needed`` columns (it still refuses a row of the wrong length); the
    others, which nothing reads, stay in the frame as empty placeholders (a byte per row), so that
    their names are still reported. The slower fallback reads every column.
    """
    try:
        header = _parse_csv_with(path, "c", separator, nrows=0).columns
        if header.has_duplicates:  # pandas renames them "a.1": read all, as ever
            return _parse_csv_with(path, "pyarrow", separator)
        read = [c for c in header if str(c).strip() in needed]
        frame = _parse_csv_with(path, "pyarrow", separator, usecols=read)
        unread = _unread_column(len(frame))
        return pd.DataFrame(
            {c: frame[c] if c in read else unread for c in header}, index=frame.index, copy=False
        )
    except (ValueError, pa.ArrowException):
        return _parse_csv_with(path, "c", separator)  # keeps short rows: _read_csv reports them


def _parse_csv_with(
    path: Path,
    engine: Literal["pyarrow", "c"],
    separator: str = ",",
    usecols: list[str] | None = None,
    nrows: int | None = None,
) -> pd.DataFrame:
    """A CSV file as a frame of strings with one pandas engine; a row too long raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)  # else pandas drops the extras
        return pd.read_csv(
            path,
            engine=engine,
            sep=separator,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            index_col=False if engine == "c" else None,
            usecols=usecols,
            nrows=nrows,
        )


def _csv_error(
    name: str, path: Path, layout: _CsvLayout, exc: Exception, separator: str = ","
) -> Problem:
    """The problem for a CSV pandas cannot read, with every over-long line when known."""
    long = layout.lines[layout.fields > layout.header_fields]
    if long.size:
        stray = _SEPARATOR_NAMES[separator]
        message = f"more fields than the header's {layout.header_fields} (a stray {stray}?)"
        return Problem("error", name, path.name, None, tuple(long.tolist()), message)
    if isinstance(exc, UnicodeDecodeError):
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start}); export the file as UTF-8"
        return _file_problem(name, path, message)
    match = re.search(r"line (\d+)", str(exc))
    rows = (int(match.group(1)),) if match else ()
    return Problem("error", name, path.name, None, rows, f"cannot read the CSV file: {exc}")


_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def csv_separator(path: Path) -> str:
    """A CSV file's separator, from its header line (``separator_of``)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        return separator_of(f.readline().rstrip("\r\n"))


def separator_of(header: str) -> str:
    """The separator of a CSV header line: a comma, unless the line has none and has semicolons
    or tabs (spreadsheets set to a decimal-comma locale export semicolons)."""
    if "," in header:
        return ","
    return next((s for s in ";\t" if s in header), ",")


def separator_warning(separator: str) -> str:
    """What a read says of a file it reads with another separator than a comma."""
    return f"the header has no comma: read as {_SEPARATOR_NAMES[separator]}-separated"


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
