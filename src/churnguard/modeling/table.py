"""Flat tables as model inputs: each column typed once in training, cleaned the same way after.

``infer_schema`` types every feature column of the training rows: ``numeric`` (numbers, or text
that reads as numbers once blanks count as missing; thousands grouped by commas, a leading
currency sign and a trailing percent sign allowed: "$1,234.50", "12%" -> 1234.5, 12), ``flag``
(booleans, or yes/no, true/false, y/n, t/f, 1/0 words in any case -> 1/0) or ``categorical``
(other text); all-missing, constant, date and id-like columns are dropped with the reason.
``prepare_rows`` applies the schema to raw rows. ``FlatChurnModel`` is the ``ChurnModel`` whose
inputs are a table's own columns: loading one needs nothing from training.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from churnguard.modeling.model import ChurnModel, align_inputs

logger = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"1", "1.0", "true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"0", "0.0", "false", "f", "no", "n"})

ColumnKind = Literal["numeric", "flag", "categorical"]
KIND_NAMES: tuple[ColumnKind, ...] = ("numeric", "flag", "categorical")


class TableError(ValueError):
    """A flat table that cannot be trained on as given (missing column, bad label, ...)."""


@dataclass(frozen=True)
class TableSchema:
    """How each kept column becomes a feature (in table order), and why others were dropped."""

    kinds: dict[str, ColumnKind] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.kinds)

    @property
    def categorical(self) -> list[str]:
        return self.of_kind("categorical")

    def of_kind(self, kind: ColumnKind) -> list[str]:
        return [c for c, k in self.kinds.items() if k == kind]


@dataclass
class FlatChurnModel(ChurnModel):
    """A ChurnModel over a flat table's columns: raw rows are cleaned by ``schema`` first.

    Inputs are rows as in the table (extra columns ignored): blank strings, yes/no words and unseen
    categories are fine. ``feature_set`` is the neutral ``FeatureSet()``.
    """

    schema: TableSchema = field(default_factory=TableSchema)

    def inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        prepared = prepare_rows(features, self.schema)
        return align_inputs(prepared, self.feature_names, self.categories)


# ---------------------------------------------------------------------------------- columns


def infer_schema(
    rows: pd.DataFrame, max_unique_share: float = 0.5, log: bool = True
) -> TableSchema:
    """Type each column of rows (feature columns only); drop unusable ones with a note (logged
    unless ``log`` is False)."""
    kinds: dict[str, ColumnKind] = {}
    dropped: dict[str, str] = {}
    for name in rows.columns:
        kind, why = _column_kind(rows[name], max_unique_share)
        if kind is None:
            dropped[str(name)] = why
            if log:
                logger.info("column %r left out: %s", name, why)
        else:
            kinds[str(name)] = kind
    if not kinds:
        raise TableError(f"no usable feature column; left out: {dropped}")
    return TableSchema(kinds, dropped)


def _column_kind(values: pd.Series, max_unique_share: float) -> tuple[ColumnKind | None, str]:
    """The kind of one column, or None and why it cannot be a feature."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return None, "a date or time; derive a number from it (e.g. days since) to use it"
    numbers = pd.api.types.is_numeric_dtype(values)  # booleans too: no text to read
    text = values.dropna() if numbers else clean_text(values).dropna()
    distinct = text.nunique()
    if distinct == 0:
        return None, "all missing"
    if distinct == 1:
        return None, f"constant ({str(text.iloc[0])!r})"
    if pd.api.types.is_bool_dtype(values):
        return "flag", ""
    if numbers:
        return "numeric", ""
    if set(text.str.lower().unique()) <= TRUE_WORDS | FALSE_WORDS:
        return "flag", ""
    if _mostly_numbers(text):
        return "numeric", ""
    if distinct > max_unique_share * len(text):
        if _dates(text.drop_duplicates().head(_DATE_SAMPLE)):
            return None, "dates as text; derive a number from them (e.g. days since) to use them"
        return None, f"text with {distinct:,} distinct values in {len(text):,} rows (an id?)"
    return "categorical", ""


def _mostly_numbers(text: pd.Series) -> bool:
    """Whether a text column holds numbers: all its values, or all but a few markers of a missing
    value ("?", "-", "#DIV/0!": at most ``_MARKERS`` distinct texts on at most ``_MARKER_SHARE``
    of the values), which then count as missing (``_to_number`` logs them)."""
    counts = text.value_counts()  # each distinct text once: a category column has few
    numbers = _text_numbers(pd.Series(counts.index, dtype=text.dtype)).to_numpy()
    others = counts[np.isnan(numbers)]
    return others.empty or (
        int(others.sum()) <= _MARKER_SHARE * len(text) and len(others) <= _MARKERS
    )


