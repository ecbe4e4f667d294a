"""Scoring benchmark: batch scoring of every active client, and one client through the API path.

Usage: python -m bench.scoring_bench [--clients 100000] [--months 36] [--train-clients 3000]
       [--calls 1000] [--sample 10000] [--cache FILE.pkl] [--out bench/results/scoring.json]
       [--models lightgbm ...] [--store-model lightgbm] [--workers 2] [--skip-steps]
       [--skip-single] [--skip-previous]

Data: ``churnguard.synth.business.simulate(--clients, --months)``, scored at its end of observation
(the clients active then). Models are trained on a separate, smaller simulation (--train-clients)
with train.py's own functions, so they use the same feature set:

- ``lightgbm``: the pipeline's LightGBM recipe (16 leaves, early stopping picks the trees);
- ``lightgbm-300``: 300 trees of 31 leaves, no early stopping (PERFORMANCE.md's yardstick);
- ``logistic``: the pipeline's logistic regression (C=0.1).

Batch, per model: clients/s of each step on its own (features: compute_features for the active
clients; predict: model.predict_proba; contributions on 1 and 2 threads; drivers+actions:
top_drivers_batch and the playbook), then end to end through ``Scorer.score_data``: scores only,
with drivers for every client, and with drivers only from p >= 0.1 (the medium and high bands)
and from p >= 0.3 (high). The 300-tree model's contributions are measured on --sample clients and
projected to all of them (marked).

Batch into the store, side by side (``--store-model``, default ``lightgbm``): ``score_to_store`` now
(columnar scores, bulk write; with drivers a pool of one-thread worker processes) against
``previous_score_to_store`` (the implementation it replaced: a ``ClientScore`` per client, a record
per score, contributions on threads), each into a fresh SQLite store, scores only and with drivers
for every client; and the columnar scoring step alone (``score_features`` on features already
computed) against its floor, ``model.predict_proba`` on the same features.

One client: ``Scorer.score_records`` median and p99 over --calls calls (validated records of 50
clients, cycled), its stages, and ``model.predict_proba`` on a one-row DataFrame (the
pandas/Pipeline path) as the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import pickle
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier

from churnguard.domain.churn import observation_end
from churnguard.domain.contract import CRMData
from churnguard.features.engine import feature_columns
from churnguard.features.records import client_arrays, records_model
from churnguard.modeling.calibration import calibrate
from churnguard.modeling.model import ChurnModel, align_inputs
from churnguard.modeling.recipes import LIGHTGBM_BASE, fit_estimator
from churnguard.scoring.batch import score_to_store
from churnguard.scoring.partition import score_features
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.score import clients_info, score_as_of
from churnguard.scoring.scorer import Scorer
from churnguard.store.scores import ScoreRecord, ScoreStore
from churnguard.synth.business import simulate
from churnguard.training.dataset import TrainOptions, build_dataset, split_dates
from tests.factories import records_body

Record = dict[str, Any]
EXPLAIN_FROM = (0.1, 0.3)  # the medium and high bands
LATENCY_CLIENTS = 50


def timed(fn: Callable[[], Any], scale: float = 1.0) -> tuple[Record, Any]:
    """Wall and CPU seconds of one call (times ``scale``, for projections), and its result.

    CPU seconds (all threads of the process) are the steadier figure on a shared machine: other
    processes stretch wall time, much less the CPU time a step needs.
    """
    gc.collect()
    wall, cpu, everything = time.perf_counter(), time.process_time(), tree_cpu()
    result = fn()
    seconds = {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "cpu_all": tree_cpu() - everything,
    }
    return {k: v * scale for k, v in seconds.items()}, result


def tree_cpu() -> float:
    """CPU seconds of this process and its descendants, live or ended (Linux ``/proc``).

    A worker process of a pool is a child of the pool's forkserver, which reaps it: its time
    shows in the forkserver's children's time. Elsewhere than Linux: this process alone.
    """
    if not Path("/proc/self/stat").exists():
        return time.process_time()
    total, pending = 0, [os.getpid()]
    while pending:
        pid = pending.pop()
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            tasks = Path(f"/proc/{pid}/task").iterdir()
            children = [c for t in tasks for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile: counted by its parent once reaped
        total += sum(int(v) for v in stat[11:15])  # utime, stime, cutime, cstime
        pending += [int(c) for c in children]
    return total / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------- setup


def scoring_data(clients: int, months: int, cache: Path | None) -> CRMData:
    """The simulated book to score (pickled to --cache, and read from it when it exists)."""
    if cache is not None and cache.exists():
        with cache.open("rb") as f:
            data: CRMData = pickle.load(f)
        return data
    data = simulate(clients=clients, months=months, seed=11).data
    if cache is not None:
        with cache.open("wb") as f:
            pickle.dump(data, f, protocol=5)
    return data


def train_models(train_clients: int, months: int) -> tuple[dict[str, ChurnModel], CRMData]:
    """The three benchmark models, and the small book they were trained on."""
    data = simulate(clients=train_clients, months=months, seed=7).data
    ds = build_dataset(data, TrainOptions())
    split = split_dates(ds.dates, 90)
    fs = ds.feature_set
    categories = {c: [str(v) for v in ds.features[c].cat.categories] for c in fs.categorical}
    X = align_inputs(ds.features, fs.names, categories)
    y = ds.labels["churned"].to_numpy()
    tr, val = ds.rows(split.train), ds.rows(split.validation)
    params = {**LIGHTGBM_BASE, "num_leaves": 31, "n_estimators": 300, "random_state": 7}
    reference = LGBMClassifier(**params).fit(X[tr], y[tr])
    estimators = {
        "lightgbm": fit_estimator(
            "lightgbm", {"num_leaves": 16}, X[tr], y[tr], X[val], y[val], fs.categorical, 7
        )[0],
        "lightgbm-300": reference,
        "logistic": fit_estimator(
            "logistic", {"C": 0.1}, X[tr], y[tr], X[val], y[val], fs.categorical, 7
        )[0],
    }
    models = {
        name: ChurnModel(
            fs,
            "logistic" if name == "logistic" else "lightgbm",
            est,
            calibrate(est, X[val], y[val]),
            90,
            fs.names,
            categories,
        )
        for name, est in estimators.items()
    }
    return models, data


def describe(model: ChurnModel) -> str:
    booster = model.booster
    if booster is None:
        return "logistic regression"
    trees = booster.best_iteration or booster.num_trees()
    return f"{trees} trees, {booster.params.get('num_leaves', 31)} leaves"


# ---------------------------------------------------------------------------------- batch


def batch_case(
    name: str, scorer: Scorer, data: CRMData, features: pd.DataFrame, sample: int
) -> Record:
    """Each step's time on its own, then end to end through score_data.

    Contributions are timed on the first ``sample`` clients with 1 and 2 threads, then on every
    client with 2 threads, except for the 300-tree model: its per-client costs are projected
    from the sample.
    """
    n, as_of = len(features), features["as_of"].iloc[0].to_pydatetime()
    rows = features.iloc[:sample]
    scorer.threads = 1
    one = timed(lambda: scorer.contributions(rows))[0]
    scorer.threads = 2
    two, c = timed(lambda: scorer.contributions(rows))
    rates = {"1_thread": len(rows) / one["wall"], "2_threads": len(rows) / two["wall"]}
    projected = name == "lightgbm-300"
    part = rows if projected else features
    steps: Record = {"predict": timed(lambda: scorer.predict(features))[0]}
    if projected:
        steps["contributions"] = {k: v * n / len(rows) for k, v in two.items()}
    else:
        steps["contributions"], c = timed(lambda: scorer.contributions(features))
    steps["drivers_actions"] = timed(lambda: scorer.explain(part, c), n / len(part))[0]
    p = scorer.predict(features)
    runs = {"scores_only": partial(scorer.score_data, data, as_of, False)}
    if not projected:
        runs["with_drivers"] = partial(scorer.score_data, data, as_of)
        for cut in EXPLAIN_FROM:
            runs[f"drivers_from_p{cut:g}"] = partial(
                scorer.score_data, data, as_of, explain_from=cut
            )
    return {
        "model": name,
        "detail": describe(scorer.model),
        "clients": n,
        "share_from": {f"p{cut:g}": float((p >= cut).mean()) for cut in EXPLAIN_FROM},
        "sample": len(rows),
        "contributions_per_s_on_sample": rates,
        "steps_s": steps,
        "steps_projected": projected,
        "end_to_end_s": {case: timed(run)[0] for case, run in runs.items()},
    }


# ---------------------------------------------------------------------------------- into the store


def previous_score_to_store(
    data: CRMData, scorer: Scorer, store: ScoreStore, as_of: dt.datetime, drivers: bool
) -> int:
    """``scoring.batch.score_to_store`` as it was before the columnar path (commit 88048be):
    a ClientScore per client from ``Scorer.iter_scores``, a ScoreRecord per score, one write."""
    when = score_as_of(as_of)
    previous = store.previous_scores(when)
    records: list[ScoreRecord] = []
    for chunk in scorer.iter_scores(data, when, drivers, False, 0.0, previous):
        records.extend(s.to_record() for s in chunk)
    return store.save_scores(records, source="batch")


def store_case(
    scorer: Scorer, data: CRMData, features: pd.DataFrame, workers: int, previous: bool = True
) -> Record:
    """Batch runs into fresh SQLite stores, previous and current implementation side by side.

    Scores only, then with drivers for every client; each store first gets an untimed run a day
    earlier, so "what changed" has previous scores to compare with (``previous=False``: the
    current implementation only). Then the steps of a scores-only run alone: reading the previous
    scores, the columnar scoring step against its floor (``model.predict_proba`` on the same
    features), the bulk write.
    """
    n, as_of = len(features), features["as_of"].iloc[0].to_pydatetime()
    out: Record = {"clients": n, "workers": workers, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as folder:
        cases: dict[str, Callable[[ScoreStore], Any]] = {
            "scores_only previous": lambda st: previous_score_to_store(
                data, scorer, st, as_of, False
            ),
            "scores_only now, 1 process": lambda st: score_to_store(
                data, scorer, st, as_of, False, drivers=False, workers=1
            ),
            f"scores_only now, {workers} processes": lambda st: score_to_store(
                data, scorer, st, as_of, False, drivers=False, workers=workers
            ),
            "with_drivers previous": lambda st: previous_score_to_store(
                data, scorer, st, as_of, True
            ),
            "with_drivers now, 1 process": lambda st: score_to_store(
                data, scorer, st, as_of, False, workers=1
            ),
            f"with_drivers now, {workers} processes": lambda st: score_to_store(
                data, scorer, st, as_of, False, workers=workers
            ),
        }
        if not previous:
            cases = {case: run for case, run in cases.items() if "previous" not in case}
        for k, (case, run) in enumerate(cases.items()):
            store = ScoreStore(f"sqlite:///{folder}/{k}.db").create()
            day_before = as_of - dt.timedelta(days=1)
            score_to_store(data, scorer, store, day_before, False, drivers=False)
            seconds = timed(lambda run=run, store=store: run(store))[0]  # type: ignore[misc]
            out["runs"][case] = {**seconds, "load_average": os.getloadavg()}
            store.close()
    when = score_as_of(as_of)
    info = clients_info(data, features["client_id"])
    out["floor_predict_proba"] = timed(lambda: scorer.model.predict_proba(features))[0]
    booster, X = scorer.model.booster, scorer.matrix(features)
    if booster is not None:
        out["floor_booster"] = timed(lambda: booster.predict(X, num_threads=workers))[0]
    out["score_features"], columns = timed(
        lambda: score_features(scorer, features, when, info, {}, drivers=False)
    )
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as folder:
        store = ScoreStore(f"sqlite:///{folder}/write.db").create()
        score_to_store(data, scorer, store, as_of - dt.timedelta(days=1), False, drivers=False)
        out["previous_scores"] = timed(lambda: store.previous_scores(when))[0]
        out["save_score_rows"] = timed(lambda: store.save_score_rows(columns.rows))[0]
        store.close()
    return out


def format_store(r: Record) -> list[str]:
    """Batch into the store: each run's clients/s and its ratio to the previous implementation."""
    n, runs = r["clients"], r["runs"]
    lines = [f"batch into the store (score_to_store), {n:,} clients"]
    for case, t in runs.items():
        base = runs.get(f"{case.split()[0]} previous")
        ratio = f"{base['wall'] / t['wall']:4.1f}x previous" if base else "         -"
        lines.append(_line(case, n, t) + f"  {ratio}, load {t['load_average'][0]:.1f}")
    lines.append("steps of a scores-only run, each alone:")
    if "features_at" in r:
        lines.append(_line("features_at (the engine)", n, r["features_at"]))
    lines.append(_line("previous_scores (read)", n, r["previous_scores"]))
    floor, step = r["floor_predict_proba"], r["score_features"]
    lines.append(_line("floor: model.predict_proba", n, floor))
    if "floor_booster" in r:
        booster = r["floor_booster"]
        lines.append(_line(f"floor: booster.predict ({r['workers']} thr)", n, booster))
    lines.append(
        _line("score_features, scores only", n, step)
        + f"  {floor['wall'] / step['wall']:.2f}x the predict_proba floor's speed"
    )
    lines.append(_line("save_score_rows (SQLite)", n, r["save_score_rows"]))
    return lines


