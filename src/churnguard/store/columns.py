"""Scores as columns: the bulk write's input (``ScoreRows``), its loading, and feature digests.

A batch of tens of thousands of scores is written from columns, one sequence per field, instead
of a ``ScoreRecord`` per score: the nested fields arrive as the JSON text the store keeps, so the
write does no per-row conversion beyond pairing the columns up. ``ScoreStore.save_score_rows``
merges them like ``save_scores``; the stored rows are the same.

Feature digests (kept in the audit) are of format "f64": "f64:" and 60 hex digits of a SHA-256
over the features' float64 bits (see below); one client's (``feature_digest``, the API path) and a
batch's (``feature_digests``, a batch run and the Spark job) are the same. Digests stored before
are untagged SHA-256 of JSON text: ``digest_matches`` reads both.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection

from churnguard.store.database import json_ready
from churnguard.store.schema import Source, aware_utc, incoming

_CHUNK = 5000  # rows per executemany call
_DIGEST_ROWS = 2048  # rows per block of feature digests: bounds the block (< 1 KB a row)
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
#
# Format "f64" (every digest written since session 5): "f64:" and the first 60 hex digits of a
# SHA-256 (the audit column holds 64 characters) of
#   a header: b"churnguard features f64\n" and the JSON list of the feature names, sorted;
#   one 8-byte cell per feature, in that order: a number's float64 bits (little-endian; 0.0 and
#     -0.0 differ), MISSING for None or NaN (the engine's missing value), TEXT for a text value;
#   then the SHA-256 of each text value's UTF-8 bytes, in the same order.
# A cell says what follows it, so no two inputs share their bytes. Format "json" (older digests,
# untagged 64 hex digits): SHA-256 of the features as sorted, compact JSON text; still readable by
# ``digest_matches``.

FORMAT_TAG = "f64:"
_HEX_DIGITS = 64 - len(FORMAT_TAG)
_MISSING = 0x7FF8_0000_0000_0000  # the quiet NaN; every NaN of a number column is written so
_TEXT = 0x7FF8_0000_0000_0001  # a NaN payload no number is written with
_CELL = struct.Struct("<d")
_MISSING_CELL = _MISSING.to_bytes(8, "little")
_TEXT_CELL = _TEXT.to_bytes(8, "little")


def feature_digest(features: Mapping[str, Any]) -> str:
    """The digest of a client's feature values, independent of their order (format "f64").

    Values are numbers (NaN: missing), text, or None (missing).

    Raises:
        TypeError: a value that is neither a number, text nor None (the feature is named).
    """
    names = sorted(features)
    cells, texts = [], []
    for name in names:
        value = features[name]
        if isinstance(value, str):
            cells.append(_TEXT_CELL)
            texts.append(_text_hash(value))
        elif value is None:
            cells.append(_MISSING_CELL)
        elif isinstance(value, _NUMBERS) and not isinstance(value, bool):
            number = float(value)
            cells.append(_MISSING_CELL if number != number else _CELL.pack(number))
        else:
            raise TypeError(f"feature {name!r}: a {type(value).__name__} is not a feature value")
    h = _header(tuple(names)).copy()
    h.update(b"".join(cells) + b"".join(texts))
    return FORMAT_TAG + h.hexdigest()[:_HEX_DIGITS]


def feature_digests(columns: Mapping[str, np.ndarray]) -> list[str]:
    """``feature_digest`` of every row of feature columns, without a dict or a string per row.

    Each column is numeric (NaN: missing) or an object array of text and None. Rows are hashed in
    blocks of ``_DIGEST_ROWS``: the block's cells side by side, then its text hashes.

    Raises:
        TypeError: a column of other values (named).
    """
    names = sorted(columns)
    n = len(columns[names[0]]) if names else 0
    header = _header(tuple(names))
    kinds = [_column_kind(columns[name], name) for name in names]
    out: list[str] = []
    for start in range(0, n, _DIGEST_ROWS):
        rows = slice(start, start + _DIGEST_ROWS)
        out += _block_digests(header, [kind.block(rows) for kind in kinds])
    return out


def json_feature_digest(features: Mapping[str, Any]) -> str:
    """A digest of format "json" (untagged; written before session 5): SHA-256 of the features as
    sorted, compact JSON text (NaN and None differ)."""
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), default=json_ready)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_format(digest: str) -> str:
    """ "f64" or "json": which function wrote a stored digest.

    Raises:
        ValueError: a text that is neither format.
    """
    if digest.startswith(FORMAT_TAG) and _is_hex(digest[len(FORMAT_TAG) :], _HEX_DIGITS):
        return "f64"
    if _is_hex(digest, 64):
        return "json"
    raise ValueError(
        f"not a feature digest: expected {FORMAT_TAG!r} and {_HEX_DIGITS} hex digits, or 64 hex "
        f"digits (a digest before session 5), got {len(digest)} characters"
    )


def digest_matches(features: Mapping[str, Any], digest: str) -> bool:
    """Whether a stored digest, of either format, is that of these feature values."""
    if digest_format(digest) == "json":
        return json_feature_digest(features) == digest
    return feature_digest(features) == digest


_NUMBERS = (int, float, np.number)
_DIGEST_HEAD = b"churnguard features f64\n"


@functools.lru_cache(maxsize=16)
def _header(names: tuple[str, ...]) -> Any:
    """SHA-256 fed the header of these (sorted) names: each digest continues a copy of it."""
    return hashlib.sha256(_DIGEST_HEAD + json.dumps(list(names)).encode() + b"\n")


def _text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _is_hex(text: str, digits: int) -> bool:
    return len(text) == digits and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class _Column:
    """A feature column ready to be cut into blocks: its numbers, or its texts' codes and hashes."""

    numbers: np.ndarray | None  # float64: a number column
    codes: np.ndarray | None  # a text column: each row's text, -1 when missing
    hashes: np.ndarray | None  # (texts, 32) uint8: the SHA-256 of each text

    def block(self, rows: slice) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The rows' cells (uint64), and for a text column their text hashes and presence."""
        if self.numbers is not None:
            values = self.numbers[rows]
            bits = values.view(np.uint64)
            return np.where(np.isnan(values), np.uint64(_MISSING), bits), None, None
        assert self.codes is not None and self.hashes is not None
        codes = self.codes[rows]
        present = codes >= 0
        cells = np.where(present, np.uint64(_TEXT), np.uint64(_MISSING))
        return cells, self.hashes[np.where(present, codes, 0)], present


