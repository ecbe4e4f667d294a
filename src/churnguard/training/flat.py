"""Flat-table training: one row per client with a churn column -> the same calibrated, tracked and
registered model as CRM mode (``churnguard train --table FILE --label COLUMN --id COLUMN``).

Many users have no CRM history, only a table: one row per client, some attributes and a churn
column. ``train_table`` trains on it with CRM mode's candidates (``make_logistic``,
``make_lightgbm``, the same grids), selection rule (``select``), calibrators, metrics
(``evaluate`` with bootstrap intervals), MLflow layout, registry aliases and promotion rule
(``decide_promotion``). The packaged model is a ``FlatChurnModel``: a ``ChurnModel`` whose inputs
are the table's own columns, cleaned by the column schema learned in training before they reach
the estimator. Its ``feature_set`` is the neutral ``FeatureSet()``: it declares no CRM features.

Decisions (numbers are fields of ``FlatOptions``):

* **Columns.** The id, label and time columns are never features. Every other column is typed on
  the training rows: ``numeric`` (numbers, or text that reads as numbers once blanks count as
  missing, like Telco's TotalCharges), ``flag`` (booleans, or text whose values are all among
  yes/no, true/false, y/n, t/f, 1/0 in any case -> 1/0) or ``categorical`` (other text). Dropped,
  with a logged note: all-missing and constant columns, dates and times (derive a number such as
  days since first, then it is used), and text with more than ``max_unique_share`` distinct values
  per filled row (names, e-mails, free text). When scoring, blanks are missing, unknown flag words
  and text that is no number count as missing (logged), unseen categories count as missing.
* **Label.** 1/0, true/false, yes/no, y/n or t/f, in any case; anything else is an error. Rows
  without a label are dropped with a warning. The table needs ``min_rows`` labelled rows and
  ``min_class_rows`` of each class.
* **With a time column: out of time.** Test = the latest ``test_fraction`` of rows, validation =
  the ``val_fraction`` before it, train = the rest; the cuts fall between distinct times, so no
  timestamp is in two windows. Then CRM mode's steps: candidates fitted on train (LightGBM
  early-stopped on validation), the best validation ROC AUC chosen, calibrated on validation,
  evaluated on test with bootstrap intervals. There is no gap between windows, because a flat table
  does not say how far ahead its label looks.
* **Without a time column: cross-validation.** One recipe, ``fit_table_model``, turns rows into a
  calibrated model. (1) Each candidate gets out-of-fold raw probabilities over ``inner_folds``
  stratified folds of the rows; LightGBM is early-stopped on the held-out fold and keeps the median
  tree count. (2) The best out-of-fold ROC AUC is chosen. (3) A calibrator is fitted on the chosen
  candidate's out-of-fold probabilities: Platt, or isotonic from ``isotonic_min_positives``
  positives. (4) The chosen candidate is refitted on all the rows. The reported metrics come from
  running that whole recipe inside the training part of each of ``folds`` x ``repeats`` repeated
  stratified folds (fixed seed) and scoring the held-out part: mean, std, min and max over the
  folds. Plots, tables and 90% bootstrap intervals use the first repeat's pooled out-of-fold
  predictions. The registered model is the same recipe run on all rows. Ids must be unique.
* **Promotion gate.** The current champion is compared only when it is a flat-table model for the
  same label and horizon. Out of time, it is re-scored on this run's test rows, as in CRM mode.
  With cross-validation no held-out rows exist that the champion has not seen. So its recorded
  cross-validated metrics are compared when it was trained on the same data (same digest), and
  otherwise it is not comparable (``churnguard promote`` switches by hand). A model that is not
  comparable never replaces the champion automatically, so a CRM champion stays. As in CRM mode,
  a champion trained on an export that held this run's test rows has seen them, so the gate errs
  towards keeping it.
* **Leakage check.** A numeric or flag column that alone ranks churners with ROC AUC >=
  ``leak_auc`` (missing values ranked lowest) is reported as a warning, because it is often known
  only after churn (a cancellation date, a "days since cancelled").
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from lightgbm import early_stopping
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

from churnguard.features.engine import FeatureSet
from churnguard.modeling.linear import make_logistic
from churnguard.modeling.model import (
    Calibrator,
    ChurnModel,
    Estimator,
    ModelKind,
    align_inputs,
)
from churnguard.training.evaluate import (
    bootstrap_intervals,
    calibration_table,
    evaluate,
    lift_table,
    plot_calibration,
    plot_feature_importance,
    plot_gains,
    plot_precision_recall,
    plot_roc,
    summarize_backtest,
)
from churnguard.training.train import (
    EARLY_STOPPING_ROUNDS,
    LOGISTIC_MAX_ROWS,
    REPORTED,
    Candidate,
    Evaluation,
    NotEnoughDataError,
    Promotion,
    TrainOptions,
    apply_promotion,
    calibrate,
    calibrate_raw,
    candidates_table,
    decide_promotion,
    decision_line,
    make_lightgbm,
    package_version,
    recipes,
    select,
    slug,
    text_table,
)

if TYPE_CHECKING:
    from churnguard.modeling.registry import Registry, RunLog

logger = logging.getLogger(__name__)

CV_NOTE = "no time column: metrics are from repeated stratified cross-validation, not out-of-time"
OUT_OF_TIME_NOTE = "out-of-time: trained on the earliest rows, validated and tested on later rows"
TRUE_WORDS = frozenset({"1", "1.0", "true", "t", "yes", "y"})
FALSE_WORDS = frozenset({"0", "0.0", "false", "f", "no", "n"})
FLAT_MODE = "flat table"
_NAME_CHARACTERS = frozenset('",:[]{}')

ColumnKind = Literal["numeric", "flag", "categorical"]


class TableError(ValueError):
    """A flat table that cannot be trained on as given (missing column, bad label, ...)."""


@dataclass(frozen=True)
class FlatOptions:
    """What flat-table training does; the defaults are the documented choices (module docstring).

    ``train`` carries the settings shared with CRM mode: seed, experiment, n_boot, gate_tolerance,
    lightgbm_min_train_events and isotonic_min_positives (its horizon and windows are unused).
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

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())


