"""The training pipeline, and the only place that writes MLflow runs (through ``registry.py``).

Steps: monthly snapshots -> labels (censored dropped) -> features -> out-of-time split ->
candidates -> selection -> calibration -> test evaluation, oracle, rolling-origin backtest ->
MLflow run (params, metrics, plots, report, pyfunc model) -> registered version -> promotion
gate -> alias ``champion`` or ``challenger`` -> local copy of the champion.

Decisions (each a field of ``TrainOptions`` where it is a number):

* **History start.** Labelled snapshots start at the last snapshot date on or before the first
  churn seen in the data. Before any client is ever seen to leave, an export is usually back-filled
  history (clients that left back then are missing), and those months would teach the model that
  nobody churns. The rows dropped are logged and the start is a run parameter.
* **Out-of-time split.** On the sorted labelled as_of dates: test = the last ``test_periods``
  (3 months), validation = the ``val_periods`` (3) latest dates whose label window ends by the
  first test date (``as_of + horizon <= test start``), train = every date whose window ends by the
  first validation date. So label windows of train, validation and test never overlap.
* **Candidates.** A regularised logistic regression (C in ``LOGISTIC_C``; scaling, a signed log1p of
  heavy-tailed columns and one-hot encoding inside one Pipeline; fitted on a seeded sample of at
  most ``LOGISTIC_MAX_ROWS`` training rows) and, with at least
  ``lightgbm_min_train_events`` churn events in training, LightGBM (``LIGHTGBM_GRID``, early
  stopping on the validation window, learning rate 0.03 or 0.1 from ``LIGHTGBM_FAST_FROM_ROWS``
  training rows, one thread, at most ``LIGHTGBM_MAX_ROWS`` sampled training rows, no class
  weights so probabilities stay honest).
* **Selection** by validation ROC AUC: calibration is monotone, so ranking is what it cannot fix.
  Candidates within ``SELECTION_TIE`` of the best count as tied and the simplest wins (logistic
  before LightGBM, stronger regularisation first).
* **Calibration** on the validation window: Platt scaling on the logit (monotone, two parameters,
  a weak prior at the identity); isotonic only once the validation window holds
  ``isotonic_min_positives`` (50,000) churned snapshots. On the 100,000-client demo (9,500
  validation positives) isotonic gave test PR AUC 0.265 and ECE 0.0025 through its ties and
  steps; Platt kept the ranking (PR AUC 0.274) and reached ECE 0.0014.
* **Too little data.** Fewer than ``min_train_events`` distinct churn events in training, or no
  churn in the validation or test window, raises ``NotEnoughDataError`` saying what to do.
* **Backtest.** The same split shifted back by ``test_periods`` dates per cutoff
  (``backtest_cutoffs`` cutoffs counting the main one); the chosen recipe is refitted and
  recalibrated per cutoff. Cutoffs without enough data are skipped (logged).
* **Promotion gate.** The new version becomes ``champion`` when there is none, or when on this
  run's test snapshots its AUC is at most ``gate_tolerance`` below the re-scored champion's and its
  Brier score at most ``gate_tolerance`` above. Otherwise it stays ``challenger``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, early_stopping
from matplotlib.figure import Figure

from churnguard.domain.churn import build_labels, observation_end, snapshot_dates
from churnguard.domain.contract import CRMData
from churnguard.features.catalog import FeatureSet, feature_set_for
from churnguard.features.engine import compute_features
from churnguard.modeling.linear import make_logistic
from churnguard.modeling.model import (
    ChurnModel,
    IsotonicCalibrator,
    ModelKind,
    PlattCalibrator,
    align_inputs,
    model_card,
    save_local_model,
)
from churnguard.modeling.registry import CHALLENGER, CHAMPION, MODEL_NAME, Registry, RunLog
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

logger = logging.getLogger(__name__)

LOGISTIC_C: tuple[float, ...] = (0.01, 0.1, 1.0)  # strongest regularisation first
LOGISTIC_MAX_ROWS = 200_000  # a seeded uniform sample beyond this: ~100 weights need no more
LIGHTGBM_MAX_ROWS = 500_000  # likewise for LightGBM (25k+ churned rows at a 5% churn rate)
LIGHTGBM_BASE: dict[str, Any] = {
    "objective": "binary",
    "n_estimators": 3000,  # an upper bound: early stopping picks the number of trees
    "learning_rate": 0.03,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 5.0,
    "deterministic": True,
    "force_col_wise": True,  # fixed (not auto-chosen) for determinism; faster than row-wise here
    # One thread: results then never depend on the machine, the saved booster predicts one row
    # without thread hand-offs, and a busy 2-core box does not stall in OpenMP spin-waits (2
    # threads ran 5x slower than 1 there while other jobs were running).
    "n_jobs": 1,
    "verbose": -1,
}
LIGHTGBM_GRID: tuple[dict[str, Any], ...] = ({"num_leaves": 4}, {"num_leaves": 16})
LIGHTGBM_FAST_FROM_ROWS = 250_000
LIGHTGBM_FAST_RATE = 0.1
EARLY_STOPPING_ROUNDS = 150
SELECTION_TIE = 0.002
REPORTED = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "top_decile_lift")
_BACKTEST_COLUMNS = (
    "cutoff",
    "train_end",
    *REPORTED,
    "n_positive",
    "oracle_roc_auc",
    "oracle_ratio",
)


class NotEnoughDataError(ValueError):
    """The data holds too little labelled history for an honest model."""


@dataclass(frozen=True)
class TrainOptions:
    """What a training run does; defaults are the documented choices (module docstring)."""

    horizon_days: int = 90
    grace_days: int = 30
    seed: int = 7
    experiment: str = "churnguard"
    test_periods: int = 3
    val_periods: int = 3
    min_train_periods: int = 3
    min_train_events: int = 10
    lightgbm_min_train_events: int = 50
    isotonic_min_positives: int = 50_000
    backtest_cutoffs: int = 4
    n_boot: int = 200
    gate_tolerance: float = 0.005


@dataclass(frozen=True)
class Split:
    """As_of dates of the train, validation and test windows."""

    train: pd.DatetimeIndex
    validation: pd.DatetimeIndex
    test: pd.DatetimeIndex

    def params(self) -> dict[str, str]:
        out = {}
        for name in ("train", "validation", "test"):
            dates = getattr(self, name)
            out[f"{name}_start"], out[f"{name}_end"] = _day(dates[0]), _day(dates[-1])
        return out


@dataclass(frozen=True)
class Dataset:
    """Labelled snapshots and their features, row-aligned."""

    data: CRMData
    feature_set: FeatureSet
    labels: pd.DataFrame  # client_id, as_of, churned (int), churn_date, monthly_value, ...
    features: pd.DataFrame  # client_id, as_of, then feature columns
    observed_until: pd.Timestamp
    history_start: pd.Timestamp

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.labels["as_of"].unique()).sort_values()

    def rows(self, dates: pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask of the snapshots at the given as_of dates."""
        return self.labels["as_of"].isin(dates).to_numpy()

    def y(self, mask: np.ndarray) -> np.ndarray:
        return self.labels["churned"].to_numpy()[mask]

    def events(self, mask: np.ndarray) -> int:
        """Distinct churn events (client, churn date) among the snapshots."""
        rows = self.labels.loc[mask & (self.labels["churned"] == 1).to_numpy()]
        return len(rows[["client_id", "churn_date"]].drop_duplicates())

    def revenue(self, mask: np.ndarray) -> np.ndarray:
        """Annualised contract value at as_of: the revenue at stake per snapshot."""
        return 12 * self.labels["monthly_value"].to_numpy()[mask]


