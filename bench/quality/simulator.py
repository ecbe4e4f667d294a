"""Model quality on the simulator against its ground truth, beside plain baselines.

Usage: python -m bench.quality.simulator [--clients 1000 5000] [--cutoffs 3] [--seed 7]

For each simulated business: the labelled monthly snapshots and features ``churnguard train``
builds, then the rolling-origin cutoffs of its backtest (the main out-of-time split and the same
split shifted back by the test window, up to ``--cutoffs``). On every cutoff the models are
fitted and scored on the same test snapshots: churnguard's recipe (candidates, selection and
calibration of ``training.pipeline.fit_on_windows``, then the refit on every snapshot labelled
before the test window that ``churnguard train`` tests), a default logistic regression, a default
LightGBM and a default CatBoost when installed (``bench.quality.baselines``, all fitted on those
same snapshots labelled before the test window, as they need no validation window). The
simulator's true probabilities give the oracle's AUC on the same snapshots.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

import pandas as pd

from bench.quality.baselines import Predict, available
from bench.quality.footer import footer
from churnguard.modeling.model import align_inputs
from churnguard.synth.business import simulate
from churnguard.training.dataset import (
    NotEnoughDataError,
    TrainOptions,
    build_dataset,
    categories,
    check_enough_data,
    day,
    split_dates,
)
from churnguard.training.evaluate import evaluate
from churnguard.training.pipeline import evaluate_model, fit_on_windows
from churnguard.training.resampling import before_test, oracle_scores, refit_before_test
from churnguard.training.train import package_crm

SHOWN = ("roc_auc", "pr_auc", "brier", "log_loss", "oracle_ratio")


def run(
    clients: int,
    months: int,
    cutoffs: int,
    seed: int,
    baselines: dict[str, Predict] | None = None,
    ours: bool = True,
) -> pd.DataFrame:
    """Every model (churnguard unless not ours) on every cutoff of one simulated business: one
    row per (cutoff, model)."""
    baselines = available() if baselines is None else baselines
    business = simulate(clients=clients, months=months, seed=seed)
    options = TrainOptions(seed=seed)
    ds = build_dataset(business.data, options)
    X = align_inputs(ds.features, ds.feature_set.names, categories(ds))
    package = partial(package_crm, ds, options)
    dates, rows = ds.dates, []
    for k in range(cutoffs):
        end = len(dates) - k * options.test_periods
        try:
            split = split_dates(dates[:end], options.horizon_days) if end > 0 else None
            if split is None:
                break
            check_enough_data(ds, split, options)
        except NotEnoughDataError:
            continue
        te = ds.rows(split.test)
        y_te = ds.y(te)
        truth = oracle_scores(business.truth, ds.labels.loc[te])
        oracle_auc = evaluate(y_te, truth)["roc_auc"]
        predictions, seconds, note = (
            _churnguard(ds, X, split, options, package) if ours else ({}, {}, {})
        )
        fitted = before_test(ds, split, options.horizon_days)
        for name, predict in baselines.items():
            started = time.perf_counter()
            rows_fit = ds.features.loc[fitted, ds.feature_set.names]
            rows_test = ds.features.loc[te, ds.feature_set.names]
            predictions[name] = predict(rows_fit, ds.y(fitted), rows_test)[0]
            seconds[name], note[name] = time.perf_counter() - started, "defaults"
        for name, p in predictions.items():
            m = evaluate(y_te, p)
            rows.append(
                {
                    "clients": clients,
                    "cutoff": day(split.test[0]),
                    "model": name,
                    **{k: m[k] for k in SHOWN if k in m},
                    "oracle_ratio": m["roc_auc"] / oracle_auc,
                    "n_positive": int(m["n_positive"]),
                    "seconds": seconds[name],
                    "note": note[name],
                }
            )
        print(f"  {clients} clients, cutoff {day(split.test[0])}: done", flush=True)
    return pd.DataFrame(rows)


def _churnguard(
    ds: Any, X: pd.DataFrame, split: Any, options: TrainOptions, package: Any
) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """churnguard's recipe on one cutoff, as ``churnguard train`` tests it: predictions on the
    test window, seconds, what was chosen."""
    tr, val, te = (ds.rows(d) for d in (split.train, split.validation, split.test))
    started = time.perf_counter()
    fit = fit_on_windows(
        (X.loc[tr], X.loc[val]),
        (ds.y(tr), ds.y(val)),
        ds.feature_set.categorical,
        ds.events(tr),
        options,
        package,
    )
    model = refit_before_test(ds, X, split, fit, options, package)
    p = evaluate_model(model, X.loc[te], ds.y(te), options, n_boot=0).p
    seconds = {"churnguard": time.perf_counter() - started}
    return (
        {"churnguard": p},
        seconds,
        {"churnguard": f"{fit.chosen.name}, {fit.model.calibrator.method}"},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--cutoffs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="CSV of every model's metrics per cutoff")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = pd.concat([run(n, args.months, args.cutoffs, args.seed) for n in args.clients])
    pd.set_option("display.width", 200)
    for clients, part in results.groupby("clients", sort=False):
        print(f"\n{clients:,} clients: mean (min) over {part['cutoff'].nunique()} cutoffs")
        grouped = part.groupby("model", sort=False)
        table = pd.DataFrame(
            {
                k: [
                    f"{m:.4f} ({lo:.4f})" if k in ("roc_auc", "oracle_ratio") else f"{m:.4f}"
                    for m, lo in zip(grouped[k].mean(), grouped[k].min(), strict=True)
                ]
                for k in SHOWN
            },
            index=list(grouped.groups),
        )
        table["seconds"] = grouped["seconds"].sum().round(1).to_numpy()
        print(table.to_string())
        wide = part.pivot(index="cutoff", columns="model", values=["roc_auc", "brier"])
        print(wide.to_string(float_format=lambda v: f"{v:.4f}"))
        chosen = part[part["model"] == "churnguard"][["cutoff", "note", "n_positive"]]
        print(chosen.to_string(index=False))
    print(footer(started))
    if args.out:
        results.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