@dataclass(frozen=True)
class TableFit:
    """A calibrated model fitted by the flat-table recipe, with its candidates."""

    model: FlatChurnModel
    candidates: list[Candidate]
    chosen: Candidate


@dataclass(frozen=True)
class TableResult:
    """Everything a flat-table training run produced."""

    data: TableData
    fit: TableFit
    evaluation: Evaluation  # the test window, or the first repeat's pooled out-of-fold predictions
    folds: pd.DataFrame  # metrics per cross-validation fold (empty out of time)
    windows: pd.DataFrame  # start, end, rows and positives per time window (empty without time)
    promotion: Promotion
    warnings: list[str] = field(default_factory=list)
    run_id: str = ""
    version: int | None = None
    local_copy: Path | None = None

    @property
    def model(self) -> FlatChurnModel:
        return self.fit.model

    @property
    def cross_validated(self) -> bool:
        return self.data.time_column is None

    @property
    def metrics(self) -> dict[str, float]:
        """Headline metrics: the test window's, or the mean over cross-validation folds."""
        if self.cross_validated:
            return {k: float(self.folds[k].mean()) for k in REPORTED}
        return {k: self.evaluation.metrics[k] for k in REPORTED}


# ---------------------------------------------------------------------------------- reading


def read_table(source: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file (by suffix) as a DataFrame."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}: give a CSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, low_memory=False)


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
    y = parse_label(frame[label], label)
    labelled = ~np.isnan(y)
    if not labelled.all():
        logger.warning("%s rows without a %r label are left out", int((~labelled).sum()), label)
    kept = frame.loc[labelled].reset_index(drop=True)
    if time_column is None:
        _check_unique_ids(kept[id_column], id_column)
    times = parse_times(kept[time_column], time_column) if time_column else None
    data = TableData(
        source=str(source) if not isinstance(source, pd.DataFrame) else "DataFrame",
        label=label,
        id_column=id_column,
        time_column=time_column,
        rows=kept.drop(columns=[c for c in (label, id_column, time_column) if c]),
        y=y[labelled].astype(np.int64),
        times=times,
        digest=table_digest(frame),
        unlabelled=int((~labelled).sum()),
    )
    check_enough_rows(data.y, label, options)
    return data


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


def parse_label(values: pd.Series, name: str) -> np.ndarray:
    """0/1 churn labels as float64 (NaN where missing) from 1/0, true/false or yes/no values."""
    words = _clean_text(values).str.lower()
    label = _flag_values(words)
    unknown = words.notna().to_numpy() & np.isnan(label)
    if unknown.any():
        found = sorted(set(words[unknown]))[:5]
        raise TableError(
            f"label column {name!r} must hold 1/0, true/false or yes/no values; found {found}"
        )
    return label


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


# ---------------------------------------------------------------------------------- columns


def infer_schema(rows: pd.DataFrame, max_unique_share: float = 0.5) -> TableSchema:
    """Type each column of rows (feature columns only); drop unusable ones with a logged note."""
    kinds: dict[str, ColumnKind] = {}
    dropped: dict[str, str] = {}
    for name in rows.columns:
        kind, why = _column_kind(rows[name], max_unique_share)
        if kind is None:
            dropped[str(name)] = why
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
    text = _clean_text(values).dropna()
    distinct = text.nunique()
    if distinct == 0:
        return None, "all missing"
    if distinct == 1:
        return None, f"constant ({text.iloc[0]!r})"
    if pd.api.types.is_bool_dtype(values):
        return "flag", ""
    if pd.api.types.is_numeric_dtype(values):
        return "numeric", ""
    if set(text.str.lower().unique()) <= TRUE_WORDS | FALSE_WORDS:
        return "flag", ""
    if pd.to_numeric(text, errors="coerce").notna().all():
        return "numeric", ""
    if distinct > max_unique_share * len(text):
        return None, f"text with {distinct:,} distinct values in {len(text):,} rows (an id?)"
    return "categorical", ""


def prepare_rows(rows: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The model's feature columns from raw rows: numbers, 1/0 flags and category text."""
    missing = [c for c in schema.kinds if c not in rows.columns]
    if missing:
        raise TableError(f"columns missing from the rows: {missing[:10]}")
    columns = {name: _CONVERT[kind](rows[name], name) for name, kind in schema.kinds.items()}
    return pd.DataFrame(columns, index=rows.index)


def _clean_text(values: pd.Series) -> pd.Series:
    """Values as strings without surrounding blanks; blank and missing -> <NA>."""
    return values.astype("string").str.strip().replace({"": pd.NA})


def _to_text(values: pd.Series, name: str) -> pd.Series:
    return _clean_text(values).astype(object)


def _to_number(values: pd.Series, name: str) -> pd.Series:
    """float64; blanks are missing, and so is text that is no number (logged)."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64)
    text = _clean_text(values)
    numbers = pd.to_numeric(text, errors="coerce").astype(np.float64)
    _warn_unreadable(name, text, numbers.to_numpy(), "numbers")
    return numbers


def _to_flag(values: pd.Series, name: str) -> pd.Series:
    """1.0 / 0.0 from booleans and yes/no-like words; other values are missing (logged)."""
    words = _clean_text(values).str.lower()
    flags = _flag_values(words)
    _warn_unreadable(name, words, flags, "yes/no values")
    return pd.Series(flags, index=values.index)


def _flag_values(words: pd.Series) -> np.ndarray:
    """1.0 for true words, 0.0 for false words, NaN otherwise (words already lower-case)."""
    true = words.isin(TRUE_WORDS).to_numpy(dtype=bool, na_value=False)
    false = words.isin(FALSE_WORDS).to_numpy(dtype=bool, na_value=False)
    return np.where(true, 1.0, np.where(false, 0.0, np.nan))


def _warn_unreadable(name: str, text: pd.Series, result: np.ndarray, what: str) -> None:
    bad = text.notna().to_numpy() & np.isnan(result)
    if bad.any():
        example = text[bad].iloc[0]
        logger.warning(
            "column %r: %s values are not %s (e.g. %r) and count as missing",
            name,
            int(bad.sum()),
            what,
            example,
        )


_CONVERT = {"numeric": _to_number, "flag": _to_flag, "categorical": _to_text}


def leak_warnings(rows: pd.DataFrame, y: np.ndarray, schema: TableSchema, auc: float) -> list[str]:
    """Numeric and flag columns that alone rank churners with ROC AUC >= auc (missing lowest)."""
    prepared = prepare_rows(rows, schema)
    out = []
    for name in schema.of_kind("numeric") + schema.of_kind("flag"):
        values = prepared[name].to_numpy()
        if np.isnan(values).all():
            continue
        filled = np.where(np.isnan(values), np.nanmin(values) - 1, values)
        strength = float(roc_auc_score(y, filled))
        strength = max(strength, 1 - strength)
        if strength >= auc:
            out.append(
                f"column {name!r} alone ranks churners with ROC AUC {strength:.3f}: check that it "
                "is known before a client churns (leakage)"
            )
    for line in out:
        logger.warning(line)
    return out


# ---------------------------------------------------------------------------------- fitting


def fit_table_model(
    rows: pd.DataFrame, y: np.ndarray, options: FlatOptions | None = None
) -> TableFit:
    """The flat-table recipe on rows (feature columns only): out-of-fold selection and
    calibration, then the chosen candidate refitted on all rows (module docstring)."""
    options = options or FlatOptions()
    seed = options.train.seed
    schema = infer_schema(rows, options.max_unique_share)
    X, categories = _design(rows, schema)
    inner = StratifiedKFold(options.inner_folds, shuffle=True, random_state=seed)
    splits = list(inner.split(X, y))
    candidates, oof = [], {}
    for name, kind, params in recipes(int(y.sum()), options.train):
        raw, trees = _out_of_fold(kind, params, X, y, splits, schema.categorical, seed)
        fitted = {**params, "n_estimators": int(np.median(trees))} if trees else dict(params)
        candidates.append(Candidate(name, kind, fitted, None, evaluate(y, raw)))
        oof[name] = raw
    chosen = select(candidates)
    calibrator = calibrate_raw(oof[chosen.name], y, options.train)
    estimator, _ = _fit(chosen.kind, chosen.params, X, y, schema.categorical, seed)
    model = _package(schema, categories, chosen.kind, estimator, calibrator, options)
    return TableFit(model, candidates, replace(chosen, estimator=estimator))


def fit_on_windows(
    rows: pd.DataFrame,
    y: np.ndarray,
    train: np.ndarray,
    validation: np.ndarray,
    options: FlatOptions,
) -> TableFit:
    """CRM mode's steps on time windows: fit on train, select and calibrate on validation."""
    seed = options.train.seed
    schema = infer_schema(rows[train], options.max_unique_share)
    X_tr, categories = _design(rows[train], schema)
    X_val, _ = _design(rows[validation], schema, categories)
    y_tr, y_val = y[train], y[validation]
    candidates = []
    for name, kind, params in recipes(int(y_tr.sum()), options.train):
        est, trees = _fit(kind, params, X_tr, y_tr, schema.categorical, seed, (X_val, y_val))
        fitted = {**params, "best_iteration": trees} if trees else dict(params)
        metrics = evaluate(y_val, _raw(est, X_val))
        candidates.append(Candidate(name, kind, fitted, est, metrics))
    chosen = select(candidates)
    calibrator = calibrate(chosen.estimator, X_val, y_val, options.train)
    model = _package(schema, categories, chosen.kind, chosen.estimator, calibrator, options)
    return TableFit(model, candidates, chosen)


def _design(
    rows: pd.DataFrame, schema: TableSchema, categories: dict[str, list[str]] | None = None
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Estimator inputs from raw rows; categories from these rows unless given."""
    prepared = prepare_rows(rows, schema)
    if categories is None:
        categories = {
            c: sorted(map(str, prepared[c].dropna().unique())) for c in schema.categorical
        }
    return align_inputs(prepared, schema.columns, categories), categories


def _fit(
    kind: ModelKind,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    seed: int,
    stop_on: tuple[pd.DataFrame, np.ndarray] | None = None,
) -> tuple[Estimator, int | None]:
    """Fit one recipe; LightGBM early-stops on stop_on when given (returns its tree count)."""
    if kind == "logistic":
        numeric = [c for c in X.columns if c not in categorical]
        if len(X) > LOGISTIC_MAX_ROWS:  # uniform, so the base rate (calibration) is kept
            keep = np.sort(np.random.default_rng(seed).choice(len(X), LOGISTIC_MAX_ROWS, False))
            X, y = X.iloc[keep], y[keep]
        return make_logistic(numeric, categorical, params["C"]).fit(X, y), None
    clf = make_lightgbm({k: v for k, v in params.items() if k != "best_iteration"}, seed)
    if stop_on is None:
        return clf.fit(X, y), None
    stop = early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)
    clf.fit(X, y, eval_X=(stop_on[0],), eval_y=(stop_on[1],), callbacks=[stop])
    return clf, int(clf.best_iteration_)


def _out_of_fold(
    kind: ModelKind,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    categorical: list[str],
    seed: int,
) -> tuple[np.ndarray, list[int]]:
    """Raw out-of-fold probabilities of one recipe, and LightGBM's tree count per fold."""
    raw = np.zeros(len(y))
    trees = []
    for fit_rows, held_out in splits:
        X_out, y_out = X.iloc[held_out], y[held_out]
        est, n = _fit(
            kind, params, X.iloc[fit_rows], y[fit_rows], categorical, seed, (X_out, y_out)
        )
        raw[held_out] = _raw(est, X_out)
        trees += [n] if n is not None else []
    return raw, trees


def _raw(estimator: Estimator, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(estimator.predict_proba(X), dtype=np.float64)[:, 1]


def _package(
    schema: TableSchema,
    categories: dict[str, list[str]],
    kind: ModelKind,
    estimator: Estimator,
    calibrator: Calibrator,
    options: FlatOptions,
) -> FlatChurnModel:
    return FlatChurnModel(
        FeatureSet(),
        kind,
        estimator,
        calibrator,
        options.horizon_days,
        schema.columns,
        categories,
        schema=schema,
    )


# ---------------------------------------------------------------------------------- evaluation


def cv_splits(
    y: np.ndarray, folds: int = 5, repeats: int = 3, seed: int = 7
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(repeat, fold, train rows, test rows) of repeated stratified k-fold with a fixed seed."""
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    found = splitter.split(np.zeros((len(y), 1)), y)
    return [(i // folds, i % folds, train, test) for i, (train, test) in enumerate(found)]


def cross_validate(
    rows: pd.DataFrame, y: np.ndarray, options: FlatOptions
) -> tuple[pd.DataFrame, Evaluation]:
    """``fit_table_model`` inside each training part of repeated stratified folds.

    Returns metrics per fold and the first repeat's pooled out-of-fold evaluation.
    """
    per_fold = []
    p, raw = np.full(len(y), np.nan), np.full(len(y), np.nan)
    splits = cv_splits(y, options.folds, options.repeats, options.train.seed)
    for repeat, fold, train, test in splits:
        started = time.perf_counter()
        fit = fit_table_model(rows.iloc[train], y[train], options)
        held_out = rows.iloc[test]
        p_test, raw_test = fit.model.predict_proba(held_out), fit.model.raw_proba(held_out)
        metrics = evaluate(y[test], p_test)
        per_fold.append(
            {
                "repeat": repeat + 1,
                "fold": fold + 1,
                **{k: metrics[k] for k in REPORTED},
                "raw_roc_auc": evaluate(y[test], raw_test)["roc_auc"],
                "n": metrics["n"],
                "n_positive": metrics["n_positive"],
                "candidate": fit.chosen.name,
                "calibration": fit.model.calibrator.method,
            }
        )
        if repeat == 0:
            p[test], raw[test] = p_test, raw_test
        logger.info(
            "  fold %s/%s: AUC %.4f, Brier %.4f (%s, %.1f s)",
            len(per_fold),
            len(splits),
            metrics["roc_auc"],
            metrics["brier"],
            fit.chosen.name,
            time.perf_counter() - started,
        )
    seen = ~np.isnan(p)
    pooled = _evaluation(y[seen], p[seen], raw[seen], options.train)
    return pd.DataFrame(per_fold), pooled


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


def _evaluation(y: np.ndarray, p: np.ndarray, raw: np.ndarray, options: TrainOptions) -> Evaluation:
    """Calibrated metrics with bootstrap intervals (none when n_boot=0), and raw metrics."""
    n_boot = options.n_boot
    intervals = bootstrap_intervals(y, p, n_boot=n_boot, seed=options.seed) if n_boot else {}
    return Evaluation(evaluate(y, p), intervals, evaluate(y, raw), y, p)


def _windows_table(times: pd.Series, y: np.ndarray, masks: tuple[np.ndarray, ...]) -> pd.DataFrame:
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


# ---------------------------------------------------------------------------------- promotion


def gate_table(
    registry: Registry,
    data: TableData,
    model: FlatChurnModel,
    metrics: dict[str, float],
    test: np.ndarray | None,
    options: FlatOptions,
) -> Promotion:
    """Compare with the current champion (module docstring); not comparable -> not promoted."""
    from churnguard.modeling.registry import CHAMPION

    version = registry.alias_version(CHAMPION)
    if version is None:
        return Promotion(True, "no champion yet")
    manual = "not comparable; use `churnguard promote` to switch"
    try:
        champion = registry.load_model(version)
        why = _incomparable(champion, model, data)
        if why:
            return Promotion(False, f"champion v{version} {why}: {manual}", version)
        if test is None:
            scored = _recorded_cv_metrics(champion, data)
            if scored is None:
                why = "was cross-validated on other data, so its metrics do not compare"
                return Promotion(False, f"champion v{version} {why}: {manual}", version)
        else:
            scored = evaluate(data.y[test], champion.predict_proba(data.rows[test]))
    except Exception as exc:  # any failure to re-score keeps the current champion
        logger.warning("could not compare with champion v%s: %s", version, exc)
        return Promotion(False, f"champion v{version} could not be re-scored ({exc}): {manual}")
    decision = decide_promotion(metrics, scored, options.train.gate_tolerance, version)
    if test is None:
        where = "in cross-validation on the same data"
        decision = replace(decision, reason=decision.reason.replace("on this test window", where))
    return replace(decision, champion_metrics=scored)


def _incomparable(champion: ChurnModel, model: FlatChurnModel, data: TableData) -> str:
    """Why the champion cannot be compared with this flat-table model ("" when it can)."""
    params = champion.metadata.get("params", {})
    if not isinstance(champion, FlatChurnModel) or params.get("mode") != FLAT_MODE:
        return "is a CRM-data model (its inputs are CRM features, not this table's columns)"
    if params.get("label") != data.label:
        return f"predicts label {params.get('label')!r}, this model {data.label!r}"
    if champion.horizon_days != model.horizon_days:
        return f"has horizon {champion.horizon_days} days, this model {model.horizon_days}"
    return ""


def _recorded_cv_metrics(champion: ChurnModel, data: TableData) -> dict[str, float] | None:
    """The champion's cross-validated metrics when it was trained on this very table."""
    recorded = champion.metadata.get("metrics", {})
    same = champion.metadata.get("data_digest") == data.digest
    if not same or any(f"cv_{k}" not in recorded for k in REPORTED):
        return None
    return {k: float(recorded[f"cv_{k}"]) for k in REPORTED}


# ---------------------------------------------------------------------------------- the run


def train_table(
    source: str | Path | pd.DataFrame,
    label: str,
    id_column: str,
    time_column: str | None = None,
    *,
    registry: Registry,
    models_dir: Path,
    options: FlatOptions | None = None,
) -> TableResult:
    """Train, evaluate, log, register and (if it passes the gate) promote a flat-table model.

    Args:
        source: a CSV or Parquet file, or a DataFrame; one row per client (per time with a time
            column).
        label: the churn column (1/0, true/false or yes/no).
        id_column: the client id column (never a feature).
        time_column: when given, an out-of-time split on it; otherwise cross-validation.
        registry: the MLflow registry to log and register in.
        models_dir: where the champion's local copy goes when this model is promoted.
        options: FlatOptions (defaults when None).
    """
    options = options or FlatOptions()
    data = load_table(source, label, id_column, time_column, options)
    logger.info("flat table: %s rows, %s churned", len(data.y), data.n_positive)
    if data.times is None:
        logger.info("%s; cross-validating ...", CV_NOTE)
        folds, evaluation = cross_validate(data.rows, data.y, options)
        logger.info("final model on all %s rows ...", len(data.y))
        fit = fit_table_model(data.rows, data.y, options)
        windows, test = pd.DataFrame(), None
    else:
        masks = split_by_time(data.times, options.val_fraction, options.test_fraction)
        check_windows(data.y, masks, options)
        fit = fit_on_windows(data.rows, data.y, masks[0], masks[1], options)
        test = masks[2]
        p, raw = fit.model.predict_proba(data.rows[test]), fit.model.raw_proba(data.rows[test])
        evaluation = _evaluation(data.y[test], p, raw, options.train)
        folds, windows = pd.DataFrame(), _windows_table(data.times, data.y, masks)
    warnings = leak_warnings(data.rows, data.y, fit.model.schema, options.leak_auc)
    result = TableResult(data, fit, evaluation, folds, windows, Promotion(False, ""), warnings)
    model = replace(fit.model, metadata=_metadata(result, options))
    promotion = gate_table(registry, data, model, result.metrics, test, options)
    result = replace(result, fit=replace(fit, model=model), promotion=promotion)
    return _log_and_register(result, registry, models_dir, options)


def _log_and_register(
    result: TableResult, registry: Registry, models_dir: Path, options: FlatOptions
) -> TableResult:
    """One MLflow run with everything; register the model; move aliases; save the local copy."""
    with registry.start_run(options.train.experiment) as run:
        _log_run(run, result)
        version = registry.log_model(run, result.model, input_example(result.data, result.model))
        run.tags({"registered_version": version, "promotion": result.promotion.reason})
    local = apply_promotion(
        registry, result.model, version, run.run_id, result.promotion, models_dir
    )
    return replace(result, run_id=run.run_id, version=version, local_copy=local)


def input_example(data: TableData, model: FlatChurnModel) -> pd.DataFrame:
    """Five rows as callers send them: numeric columns as float64, other columns as in the table.

    Numbers go in as float64 so the pyfunc signature accepts integers and missing values alike.
    """
    rows = data.rows[model.feature_names].head(5)
    numeric = model.schema.of_kind("numeric")
    cleaned = prepare_rows(rows, TableSchema({c: "numeric" for c in numeric}))
    texts = {c: rows[c].astype(object) for c in rows.columns if c not in numeric}
    return rows.assign(**cleaned, **texts)


def _log_run(run: RunLog, result: TableResult) -> None:
    """Params, metrics, tags, tables, plots and the report of a flat-table run."""
    meta = result.model.metadata
    run.params({**meta["params"], **{f"model_{k}": v for k, v in result.fit.chosen.params.items()}})
    run.metrics(_run_metrics(result))
    run.tags(
        {
            "kind": result.fit.chosen.kind,
            "candidate": result.fit.chosen.name,
            "mode": FLAT_MODE,
            "evaluation": meta["params"]["evaluation"],
        }
    )
    run.text(json.dumps(result.model.feature_names, indent=1), "features.json")
    schema = result.model.schema
    run.text(
        json.dumps({"kinds": schema.kinds, "dropped": schema.dropped}, indent=1), "schema.json"
    )
    run.table(candidates_table(result.fit.candidates), "tables/candidates.csv")
    if result.cross_validated:
        run.table(result.folds, "tables/cv_folds.csv")
    else:
        run.table(result.windows.astype({"start": str, "end": str}), "tables/windows.csv")
    y, p = result.evaluation.y, result.evaluation.p
    run.table(calibration_table(y, p), "tables/calibration.csv")
    run.table(lift_table(y, p), "tables/lift.csv")
    for name, figure in _figures(result).items():
        run.figure(figure, f"plots/{name}.png")
    run.text(table_report(result), "model_report.md")


def _run_metrics(result: TableResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in result.fit.candidates:
        out |= {f"val_{slug(c.name)}_{k}": c.validation[k] for k in REPORTED}
    out |= {f"val_{k}": result.fit.chosen.validation[k] for k in REPORTED}
    ev = result.evaluation
    prefix = "cv" if result.cross_validated else "test"
    if result.cross_validated:
        summary = summarize_backtest(result.folds[[*REPORTED, "raw_roc_auc"]])
        for k in summary.index:
            out |= {f"cv_{k}_{s}": float(summary.loc[k, s]) for s in ("mean", "std", "min", "max")}
        out |= {f"cv_{k}": out[f"cv_{k}_mean"] for k in REPORTED}
        out["cv_folds"] = float(len(result.folds))
    else:
        out |= {f"test_{k}": v for k, v in ev.metrics.items()}
        out |= {f"test_raw_{k}": ev.raw[k] for k in REPORTED}
    for k, (low, high) in ev.intervals.items():
        out |= {f"{prefix}_{k}_low": low, f"{prefix}_{k}_high": high}
    if result.promotion.champion_metrics:
        out |= {f"champion_{prefix}_{k}": result.promotion.champion_metrics[k] for k in REPORTED}
    return out


def _figures(result: TableResult) -> dict[str, Figure]:
    y, p = result.evaluation.y, result.evaluation.p
    return {
        "roc": plot_roc(y, p),
        "precision_recall": plot_precision_recall(y, p),
        "calibration": plot_calibration(y, p),
        "gains": plot_gains(y, p),
        "feature_importance": plot_feature_importance(result.model.feature_importance()),
    }


def _metadata(result: TableResult, options: FlatOptions) -> dict[str, Any]:
    """Facts kept inside the model: params of the run, headline metrics, provenance."""
    data, schema, chosen = result.data, result.fit.model.schema, result.fit.chosen
    params: dict[str, Any] = {
        "mode": FLAT_MODE,
        "source": data.source,
        "label": data.label,
        "id_column": data.id_column,
        "time_column": data.time_column or "",
        "evaluation": _evaluation_note(result, options),
        "horizon_days": options.horizon_days,
        "seed": options.train.seed,
        "n_rows": len(data.y),
        "n_positive": data.n_positive,
        "n_unlabelled_left_out": data.unlabelled,
        "features": ",".join(schema.columns),
        "n_features": len(schema.columns),
        **{f"{kind}_columns": ",".join(schema.of_kind(kind)) for kind in _KIND_NAMES},
        "dropped_columns": "; ".join(f"{c} ({why})" for c, why in schema.dropped.items()),
        "kind": chosen.kind,
        "candidate": chosen.name,
        "calibration": result.fit.model.calibrator.method,
        "data_digest": data.digest,
        "package_version": package_version(),
    }
    if result.cross_validated:
        params |= {"folds": options.folds, "repeats": options.repeats}
        params |= {"inner_folds": options.inner_folds}
    else:
        for row in result.windows.itertuples():
            params |= {f"{row.window}_start": str(row.start), f"{row.window}_end": str(row.end)}
    prefix = "cv" if result.cross_validated else "test"
    return {
        "registered_model": "churnguard",
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "data_digest": data.digest,
        "package_version": params["package_version"],
        "params": params,
        "metrics": {f"{prefix}_{k}": v for k, v in result.metrics.items()},
    }


_KIND_NAMES: tuple[ColumnKind, ...] = ("numeric", "flag", "categorical")


def _evaluation_note(result: TableResult, options: FlatOptions) -> str:
    if result.cross_validated:
        return (
            f"{CV_NOTE} ({options.folds} folds x {options.repeats} repeats, seed "
            f"{options.train.seed}; the whole recipe refitted inside each training part)"
        )
    return OUT_OF_TIME_NOTE


# ---------------------------------------------------------------------------------- reporting


def format_table_summary(result: TableResult) -> str:
    """The terminal summary: data, columns, evaluation scheme, candidates, metrics, decision."""
    data, model = result.data, result.model
    share = data.n_positive / len(data.y)
    lines = [
        f"Trained on {len(data.y):,} rows of {data.source} ({data.n_positive:,} churned, "
        f"{share:.1%}); label {data.label!r}, id {data.id_column!r}",
        _columns_line(model.schema),
        f"Evaluation: {model.metadata['params']['evaluation']}",
        "",
        f"Candidates ({_candidate_scope(result)}, raw probabilities):",
        text_table(candidates_table(result.fit.candidates)),
        "",
        f"Chosen: {result.fit.chosen.name} (best ROC AUC; ties go to the simpler model), "
        f"calibration: {model.calibrator.method}",
        "",
        *_metrics_lines(result),
        *(["", "Warnings:", *(f"  {w}" for w in result.warnings)] if result.warnings else []),
        "",
        decision_line(result),
    ]
    return "\n".join(lines)


def table_report(result: TableResult) -> str:
    """The markdown model report logged with the run."""
    sections = [
        f"# churnguard flat-table model report — {result.fit.chosen.name}",
        "",
        f"- evaluation: {result.model.metadata['params']['evaluation']}",
        f"- data digest: `{result.data.digest}`",
        "",
        "## Summary",
        "",
        "```",
        format_table_summary(result),
        "```",
    ]
    if result.cross_validated:
        sections += ["", "## Per fold", "", "```", text_table(result.folds), "```"]
    sections += ["", "## Features", "", ", ".join(result.model.feature_names)]
    return "\n".join(sections)


def _columns_line(schema: TableSchema) -> str:
    counts = ", ".join(f"{len(schema.of_kind(k))} {k}" for k in _KIND_NAMES)
    dropped = "; ".join(f"{c} ({why})" for c, why in schema.dropped.items()) or "none"
    return f"Columns used: {counts}; left out: {dropped}"


def _candidate_scope(result: TableResult) -> str:
    if result.cross_validated:
        folds = result.model.metadata["params"]["inner_folds"]
        return f"out-of-fold over all rows in {folds} stratified folds"
    return "validation window"


def _metrics_lines(result: TableResult) -> list[str]:
    ev = result.evaluation
    if not result.cross_validated:
        spans = " | ".join(
            f"{w.window} {w.start}..{w.end} ({w.rows:,} rows, {w.churned:,} churned)"
            for w in result.windows.itertuples()
        )
        return [
            f"Windows: {spans}",
            "Test window (90% bootstrap intervals):",
            text_table(_metric_table(ev, {k: ev.metrics[k] for k in REPORTED})),
        ]
    summary = summarize_backtest(result.folds[list(REPORTED)])
    table = _metric_table(ev, {str(k): float(v) for k, v in summary["mean"].items()})
    table.insert(2, "std", summary["std"].to_numpy())
    table.insert(3, "min", summary["min"].to_numpy())
    table.insert(4, "max", summary["max"].to_numpy())
    return [
        f"Cross-validated metrics: value = mean over {len(result.folds)} folds (std, min, max "
        "over folds); 90% bootstrap interval and uncalibrated value from the first repeat's "
        "pooled out-of-fold predictions:",
        text_table(table),
    ]


def _metric_table(ev: Evaluation, values: dict[str, float]) -> pd.DataFrame:
    rows = [
        {
            "metric": k,
            "value": values[k],
            "90% interval": "{:.4f} - {:.4f}".format(*ev.intervals[k]) if ev.intervals else "-",
            "uncalibrated": ev.raw[k],
        }
        for k in REPORTED
    ]
    return pd.DataFrame(rows)