# ---------------------------------------------------------------------------------- one client


def single_client(scorer: Scorer, data: CRMData, calls: int) -> Record:
    """score_records per call, its stages, and predict_proba on a one-row DataFrame."""
    as_of = observation_end(data)
    features = scorer.features_at(data, as_of)
    picked = features.sample(LATENCY_CLIENTS, random_state=0)
    Records = records_model(max_rows=10_000)
    bodies = [records_body(data, cid) for cid in picked["client_id"]]
    records = [Records.model_validate(body) for body in bodies]
    frames = [picked.iloc[[k]] for k in range(len(picked))]
    arrays = [client_arrays(r) for r in records]
    seconds = np.array([int(as_of.timestamp())])
    code = np.zeros(1, np.int64)
    fs = scorer.model.feature_set
    when = as_of.to_pydatetime()
    stages: dict[str, Callable[[int], Any]] = {
        "score_records": lambda k: scorer.score_records(records[k], when),
        "client_arrays": lambda k: client_arrays(records[k]),
        "feature_columns": lambda k: feature_columns(arrays[k], code, seconds, fs),
        "predict_proba_1row_df": lambda k: scorer.model.predict_proba(frames[k]),
    }
    booster = scorer.model.booster
    if booster is not None:  # the hot path's model step alone: booster on a numpy row
        rows = [scorer.matrix(frame) for frame in frames]
        stages["booster_numpy_row"] = lambda k: booster.predict(rows[k], num_threads=1)
        stages["contributions_numpy_row"] = lambda k: booster.predict(
            rows[k], pred_contrib=True, num_threads=1
        )
    out: Record = {
        "calls": calls,
        "rows_per_client": float(np.mean([_rows(body) for body in bodies])),
    }
    for name, call in stages.items():
        out[name] = _latency(call, calls)
    gc.freeze()  # as the service does after start-up
    out["score_records_gc_frozen"] = _latency(stages["score_records"], calls)
    gc.unfreeze()
    out["ratio_median"] = (
        out["predict_proba_1row_df"]["median_ms"] / out["score_records"]["median_ms"]
    )
    return out