def _column_kind(values: np.ndarray, name: str) -> _Column:
    """A column as numbers (float64) or text (object: str or None)."""
    import pandas as pd  # only a bulk write needs it

    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return _Column(np.ascontiguousarray(values, dtype="<f8"), None, None)
    if values.dtype.kind != "O":
        raise TypeError(f"feature {name!r}: a column of {values.dtype} is not numbers or text")
    codes, labels = pd.factorize(values, use_na_sentinel=True)
    if not all(isinstance(label, str) for label in labels):
        raise TypeError(f"feature {name!r}: an object column must hold text and None only")
    hashes = np.frombuffer(b"".join(map(_text_hash, labels)) or bytes(32), np.uint8)
    return _Column(None, codes, hashes.reshape(-1, 32))


def _block_digests(header: Any, parts: list[tuple[np.ndarray, Any, Any]]) -> list[str]:
    """The digests of a block of rows: each row's cells, then its present texts' hashes."""
    cells = np.empty((len(parts[0][0]), len(parts)), dtype="<u8")
    for j, (column, _, _) in enumerate(parts):
        cells[:, j] = column
    fixed = cells.view(np.uint8)
    texts = [(hashes, present) for _, hashes, present in parts if hashes is not None]
    if not texts:
        return _hashed(header, fixed)
    pattern = np.zeros(len(cells), np.int64)  # which texts each row has
    for k, (_, present) in enumerate(texts):
        pattern |= present.astype(np.int64) << k
    out = [""] * len(cells)
    for p in np.unique(pattern).tolist():  # rows with the same texts present have one length
        rows = np.flatnonzero(pattern == p)
        kept = [hashes[rows] for k, (hashes, _) in enumerate(texts) if p >> k & 1]
        for i, digest in zip(rows.tolist(), _hashed(header, fixed[rows], *kept), strict=True):
            out[i] = digest
    return out


def _hashed(header: Any, *parts: np.ndarray) -> list[str]:
    """Each row's digest: a copy of the header's SHA-256 fed the row's bytes of the parts."""
    data = np.concatenate(parts, axis=1) if len(parts) > 1 else np.ascontiguousarray(parts[0])
    width = data.shape[1]
    flat = memoryview(data.reshape(-1).data)
    copy, tag, digits = header.copy, FORMAT_TAG, _HEX_DIGITS
    out = []
    for start in range(0, len(data) * width, width):
        h = copy()
        h.update(flat[start : start + width])
        out.append(tag + h.hexdigest()[:digits])
    return out


__all__: Sequence[str] = (
    "FORMAT_TAG",
    "PER_ROW",
    "ScoreRows",
    "digest_format",
    "digest_matches",
    "feature_digest",
    "feature_digests",
    "json_feature_digest",
    "load_score_rows",
)
