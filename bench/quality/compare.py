"""churnguard's defaults against default learners, on the same folds, fold by fold.

Usage: python -m bench.quality.compare [--data telco lookalike simulator] [--folds 5]
       [--repeats 3] [--clients 1000 5000] [--cutoffs 3] [--seed 7] [--out FILE.csv]
       [--models churnguard logistic lightgbm catboost] [--reuse EARLIER.csv ...] [--seeds 7 11 13]

Flat tables (Telco, and the SYNTHETIC telecom look-alike of ``bench.quality.lookalike``) run on
repeated stratified folds (``training.table.cv_splits``); the simulator on its backtest cutoffs
(``bench.quality.simulator``; ``--seeds`` simulates one business per seed, so the oracle ratio's
spread over businesses and cutoffs shows). On each fold churnguard's recipe, fitted inside the
training fold, meets a default logistic regression, a default LightGBM and a default CatBoost
(when installed; ``bench.quality.baselines``). Printed: mean ± std per model, AUC and Brier per
fold, and on how many folds churnguard beats each baseline and all of them at once (higher AUC,
lower Brier).

The baselines are deterministic (fixed seeds, one thread), so a run can fit only some models
(``--models``) and take the others' rows from an earlier run's CSV (``--reuse``, matched on data,
fold and model; the report says which were reused): CatBoost's 15 Telco folds then run once.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from bench.quality import simulator, telco
from bench.quality.baselines import available
from bench.quality.footer import footer
from bench.quality.lookalike import lookalike

SHOWN = ("roc_auc", "pr_auc", "brier", "log_loss")
OURS = "churnguard"


def flat(name: str, folds: int, repeats: int, seed: int, only: list[str]) -> pd.DataFrame:
    """The chosen models on every fold of one flat table: one row per (fold, model)."""
    rows, y = telco.load_telco() if name == "telco" else lookalike(seed=seed)
    print(f"{name}: {len(y):,} rows, {y.mean():.1%} churned; {folds} folds x {repeats} repeats")
    every = {OURS: telco.predict_churnguard, **available()}
    models = {k: v for k, v in every.items() if k in only}
    out = telco.run(rows, y, folds, repeats, seed, models)
    out["fold"] = out["repeat"].astype(str) + "." + out["fold"].astype(str)
    return out.drop(columns=["p", "test", "repeat"]).assign(data=name)


def simulated(clients: list[int], cutoffs: int, seeds: list[int], only: list[str]) -> pd.DataFrame:
    """The chosen models on every backtest cutoff of simulated businesses (one per size and
    seed): one row per (seed and cutoff, model)."""
    baselines = {k: v for k, v in available().items() if k in only}
    parts = [
        simulator.run(n, 36, cutoffs, seed, baselines, OURS in only).assign(seed=seed)
        for n in clients
        for seed in seeds
    ]
    out = pd.concat(parts, ignore_index=True)
    out["fold"] = out["cutoff"].astype(str)
    if len(seeds) > 1:
        out["fold"] = "seed " + out["seed"].astype(str) + " " + out["fold"]
    out["data"] = "simulator " + (out["clients"] // 1000).astype(str) + "k"
    return out.drop(columns=["cutoff", "clients", "seed"])


def reuse(results: pd.DataFrame, earlier: list[Path]) -> pd.DataFrame:
    """results plus the rows of earlier runs' CSVs for (data, fold, model) not fitted now."""
    if not earlier:
        return results
    old = pd.concat([pd.read_csv(p, dtype={"fold": str}) for p in earlier], ignore_index=True)
    key = ["data", "fold", "model"]
    fresh = pd.MultiIndex.from_frame(results[key].astype(str))
    old = old[~pd.MultiIndex.from_frame(old[key].astype(str)).isin(fresh)]
    old = old[old["data"].isin(results["data"].unique())].drop_duplicates(key, keep="last")
    shown = old.groupby(["data", "model"]).size()
    print(
        "reused from " + ", ".join(map(str, earlier)) + ": " + shown.to_string().replace("\n", "; ")
    )
    return pd.concat([results, old.assign(note=old["note"] + " (reused)")], ignore_index=True)


def wins(part: pd.DataFrame) -> pd.DataFrame:
    """Per baseline (and all at once): folds where churnguard's AUC is higher, its Brier lower."""
    auc = part.pivot(index="fold", columns="model", values="roc_auc")
    brier = part.pivot(index="fold", columns="model", values="brier")
    others = [m for m in auc.columns if m != OURS]
    rows = {
        m: {"AUC higher": (auc[OURS] > auc[m]).sum(), "Brier lower": (brier[OURS] < brier[m]).sum()}
        for m in others
    }
    rows["all baselines"] = {
        "AUC higher": (auc[OURS] > auc[others].max(axis=1)).sum(),
        "Brier lower": (brier[OURS] < brier[others].min(axis=1)).sum(),
    }
    return pd.DataFrame(rows).T.map(lambda v: f"{v}/{len(auc)}")


def report(results: pd.DataFrame) -> None:
    """Per dataset: means, AUC and Brier per fold, wins fold by fold, churnguard's choices."""
    pd.set_option("display.width", 220)
    for name, part in results.groupby("data", sort=False):
        grouped = part.groupby("model", sort=False)
        mean, std = grouped[list(SHOWN)].mean(), grouped[list(SHOWN)].std()
        table = mean.combine(
            std, lambda m, s: m.map("{:.4f}".format) + " ± " + s.map("{:.4f}".format)
        )
        table["seconds"] = grouped["seconds"].sum().round(0)
        if "oracle_ratio" in part:
            table["oracle ratio"] = grouped["oracle_ratio"].agg(
                lambda r: f"{r.mean():.4f} ± {r.std():.4f}" if len(r) > 1 else f"{r.mean():.4f}"
            )
        print(f"\n== {name}: mean ± std over {part['fold'].nunique()} folds\n{table.to_string()}")
        wide = part.pivot(index="fold", columns="model", values=["roc_auc", "brier"])
        print(wide.to_string(float_format=lambda v: f"{v:.4f}"))
        if OURS not in set(part["model"]):
            continue
        print(f"churnguard wins, fold by fold:\n{wins(part).to_string()}")
        chosen = part[part["model"] == OURS]["note"].value_counts()
        print("churnguard chose: " + "; ".join(f"{k} x{v}" for k, v in chosen.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["telco", "lookalike", "simulator"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--cutoffs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="simulator only: one business per seed (default: --seed)",
    )
    parser.add_argument("--out", type=Path, help="CSV of every model's metrics per fold")
    parser.add_argument("--models", nargs="+", default=[OURS, "logistic", "lightgbm", "catboost"])
    parser.add_argument("--reuse", type=Path, nargs="*", default=[], help="earlier runs' CSVs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    parts = [
        simulated(args.clients, args.cutoffs, args.seeds or [args.seed], args.models)
        if name == "simulator"
        else flat(name, args.folds, args.repeats, args.seed, args.models)
        for name in args.data
    ]
    fitted = pd.concat(parts, ignore_index=True)
    if args.out:
        fitted.to_csv(args.out, index=False)
    results = reuse(fitted, args.reuse)
    report(results)
    print(footer(started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
