"""Tree contributions: ``modeling.treeshap`` against LightGBM's own ``pred_contrib``, side by side.

Usage: python -m bench.treeshap_bench [--rows 5000] [--single 300] [--home DIR]

Models: the scoring benchmark's LightGBM model (``bench.scoring_bench.train_models``: 16 leaves,
early stopping, trained on a 3,000-client simulation) on the features of a 20,000-client book,
and, with ``--home``, that home's champion (e.g. the demo's: ``bench.startup_bench make-home``) on
the same rows' shape with random values. For each: CPU per row of both in bulk (one thread) and
for one row at a time, the ratio, and the largest difference between the two (log-odds).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np

from churnguard.domain.churn import observation_end
from churnguard.modeling.treeshap import Explainer
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import Scorer
from churnguard.synth.business import simulate


def per_row_us(fn: Callable[[np.ndarray], Any], rows: Sequence[np.ndarray]) -> float:
    """CPU microseconds per row of ``fn`` over ``rows`` (after a few untimed calls)."""
    for r in rows[:5]:
        fn(r)
    start = time.process_time()
    for r in rows:
        fn(r)
    return (time.process_time() - start) / sum(len(r) for r in rows) * 1e6


def compare(name: str, booster: lightgbm.Booster, X: np.ndarray, single: int) -> None:
    built = time.process_time()
    explainer = Explainer.of(booster.dump_model())
    built = time.process_time() - built
    if explainer is None:
        print(f"{name}: not covered by the tables (LightGBM computes it)")
        return
    own = np.asarray(booster.predict(X, pred_contrib=True, num_threads=1))[:, :-1]
    worst = float(np.abs(explainer.contributions(X) - own).max())
    blocks = [X[i : i + 1000] for i in range(0, len(X), 1000)]
    ones = [X[i : i + 1] for i in range(min(single, len(X)))]

    def lgb(r: np.ndarray) -> Any:
        return booster.predict(r, pred_contrib=True, num_threads=1)

    bulk = per_row_us(lgb, blocks), per_row_us(explainer.contributions, blocks)
    one = per_row_us(lgb, ones), per_row_us(explainer.contributions, ones)
    print(
        f"{name}: {booster.num_trees()} trees, {len(explainer.path_width)} paths, tables "
        f"{explainer.table.size:,} values built in {built:.2f} s CPU; "
        f"largest difference {worst:.1e}"
    )
    print(f"  bulk ({len(X):,} rows, one thread): pred_contrib {bulk[0]:.1f} us/row, tables "
          f"{bulk[1]:.1f} us/row: {bulk[0] / bulk[1]:.2f}x")  # fmt: skip
    print(f"  one row at a time ({len(ones)} rows): pred_contrib {one[0]:.1f} us, tables "
          f"{one[1]:.1f} us: {one[0] / one[1]:.2f}x")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--home", type=Path, help="a home whose champion is compared too")
    args = parser.parse_args(argv)
    from bench.scoring_bench import train_models  # the scoring benchmark's model

    print(f"load average {os.getloadavg()}")
    models, _ = train_models(3000, 36)
    model = models["lightgbm"]
    assert model.booster is not None
    data = simulate(clients=20_000, months=36, seed=11).data
    scorer = Scorer(model, "bench", load_playbook(feature_set=model.feature_set))
    X = scorer.matrix(scorer.features_at(data, observation_end(data)).head(args.rows))
    compare("scoring benchmark's LightGBM", model.booster, X, args.single)
    if args.home is not None:
        champion = joblib.load(args.home / "models" / "champion.joblib")
        if champion.booster is not None:
            rng = np.random.default_rng(0)
            Y = rng.normal(size=(args.rows, champion.booster.num_feature())) * 10
            compare(f"champion of {args.home}", champion.booster, Y, args.single)
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
