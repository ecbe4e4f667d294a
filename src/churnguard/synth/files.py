"""Writing the demo folder: one CSV or Parquet file per table, each written atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from churnguard.domain.data import TRUTH_FILE_STEM
from churnguard.synth.timeline import DAY

DATE_COLUMNS = {  # written as dates (YYYY-MM-DD) in CSV; every other timestamp as a datetime
    "clients": ("client_since",),
    "contracts": ("start_date", "end_date", "cancelled_at"),
    "invoices": ("issued_at", "due_at", "paid_at", "disputed_at", "dispute_resolved_at"),
    TRUTH_FILE_STEM: ("as_of",),
}


def arrow_table(df: pd.DataFrame, date_columns: tuple[str, ...] | None) -> pa.Table:
    """An Arrow table of `df`; for CSV (date_columns given) timestamps become ISO 8601 text."""
    columns = {}
    for name, series in df.items():
        column = _arrow_column(series)
        if date_columns is not None and pa.types.is_timestamp(column.type):
            column = _iso(column, name in date_columns)
        columns[str(name)] = column
    return pa.table(columns)


def _arrow_column(series: pd.Series) -> pa.Array:
    """One column as Arrow: timestamps in UTC seconds, categoricals as dictionaries."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        seconds = series.dt.tz_convert(None).to_numpy().astype("M8[s]")
        return pa.array(seconds, type=pa.timestamp("s", tz="UTC"), from_pandas=True)
    return pa.array(series.array, from_pandas=True)


def _iso(column: pa.Array, date: bool) -> pa.Array:
    """2024-03-01 for dates, 2024-03-01T14:05:00Z for datetimes; nulls stay null."""
    seconds = column.cast(pa.int64())
    if date:
        days = pc.divide(seconds, DAY).cast(pa.int32()).cast(pa.date32())
        return days.cast(pa.string())
    text = seconds.cast(pa.timestamp("s")).cast(pa.string())
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T"), "Z", "")


def write_atomic(path: Path, table: pa.Table, fmt: str) -> None:
    """Write `table` to a temp file beside `path`, then move it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if fmt == "csv":
            pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
