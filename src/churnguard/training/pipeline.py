"""The steps every training run shares, whatever its data: fit candidates, select, calibrate,
evaluate, compare with the champion.

A run's data (CRM snapshots in ``dataset.py``, a flat table in ``table.py``) decides only the
rows: which are training, validation and test, or which folds. From there the steps are one:

* **Candidates** are ``modeling.recipes``: a regularised logistic regression at three strengths
  and, with at least ``lightgbm_min_train_events`` churn events in training, a small budgeted
  LightGBM search (early-stopped on the validation rows, no class weights so probabilities stay
  honest).
* **Selection** by validation log loss of the raw probabilities: a proper scoring rule, so it
  rewards ranking and honest probabilities alike (AUC alone picked models whose Brier was worse
  on every fold of a held-out public dataset). Candidates within ``SELECTION_TIE`` (relative) of
  the lowest count as tied and the simplest wins (logistic before LightGBM, stronger
  regularisation first); ``chosen_because`` says which of the two happened.
* **Calibration** on held-out rows (the validation window, or out-of-fold predictions):
  ``modeling.calibration.calibrate_raw``.
* **Final refit.** After selection the chosen recipe is refitted on every labelled row (LightGBM
  with the tree count early stopping chose), so the registered model is as fresh as the data
  allows; the reported metrics stay those of a held-out fit, and the run says so. On a split in
  time that held-out fit is the same refit on every row labelled before the test window
  (``resampling.refit_before_test``), so the test measures what gets registered.
* **Out-of-fold fitting** (no validation window): each candidate gets out-of-fold raw
  probabilities over stratified folds; LightGBM early-stops on the held-out fold and keeps the
  median tree count; the chosen one is calibrated on its out-of-fold probabilities and refitted on
  all rows.
* **Usefulness gate.** A model whose held-out AUC interval includes 0.5, or whose Brier score is
  not below the base rate's (everyone gets the held-out churn rate), is registered but never
  promoted, champion or not. With fewer than ``MIN_TEST_EVENTS`` churned held-out rows the
  reason says the data is too thin to tell, and what would help.
* **Promotion gate.** A useful new version becomes ``champion`` when there is none, or when on the
  same rows its AUC is at most ``gate_tolerance`` below the champion's and its Brier score at most
  ``gate_tolerance`` above. A champion that cannot be compared is never replaced automatically.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from churnguard.modeling.calibration import Calibrator, calibrate_raw
from churnguard.modeling.model import ChurnModel, Estimator, ModelKind
from churnguard.modeling.recipes import Recipe, fit_estimator, raw_proba, recipes
from churnguard.training.dataset import TrainOptions
from churnguard.training.evaluate import bootstrap_intervals, evaluate

if TYPE_CHECKING:
    from churnguard.modeling.registry import Registry

logger = logging.getLogger(__name__)

SELECTION_TIE = 0.005  # relative: log losses within 0.5% of the lowest count as tied
MIN_TEST_EVENTS = 30  # below this many churned test rows, chance cannot be told from a model
REPORTED = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "top_decile_lift")
MANUAL = "not comparable; use `churnguard promote` to switch"

Package = Callable[[Estimator, ModelKind, Calibrator], ChurnModel]
# the champion's metrics on this run's held-out rows; or (this model's, the champion's) on the
# held-out rows the champion did not learn from; or why there are none
Rescore = Callable[
    [ChurnModel], "dict[str, float] | tuple[dict[str, float], dict[str, float]] | str"
]


@dataclass(frozen=True)
class Candidate:
    """A fitted candidate with its raw validation (or out-of-fold) metrics."""

    name: str
    kind: ModelKind
    params: dict[str, Any]
    estimator: Any
    validation: dict[str, float]


@dataclass(frozen=True)
class Fit:
    """A calibrated model and the candidates it was chosen from."""

    model: ChurnModel
    candidates: list[Candidate]
    chosen: Candidate
    because: str = ""  # why the chosen candidate won


@dataclass(frozen=True)
class Evaluation:
    """Metrics of calibrated probabilities on held-out rows, with intervals and raw metrics."""

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
    useless: str = ""  # why the model is no better than chance or the base rate ("": it is)


@dataclass(frozen=True)
class TrainResult:
    """Everything a training run produced, CRM history or flat table alike.

    ``about`` (summary lines on the data and windows), ``params`` (run parameters of the data
    and split), ``notes`` (closing summary lines) and ``texts`` (extra artifacts) are what the
    data's mode adds; everything else means the same in both modes.
    """

    mode: str
    evaluation: str  # how the metrics were obtained (out of time, or cross-validated)
    fit: Fit
    test: Evaluation  # the test window, or the first repeat's pooled out-of-fold predictions
    folds: pd.DataFrame  # metrics per backtest cutoff or cross-validation fold (may be empty)
    windows: pd.DataFrame  # window, start, end, rows, churned (empty when cross-validated)
    promotion: Promotion
    digest: str
    params: dict[str, Any]
    about: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    oracle: Oracle | None = None
    dataset: Any = None  # the Dataset (CRM history) or TableData (flat table) trained on
    run_id: str = ""
    version: int | None = None
    local_copy: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> ChurnModel:
        return self.fit.model

    @property
    def candidates(self) -> list[Candidate]:
        return self.fit.candidates

    @property
    def chosen(self) -> Candidate:
        return self.fit.chosen

    @property
    def cross_validated(self) -> bool:
        return self.windows.empty

    @property
    def prefix(self) -> str:
        """Metric name prefix of the headline metrics: cv or test."""
        return "cv" if self.cross_validated else "test"

    @property
    def metrics(self) -> dict[str, float]:
        """Headline metrics: the test window's, or the mean over cross-validation folds."""
        if self.cross_validated:
            return {k: float(self.folds[k].mean()) for k in REPORTED}
        return {k: self.test.metrics[k] for k in REPORTED}


