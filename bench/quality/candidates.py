"""Would more candidates help? Every candidate on the same folds, then each selection rule.

Usage: python -m bench.quality.candidates --data telco lookalike simulator [--folds 5]
       [--clients 1000] [--cutoffs 3] [--seeds 7 11 13] [--extra lgbm-defaults catboost]
       [--catboost-max-rows 50000] [--out PREFIX]

Each fold (flat tables: the outer folds of ``compare``, repeat 1; simulator: each business's
backtest cutoffs) fits churnguard's candidates (``modeling.recipes``) and the extra ones, each as
the pipeline fits a candidate: on flat tables out of fold over the same inner folds (LightGBM
and CatBoost early-stopped on the held-out inner fold, median tree count), then refitted on the
whole training fold; on the simulator early-stopped on the validation window, then refitted on
every snapshot labelled before the test window with that tree count. The extra candidates:

* ``lgbm-defaults``: LightGBM's library defaults (31 leaves, rate 0.1, 20 rows per leaf, 100
  trees at most), early-stopped like the others;
* ``catboost``: CatBoost's defaults (depth 6, its automatic learning rate, one thread) with at
  most 1,000 trees, early-stopped (100 rounds); only below ``--catboost-max-rows`` training rows.

Then the selection rules on the same fits, each scored on the test fold after ``calibrate_raw``
on the held-out predictions (validation window or out of fold): ``now`` (churnguard's own
candidates, as ``churnguard train`` chooses), ``+lgbm-defaults``, ``+catboost``, ``+both``, and
``blend top-2`` (the two lowest held-out log losses of ``+both`` averaged in logit), and ``blend if
better`` (that blend only when its held-out log loss beats the best single candidate's by more
than selection's tie, else ``+both``); ``lgbm top-2`` and ``lgbm all`` (churnguard's own LightGBM
candidates averaged in logit: what one booster holding both tree sets would predict) and each
``... if better``. ``--extra`` may also name variants of the search's last (bushy) configuration
(``VARIANTS``): each gets a rule ``+name`` (selection may choose it) and ``=name`` (forced, to see
what it would give; ``=lightgbm leave...`` is the bushy configuration itself), and ``bagN``:
each of churnguard's LightGBM recipes as a bag of N seeds averaged in logit (``bag_fitter``),
offered to selection (``+bagN``) and put in place of the chosen recipe (``bagN chosen``).
Printed: AUC and Brier per fold per rule, the candidates' held-out log loss per fold (what
selection saw), and each candidate's fitting seconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from bench.quality import telco
from bench.quality.footer import footer
from bench.quality.lookalike import lookalike
from churnguard.modeling.calibration import calibrate_raw
from churnguard.modeling.model import align_inputs
from churnguard.modeling.recipes import fit_estimator, raw_proba, recipes
from churnguard.modeling.table import infer_schema
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
from churnguard.training.pipeline import SELECTION_TIE, Candidate, select
from churnguard.training.resampling import before_test, oracle_scores
from churnguard.training.table import FlatOptions, cv_splits
from churnguard.training.tablefit import design

SEED = 7
LGBM_DEFAULTS: dict[str, Any] = {
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_child_samples": 20,
    "n_estimators": 100,
    "subsample": 1.0,
    "subsample_freq": 0,
    "colsample_bytree": 1.0,
    "reg_lambda": 0.0,
    "max_cat_threshold": 32,
    "min_data_per_group": 100,
    "cat_smooth": 10.0,
}
# LightGBM variants of the search's bushy configuration, asked for by name with --extra
VARIANTS: dict[str, dict[str, Any]] = {
    "bushy-allcols": {"colsample_bytree": 1.0},
    "bushy-allrows": {"colsample_bytree": 1.0, "subsample": 1.0, "subsample_freq": 0},
    "bushy-31": {"num_leaves": 31, "min_child_samples": 10, "colsample_bytree": 1.0},
    "bushy-cats": {"max_cat_threshold": 32, "min_data_per_group": 100, "cat_smooth": 10.0},
    "cats-thr": {"max_cat_threshold": 32},
    "cats-group": {"min_data_per_group": 100},
    "cats-smooth": {"cat_smooth": 10.0},
    "cats-group20": {"min_data_per_group": 20},
    "linear": {"linear_tree": True, "linear_lambda": 1.0},
    "linear-10": {"linear_tree": True, "linear_lambda": 10.0},
    "mid-31": {
        "num_leaves": 31,
        "min_child_samples": 20,
        "reg_lambda": 1.0,
        "learning_rate": 0.05,
        "colsample_bytree": 1.0,
    },
}
CATBOOST_TREES, CATBOOST_STOPPING = 1000, 100
FOUR = "{:.4f}".format
# (fit X, fit y, stop X or None, stop y or None, categorical, trees or None) -> (predict, trees)
Fitter = Callable[..., tuple[Callable[[pd.DataFrame], np.ndarray], int | None]]


def recipe_fitter(kind: str, params: dict[str, Any]) -> Fitter:
    """A churnguard recipe as the pipeline fits it (``fit_estimator``)."""

    def fit(X, y, X_stop, y_stop, categorical, trees):  # type: ignore[no-untyped-def]
        p = dict(params) if trees is None else {**params, "n_estimators": trees}
        est, fitted = fit_estimator(kind, p, X, y, X_stop, y_stop, categorical, SEED)  # type: ignore[arg-type]
        return (lambda Z: raw_proba(est, Z)), fitted.get("best_iteration")

    return fit


def bag_fitter(kind: str, params: dict[str, Any], seeds: int) -> Fitter:
    """A seed bag of a churnguard recipe: ``seeds`` fits with seeds SEED, SEED + 1, ..., each
    early-stopped on its own, their raw probabilities averaged in logit (what one booster
    holding every fit's trees, leaf values divided by ``seeds``, would predict)."""

    def fit(X, y, X_stop, y_stop, categorical, trees):  # type: ignore[no-untyped-def]
        fits = []
        for k in range(seeds):
            n = None if trees is None else trees[k]
            p = dict(params) if n is None else {**params, "n_estimators": n}
            est, fitted = fit_estimator(kind, p, X, y, X_stop, y_stop, categorical, SEED + k)  # type: ignore[arg-type]
            fits.append((est, fitted.get("best_iteration")))

        def predict(Z: pd.DataFrame) -> np.ndarray:
            return expit(np.mean([logit(raw_proba(e, Z)) for e, _ in fits], axis=0))

        return predict, [n for _, n in fits]

    return fit


def expit(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def catboost_fitter(X, y, X_stop, y_stop, categorical, trees):  # type: ignore[no-untyped-def]
    """CatBoost with its defaults, one thread, early-stopped when stop rows are given."""
    from catboost import CatBoostClassifier

    def encode(Z: pd.DataFrame) -> pd.DataFrame:
        return Z.assign(**{c: Z[c].astype("string").fillna("NA") for c in categorical})

    model = CatBoostClassifier(
        iterations=trees or CATBOOST_TREES,
        random_seed=SEED,
        thread_count=1,
        verbose=0,
        allow_writing_files=False,
        cat_features=list(categorical),
    )
    if X_stop is None:
        model.fit(encode(X), y)
        return (lambda Z: model.predict_proba(encode(Z))[:, 1]), None
    model.fit(
        encode(X), y, eval_set=(encode(X_stop), y_stop), early_stopping_rounds=CATBOOST_STOPPING
    )
    return (lambda Z: model.predict_proba(encode(Z))[:, 1]), int(model.get_best_iteration()) + 1


def candidate_set(events: int, rows: int, extra: list[str], cat_max: int) -> dict[str, Any]:
    """name -> (kind, fitter): churnguard's recipes, then the extra candidates asked for."""
    out = {n: (k, recipe_fitter(k, p)) for n, k, p in recipes(events, rows=rows)}
    if "lgbm-defaults" in extra:
        out["lgbm-defaults"] = ("lightgbm", recipe_fitter("lightgbm", LGBM_DEFAULTS))
    if "catboost" in extra and rows < cat_max:
        out["catboost"] = ("catboost", catboost_fitter)
    bushy = {**recipes(events, rows=rows)[-1][2]}
    for name in extra:
        if name.startswith("bag") and name[3:].isdigit():  # every LightGBM recipe, bagged
            for n, k, p in recipes(events, rows=rows):
                if k == "lightgbm":
                    out[f"{name}|{n}"] = (k, bag_fitter(k, p, int(name[3:])))
    for name in extra:
        if name in VARIANTS:
            out[name] = ("lightgbm", recipe_fitter("lightgbm", {**bushy, **VARIANTS[name]}))
    return out


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def rules(
    held: dict[str, np.ndarray], y_held: np.ndarray, test: dict[str, np.ndarray], kinds: dict
) -> dict[str, tuple[np.ndarray, str]]:
    """Each selection rule's calibrated test probabilities and what it chose."""
    cands = {n: Candidate(n, kinds[n], {}, None, evaluate(y_held, p)) for n, p in held.items()}
    extra = ("lgbm-defaults", "catboost", *VARIANTS)
    ours = [c for n, c in cands.items() if n not in extra and "|" not in n]
    bags = sorted({n.split("|")[0] for n in cands if "|" in n})
    sets = {f"+{n}": [*ours, cands[n]] for n in VARIANTS if n in cands}
    sets |= {
        "now": ours,
        "+lgbm-defaults": ours + [cands[n] for n in ("lgbm-defaults",) if n in cands],
        "+catboost": ours + [cands[n] for n in ("catboost",) if n in cands],
        "+both": list(cands.values()),
    }
    sets |= {f"+{b}": ours + [c for n, c in cands.items() if n.startswith(f"{b}|")] for b in bags}
    out = {}
    for rule, pool in sets.items():
        chosen = select(pool).name
        cal = calibrate_raw(held[chosen], y_held, SEED)
        out[rule] = (cal.transform(test[chosen]), f"{chosen}, {cal.method}")
    for b in bags:  # churnguard's choice, its bag in its place when it is LightGBM
        chosen = select(ours).name
        chosen = f"{b}|{chosen}" if f"{b}|{chosen}" in cands else chosen
        cal = calibrate_raw(held[chosen], y_held, SEED)
        out[f"{b} chosen"] = (cal.transform(test[chosen]), f"{chosen}, {cal.method}")
    for name in [*(n for n in VARIANTS if n in cands), ours[-1].name]:
        cal = calibrate_raw(held[name], y_held, SEED)
        out[f"={name[:14]}"] = (cal.transform(test[name]), f"{name}, {cal.method}")
    top = sorted(cands.values(), key=lambda c: c.validation["log_loss"])[:2]
    blend_held = 1 / (1 + np.exp(-np.mean([logit(held[c.name]) for c in top], axis=0)))
    blend_test = 1 / (1 + np.exp(-np.mean([logit(test[c.name]) for c in top], axis=0)))
    cal = calibrate_raw(blend_held, y_held, SEED)
    names = " + ".join(c.name for c in top)
    out["blend top-2"] = (cal.transform(blend_test), f"{names}, {cal.method}")
    blend_loss = evaluate(y_held, blend_held)["log_loss"]
    if blend_loss < top[0].validation["log_loss"] * (1 - SELECTION_TIE):
        out["blend if better"] = out["blend top-2"]
    else:
        out["blend if better"] = out["+both"]
    trees = sorted(
        (c for c in ours if c.kind == "lightgbm"), key=lambda c: c.validation["log_loss"]
    )
    for rule, pair in (("lgbm top-2", trees[:2]), ("lgbm all", trees)):
        if len(pair) < 2:
            continue
        held_b = 1 / (1 + np.exp(-np.mean([logit(held[c.name]) for c in pair], axis=0)))
        test_b = 1 / (1 + np.exp(-np.mean([logit(test[c.name]) for c in pair], axis=0)))
        cal = calibrate_raw(held_b, y_held, SEED)
        out[rule] = (cal.transform(test_b), f"{len(pair)} lightgbm, {cal.method}")
        loss = evaluate(y_held, held_b)["log_loss"]
        better = loss < min(c.validation["log_loss"] for c in ours) * (1 - SELECTION_TIE)
        out[f"{rule} if better"] = out[rule] if better else out["now"]
    return out


def out_of_fold(X: pd.DataFrame, y: np.ndarray, fitter: Fitter, categorical: list[str]) -> tuple:
    """Out-of-fold raw probabilities over the pipeline's inner folds, and the median tree count."""
    inner = StratifiedKFold(FlatOptions().inner_folds, shuffle=True, random_state=SEED)
    raw, trees = np.zeros(len(y)), []
    for fit_rows, held in inner.split(X, y):
        predict, n = fitter(X.iloc[fit_rows], y[fit_rows], X.iloc[held], y[held], categorical, None)
        raw[held] = predict(X.iloc[held])
        trees += [n] if n else []
    if trees and isinstance(trees[0], list):  # a bag: the median per seed
        return raw, [int(np.median(t)) for t in zip(*trees, strict=True)]
    return raw, (int(np.median(trees)) if trees else None)


def flat_fold(rows, y, train, test, args):  # type: ignore[no-untyped-def]
    """One outer fold of a flat table: rules' rows and candidates' rows."""
    schema = infer_schema(rows.iloc[train], FlatOptions().max_unique_share)
    X, cats = design(rows.iloc[train], schema)
    X_te, _ = design(rows.iloc[test], schema, cats)
    y_tr = y[train]
    held, scored, kinds, cand_rows = {}, {}, {}, []
    pool = candidate_set(int(y_tr.sum()), len(X), args.extra, args.catboost_max_rows)
    for name, (kind, fitter) in pool.items():
        started = time.process_time()
        held[name], trees = out_of_fold(X, y_tr, fitter, schema.categorical)
        predict, _ = fitter(X, y_tr, None, None, schema.categorical, trees)
        scored[name], kinds[name] = predict(X_te), kind
        cand_rows.append(candidate_row(name, y_tr, held[name], trees, started))
    return rules(held, y_tr, scored, kinds), y[test], cand_rows, None


def simulator_folds(clients: int, seed: int, cutoffs: int, args):  # type: ignore[no-untyped-def]
    """Each backtest cutoff of one simulated business: rules' rows and candidates' rows."""
    business = simulate(clients=clients, months=36, seed=seed)
    options = TrainOptions(seed=seed)
    ds = build_dataset(business.data, options)
    X = align_inputs(ds.features, ds.feature_set.names, categories(ds))
    cat = list(ds.feature_set.categorical)
    for k in range(cutoffs):
        end = len(ds.dates) - k * options.test_periods
        try:
            split = split_dates(ds.dates[:end], options.horizon_days) if end > 0 else None
            if split is None:
                break
            check_enough_data(ds, split, options)
        except NotEnoughDataError:
            continue
        tr, val, te = (ds.rows(d) for d in (split.train, split.validation, split.test))
        fitted = before_test(ds, split, options.horizon_days)
        y_val = ds.y(val)
        held, scored, kinds, cand_rows = {}, {}, {}, []
        pool = candidate_set(ds.events(tr), int(tr.sum()), args.extra, args.catboost_max_rows)
        for name, (kind, fitter) in pool.items():
            started = time.process_time()
            predict, trees = fitter(X.loc[tr], ds.y(tr), X.loc[val], y_val, cat, None)
            held[name] = predict(X.loc[val])
            refit, _ = fitter(X.loc[fitted], ds.y(fitted), None, None, cat, trees)
            scored[name], kinds[name] = refit(X.loc[te]), kind
            cand_rows.append(candidate_row(name, y_val, held[name], trees, started))
        y_te = ds.y(te)
        oracle_auc = evaluate(y_te, oracle_scores(business.truth, ds.labels.loc[te]))["roc_auc"]
        fold = f"{clients // 1000}k seed {seed} {day(split.test[0])}"
        yield fold, rules(held, y_val, scored, kinds), y_te, cand_rows, oracle_auc


def candidate_row(name: str, y: np.ndarray, p: np.ndarray, trees: Any, started: float) -> dict:
    """A candidate's held-out log loss and AUC (what selection saw), trees and CPU seconds."""
    m = evaluate(y, p)
    held = {"held_log_loss": m["log_loss"], "held_auc": m["roc_auc"]}
    return {"candidate": name, **held, "trees": trees, "cpu_s": time.process_time() - started}


def rows_of(data: str, fold: str, out: dict, y: np.ndarray, oracle_auc: float | None) -> list[dict]:
    """One row per rule: its test metrics."""
    rows = []
    for rule, (p, chosen) in out.items():
        m = evaluate(y, p)
        row = {"data": data, "fold": fold, "rule": rule, "chosen": chosen}
        row |= {k: m[k] for k in ("roc_auc", "pr_auc", "brier", "log_loss")}
        if oracle_auc is not None:
            row["oracle_ratio"] = m["roc_auc"] / oracle_auc
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["telco", "lookalike", "simulator"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000])
    parser.add_argument("--cutoffs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    parser.add_argument("--extra", nargs="*", default=["lgbm-defaults", "catboost"])
    parser.add_argument("--catboost-max-rows", type=int, default=50_000)
    parser.add_argument("--out", type=Path, help="CSV prefix: <out>.rules.csv, <out>.cands.csv")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results, cands = [], []
    for data in args.data:
        if data == "simulator":
            for n in args.clients:
                for seed in args.seeds:
                    for fold, out, y, crow, oracle in simulator_folds(n, seed, args.cutoffs, args):
                        results += rows_of(data, fold, out, y, oracle)
                        cands += [{"data": data, "fold": fold, **r} for r in crow]
                        print(f"  {data} {fold}: done", flush=True)
            continue
        rows, y = telco.load_telco() if data == "telco" else lookalike(seed=SEED)
        for repeat, fold, train, test in cv_splits(y, args.folds, 1, SEED):
            out, y_te, crow, _ = flat_fold(rows, y, train, test, args)
            name = f"{repeat + 1}.{fold + 1}"
            results += rows_of(data, name, out, y_te, None)
            cands += [{"data": data, "fold": name, **r} for r in crow]
            print(f"  {data} {name}: done", flush=True)
        if args.out:
            pd.DataFrame(results).to_csv(f"{args.out}.rules.csv", index=False)
            pd.DataFrame(cands).to_csv(f"{args.out}.cands.csv", index=False)
    res, cand = pd.DataFrame(results), pd.DataFrame(cands)
    if args.out:
        res.to_csv(f"{args.out}.rules.csv", index=False)
        cand.to_csv(f"{args.out}.cands.csv", index=False)
    report(res, cand)
    print(footer(started))
    return 0


def report(res: pd.DataFrame, cand: pd.DataFrame) -> None:
    """Per dataset: AUC and Brier per fold per rule, means, the candidates' held-out log loss."""
    pd.set_option("display.width", 250)
    for data, part in res.groupby("data", sort=False):
        wide = part.pivot(index="fold", columns="rule", values=["roc_auc", "brier"])
        print(f"\n== {data}\n{wide.to_string(float_format=FOUR)}")
        cols = ["roc_auc", "pr_auc", "brier", "log_loss"]
        cols += ["oracle_ratio"] if "oracle_ratio" in part else []
        print(part.groupby("rule", sort=False)[cols].mean().to_string(float_format=FOUR))
        print(part.pivot(index="fold", columns="rule", values="chosen").to_string())
        c = cand[cand["data"] == data]
        held = c.pivot(index="fold", columns="candidate", values="held_log_loss")
        print(held.to_string(float_format=FOUR))
        cpu = c.groupby("candidate")["cpu_s"].sum().round(1).to_string().replace("\n", "; ")
        print("CPU s per candidate (sum over folds): " + cpu)


if __name__ == "__main__":
    raise SystemExit(main())
