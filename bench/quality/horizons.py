"""Risk over several horizons on the simulator: each horizon out of time and against the oracle.

Usage: python -m bench.quality.horizons [--clients 2000] [--months 36] [--seed 7]

One simulated business (the simulator's data do not depend on the horizon its ground truth is
computed for, so the oracle at 30, 90 and 180 days comes from three runs with the same seed). The
horizon model (``training.horizons``) is fitted once; on the same test snapshots each horizon's
P(churn within h) is compared with the label at h (AUC, Brier, ECE) and with the simulator's true
probability at h (oracle AUC and Brier, and the mean absolute gap to it). The curve is checked to
be non-decreasing on every test snapshot. For comparison, churnguard's single-horizon (90-day)
recipe is fitted on the same train and validation windows and scored on the same test snapshots.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import pandas as pd

from churnguard.modeling.horizons import HORIZONS_DAYS, PERIOD_DAYS
from churnguard.modeling.model import align_inputs
from churnguard.synth.business import simulate
from churnguard.training.dataset import (
    Dataset,
    Split,
    TrainOptions,
    build_dataset,
    categories,
    span,
)
from churnguard.training.evaluate import evaluate
from churnguard.training.horizons import train_horizons
from churnguard.training.pipeline import fit_on_windows
from churnguard.training.resampling import oracle_scores
from churnguard.training.train import package_crm


def run(clients: int, months: int, seed: int) -> pd.DataFrame:
    """One row per horizon: model and oracle metrics on the test snapshots."""
    truth = {h: simulate(clients, months, seed, horizon_days=h).truth for h in HORIZONS_DAYS}
    business = simulate(clients, months, seed)
    ds = build_dataset(business.data, TrainOptions(seed=seed))
    t0 = time.perf_counter()
    fit = train_horizons(ds, seed)
    print(f"fit {time.perf_counter() - t0:.1f} s; test {span(fit.split.test)}")
    test = ds.labels["as_of"].isin(fit.split.test).to_numpy()
    curve = fit.model.curve(fit.X[test])
    assert (np.diff(curve, axis=1) >= 0).all(), "a curve decreases"
    single = _single_horizon(ds, fit.split, seed)[test]
    rows = []
    for j, h in enumerate(HORIZONS_DAYS):
        y = fit.labels.loc[test, f"churned_{h // PERIOD_DAYS}"].to_numpy().astype(int)
        p = curve[:, j]
        oracle = oracle_scores(truth[h], ds.labels.loc[test])
        known = ~np.isnan(oracle)
        m, o = evaluate(y, p), evaluate(y[known], oracle[known])
        rows.append(
            {
                "horizon": h,
                "n": len(y),
                "churn_rate": y.mean(),
                "roc_auc": m["roc_auc"],
                "brier": m["brier"],
                "ece": m["ece"],
                "oracle_auc": o["roc_auc"],
                "oracle_brier": o["brier"],
                "oracle_ece": o["ece"],
                "mean_abs_gap": float(np.abs(p[known] - oracle[known]).mean()),
                "mean_p": p.mean(),
            }
        )
    y90 = ds.y(test)
    m = evaluate(y90, single)
    print(
        f"single-horizon 90-day model on the same windows: AUC {m['roc_auc']:.4f}, "
        f"Brier {m['brier']:.4f}, ECE {m['ece']:.4f}, mean p {single.mean():.4f}"
    )
    return pd.DataFrame(rows)


def _single_horizon(ds: Dataset, split: Split, seed: int) -> np.ndarray:
    """churnguard's 90-day recipe fitted on the horizon model's windows; P for every row."""
    options = TrainOptions(seed=seed)
    X = align_inputs(ds.features, ds.feature_set.names, categories(ds))
    tr, val = ds.rows(split.train), ds.rows(split.validation)
    fit = fit_on_windows(
        (X.loc[tr], X.loc[val]),
        (ds.y(tr), ds.y(val)),
        ds.feature_set.categorical,
        ds.events(tr),
        options,
        partial(package_crm, ds, options),
    )
    return fit.model.predict_proba(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    table = run(args.clients, args.months, args.seed)
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