def clean_numbers(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows with their number columns as float64, read once for a whole table, and notes on what
    counted as missing: infinite values and, in a column of numbers as text, the few texts that
    are no number (each column's note once, not at every fit that prepares the rows)."""
    cleaned, notes = {}, []
    for name in rows.columns:
        values = rows[name]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if numeric or _column_kind(values, 1.0)[0] == "numeric":
            numbers, found = _numbers(values, str(name))
            if not numeric or found:
                cleaned[str(name)] = numbers
            notes += found
    return (rows.assign(**cleaned) if cleaned else rows), notes


_MARKERS = 3  # distinct texts in a number column that may stand for a missing value
_MARKER_SHARE = 0.05  # ... on at most this share of its values

# -$1,234.50, 12%, 1,234: a sign, a currency sign, digits (thousands grouped by commas), a percent
_DECORATED = r"^[+-]?[$€£¥]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d*\.?\d+)%?$"
_DECORATION = str.maketrans("", "", "$€£¥%,")
_DATE_SAMPLE = 200  # distinct values a text column is tried as dates on


def _text_numbers(text: pd.Series) -> pd.Series:
    """Numbers from text (NaN where none); "$1,234.50" and "12%" read as 1234.5 and 12."""
    decorated = text.str.fullmatch(_DECORATED).fillna(False).astype(bool)
    plain = text.where(~decorated, text.str.translate(_DECORATION))
    return pd.to_numeric(plain, errors="coerce").astype(np.float64)


def _dates(text: pd.Series) -> bool:
    """Whether every value reads as a date or time (ISO 8601, or a common day order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": a text that is no date
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    return bool(len(text)) and bool(parsed.notna().all())


def prepare_rows(rows: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The model's feature columns from raw rows: numbers, 1/0 flags and category text."""
    missing = [c for c in schema.kinds if c not in rows.columns]
    if missing:
        raise TableError(f"columns missing from the rows: {missing[:10]}")
    columns = {name: _CONVERT[kind](rows[name], name) for name, kind in schema.kinds.items()}
    return pd.DataFrame(columns, index=rows.index)


def clean_text(values: pd.Series) -> pd.Series:
    """Values as strings without surrounding blanks; blank and missing -> <NA>."""
    return values.astype("string").str.strip().replace({"": pd.NA})


def _to_text(values: pd.Series, name: str) -> pd.Series:
    return clean_text(values).astype(object)


def _to_number(values: pd.Series, name: str) -> pd.Series:
    """float64; blanks are missing, and so are text that is no number and infinite values
    (both logged)."""
    numbers, notes = _numbers(values, name)
    for note in notes:
        logger.warning(note)
    return numbers


def _numbers(values: pd.Series, name: str) -> tuple[pd.Series, list[str]]:
    """``_to_number``'s numbers, and what it counted as missing, in words."""
    notes = []
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype(np.float64)
    else:
        text = clean_text(values)
        numbers = _text_numbers(text)
        notes += _unreadable(name, text, numbers.to_numpy(), "numbers")
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        notes.append(
            f"column {name!r}: {int(infinite.sum())} values are infinite and count as missing"
        )
        numbers = numbers.mask(infinite)
    return numbers, notes


def _to_flag(values: pd.Series, name: str) -> pd.Series:
    """1.0 / 0.0 from booleans and yes/no-like words; other values are missing (logged)."""
    words = clean_text(values).str.lower()
    flags = flag_values(words)
    for note in _unreadable(name, words, flags, "yes/no values"):
        logger.warning(note)
    return pd.Series(flags, index=values.index)


def flag_values(words: pd.Series) -> np.ndarray:
    """1.0 for true words, 0.0 for false words, NaN otherwise (words already lower-case)."""
    true = words.isin(TRUE_WORDS).to_numpy(dtype=bool, na_value=False)
    false = words.isin(FALSE_WORDS).to_numpy(dtype=bool, na_value=False)
    return np.where(true, 1.0, np.where(false, 0.0, np.nan))


def _unreadable(name: str, text: pd.Series, result: np.ndarray, what: str) -> list[str]:
    """A note on the values of a column that are not ``what`` and count as missing (or none)."""
    bad = text.notna().to_numpy() & np.isnan(result)
    if not bad.any():
        return []
    example = text[bad].iloc[0]
    return [
        f"column {name!r}: {int(bad.sum())} values are not {what} (e.g. {example!r}) and count "
        "as missing"
    ]


_CONVERT = {"numeric": _to_number, "flag": _to_flag, "categorical": _to_text}
