"""Scores as columns: the bulk write's input (``ScoreRows``), its loading, and feature digests.

A batch of tens of thousands of scores is written from columns, one sequence per field, instead
of a ``ScoreRecord`` per score: the nested fields arrive as the JSON text the store keeps, so the
write does no per-row conversion beyond pairing the columns up. ``ScoreStore.save_score_rows``
merges them like ``save_scores``; the stored rows are the same.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from churnguard.store.database import json_ready
from churnguard.store.schema import Source, aware_utc, incoming

_CHUNK = 5000  # rows per executemany call
_DIGEST_ROWS = 2048  # rows per block of feature digests: bounds the block (~3 KB a row)
PER_ROW = (
    "client_id",
    "probability",
    "band",
    "revenue_at_risk",
    "monthly_value",
    "account_manager",
    "segment",
    "client_name",
    "feature_digest",
    "drivers",
    "actions",
    "change",
    "curve",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRows:
    """Scores of one as_of and model version, one sequence per field (``ScoreRecord``'s fields).

    ``drivers``, ``actions``, ``change`` and ``curve`` hold the JSON text the store keeps
    (``database.to_json`` of the record's value: ``"null"`` for no curve). Numbers are Python
    floats. Client ids are unique.
    """

    as_of: datetime
    model_version: str
    client_id: Sequence[str]
    probability: Sequence[float]
    band: Sequence[str]
    revenue_at_risk: Sequence[float]
    monthly_value: Sequence[float]
    account_manager: Sequence[str | None]
    segment: Sequence[str | None]
    client_name: Sequence[str | None]
    feature_digest: Sequence[str]
    drivers: Sequence[str]
    actions: Sequence[str]
    change: Sequence[str]
    curve: Sequence[str]

    def __len__(self) -> int:
        return len(self.client_id)

    def check(self) -> None:
        """Raise ValueError when the columns differ in length or a client appears twice."""
        lengths = {name: len(getattr(self, name)) for name in PER_ROW}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"score columns of different lengths: {lengths}")
        if len(set(self.client_id)) != len(self.client_id):
            raise ValueError("a client appears twice in one batch of score rows")


def load_score_rows(
    conn: Connection, rows: ScoreRows, now: datetime, source: Source, first_seq: int = 0
) -> None:
    """Add columns to the scratch table ``incoming``, in the caller's transaction (``seq``, the
    rows' order in the batch, from ``first_seq`` on)."""
    n = len(rows)
    constant: dict[str, Any] = {
        "as_of": aware_utc(rows.as_of),
        "model_version": rows.model_version,
        "created_at": now,
        "source": source,
    }
    per_row: dict[str, Iterable[Any]] = {name: getattr(rows, name) for name in PER_ROW}
    per_row["seq"] = range(first_seq, first_seq + n)
    names = [*constant, *per_row]
    if conn.dialect.name == "postgresql":
        _copy(conn, names, _tuples(constant, per_row, n))
        return
    for name in ("as_of", "created_at"):  # what SQLAlchemy would bind, once per batch
        process = incoming.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        constant[name] = process(constant[name]) if process else constant[name]
    marks = ", ".join("?" for _ in names)
    sql = f"INSERT INTO {incoming.name} ({', '.join(names)}) VALUES ({marks})"
    tuples = _tuples(constant, per_row, n)
    while chunk := list(itertools.islice(tuples, _CHUNK)):
        conn.exec_driver_sql(sql, chunk)


def _tuples(constant: dict[str, Any], per_row: dict[str, Iterable[Any]], n: int) -> Any:
    """The rows as tuples: the constant fields, then the per-row ones."""
    return zip(*(itertools.repeat(v, n) for v in constant.values()), *per_row.values(), strict=True)


def _copy(conn: Connection, names: list[str], tuples: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL's COPY (the JSON fields are text already)."""
    psycopg_connection: Any = conn.connection.driver_connection
    sql = f"COPY {incoming.name} ({', '.join(names)}) FROM STDIN"
    with psycopg_connection.cursor() as cursor, cursor.copy(sql) as copy:
        for row in tuples:
            copy.write_row(row)


# --- feature digests ------------------------------------------------------------------------------


def feature_digest(features: Mapping[str, Any]) -> str:
    """SHA-256 of a client's feature values, independent of their order (NaN and None differ)."""
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), default=json_ready)
    return hashlib.sha256(text.encode()).hexdigest()


def feature_digests(columns: Mapping[str, np.ndarray]) -> list[str]:
    """``feature_digest`` of every row of feature columns, without a dict or a string per row.

    Each column is float64 (NaN: missing, which a row's dict holds as None) or an object array of
    text and None. Each distinct value is written as JSON once, with its key, into a table of
    NUL-padded bytes; a block of rows is then gathered from the tables side by side and the NULs
    dropped (JSON text has none: it escapes them), which leaves each row's text as ``json.dumps``
    writes its dict, one after the other: the same digest.
    """
    names = sorted(columns)
    n = len(columns[names[0]]) if names else 0
    tables = [_value_table(columns[name], name, j) for j, name in enumerate(names)]
    out: list[str] = []
    for start in range(0, n, _DIGEST_ROWS):
        out += _block_digests([(codes[start : start + _DIGEST_ROWS], t) for codes, t in tables])
    return out


def _value_table(values: np.ndarray, name: str, j: int) -> tuple[np.ndarray, np.ndarray]:
    """A column's code per row, and the table of its distinct ``key:value`` texts (NUL-padded
    ASCII bytes, one row per code; the last one, code -1, is the missing value's)."""
    import pandas as pd  # only a bulk write needs it

    values = np.asarray(values)
    if values.dtype == np.float64:  # by bit pattern: 0.0 and -0.0 are written differently
        codes, bits = pd.factorize(values.view(np.int64))
        texts = _float_texts(bits.view(np.float64))
    else:
        codes, labels = pd.factorize(values, use_na_sentinel=True)
        texts = [json.dumps(v, default=json_ready) for v in labels]
    key = ("," if j else "{") + json.dumps(name) + ":"
    try:  # JSON escapes everything else, so the texts are ASCII
        table = np.array([key + t for t in [*texts, "null"]], dtype=bytes)
    except UnicodeEncodeError as exc:
        raise ValueError("feature texts that JSON did not escape to ASCII") from exc
    return codes, table.view(np.uint8).reshape(len(table), table.dtype.itemsize)


def _block_digests(tables: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """The digests of a block of rows: each row's texts side by side, NUL padding dropped."""
    rows = len(tables[0][0])
    width = sum(t.shape[1] for _, t in tables)
    block = np.empty((rows, width + 1), dtype=np.uint8)
    at = 0
    for codes, table in tables:
        block[:, at : at + table.shape[1]] = table[codes]
        at += table.shape[1]
    block[:, width] = ord("}")
    kept = block != 0
    data = memoryview(block[kept])
    ends = np.cumsum(np.count_nonzero(kept, axis=1)).tolist()
    sha256 = hashlib.sha256
    return [sha256(data[a:b]).hexdigest() for a, b in zip([0, *ends[:-1]], ends, strict=True)]


def _float_texts(values: np.ndarray) -> list[str]:
    """Floats as ``json.dumps`` writes them (``float.__repr__``; NaN here means missing)."""
    texts = list(map(float.__repr__, values.tolist()))
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        texts[i] = "null" if np.isnan(values[i]) else json.dumps(float(values[i]))
    return texts


__all__: Sequence[str] = (
    "PER_ROW",
    "ScoreRows",
    "feature_digest",
    "feature_digests",
    "load_score_rows",
)