@dataclass(frozen=True)
class Candidate:
    """A fitted candidate with its raw validation metrics."""

    name: str
    kind: ModelKind
    params: dict[str, Any]
    estimator: Any
    validation: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    """Metrics of calibrated probabilities on a window, with intervals and raw-model metrics."""

    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    raw: dict[str, float]
    y: np.ndarray
    p: np.ndarray


@dataclass(frozen=True)
class Oracle:
    """The simulator's true probabilities on the test snapshots against the model."""

    roc_auc: float
    model_roc_auc: float
    brier: float
    coverage: float  # share of test snapshots with a true probability
    p: np.ndarray  # aligned with the test rows; NaN where missing

    @property
    def ratio(self) -> float:
        return self.model_roc_auc / self.roc_auc


@dataclass(frozen=True)
class Promotion:
    """The gate's decision and why."""

    promoted: bool
    reason: str
    champion_version: int | None = None
    champion_metrics: dict[str, float] | None = None


@dataclass(frozen=True)
class TrainResult:
    """Everything a training run produced."""

    model: ChurnModel
    dataset: Dataset
    split: Split
    candidates: list[Candidate]
    chosen: Candidate
    test: Evaluation
    oracle: Oracle | None
    backtest: pd.DataFrame
    backtest_summary: pd.DataFrame
    promotion: Promotion
    run_id: str = ""
    version: int | None = None
    local_copy: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- dataset


def build_dataset(data: CRMData, options: TrainOptions) -> Dataset:
    """Monthly labelled snapshots (censored and pre-history dropped) with their features."""
    observed_until = observation_end(data)
    dates = snapshot_dates(data, "MS", observed_until)
    labels = build_labels(data, dates, options.horizon_days, options.grace_days, observed_until)
    labels = labels.loc[~labels["censored"]]
    if not (labels["churned"] == 1).any():
        raise NotEnoughDataError(
            "no churn at all in the labelled history: there is nothing to learn from. "
            "A churn is a client's last contract ending with no new one within "
            f"{options.grace_days} days, at least {options.horizon_days + options.grace_days} "
            "days before the end of the data; export a longer history."
        )
    start = _history_start(labels)
    dropped = int((labels["as_of"] < start).sum())
    if dropped:
        logger.info(
            "dropping %s snapshots before the first observed churn (%s)", dropped, _day(start)
        )
    labels = labels.loc[labels["as_of"] >= start].reset_index(drop=True)
    labels = labels.assign(churned=labels["churned"].astype(np.int64))
    feature_set = feature_set_for(data)
    features = compute_features(data, labels[["client_id", "as_of"]], feature_set)
    return Dataset(data, feature_set, labels, features, observed_until, start)