def _rows(body: dict[str, Any]) -> int:
    """CRM rows in one client's request body (its own row included)."""
    return 1 + sum(len(v) for v in body.values() if isinstance(v, list))


def _latency(call: Callable[[int], Any], calls: int) -> Record:
    """Median and p99 per call, wall and CPU, cycling through the prepared clients."""
    for k in range(LATENCY_CLIENTS):
        call(k)  # warm-up
    gc.collect()
    wall, cpu = [], []
    for i in range(calls):
        w, c = time.perf_counter(), time.process_time()
        call(i % LATENCY_CLIENTS)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    p50, p99 = np.percentile(np.array(wall) * 1000, [50, 99])
    c50, c99 = np.percentile(np.array(cpu) * 1000, [50, 99])
    return {"median_ms": p50, "p99_ms": p99, "cpu_median_ms": c50, "cpu_p99_ms": c99}


# ---------------------------------------------------------------------------------- report


def machine() -> Record:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "lightgbm": lightgbm.__version__,
    }


def format_batch(r: Record, features: Record) -> list[str]:
    """One model's batch figures: each step, then end to end (clients/s from wall time)."""
    n, s, rate = r["clients"], r["steps_s"], r["contributions_per_s_on_sample"]
    mark = (
        f" (contributions, drivers: projected from {r['sample']:,})" if r["steps_projected"] else ""
    )
    steps = {"features": features, **s}
    totals = dict(r["end_to_end_s"])
    if r["steps_projected"]:
        totals["with_drivers (sum of steps)"] = {
            k: sum(t[k] for t in steps.values()) for k in ("wall", "cpu")
        }
    lines = [f"{r['model']} ({r['detail']}), {n:,} clients{mark}"]
    lines += [_line(k, n, t) for k, t in steps.items()]
    lines.append(
        f"  contributions on {r['sample']:,} clients: {rate['1_thread']:,.0f}/s on 1 thread, "
        f"{rate['2_threads']:,.0f}/s on 2"
    )
    lines += [_line("total " + k, n, t) for k, t in totals.items()]
    shares = ", ".join(f"{v:.1%} at {k}+" for k, v in r["share_from"].items())
    lines.append(f"  clients explained with drivers_from: {shares}")
    return lines


