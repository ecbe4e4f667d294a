"""How good the recipe is on data it never saw: the rolling-origin backtest (CRM histories),
repeated cross-validation (flat tables without time), and the simulator's oracle.

* **Tested model.** On a split in time the chosen recipe (tree count from early stopping,
  calibrator chosen on validation) is refitted on every snapshot labelled before the test window
  opens (``before_test``: train, the gap after it, validation), as the registered model is on all
  labelled rows: still out of time, and about a quarter more history than the train window alone
  (+0.005 AUC at 1,000 simulated clients).
* **Backtest.** The same split shifted back by ``test_periods`` dates per cutoff
  (``backtest_cutoffs`` cutoffs counting the main one); the chosen recipe is refitted and
  recalibrated per cutoff, then refitted before that cutoff's test window. Cutoffs without enough
  data are skipped (logged); the backtest stops where no history is left.
* **Cross-validation.** The whole flat-table recipe (``fit_table``: out-of-fold selection and
  calibration, refit) runs inside the training part of each of ``folds`` x ``repeats`` repeated
  stratified folds and is scored on the held-out part. Plots, tables and bootstrap intervals use
  the first repeat's pooled out-of-fold predictions. From ``PARALLEL_FROM_ROWS`` rows the folds
  are fitted side by side, one worker process per core (each fit runs on one thread, so a
  second core would otherwise idle); the results are the same as one after the other.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from churnguard.modeling.model import ChurnModel
from churnguard.modeling.recipes import fit_estimator
from churnguard.training import pipeline
from churnguard.training.dataset import (
    Dataset,
    NotEnoughDataError,
    Split,
    TrainOptions,
    check_enough_data,
    day,
    split_dates,
)
from churnguard.training.evaluate import evaluate
from churnguard.training.pipeline import (
    REPORTED,
    Candidate,
    Evaluation,
    Fit,
    Oracle,
    evaluate_model,
    evaluation,
    refit_all,
)
from churnguard.training.table import cv_splits

logger = logging.getLogger(__name__)

Packager = Callable[..., ChurnModel]


# ---------------------------------------------------------------------------------- oracle


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


# ---------------------------------------------------------------------------------- backtest


def backtest(
    ds: Dataset,
    X: pd.DataFrame,
    chosen: Candidate,
    main: tuple[Split, Evaluation],
    options: TrainOptions,
    package: Packager,
    truth: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Metrics per rolling-origin cutoff: the main split, then splits shifted back in time.

    With the simulator's truth, each row also has the oracle's AUC on that cutoff's test window.
    """
    dates = ds.dates
    splits = []
    for k in range(1, options.backtest_cutoffs):
        end = len(dates) - k * options.test_periods
        if end <= 0:  # a negative end would wrap around to a later cutoff
            logger.info("  backtest stops at cutoff %s: no history left before it", k)
            break
        kept = dates[:end]
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
        splits.append(split)

    def test_cutoff(split: Split) -> dict[str, Any]:
        model = _refit(ds, X, split, chosen, options, package)
        test_rows = ds.rows(split.test)
        y, revenue = ds.y(test_rows), ds.revenue(test_rows)
        test = evaluate_model(model, X.loc[test_rows], y, options, revenue, n_boot=0)
        return _backtest_row(ds, split, test, truth)

    rows = [_backtest_row(ds, main[0], main[1], truth)]
    for row in pipeline.side_by_side(test_cutoff, splits):  # the cutoffs' fits side by side
        rows.append(row)
        logger.info("  cutoff %s: test AUC %.4f", day(row["cutoff"]), row["roc_auc"])
    return pd.DataFrame(rows)


def _backtest_row(
    ds: Dataset, split: Split, test: Evaluation, truth: pd.DataFrame | None
) -> dict[str, Any]:
    row = {"cutoff": split.test[0], "train_end": split.train[-1], **test.metrics}
    if truth is not None:
        oracle = compare_with_oracle(truth, ds, test, split)
        row |= {"oracle_roc_auc": oracle.roc_auc, "oracle_ratio": oracle.ratio}
    return row


def _refit(
    ds: Dataset,
    X: pd.DataFrame,
    split: Split,
    chosen: Candidate,
    options: TrainOptions,
    package: Packager,
) -> ChurnModel:
    """Refit the chosen recipe on a split, calibrate it on that split's validation window, then
    refit it on every snapshot labelled before the split's test window."""
    from churnguard.modeling.calibration import calibrate

    train, val = ds.rows(split.train), ds.rows(split.validation)
    est, fitted = fit_estimator(
        chosen.kind,
        chosen.params,
        X.loc[train],
        ds.y(train),
        X.loc[val],
        ds.y(val),
        ds.feature_set.categorical,
        options.seed,
    )
    calibrator = calibrate(est, X.loc[val], ds.y(val), options.seed)
    cut = Fit(package(est, chosen.kind, calibrator), [], replace(chosen, params=fitted))
    return refit_before_test(ds, X, split, cut, options, package)


