"""Flat tables as training data: one row per client (per time with a time column) and a churn
column; reading, checking, and the split (cross-validation folds, or windows in time).

Decisions (numbers are fields of ``FlatOptions``):

* **Columns.** The id, label and time columns are never features; the others are typed by
  ``modeling.table.infer_schema`` on the training rows (dropped ones are logged with the reason).
* **Label.** 1/0, true/false, yes/no, y/n or t/f, in any case; or any two values, one of them
  named as the churned one (``positive``, ``--positive``: "Attrited Customer"); anything else
  is an error. Rows without a label are dropped with a warning. The table needs ``min_rows``
  labelled rows and ``min_class_rows`` of each class.
* **With a time column: out of time.** Test = the latest ``test_fraction`` of rows, validation =
  the ``val_fraction`` before it, train = the rest; the cuts fall between distinct times, so no
  timestamp is in two windows. There is no gap between windows, because a flat table does not say
  how far ahead its label looks.
* **Without a time column: cross-validation** over ``folds`` x ``repeats`` repeated stratified
  folds (fixed seed); ids must then be unique.
* **Reading.** CSV (UTF-8, a byte-order mark allowed; separated by commas, or by semicolons or
  tabs when the header has no comma, which is logged) or Parquet; a file that cannot be read is
  an error that says why. Columns named twice in the header are read as pandas names them
  ("name.1") and logged. Infinite numbers, and in a column of numbers a few texts that are no
  number ("?", "#DIV/0!"; ``modeling.table.clean_numbers``), count as missing: each column's
  count is noted once, in the run's warnings.
* **Leakage check.** Each feature column's strength alone, as a ROC AUC (the larger of AUC and
  1 - AUC): numbers and flags as they are, missing values ranked lowest; a category column by
  its category's churn rate out of fold (missing a category of its own). A column that alone
  separates churners from the rest (``leak_drop_auc``, 0.99) is left out before training and
  named in the run's warnings: no churn signal is that clean unless the column is written at or
  after churn (a "Churn Reason", a "Customer Status", the label under another name), and a model
  that leans on it fails on every client still with you. ``keep`` (``--keep NAME``) keeps one
  anyway. A column at ``leak_auc`` (0.95) or above is kept with a warning.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

from churnguard.domain.data import separator_of
from churnguard.modeling.table import (
    FlatChurnModel,
    TableError,
    TableSchema,
    clean_numbers,
    clean_text,
    flag_values,
    infer_schema,
    prepare_rows,
)
from churnguard.training.dataset import NotEnoughDataError, TrainOptions

logger = logging.getLogger(__name__)

CV_NOTE = "no time column: metrics are from repeated stratified cross-validation, not out-of-time"
OUT_OF_TIME_NOTE = "out-of-time: trained on the earliest rows, validated and tested on later rows"
FLAT_MODE = "flat table"
_NAME_CHARACTERS = frozenset('",:[]{}')


@dataclass(frozen=True)
class FlatOptions:
    """What flat-table training does; the defaults are the documented choices (module docstring).

    ``train`` carries the settings shared with CRM mode: seed, experiment, n_boot, gate_tolerance,
    and lightgbm_min_train_events (its horizon and windows are unused).
    """

    train: TrainOptions = field(default_factory=TrainOptions)
    horizon_days: int = 0  # 0: whatever horizon the label column has; churnguard cannot know it
    folds: int = 5
    repeats: int = 3
    inner_folds: int = 5
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    min_rows: int = 100
    min_class_rows: int = 20
    max_unique_share: float = 0.5
    leak_auc: float = 0.95
    leak_drop_auc: float = 0.99
    keep: tuple[str, ...] = ()  # columns the leakage check would leave out, kept (--keep)
    positive: str | None = None  # the label value meaning churned, for a label of other words
    workers: int | None = None  # processes fitting CV folds (``resampling.cross_validate``)


@dataclass(frozen=True)
class TableData:
    """A labelled flat table: feature rows (no id, label or time column), labels, times."""

    source: str
    label: str
    id_column: str
    time_column: str | None
    rows: pd.DataFrame
    y: np.ndarray
    times: pd.Series | None
    digest: str
    unlabelled: int = 0
    leaked: dict[str, str] = field(default_factory=dict)  # columns left out: why
    notes: list[str] = field(default_factory=list)  # values read as missing, in words
    strengths: dict[str, float] = field(default_factory=dict)  # ``column_strengths``

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())


def read_table(source: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file (by suffix) as a DataFrame (see "Reading" above).

    Raises:
        FileNotFoundError: no such file.
        TableError: a file that is not readable as its kind (not UTF-8, not CSV, not Parquet).
    """
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}: give a CSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise TableError(f"cannot read {path.name} as Parquet: {exc}") from None
    try:
        separator = _separator(path)
        return pd.read_csv(path, low_memory=False, encoding="utf-8-sig", sep=separator)
    except UnicodeDecodeError as exc:
        raise TableError(
            f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}); export it as UTF-8"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise TableError(f"cannot read {path.name} as CSV: {exc}") from None