def _history_start(labels: pd.DataFrame) -> pd.Timestamp:
    """The last snapshot date on or before the first churn in the labelled data."""
    first_churn = labels["churn_date"].min()
    dates = labels["as_of"].drop_duplicates().sort_values()
    return pd.Timestamp(dates[dates <= first_churn].max())


def split_dates(
    dates: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    horizon_days: int,
    test_periods: int = 3,
    val_periods: int = 3,
    min_train_periods: int = 1,
) -> Split:
    """Out-of-time split of as_of dates with one horizon between the windows (module docstring)."""
    ordered = pd.DatetimeIndex(sorted(set(dates)))
    gap = pd.Timedelta(days=horizon_days)
    test = ordered[-test_periods:] if len(ordered) >= test_periods else ordered[:0]
    validation = ordered[ordered + gap <= test[0]][-val_periods:] if len(test) else test
    train = ordered[ordered + gap <= validation[0]] if len(validation) else validation
    if len(test) < test_periods or len(validation) < val_periods or len(train) < min_train_periods:
        span = f"{_day(ordered[0])} to {_day(ordered[-1])}" if len(ordered) else "none"
        raise NotEnoughDataError(
            f"only {len(ordered)} labelled monthly snapshot dates ({span}): the out-of-time split "
            f"needs {min_train_periods}+ training months, a {horizon_days}-day gap, "
            f"{val_periods} validation months, another gap and {test_periods} test months. "
            "Export a longer history, or shorten the windows (--val-months/--test-months)."
        )
    return Split(train, validation, test)


def check_enough_data(ds: Dataset, split: Split, options: TrainOptions) -> None:
    """Raise NotEnoughDataError unless every window can support an honest model."""
    train_events = ds.events(ds.rows(split.train))
    if train_events < options.min_train_events:
        raise NotEnoughDataError(
            f"the training window ({_span(split.train)}) holds {train_events} churn events; an "
            f"honest model needs at least {options.min_train_events}. Export a longer history or "
            "more clients, or shorten the validation/test windows (--val-months/--test-months)."
        )
    for name in ("validation", "test"):
        dates = getattr(split, name)
        if ds.y(ds.rows(dates)).sum() == 0:
            raise NotEnoughDataError(
                f"the {name} window ({_span(dates)}) has no churned snapshot, so the model cannot "
                f"be {'calibrated' if name == 'validation' else 'evaluated'}. Widen it "
                "(--val-months/--test-months) or wait for more history."
            )


# ---------------------------------------------------------------------------------- candidates


def make_lightgbm(params: dict[str, Any], seed: int, rows: int = 0) -> LGBMClassifier:
    """A regularised, deterministic LightGBM classifier (no class weights, one thread).

    From LIGHTGBM_FAST_FROM_ROWS training rows the learning rate is LIGHTGBM_FAST_RATE: each tree
    then rests on plenty of data, and the small default rate would need thousands of trees.
    """
    rate = LIGHTGBM_FAST_RATE if rows >= LIGHTGBM_FAST_FROM_ROWS else LIGHTGBM_BASE["learning_rate"]
    return LGBMClassifier(
        **{**LIGHTGBM_BASE, "learning_rate": rate, **params, "random_state": seed}
    )


def recipes(train_events: int, options: TrainOptions) -> list[tuple[str, ModelKind, dict]]:
    """Candidate recipes, simplest first; LightGBM only with enough training churn events."""
    out: list[tuple[str, ModelKind, dict]] = [
        (f"logistic C={c:g}", "logistic", {"C": c}) for c in LOGISTIC_C
    ]
    if train_events >= options.lightgbm_min_train_events:
        out += [(f"lightgbm leaves={g['num_leaves']}", "lightgbm", dict(g)) for g in LIGHTGBM_GRID]
    else:
        logger.info(
            "LightGBM left out: %s training churn events < %s",
            train_events,
            options.lightgbm_min_train_events,
        )
    return out


def fit_estimator(
    kind: ModelKind,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    X_val: pd.DataFrame,
    y_val: np.ndarray,
    feature_set: FeatureSet,
    seed: int,
) -> tuple[Any, dict[str, Any]]:
    """Fit one recipe; returns the estimator and its effective params (LightGBM: tree count)."""
    if kind == "logistic":
        numeric = [n for n in feature_set.names if n not in feature_set.categorical]
        pipe = make_logistic(numeric, feature_set.categorical, params["C"])
        X, y = _sample_rows(X, y, LOGISTIC_MAX_ROWS, seed)
        return pipe.fit(X, y), dict(params)
    clf = make_lightgbm(params, seed, len(X))
    X, y = _sample_rows(X, y, LIGHTGBM_MAX_ROWS, seed)
    stop = early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)
    clf.fit(X, y, eval_X=(X_val,), eval_y=(y_val,), callbacks=[stop])
    return clf, {**params, "best_iteration": int(clf.best_iteration_)}