# ---------------------------------------------------------------------------------- candidates


T = TypeVar("T")
R = TypeVar("R")
FIT_THREADS: int | None = None  # fits side by side (None: one per core); 1 in worker processes


def side_by_side(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(fn, items)``, on ``FIT_THREADS`` threads: each fit runs LightGBM or scikit-learn
    on one thread, mostly outside the GIL, so a second core would otherwise idle. Results come
    in ``items``' order and are the same as one after the other (each fit is seeded)."""
    items = list(items)
    threads = min(FIT_THREADS or os.cpu_count() or 1, len(items))
    if threads <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="fit")
    try:
        yield from pool.map(fn, items)
    finally:  # a fit that failed ends the step: the fits not begun are dropped
        pool.shutdown(cancel_futures=True)


def fit_on_windows(
    X: tuple[pd.DataFrame, pd.DataFrame],
    y: tuple[np.ndarray, np.ndarray],
    categorical: Sequence[str],
    events: int,
    options: TrainOptions,
    package: Package,
) -> Fit:
    """Fit every recipe on the train rows, select and calibrate on the validation rows.

    Args:
        X, y: (train, validation) inputs and labels.
        events: distinct churn events in training (decides whether LightGBM is tried).
        package: wraps a fitted estimator and calibrator into the mode's ChurnModel.
    """
    (X_tr, X_val), (y_tr, y_val) = X, y

    def fit(recipe: Recipe) -> tuple[Candidate, float]:
        name, kind, params = recipe
        started = time.perf_counter()
        est, fitted = fit_estimator(
            kind, params, X_tr, y_tr, X_val, y_val, categorical, options.seed
        )
        metrics = evaluate(y_val, raw_proba(est, X_val))
        return Candidate(name, kind, fitted, est, metrics), time.perf_counter() - started

    candidates = []
    found = recipes(events, options.lightgbm_min_train_events, len(X_tr))
    for candidate, seconds in side_by_side(fit, found):
        _log_candidate(candidate.name, candidate.validation, seconds, candidate.params)
        candidates.append(candidate)
    chosen = select(candidates)
    raw = raw_proba(chosen.estimator, X_val)
    calibrator = calibrate_raw(raw, y_val, options.seed)
    because = chosen_because(candidates, chosen, "validation")
    return Fit(package(chosen.estimator, chosen.kind, calibrator), candidates, chosen, because)