def _separator(path: Path) -> str:
    """The CSV's separator: a comma, unless the header has none and has semicolons or tabs."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = f.readline().rstrip("\r\n")
    separator = separator_of(header)
    if separator != ",":
        logger.info("%s: the header has no comma; read as %r-separated", path.name, separator)
    names = next(csv.reader([header], delimiter=separator), [])
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # pandas reads the second "a" as "a.1", the third as "a.2", ...
        renamed = [f"{n}.{k}" for n in repeated[:10] for k in range(1, names.count(n))]
        logger.warning(
            "%s: the header names %s more than once; the repeats are read as %s",
            path.name,
            repeated[:10],
            renamed,
        )
    return separator


def load_table(
    source: str | Path | pd.DataFrame,
    label: str,
    id_column: str,
    time_column: str | None,
    options: FlatOptions,
) -> TableData:
    """Read and check a flat table: columns present, label readable, enough rows of each class."""
    frame = source if isinstance(source, pd.DataFrame) else read_table(source)
    frame = frame.rename(columns=str)
    _check_columns(frame, label, id_column, time_column)
    y = parse_label(frame[label], label, options.positive)
    labelled = ~np.isnan(y)
    if not labelled.all():
        logger.warning("%s rows without a %r label are left out", int((~labelled).sum()), label)
    kept = frame.loc[labelled].reset_index(drop=True)
    if time_column is None:
        _check_unique_ids(kept[id_column], id_column)
    times = parse_times(kept[time_column], time_column) if time_column else None
    rows, notes = clean_numbers(
        kept.drop(columns=[c for c in (label, id_column, time_column) if c])
    )
    for note in notes:
        logger.warning(note)
    unknown = [c for c in options.keep if c not in rows.columns]
    if unknown:
        raise TableError(f"--keep names {unknown[:5]}: not feature columns of the table")
    labels = y[labelled].astype(np.int64)
    check_enough_rows(labels, label, options)
    schema = infer_schema(rows, options.max_unique_share, log=False)
    strengths = column_strengths(rows, labels, schema, options.train.seed)
    leaked = leaking_columns(strengths, options)
    if len(leaked) == len(schema.kinds):  # no usable column is left
        raise TableError(
            f"every feature column alone separates churners from the rest: {leaked}; such columns "
            "are written at or after churn. Add columns known before it (--keep NAME to use one)"
        )
    return TableData(
        source=str(source) if not isinstance(source, pd.DataFrame) else "DataFrame",
        label=label,
        id_column=id_column,
        time_column=time_column,
        rows=rows.drop(columns=list(leaked)),
        y=labels,
        times=times,
        digest=table_digest(frame),
        unlabelled=int((~labelled).sum()),
        leaked=leaked,
        notes=notes,
        strengths=strengths,
    )


def _check_columns(frame: pd.DataFrame, label: str, id_column: str, time: str | None) -> None:
    named = [c for c in (label, id_column, time) if c is not None]
    missing = [c for c in named if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, list(frame.columns)[:40]))
        raise TableError(f"column(s) {missing} not in the table; it has: {shown}")
    if len(set(named)) < len(named):
        raise TableError(f"the label, id and time columns must differ, got {named}")
    awkward = [c for c in frame.columns if c not in named and set(c) & _NAME_CHARACTERS]
    if awkward:
        raise TableError(
            f"rename the columns {awkward[:10]}: LightGBM cannot take the characters "
            f"{''.join(sorted(_NAME_CHARACTERS))} in a feature name"
        )


def _check_unique_ids(ids: pd.Series, name: str) -> None:
    repeated = ids[ids.duplicated(keep=False)]
    if len(repeated):
        raise TableError(
            f"{repeated.nunique()} ids in {name!r} appear more than once (e.g. "
            f"{repeated.iloc[0]!r}); without a time column each client must have one row, or "
            "cross-validation would test on clients it trained on. Give --time for snapshots."
        )


def parse_label(values: pd.Series, name: str, positive: str | None = None) -> np.ndarray:
    """0/1 churn labels as float64 (NaN where missing) from 1/0, true/false or yes/no values,
    or from two values of which ``positive`` means churned (case and blanks aside)."""
    words = clean_text(values).str.lower()
    if positive is not None:
        return _named_label(words, name, positive.strip().lower())
    label = flag_values(words)
    unknown = words.notna().to_numpy() & np.isnan(label)
    if unknown.any():
        found = sorted(set(words[unknown]))[:5]
        raise TableError(
            f"label column {name!r} must hold 1/0, true/false or yes/no values; found {found}. "
            "For a label of two other values, name the churned one with --positive"
        )
    return label


def _named_label(words: pd.Series, name: str, positive: str) -> np.ndarray:
    """1 where the label is ``positive``, 0 where it is the one other value, NaN where missing."""
    found = sorted(set(words.dropna()))
    if positive not in found:
        raise TableError(
            f"label column {name!r} has no value {positive!r} (--positive); it holds {found[:5]}"
        )
    if len(found) > 2:
        raise TableError(
            f"label column {name!r} holds {len(found)} values ({found[:5]}); with --positive it "
            "must hold two: the churned one and the one for clients who stayed"
        )
    given = words.notna().to_numpy()
    return np.where(given, (words == positive).to_numpy(dtype=bool, na_value=False), np.nan)


def parse_times(values: pd.Series, name: str) -> pd.Series:
    """A time column as naive UTC datetimes, or as numbers (only the order matters)."""
    if values.isna().any():
        raise TableError(
            f"time column {name!r} is missing on {int(values.isna().sum())} rows; fill or drop them"
        )
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(np.float64)
    try:
        return pd.to_datetime(values, utc=True, format="mixed").dt.tz_localize(None)
    except (ValueError, TypeError) as exc:
        raise TableError(f"time column {name!r} holds values that are no dates: {exc}") from None


def check_enough_rows(y: np.ndarray, label: str, options: FlatOptions) -> None:
    """Raise unless both classes are present with min_class_rows each, in min_rows rows."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if not len(y):
        raise TableError(f"the table has no rows with a {label!r} label: nothing to learn from")
    if positives == 0 or negatives == 0:
        only = "churned" if negatives == 0 else "not churned"
        raise TableError(
            f"label column {label!r} has one class only (every row {only}): there is nothing to "
            "learn from. Include both clients who left and clients who stayed."
        )
    if len(y) < options.min_rows or min(positives, negatives) < options.min_class_rows:
        raise NotEnoughDataError(
            f"{len(y)} labelled rows with {positives} churned and {negatives} not: an honest model "
            f"needs at least {options.min_rows} rows and {options.min_class_rows} of each class."
        )