def _sample_rows(
    X: pd.DataFrame, y: np.ndarray, limit: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most limit rows, a seeded uniform sample in time order (so the base rate is kept)."""
    if len(X) <= limit:
        return X, y
    keep = np.sort(np.random.default_rng(seed).choice(len(X), limit, replace=False))
    return X.iloc[keep], y[keep]


def fit_candidates(
    ds: Dataset, X: pd.DataFrame, split: Split, options: TrainOptions
) -> list[Candidate]:
    """Fit every recipe on the train window; validation metrics of the raw probabilities."""
    train, val = ds.rows(split.train), ds.rows(split.validation)
    X_tr, X_val, y_tr, y_val = X.loc[train], X.loc[val], ds.y(train), ds.y(val)
    out = []
    for name, kind, params in recipes(ds.events(train), options):
        started = time.perf_counter()
        est, fitted = fit_estimator(
            kind, params, X_tr, y_tr, X_val, y_val, ds.feature_set, options.seed
        )
        metrics = evaluate(y_val, est.predict_proba(X_val)[:, 1])
        logger.info(
            "  %-20s validation AUC %.4f (%.1f s) %s",
            name,
            metrics["roc_auc"],
            time.perf_counter() - started,
            short_params(fitted),
        )
        out.append(Candidate(name, kind, fitted, est, metrics))
    return out


def select(candidates: list[Candidate]) -> Candidate:
    """Best validation ROC AUC; within SELECTION_TIE of it, the simplest (first) candidate."""
    best = max(c.validation["roc_auc"] for c in candidates)
    return next(c for c in candidates if c.validation["roc_auc"] >= best - SELECTION_TIE)


def calibrate(
    estimator: Any, X_val: pd.DataFrame, y_val: np.ndarray, options: TrainOptions
) -> PlattCalibrator | IsotonicCalibrator:
    """Fit the calibrator on the validation window's raw probabilities."""
    return calibrate_raw(estimator.predict_proba(X_val)[:, 1], y_val, options)


def calibrate_raw(
    raw: np.ndarray, y: np.ndarray, options: TrainOptions
) -> PlattCalibrator | IsotonicCalibrator:
    """The calibration rule on given raw probabilities: Platt, isotonic with many positives."""
    if y.sum() >= options.isotonic_min_positives:
        return IsotonicCalibrator.fit(raw, y)
    return PlattCalibrator.fit(raw, y)


# ---------------------------------------------------------------------------------- evaluation


def evaluate_window(
    model: ChurnModel,
    ds: Dataset,
    X: pd.DataFrame,
    dates: pd.DatetimeIndex,
    options: TrainOptions,
    n_boot: int | None = None,
) -> Evaluation:
    """Calibrated metrics with bootstrap intervals (none when n_boot=0), and raw metrics."""
    mask = ds.rows(dates)
    y, revenue = ds.y(mask), ds.revenue(mask)
    raw = np.asarray(model.estimator.predict_proba(X.loc[mask]), dtype=np.float64)[:, 1]
    p = model.calibrator.transform(raw)
    n_boot = options.n_boot if n_boot is None else n_boot
    intervals = (
        bootstrap_intervals(y, p, revenue, n_boot=n_boot, seed=options.seed) if n_boot else {}
    )
    return Evaluation(evaluate(y, p, revenue), intervals, evaluate(y, raw, revenue), y, p)


def oracle_scores(truth: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The simulator's true probability for each (client_id, as_of) row; NaN where unknown."""
    key = truth.assign(
        client_id=truth["client_id"].astype(str),
        as_of=pd.to_datetime(truth["as_of"], utc=True).dt.as_unit("s"),
    )
    found = rows[["client_id", "as_of"]].astype({"client_id": str})
    found = found.assign(as_of=pd.to_datetime(found["as_of"], utc=True).dt.as_unit("s"))
    merged = found.merge(key, on=["client_id", "as_of"], how="left", validate="many_to_one")
    return merged["true_probability"].to_numpy(np.float64)


def compare_with_oracle(truth: pd.DataFrame, ds: Dataset, test: Evaluation, split: Split) -> Oracle:
    """Oracle and model AUC on the test snapshots that have a true probability."""
    rows = ds.labels.loc[ds.rows(split.test)]
    p_true = oracle_scores(truth, rows)
    known = ~np.isnan(p_true)
    y = test.y[known]
    return Oracle(
        roc_auc=evaluate(y, p_true[known])["roc_auc"],
        model_roc_auc=evaluate(y, test.p[known])["roc_auc"],
        brier=evaluate(y, p_true[known])["brier"],
        coverage=float(known.mean()),
        p=p_true,
    )


def backtest(
    ds: Dataset,
    X: pd.DataFrame,
    chosen: Candidate,
    main: tuple[Split, Evaluation],
    options: TrainOptions,
    truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Metrics per rolling-origin cutoff: the main split, then splits shifted back in time.

    With the simulator's truth, each row also has the oracle's AUC on that cutoff's test window.
    """
    dates = ds.dates
    rows = [_backtest_row(ds, main[0], main[1], truth)]
    for k in range(1, options.backtest_cutoffs):
        kept = dates[: len(dates) - k * options.test_periods]
        try:
            split = split_dates(
                kept,
                options.horizon_days,
                options.test_periods,
                options.val_periods,
                options.min_train_periods,
            )
            check_enough_data(ds, split, options)
        except NotEnoughDataError as exc:
            logger.info("  backtest cutoff %s skipped: %s", k, exc)
            continue
        model = _fit_recipe(ds, X, split, chosen, options)
        test = evaluate_window(model, ds, X, split.test, options, n_boot=0)
        rows.append(_backtest_row(ds, split, test, truth))
        logger.info("  cutoff %s: test AUC %.4f", _day(split.test[0]), rows[-1]["roc_auc"])
    return pd.DataFrame(rows)


def _backtest_row(
    ds: Dataset, split: Split, test: Evaluation, truth: pd.DataFrame | None
) -> dict[str, Any]:
    row = {"cutoff": split.test[0], "train_end": split.train[-1], **test.metrics}
    if truth is not None:
        oracle = compare_with_oracle(truth, ds, test, split)
        row |= {"oracle_roc_auc": oracle.roc_auc, "oracle_ratio": oracle.ratio}
    return row


def _fit_recipe(
    ds: Dataset, X: pd.DataFrame, split: Split, chosen: Candidate, options: TrainOptions
) -> ChurnModel:
    """Refit the chosen recipe on a split and calibrate it on that split's validation window."""
    train, val = ds.rows(split.train), ds.rows(split.validation)
    params = {k: v for k, v in chosen.params.items() if k != "best_iteration"}
    est, _ = fit_estimator(
        chosen.kind,
        params,
        X.loc[train],
        ds.y(train),
        X.loc[val],
        ds.y(val),
        ds.feature_set,
        options.seed,
    )
    calibrator = calibrate(est, X.loc[val], ds.y(val), options)
    return _package(ds, est, chosen.kind, calibrator, options)


def _package(
    ds: Dataset, estimator: Any, kind: ModelKind, calibrator: Any, options: TrainOptions
) -> ChurnModel:
    fs = ds.feature_set
    return ChurnModel(
        fs, kind, estimator, calibrator, options.horizon_days, fs.names, _categories(ds)
    )


def _categories(ds: Dataset) -> dict[str, list[str]]:
    """Categories of each categorical feature over the labelled snapshots."""
    return {c: [str(v) for v in ds.features[c].cat.categories] for c in ds.feature_set.categorical}


# ---------------------------------------------------------------------------------- promotion


def decide_promotion(
    new: dict[str, float], champion: dict[str, float], tolerance: float, version: int
) -> Promotion:
    """Promote unless AUC falls, or Brier rises, by more than tolerance against the champion."""
    auc_drop = champion["roc_auc"] - new["roc_auc"]
    brier_rise = new["brier"] - champion["brier"]
    facts = (
        f"AUC {new['roc_auc']:.4f} vs {champion['roc_auc']:.4f}, "
        f"Brier {new['brier']:.4f} vs {champion['brier']:.4f} for champion v{version} "
        f"on this test window"
    )
    if auc_drop > tolerance:
        return Promotion(False, f"AUC {auc_drop:.4f} lower than champion's ({facts})", version)
    if brier_rise > tolerance:
        return Promotion(False, f"Brier {brier_rise:.4f} higher than champion's ({facts})", version)
    return Promotion(True, f"as good as the champion within {tolerance} ({facts})", version)


def gate(
    registry: Registry,
    ds: Dataset,
    split: Split,
    test: Evaluation,
    model: ChurnModel,
    options: TrainOptions,
) -> Promotion:
    """Re-score the current champion on this run's test snapshots and decide.

    When the champion cannot be re-scored (a different horizon, or it fails to load or to
    predict), the new model is not promoted automatically: ``churnguard promote`` can do it.
    """
    version = registry.alias_version(CHAMPION)
    if version is None:
        return Promotion(True, "no champion yet")
    manual = "not comparable; use `churnguard promote` to switch"
    try:
        champion = registry.load_model(version)
        if champion.horizon_days != model.horizon_days:
            return Promotion(
                False,
                f"champion v{version} predicts a {champion.horizon_days}-day horizon, this model "
                f"{model.horizon_days} days: {manual}",
                version,
            )
        rows = ds.labels.loc[ds.rows(split.test), ["client_id", "as_of"]]
        features = compute_features(ds.data, rows, champion.feature_set)
        scored = evaluate(test.y, champion.predict_proba(features))
    except Exception as exc:  # any failure to re-score keeps the current champion
        logger.warning("could not re-score champion v%s: %s", version, exc)
        return Promotion(False, f"champion v{version} could not be re-scored ({exc}): {manual}")
    decision = decide_promotion(test.metrics, scored, options.gate_tolerance, version)
    return replace(decision, champion_metrics=scored)


# ---------------------------------------------------------------------------------- the run


def train(
    data: CRMData,
    registry: Registry,
    models_dir: Path,
    options: TrainOptions | None = None,
    truth: pd.DataFrame | None = None,
) -> TrainResult:
    """Train, evaluate, log, register and (if it passes the gate) promote a churn model."""
    options = options or TrainOptions()
    with _step("snapshots, labels and features"):
        ds = build_dataset(data, options)
    return train_on(ds, registry, models_dir, options, truth)


def train_on(
    ds: Dataset,
    registry: Registry,
    models_dir: Path,
    options: TrainOptions,
    truth: pd.DataFrame | None = None,
) -> TrainResult:
    """The pipeline from a built dataset on (split, fit, calibrate, evaluate, log, promote)."""
    timings: dict[str, float] = {}
    split = split_dates(
        ds.dates,
        options.horizon_days,
        options.test_periods,
        options.val_periods,
        options.min_train_periods,
    )
    check_enough_data(ds, split, options)
    logger.info("split: train %s | validation %s | test %s", *map(_span, _windows(split)))
    X = align_inputs(ds.features, ds.feature_set.names, _categories(ds))

    with _step("fitting candidates", timings):  # 1. candidates and selection
        candidates = fit_candidates(ds, X, split, options)
        chosen = select(candidates)
    with _step("calibration and test evaluation", timings):  # 2. calibrate, evaluate
        val = ds.rows(split.validation)
        calibrator = calibrate(chosen.estimator, X.loc[val], ds.y(val), options)
        model = _package(ds, chosen.estimator, chosen.kind, calibrator, options)
        test = evaluate_window(model, ds, X, split.test, options)
        oracle = compare_with_oracle(truth, ds, test, split) if truth is not None else None
    with _step("backtest", timings):  # 3. rolling-origin backtest
        per_cutoff = backtest(ds, X, chosen, (split, test), options, truth)
        summary = summarize_backtest(per_cutoff)
    model = replace(model, metadata=_metadata(ds, split, chosen, calibrator, test, oracle, options))
    with _step("promotion gate", timings):  # 4. compare with the champion
        promotion = gate(registry, ds, split, test, model, options)
    result = TrainResult(
        model,
        ds,
        split,
        candidates,
        chosen,
        test,
        oracle,
        per_cutoff,
        summary,
        promotion,
        timings=timings,
    )
    with _step("MLflow run and registry", timings):  # 5. log, register, alias, local copy
        return _log_and_register(result, registry, models_dir, options)


def _log_and_register(
    result: TrainResult,
    registry: Registry,
    models_dir: Path,
    options: TrainOptions,
) -> TrainResult:
    """One MLflow run with everything; register the model; move aliases; save the local copy."""
    test_rows = result.dataset.rows(result.split.test)
    example = result.model.inputs(result.dataset.features.loc[test_rows].head(5))
    with registry.start_run(options.experiment) as run:
        _log_run(run, result, options)
        version = registry.log_model(run, result.model, example)
        run.tags({"registered_version": version, "promotion": result.promotion.reason})
    local = apply_promotion(
        registry, result.model, version, run.run_id, result.promotion, models_dir
    )
    return replace(result, run_id=run.run_id, version=version, local_copy=local)


def apply_promotion(
    registry: Registry,
    model: ChurnModel,
    version: int,
    run_id: str,
    promotion: Promotion,
    models_dir: Path,
) -> Path | None:
    """A new version is the challenger, or when promoted the champion with a local copy saved.

    Returns the local last-known-good copy's path, None when the version was not promoted.
    """
    if not promotion.promoted:
        registry.set_alias(CHALLENGER, version)
        return None
    registry.set_alias(CHAMPION, version)
    registry.delete_alias(CHALLENGER)
    return save_local_model(model, model_card(model, version, run_id), models_dir)


def _log_run(run: RunLog, result: TrainResult, options: TrainOptions) -> None:
    """Params, metrics, tables, plots and the report of a training run."""
    meta = result.model.metadata
    run.params({**meta["params"], **{f"model_{k}": v for k, v in result.chosen.params.items()}})
    run.metrics(_run_metrics(result))
    run.tags({"kind": result.chosen.kind, "candidate": result.chosen.name})
    run.text(json.dumps(result.model.feature_names, indent=1), "features.json")
    run.table(candidates_table(result.candidates), "tables/candidates.csv")
    run.table(result.backtest.astype({"cutoff": str, "train_end": str}), "tables/backtest.csv")
    run.table(calibration_table(result.test.y, result.test.p), "tables/calibration.csv")
    run.table(lift_table(result.test.y, result.test.p), "tables/lift.csv")
    for name, figure in _figures(result).items():
        run.figure(figure, f"plots/{name}.png")
    run.text(model_report(result), "model_report.md")


def _run_metrics(result: TrainResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in result.candidates:
        out |= {f"val_{slug(c.name)}_{k}": c.validation[k] for k in REPORTED}
    out |= {f"val_{k}": result.chosen.validation[k] for k in REPORTED}
    out |= {f"test_{k}": v for k, v in result.test.metrics.items()}
    out |= {f"test_raw_{k}": result.test.raw[k] for k in REPORTED}
    for k, (low, high) in result.test.intervals.items():
        out |= {f"test_{k}_low": low, f"test_{k}_high": high}
    for k in (*REPORTED, "oracle_roc_auc", "oracle_ratio"):
        if k in result.backtest_summary.index:
            mean, std = result.backtest_summary.loc[k, ["mean", "std"]].to_numpy(np.float64)
            out |= {f"backtest_{k}_mean": float(mean), f"backtest_{k}_std": float(std)}
    out["backtest_cutoffs"] = float(len(result.backtest))
    out |= {f"seconds_{slug(step)}": t for step, t in result.timings.items()}
    if result.oracle is not None:
        o = result.oracle
        out |= {"oracle_roc_auc": o.roc_auc, "oracle_brier": o.brier, "oracle_ratio": o.ratio}
        out |= {"oracle_coverage": o.coverage}
    if result.promotion.champion_metrics:
        out |= {f"champion_test_{k}": result.promotion.champion_metrics[k] for k in REPORTED}
    return out


def _figures(result: TrainResult) -> dict[str, Figure]:
    y, p = result.test.y, result.test.p
    oracle = result.oracle
    full = oracle is not None and oracle.coverage == 1.0
    return {
        "roc": plot_roc(y, p, oracle=oracle.p if full and oracle else None),
        "precision_recall": plot_precision_recall(y, p),
        "calibration": plot_calibration(y, p),
        "gains": plot_gains(y, p),
        "feature_importance": plot_feature_importance(result.model.feature_importance()),
    }


def _metadata(
    ds: Dataset,
    split: Split,
    chosen: Candidate,
    calibrator: Any,
    test: Evaluation,
    oracle: Oracle | None,
    options: TrainOptions,
) -> dict[str, Any]:
    """Facts kept inside the model: params of the run, key test metrics, provenance."""
    dates = ds.dates
    params = {
        "horizon_days": options.horizon_days,
        "grace_days": options.grace_days,
        "seed": options.seed,
        "snapshot_freq": "MS",
        "snapshot_dates": ",".join(_day(d) for d in dates),
        "observed_until": _day(ds.observed_until),
        "history_start": _day(ds.history_start),
        **split.params(),
        "gap_days": options.horizon_days,
        "test_periods": options.test_periods,
        "val_periods": options.val_periods,
        "n_snapshots": len(ds.labels),
        "n_clients": len(ds.data.clients),
        "train_events": ds.events(ds.rows(split.train)),
        "features": ",".join(ds.feature_set.names),
        "n_features": len(ds.feature_set.names),
        "kind": chosen.kind,
        "candidate": chosen.name,
        "calibration": calibrator.method,
        "data_digest": data_digest(ds.data),
        "package_version": package_version(),
    }
    metrics = {f"test_{k}": test.metrics[k] for k in REPORTED}
    if oracle is not None:
        metrics |= {"oracle_roc_auc": oracle.roc_auc, "oracle_ratio": oracle.ratio}
    return {
        "registered_model": MODEL_NAME,
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "data_digest": params["data_digest"],
        "package_version": params["package_version"],
        "params": params,
        "metrics": metrics,
    }


def data_digest(data: CRMData) -> str:
    """sha256 over every table's column names, dtypes and values (row order matters)."""
    h = hashlib.sha256()
    for name, df in data.tables().items():
        h.update(f"{name}:{[(c, str(t)) for c, t in df.dtypes.items()]}".encode())
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------- reporting


def format_summary(result: TrainResult) -> str:
    """The terminal summary: candidates, chosen model, test metrics, backtest, oracle, decision."""
    ds, split, test = result.dataset, result.split, result.test
    lines = [
        f"Trained on {len(ds.labels):,} labelled snapshots of {ds.labels['client_id'].nunique():,} "
        f"clients, horizon {result.model.horizon_days} days",
        "windows: "
        + " | ".join(
            f"{name} {_span(d)} ({ds.events(ds.rows(d))} churn events)"
            for name, d in zip(("train", "validation", "test"), _windows(split), strict=True)
        ),
        "",
        "Candidates (validation window, raw probabilities):",
        text_table(candidates_table(result.candidates)),
        "",
        f"Chosen: {result.chosen.name} (best validation ROC AUC; ties go to the simpler model), "
        f"calibration: {result.model.calibrator.method}",
        "",
        f"Test window {_span(split.test)}: {int(test.metrics['n']):,} snapshots, "
        f"{int(test.metrics['n_positive'])} churned (90% bootstrap intervals):",
        text_table(_test_table(test)),
        "",
        _oracle_line(result.oracle),
        _backtest_line(result.backtest, result.backtest_summary),
        "",
        decision_line(result),
    ]
    return "\n".join(lines)


def model_report(result: TrainResult) -> str:
    """The markdown model report logged with the run."""
    meta = result.model.metadata["params"]
    return "\n".join(
        [
            f"# churnguard model report — {result.chosen.name}",
            "",
            f"- horizon: {meta['horizon_days']} days, grace: {meta['grace_days']} days, "
            f"seed: {meta['seed']}",
            f"- data: {meta['n_clients']:,} clients, {meta['n_snapshots']:,} labelled snapshots "
            f"({meta['history_start']} to {meta['test_end']}); digest `{meta['data_digest']}`",
            f"- split: train {meta['train_start']}..{meta['train_end']}, validation "
            f"{meta['validation_start']}..{meta['validation_end']}, test {meta['test_start']}.."
            f"{meta['test_end']} (gap {meta['gap_days']} days)",
            f"- calibration: {meta['calibration']} on the validation window",
            "",
            "## Summary",
            "",
            "```",
            format_summary(result),
            "```",
            "",
            "## Backtest per cutoff",
            "",
            "```",
            text_table(result.backtest[[c for c in _BACKTEST_COLUMNS if c in result.backtest]]),
            "```",
            "",
            "## Features",
            "",
            ", ".join(result.model.feature_names),
        ]
    )


def candidates_table(candidates: list[Candidate]) -> pd.DataFrame:
    rows = [
        {
            "candidate": c.name,
            **{k: c.validation[k] for k in REPORTED},
            "params": short_params(c.params),
        }
        for c in candidates
    ]
    return pd.DataFrame(rows)


def _test_table(test: Evaluation) -> pd.DataFrame:
    rows = [
        {
            "metric": k,
            "value": test.metrics[k],
            "90% interval": f"{test.intervals[k][0]:.4f} - {test.intervals[k][1]:.4f}",
            "uncalibrated": test.raw[k],
        }
        for k in REPORTED
    ]
    return pd.DataFrame(rows)


def _oracle_line(oracle: Oracle | None) -> str:
    if oracle is None:
        return "Oracle: no ground truth (only simulated data has true probabilities)"
    cover = "" if oracle.coverage == 1 else f" on {oracle.coverage:.0%} of test snapshots"
    return (
        f"Oracle AUC (simulator's true probability){cover}: {oracle.roc_auc:.4f}; "
        f"model {oracle.model_roc_auc:.4f}; model/oracle {oracle.ratio:.3f}"
    )


def _backtest_line(per_cutoff: pd.DataFrame, summary: pd.DataFrame) -> str:
    if len(per_cutoff) < 2:
        return "Backtest: only the main cutoff had enough data"
    auc, brier = summary.loc["roc_auc"], summary.loc["brier"]
    line = (
        f"Backtest over {len(per_cutoff)} cutoffs ({_day(per_cutoff['cutoff'].min())} to "
        f"{_day(per_cutoff['cutoff'].max())}): AUC {auc['mean']:.4f} ± {auc['std']:.4f} "
        f"(min {auc['min']:.4f}), Brier {brier['mean']:.4f} ± {brier['std']:.4f}"
    )
    if "oracle_ratio" in summary.index:
        ratio = summary.loc["oracle_ratio"]
        line += f", model/oracle {ratio['mean']:.3f} ± {ratio['std']:.3f}"
    return line


class Registered(Protocol):
    """What a training result says about its registration (CRM and flat-table mode alike)."""

    @property
    def promotion(self) -> Promotion: ...
    @property
    def run_id(self) -> str: ...
    @property
    def version(self) -> int | None: ...
    @property
    def local_copy(self) -> Path | None: ...


def decision_line(result: Registered) -> str:
    """One line: the version registered, its run, champion or challenger and why."""
    promo = result.promotion
    where = f"model {MODEL_NAME} version {result.version}" if result.version else "model"
    status = CHAMPION if promo.promoted else CHALLENGER
    local = f"; local copy {result.local_copy}" if result.local_copy else ""
    return f"Registered {where} (run {result.run_id}) -> {status}: {promo.reason}{local}"


def text_table(table: pd.DataFrame) -> str:
    shown = table.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: f"{v:.4f}")
        elif pd.api.types.is_datetime64_any_dtype(shown[column]):
            shown[column] = shown[column].map(_day)
    return shown.to_string(index=False)


# ---------------------------------------------------------------------------------- helpers


@contextmanager
def _step(name: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Log the start and duration of a pipeline step."""
    logger.info("%s ...", name)
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    logger.info("%s done in %.1f s", name, elapsed)
    if timings is not None:
        timings[name] = elapsed


def _windows(split: Split) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex, pd.DatetimeIndex]:
    return split.train, split.validation, split.test


def _day(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _span(dates: pd.DatetimeIndex) -> str:
    return f"{_day(dates[0])}..{_day(dates[-1])}"


def slug(name: str) -> str:
    return "_".join(name.replace("=", "").replace(",", "").split())


def short_params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def package_version() -> str:
    try:
        return metadata.version("churnguard")
    except metadata.PackageNotFoundError:
        return "unknown"