def _line(name: str, n: int, t: Record) -> str:
    rate = n / t["wall"]
    line = f"  {name:<30}{rate:>9,.0f} clients/s {t['wall']:>7.1f} s wall {t['cpu']:>7.1f} s cpu"
    return line + (f" {t['cpu_all']:>6.1f} s cpu all processes" if "cpu_all" in t else "")


def format_single(name: str, r: Record) -> list[str]:
    lines = [f"one client, {name} ({r['calls']:,} calls, {r['rows_per_client']:.0f} rows/client)"]
    for stage in (
        "score_records",
        "score_records_gc_frozen",
        "client_arrays",
        "feature_columns",
        "booster_numpy_row",
        "contributions_numpy_row",
        "predict_proba_1row_df",
    ):
        if stage not in r:
            continue
        t = r[stage]
        lines.append(
            f"  {stage:<26}{t['median_ms']:>8.3f} ms median {t['p99_ms']:>8.3f} ms p99   cpu "
            f"{t['cpu_median_ms']:>7.3f} ms median {t['cpu_p99_ms']:>7.3f} ms p99"
        )
    lines.append(
        f"  predict_proba(1-row DataFrame) / score_records, medians: {r['ratio_median']:.2f}x"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--train-clients", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=5_000, help="clients for projections")
    parser.add_argument("--cache", type=Path, help="pickle of the simulated book (reused)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scoring.json"))
    parser.add_argument("--models", nargs="+", default=["lightgbm", "lightgbm-300", "logistic"])
    parser.add_argument("--store-model", default="lightgbm", help="model of the store runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-steps", action="store_true", help="no per-step batch figures")
    parser.add_argument("--skip-single", action="store_true", help="no one-client figures")
    parser.add_argument(
        "--skip-previous", action="store_true", help="no runs of the implementation replaced"
    )
    args = parser.parse_args()

    info = machine()
    models, small = train_models(args.train_clients, args.months)
    data = scoring_data(args.clients, args.months, args.cache)
    scorers = {
        name: Scorer(m, name, load_playbook(feature_set=m.feature_set))
        for name, m in models.items()
        if name in {*args.models, args.store_model}
    }
    any_scorer = scorers[args.store_model]
    features_at = observation_end(data)
    any_scorer.features_at(data, features_at)  # warm-up: first touch of fresh memory
    features_time, features = timed(lambda: any_scorer.features_at(data, features_at))
    results: Record = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}}
    results["features_s"] = features_time
    results["rows"] = data.n_rows
    results["store"] = store_case(
        scorers[args.store_model], data, features, args.workers, not args.skip_previous
    )
    results["store"]["features_at"] = features_time
    results["batch"] = [
        batch_case(n, s, data, features, args.sample)
        for n, s in scorers.items()
        if n in args.models and not args.skip_steps
    ]
    results["single"] = {
        name: single_client(scorers[name], small, args.calls)
        for name in ("lightgbm", "logistic")
        if name in scorers and not args.skip_single
    }
    info["load_average_end"] = os.getloadavg()

    load = info["load_average_start"]
    print(f"{data.n_rows:,} CRM rows, {len(data.clients):,} clients; load average {load}")
    print("\n".join(format_store(results["store"])))
    for r in results["batch"]:
        print("\n".join(format_batch(r, features_time)))
    for name, r in results["single"].items():
        print("\n".join(format_single(name, r)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