def table_digest(frame: pd.DataFrame) -> str:
    """sha256 over the column names, dtypes and values (row order matters)."""
    h = hashlib.sha256(str([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------- split


def cv_splits(
    y: np.ndarray, folds: int = 5, repeats: int = 3, seed: int = 7
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(repeat, fold, train rows, test rows) of repeated stratified k-fold with a fixed seed."""
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    found = splitter.split(np.zeros((len(y), 1)), y)
    return [(i // folds, i % folds, train, test) for i, (train, test) in enumerate(found)]


def split_by_time(
    times: pd.Series, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, validation, test): latest test_fraction of rows, the val_fraction
    before it, the rest; cut between distinct times, so no time falls in two windows."""
    t = times.to_numpy()
    ordered = np.sort(t)
    n = len(ordered)
    test_start = ordered[min(n - 1, int(n * (1 - test_fraction)))]
    val_start = ordered[max(0, int(n * (1 - test_fraction - val_fraction)))]
    train, test = t < val_start, t >= test_start
    validation = ~train & ~test
    if not (train.any() and validation.any() and test.any()):
        raise NotEnoughDataError(
            f"the time column has too few distinct values ({len(np.unique(t))}) for train, "
            "validation and test windows with no shared time"
        )
    return train, validation, test


def check_windows(y: np.ndarray, masks: tuple[np.ndarray, ...], options: FlatOptions) -> None:
    """Raise unless train has min_class_rows of each class and validation and test both classes."""
    train = y[masks[0]]
    if min(train.sum(), len(train) - train.sum()) < options.min_class_rows:
        raise NotEnoughDataError(
            f"the training window has {int(train.sum())} churned and "
            f"{int(len(train) - train.sum())} other rows; it needs {options.min_class_rows} of "
            "each. Use more rows, or leave out --time to cross-validate."
        )
    for name, mask in zip(("validation", "test"), masks[1:], strict=True):
        if len(np.unique(y[mask])) < 2:
            raise NotEnoughDataError(
                f"the {name} window has rows of one class only, so the model cannot be "
                f"{'calibrated' if name == 'validation' else 'evaluated'}; use more rows"
            )


def windows_table(times: pd.Series, y: np.ndarray, masks: tuple[np.ndarray, ...]) -> pd.DataFrame:
    rows = [
        {
            "window": name,
            "start": times[mask].min(),
            "end": times[mask].max(),
            "rows": int(mask.sum()),
            "churned": int(y[mask].sum()),
        }
        for name, mask in zip(("train", "validation", "test"), masks, strict=True)
    ]
    return pd.DataFrame(rows)


def leaking_columns(strengths: dict[str, float], options: FlatOptions) -> dict[str, str]:
    """The columns that alone separate churners from the rest (``leak_drop_auc``; strengths from
    ``column_strengths``), with why they are left out; those named in ``options.keep`` stay,
    with a warning."""
    leaked = {}
    for name, strength in strengths.items():
        if strength < options.leak_drop_auc:
            continue
        if name in options.keep:
            logger.warning(
                "column %r kept (--keep) though it alone separates churners (ROC AUC %.3f)",
                name,
                strength,
            )
            continue
        leaked[name] = (
            f"alone separates churners from the rest (ROC AUC {strength:.3f}): written at or "
            f"after churn? --keep {name} to use it"
        )
        logger.warning("column %r left out: %s", name, leaked[name])
    return leaked


def column_strengths(
    rows: pd.DataFrame, y: np.ndarray, schema: TableSchema, seed: int
) -> dict[str, float]:
    """Each typed column's ROC AUC alone, as the larger of AUC and 1 - AUC (0.5: no signal).

    Numbers and flags rank as they are, missing values lowest; a category column ranks by its
    category's churn rate in the other folds (5 stratified folds; missing values a category of
    their own; a category unseen there gets the overall rate), so a column of many rare values
    is not rewarded for memorising them.
    """
    prepared = prepare_rows(rows, schema)
    out = {}
    for name, kind in schema.kinds.items():
        if kind == "categorical":
            values = _out_of_fold_rates(prepared[name], y, seed)
        else:
            numbers = prepared[name].to_numpy(np.float64)
            if np.isnan(numbers).all():
                continue
            values = np.where(np.isnan(numbers), np.nanmin(numbers) - 1, numbers)
        auc = float(roc_auc_score(y, values))
        out[name] = max(auc, 1 - auc)
    return out


def _out_of_fold_rates(values: pd.Series, y: np.ndarray, seed: int) -> np.ndarray:
    """Each row's category churn rate among the other folds' rows (smoothed by one row at the
    overall rate)."""
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    k = int(codes.max()) + 1
    rates = np.empty(len(y))
    folds = StratifiedKFold(_STRENGTH_FOLDS, shuffle=True, random_state=seed)
    for fit, held in folds.split(codes, y):
        prior = y[fit].mean()
        churned = np.bincount(codes[fit], weights=y[fit], minlength=k)
        seen = np.bincount(codes[fit], minlength=k)
        rates[held] = ((churned + prior) / (seen + 1))[codes[held]]
    return rates


_STRENGTH_FOLDS = 5


def leak_warnings(data: TableData, schema: TableSchema, options: FlatOptions) -> list[str]:
    """The model's columns that alone rank churners with ROC AUC >= ``leak_auc`` (the strengths
    measured as the table was loaded), as warnings."""
    out = [
        f"column {name!r} alone ranks churners with ROC AUC {strength:.3f}: check that it is "
        "known before a client churns (leakage)"
        for name, strength in data.strengths.items()
        if name in schema.kinds and strength >= options.leak_auc
    ]
    for line in out:
        logger.warning(line)
    return out


def input_example(data: TableData, model: FlatChurnModel) -> pd.DataFrame:
    """Five rows as callers send them: numeric columns as float64, other columns as in the table.

    Numbers go in as float64 so the pyfunc signature accepts integers and missing values alike.
    """
    rows = data.rows[model.feature_names].head(5)
    numeric = model.schema.of_kind("numeric")
    cleaned = prepare_rows(rows, TableSchema({c: "numeric" for c in numeric}))
    texts = {c: rows[c].astype(object) for c in rows.columns if c not in numeric}
    return rows.assign(**cleaned, **texts)