def before_test(ds: Dataset, split: Split, horizon_days: int) -> np.ndarray:
    """Mask of the snapshots whose label is known when the test window opens."""
    known = ds.dates[ds.dates + pd.Timedelta(days=horizon_days) <= split.test[0]]
    return ds.rows(known)


def refit_before_test(
    ds: Dataset, X: pd.DataFrame, split: Split, fit: Fit, options: TrainOptions, package: Packager
) -> ChurnModel:
    """The chosen recipe refitted on every snapshot labelled before the test window, keeping the
    calibrator chosen on validation (module docstring, "Tested model")."""
    rows = before_test(ds, split, options.horizon_days)
    return refit_all(fit, X.loc[rows], ds.y(rows), ds.feature_set.categorical, options, package)


# ---------------------------------------------------------------------------------- folds


PARALLEL_FROM_ROWS = 2_000  # below it a fold takes less time than starting worker processes

FoldResult = tuple[np.ndarray, np.ndarray, str, str, float]  # p, raw, candidate, calibration, s


def cross_validate(
    rows: pd.DataFrame,
    y: np.ndarray,
    fit_table: Callable[[pd.DataFrame, np.ndarray], Fit],
    folds: int,
    repeats: int,
    options: TrainOptions,
    workers: int | None = None,
) -> tuple[pd.DataFrame, Evaluation]:
    """``fit_table`` inside each training part of repeated stratified folds.

    ``workers``: processes fitting folds side by side (None: one per core from
    ``PARALLEL_FROM_ROWS`` rows, else 1; 1: this process). ``fit_table`` must then be picklable.
    Returns metrics per fold and the first repeat's pooled out-of-fold evaluation.
    """
    per_fold = []
    p, raw = np.full(len(y), np.nan), np.full(len(y), np.nan)
    splits = cv_splits(y, folds, repeats, options.seed)
    if workers is None:
        workers = (os.cpu_count() or 1) if len(rows) >= PARALLEL_FROM_ROWS else 1
    results = _fold_results(rows, y, fit_table, splits, min(workers, len(splits)))
    for (repeat, fold, _, test), (p_test, raw_test, chosen, method, seconds) in zip(
        splits, results, strict=True
    ):
        metrics = evaluate(y[test], p_test)
        per_fold.append(
            {
                "repeat": repeat + 1,
                "fold": fold + 1,
                **{k: metrics[k] for k in REPORTED},
                "raw_roc_auc": evaluate(y[test], raw_test)["roc_auc"],
                "n": metrics["n"],
                "n_positive": metrics["n_positive"],
                "candidate": chosen,
                "calibration": method,
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
            chosen,
            seconds,
        )
    seen = ~np.isnan(p)
    return pd.DataFrame(per_fold), evaluation(y[seen], p[seen], raw[seen], options)


def _fold_results(
    rows: pd.DataFrame,
    y: np.ndarray,
    fit_table: Callable[[pd.DataFrame, np.ndarray], Fit],
    splits: list[tuple[int, int, np.ndarray, np.ndarray]],
    workers: int,
) -> Iterator[FoldResult]:
    """Each split's held-out predictions, in split order (in worker processes when > 1)."""
    parts = [(train, test) for _, _, train, test in splits]
    if workers <= 1:
        yield from (_fit_fold(part, (rows, y, fit_table)) for part in parts)
        return
    # worker processes start from a forkserver: a fork of this process could inherit OpenMP
    # threads it cannot use; each gets the table once, then only the folds' row numbers
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = ProcessPoolExecutor(
        workers, context, initializer=_take_table, initargs=(rows, y, fit_table)
    )
    try:
        yield from pool.map(_fit_worker_fold, parts)
    finally:  # a fold that failed (or an interrupt) ends the run: the folds not begun are dropped
        pool.shutdown(cancel_futures=True)


Table = tuple[pd.DataFrame, np.ndarray, Callable[[pd.DataFrame, np.ndarray], Fit]]
_table: Table | None = None  # a worker process's table, set once as it starts


def _take_table(
    rows: pd.DataFrame, y: np.ndarray, fit_table: Callable[[pd.DataFrame, np.ndarray], Fit]
) -> None:
    global _table
    _table = (rows, y, fit_table)
    pipeline.FIT_THREADS = 1  # the folds fill the cores


def _fit_worker_fold(part: tuple[np.ndarray, np.ndarray]) -> FoldResult:
    assert _table is not None, "a worker process without its table"
    return _fit_fold(part, _table)


def _fit_fold(part: tuple[np.ndarray, np.ndarray], table: Table) -> FoldResult:
    """The recipe fitted on a fold's training rows, its predictions on the held-out rows."""
    rows, y, fit_table = table
    started = time.perf_counter()
    train, test = part
    fit = fit_table(rows.iloc[train], y[train])
    held_out = rows.iloc[test]
    p, raw = fit.model.predict_proba(held_out), fit.model.raw_proba(held_out)
    return p, raw, fit.chosen.name, fit.model.calibrator.method, time.perf_counter() - started