def fit_out_of_fold(
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: Sequence[str],
    folds: int,
    options: TrainOptions,
    package: Package,
) -> Fit:
    """Select and calibrate on out-of-fold predictions, then refit the chosen recipe on all rows."""
    inner = StratifiedKFold(folds, shuffle=True, random_state=options.seed)
    splits = list(inner.split(X, y))
    candidates, oof = [], {}

    def fit(recipe: Recipe) -> tuple[np.ndarray, list[int]]:
        _, kind, params = recipe
        return _out_of_fold(kind, params, X, y, splits, categorical, options.seed)

    found = recipes(int(y.sum()), options.lightgbm_min_train_events, len(X))
    for (name, kind, params), (raw, trees) in zip(found, side_by_side(fit, found), strict=True):
        fitted = {**params, "n_estimators": int(np.median(trees))} if trees else dict(params)
        candidates.append(Candidate(name, kind, fitted, None, evaluate(y, raw)))
        oof[name] = raw
    chosen = select(candidates)
    calibrator = calibrate_raw(oof[chosen.name], y, options.seed)
    est, _ = fit_estimator(chosen.kind, chosen.params, X, y, None, None, categorical, options.seed)
    because = chosen_because(candidates, chosen, "out-of-fold")
    model = package(est, chosen.kind, calibrator)
    return Fit(model, candidates, replace(chosen, estimator=est), because)


def _out_of_fold(
    kind: ModelKind,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    categorical: Sequence[str],
    seed: int,
) -> tuple[np.ndarray, list[int]]:
    """Raw out-of-fold probabilities of one recipe, and LightGBM's tree count per fold."""
    raw = np.zeros(len(y))
    trees = []
    for fit_rows, held_out in splits:
        X_out, y_out = X.iloc[held_out], y[held_out]
        est, fitted = fit_estimator(
            kind, params, X.iloc[fit_rows], y[fit_rows], X_out, y_out, categorical, seed
        )
        raw[held_out] = raw_proba(est, X_out)
        trees += [fitted["best_iteration"]] if "best_iteration" in fitted else []
    return raw, trees


def refit_all(
    fit: Fit,
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: Sequence[str],
    options: TrainOptions,
    package: Package,
) -> ChurnModel:
    """The chosen recipe refitted on every labelled row, with the calibrator chosen held out.

    LightGBM grows the number of trees early stopping chose on the validation rows.
    """
    chosen = fit.chosen
    params = dict(chosen.params)
    if "best_iteration" in params:
        params["n_estimators"] = params.pop("best_iteration")
    est, _ = fit_estimator(chosen.kind, params, X, y, None, None, categorical, options.seed)
    return package(est, chosen.kind, fit.model.calibrator)


def select(candidates: list[Candidate]) -> Candidate:
    """Lowest validation log loss; within SELECTION_TIE of it, the simplest (first) candidate."""
    best = min(c.validation["log_loss"] for c in candidates)
    return next(c for c in candidates if c.validation["log_loss"] <= best * (1 + SELECTION_TIE))


def chosen_because(candidates: list[Candidate], chosen: Candidate, where: str) -> str:
    """Why select chose this candidate, in words, with the figures behind it."""
    loss = chosen.validation["log_loss"]
    facts = f"AUC {chosen.validation['roc_auc']:.4f}, PR AUC {chosen.validation['pr_auc']:.4f}"
    best = min(candidates, key=lambda c: c.validation["log_loss"])
    if best is not chosen:
        return (
            f"{where} log loss {loss:.4f} within {SELECTION_TIE:.1%} of the lowest "
            f"({best.validation['log_loss']:.4f}, {best.name}): the simpler model ({facts})"
        )
    others = [c for c in candidates if c is not chosen]
    if not others:
        return f"the only candidate ({where} log loss {loss:.4f}, {facts})"
    runner = min(others, key=lambda c: c.validation["log_loss"])
    return (
        f"lowest {where} log loss {loss:.4f} (next: {runner.name} "
        f"{runner.validation['log_loss']:.4f}; {facts})"
    )


