"""What the horizon model costs at scale, and what its levers cost in quality: one business, each
variant of ``training.horizons`` in turn on the same data.

Usage: python -m bench.quality.horizon_cost [CLIENTS] [VARIANT ...]   (default 20000, all)

Variants: ``before`` (rate 0.05 on every training person-period), ``rate 0.1``, ``sample Nk``
(every period of a seeded share of clients, about N thousand rows) with rate 0.1, ``columns 0.5``.
Per variant: trees, CPU and wall seconds of ``train_horizons`` (labels, person-periods, fit), and
AUC, Brier and log loss at 30, 90 and 180 days on the horizon split's test snapshots.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.quality.footer import footer
from churnguard.modeling.horizons import HORIZONS_DAYS, PERIOD_DAYS
from churnguard.synth.business import simulate
from churnguard.training import horizons
from churnguard.training.dataset import TrainOptions, build_dataset
from churnguard.training.evaluate import evaluate

ALL = 10**12
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"FAST_FROM_ROWS": ALL, "MAX_TRAIN_ROWS": ALL},
    "rate 0.1": {"FAST_FROM_ROWS": 0, "MAX_TRAIN_ROWS": ALL},
    "sample 500k": {"FAST_FROM_ROWS": 0, "MAX_TRAIN_ROWS": 500_000},
    "sample 250k": {"FAST_FROM_ROWS": 0, "MAX_TRAIN_ROWS": 250_000},
    "columns 0.5": {"FAST_FROM_ROWS": ALL, "MAX_TRAIN_ROWS": ALL, "feature_fraction": 0.5},
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    clients = int(args[0]) if args else 20_000
    chosen = args[1:] or list(VARIANTS)
    started = time.perf_counter()
    ds = build_dataset(simulate(clients=clients, months=36, seed=7).data, TrainOptions())
    base = dict(horizons.PARAMS)
    for name in chosen:
        variant = VARIANTS[name]
        horizons.PARAMS = {**base, **{k: v for k, v in variant.items() if k.islower()}}
        for k, v in variant.items():
            if k.isupper():
                setattr(horizons, k, v)
        cpu, wall = time.process_time(), time.perf_counter()
        fit = horizons.train_horizons(ds, 7)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        test = ds.labels["as_of"].isin(fit.split.test).to_numpy()
        curve = fit.model.curve(fit.X[test])
        cells = []
        for j, h in enumerate(HORIZONS_DAYS):
            y = fit.labels.loc[test, f"churned_{h // PERIOD_DAYS}"].to_numpy().astype(int)
            m = evaluate(y, curve[:, j])
            cells.append(f"{h} d {m['roc_auc']:.4f} / {m['brier']:.5f} / {m['log_loss']:.5f}")
        trees = fit.model.booster.num_trees()
        print(f"{name}: {trees} trees, CPU {cpu:.1f} s, wall {wall:.0f} s; " + "; ".join(cells))
    print(footer(started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