def _log_candidate(
    name: str, metrics: dict[str, float], elapsed: float, params: dict[str, Any]
) -> None:
    auc = metrics["roc_auc"]
    logger.info("  %-20s validation AUC %.4f (%.1f s) %s", name, auc, elapsed, short_params(params))


# ---------------------------------------------------------------------------------- evaluation


def evaluation(
    y: np.ndarray,
    p: np.ndarray,
    raw: np.ndarray,
    options: TrainOptions,
    revenue: np.ndarray | None = None,
    n_boot: int | None = None,
) -> Evaluation:
    """Calibrated metrics with bootstrap intervals (none when n_boot=0), and raw metrics."""
    n_boot = options.n_boot if n_boot is None else n_boot
    intervals = (
        bootstrap_intervals(y, p, revenue, n_boot=n_boot, seed=options.seed, centred=("ece",))
        if n_boot
        else {}
    )
    return Evaluation(evaluate(y, p, revenue), intervals, evaluate(y, raw, revenue), y, p)


def evaluate_model(
    model: ChurnModel,
    X: pd.DataFrame,
    y: np.ndarray,
    options: TrainOptions,
    revenue: np.ndarray | None = None,
    n_boot: int | None = None,
) -> Evaluation:
    """A packaged model's evaluation on estimator inputs X."""
    raw = raw_proba(model.estimator, X)
    return evaluation(y, model.calibrator.transform(raw), raw, options, revenue, n_boot)


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


def useless_because(test: Evaluation, advice: str) -> str:
    """Why a model is no better than chance or than the base rate on held-out rows ("" if useful).

    Args:
        test: the held-out evaluation (AUC interval from its bootstrap).
        advice: what would give more churn events to learn and test on (mode-specific).
    """
    m = test.metrics
    auc, events = m["roc_auc"], int(m["n_positive"])
    low, high = test.intervals.get("roc_auc", (auc, auc))
    if not low > 0.5:
        chance = f"test AUC {auc:.3f} (90% interval {low:.3f}-{high:.3f}) includes 0.5 (chance)"
        if events < MIN_TEST_EVENTS:
            return (
                f"useless or untestable: {chance} with only {events} churn events held out, too "
                f"few to tell; {advice}"
            )
        return f"no better than chance: {chance}"
    base = m["base_rate"] * (1 - m["base_rate"])
    if not m["brier"] < base:
        return (
            f"no better than the base rate: Brier {m['brier']:.4f} vs {base:.4f} for predicting "
            f"{m['base_rate']:.1%} for everyone"
        )
    return ""


def gate(
    registry: Registry,
    metrics: dict[str, float],
    rescore: Rescore,
    tolerance: float,
    where: str = "",
    useless: str = "",
) -> Promotion:
    """Compare with the current champion: rescore gives its metrics on the same rows, or why not.

    A useless model (``useless`` says why) is never promoted. A champion that cannot be compared
    (rescore says why, or fails) is not replaced automatically: ``churnguard promote`` can do it.
    """
    from churnguard.modeling.registry import CHAMPION

    version = registry.alias_version(CHAMPION)
    if useless:
        stays = f"; champion v{version} stays" if version is not None else "; no champion"
        return Promotion(False, f"not promoted, {useless}{stays}", version, useless=useless)
    if version is None:
        return Promotion(True, "no champion yet")
    try:
        scored = rescore(registry.load_model(version))
    except Exception as exc:  # any failure to re-score keeps the current champion
        logger.warning("could not re-score champion v%s: %s", version, exc)
        return Promotion(False, f"champion v{version} could not be re-scored ({exc}): {MANUAL}")
    if isinstance(scored, str):
        return Promotion(False, f"champion v{version} {scored}: {MANUAL}", version)
    if isinstance(scored, tuple):
        metrics, scored = scored
    decision = decide_promotion(metrics, scored, tolerance, version)
    if where:
        decision = replace(decision, reason=decision.reason.replace("on this test window", where))
    return replace(decision, champion_metrics=scored)


def short_params(params: dict[str, Any]) -> str:
    """Params as k=v, floats short."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
