"""Feature-engine benchmark: churnguard's engine against the pandas baseline, side by side.

Usage: python -m bench.features_bench [--sizes 10000 100000 1000000] [--repeats 3]
       [--single-calls 1000] [--skip-baseline-over N] [--baseline-sample N] [--monthly-max N]
       [--startup-runs 10] [--single-only] [--out bench/results/features.json]

Also runs the CLI start-up case (bench/startup_bench.py) at the end, in the same run.

What each case measures is described in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.baseline_features import baseline_features
from bench.bench_data import bench_crm
from bench.handwritten_client import client_features
from bench.startup_bench import format_startup, startup_case
from churnguard.domain.contract import CRMData
from churnguard.features.arrays import CRMArrays, crm_arrays
from churnguard.features.catalog import FeatureSet, feature_set_for
from churnguard.features.engine import compute_features, feature_columns

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")
MONTHLY = pd.date_range("2024-07-01", "2025-06-01", freq="MS", tz="UTC")  # 12 as_of dates
MB = 2**20

Record = dict[str, Any]


def snapshots_for(data: CRMData, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Every client at every date, date by date."""
    ids = data.clients["client_id"].to_numpy()
    return pd.DataFrame(
        {"client_id": np.tile(ids, len(dates)), "as_of": dates.as_unit("s").repeat(len(ids))}
    )


def timed(fn: Callable[[], object], collect: bool = True) -> float:
    """Wall seconds of one call; the result is freed after the clock stops."""
    if collect:
        gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed


def peak_mb(fn: Callable[[], object]) -> float:
    """Peak memory allocated during one call (result included), as traced by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return (peak - before) / MB


def measure(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, Record]:
    """One traced, untimed call of each (memory), then `repeats` interleaved timed calls."""
    peaks = {name: peak_mb(call) for name, call in calls.items()}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            seconds[name].append(timed(call))
    return {
        name: {"s": statistics.median(s), "all_s": s, "peak_mb": peaks[name]}
        for name, s in seconds.items()
    }


def bulk_case(
    data: CRMData,
    fs: FeatureSet,
    dates: pd.DatetimeIndex,
    repeats: int,
    baseline: bool,
    sample: CRMData | None = None,
) -> Record:
    """Engine (and baseline unless skipped) for every client at each of the dates; with a
    sample, the baseline runs on the sample's clients only and its time is scaled by rows."""
    snapshots = snapshots_for(data, dates)
    calls: dict[str, Callable[[], object]] = {
        "engine": partial(compute_features, data, snapshots, fs)
    }
    base = data if sample is None else sample
    if baseline:
        calls["baseline"] = partial(baseline_features, base, snapshots_for(base, dates), fs)
    m = measure(calls, repeats)
    rows = data.n_rows
    record: Record = {
        "clients": len(data.clients),
        "case": f"{len(dates)} as_of",
        "rows": rows,
        "snapshots": len(snapshots),
        "engine": m["engine"] | {"rows_per_s": rows / m["engine"]["s"]},
        "baseline": None,
        "ratio": None,
    }
    if baseline:
        record["baseline"] = m["baseline"] | {"rows_per_s": base.n_rows / m["baseline"]["s"]}
        record["ratio"] = m["baseline"]["s"] / m["engine"]["s"]
    if baseline and sample is not None:  # an estimate: the sample's time scaled by input rows
        scale = rows / sample.n_rows
        record["baseline_sample"] = {"clients": len(sample.clients), "rows": sample.n_rows}
        record["baseline_estimate_s"] = m["baseline"]["s"] * scale
        record["ratio"] = record["baseline_estimate_s"] / m["engine"]["s"]
    return record


def estimate_baseline(record: Record, one_date: Record) -> Record:
    """A skipped baseline's time, estimated from the one-date speed ratio (not a measurement)."""
    if record["baseline"] is not None or one_date["ratio"] is None:
        return record
    return record | {"baseline_estimate_s": record["engine"]["s"] * one_date["ratio"]}


def single_client(data: CRMData, fs: FeatureSet, n_calls: int, seed: int = 0) -> Record:
    """Per-call times for one client at a time: DataFrame engine, array engine, hand-written
    numpy, pandas baseline."""
    ids = np.random.default_rng(seed).choice(data.clients["client_id"].to_numpy(), n_calls, False)
    subsets = [data.for_clients([i]) for i in ids]  # prebuilt, not timed
    arrays = [crm_arrays(d) for d in subsets]
    snaps = [pd.DataFrame({"client_id": [i], "as_of": [AS_OF]}) for i in ids]
    codes = [
        np.flatnonzero(a.client_ids == i).astype(np.int64) for a, i in zip(arrays, ids, strict=True)
    ]
    seconds = np.array([AS_OF.value // 10**9], dtype=np.int64)
    missing = check_handwritten(arrays, codes, int(seconds[0]), fs)
    calls = {
        "compute_features": lambda k: compute_features(subsets[k], snaps[k], fs),
        "feature_columns": lambda k: feature_columns(arrays[k], codes[k], seconds, fs),
        "handwritten_numpy": lambda k: client_features(arrays[k], int(seconds[0]), fs.event_types),
        "baseline_features": lambda k: baseline_features(subsets[k], snaps[k], fs),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call(0)  # warm-up
    names, rng = list(calls), np.random.default_rng(seed)
    for k in range(len(ids)):  # a new order per client: a method that runs after another on the
        for i in rng.permutation(len(names)):  # same client's arrays finds them in the caches
            times[names[i]].append(timed(partial(calls[names[i]], k), collect=False))
    return {
        "clients": len(data.clients),
        "calls": len(ids),
        "rows_per_client": float(np.mean([d.n_rows for d in subsets])),
        "handwritten_missing": missing,
        **{name: _percentiles_ms(t) for name, t in times.items()},
    }


def check_handwritten(
    arrays: list[CRMArrays], codes: list[np.ndarray], as_of: int, fs: FeatureSet
) -> list[str]:
    """The hand-written yardstick must compute what the engine computes (up to micro-units);
    returns the features it does not compute (the engine's work then includes more)."""
    missing = [name for name in fs.names if name not in client_features(arrays[0], as_of, ())]
    missing = [name for name in missing if not name.startswith("event_")]
    for a, c in zip(arrays[:50], codes[:50], strict=False):
        engine = feature_columns(a, c, np.array([as_of]), fs)
        hand = client_features(a, as_of, fs.event_types)
        for name in fs.names:
            if name in missing:
                continue
            x, y = engine[name][0], hand[name]
            if fs.get(name).categorical:
                same = x == y
            else:
                same = bool(np.isclose(float(x), float(y), 1e-9, 1e-5, equal_nan=True))  # type: ignore[arg-type]
            if not same:
                raise AssertionError(f"hand-written {name} = {y}, engine {x}")
    return missing


def _percentiles_ms(seconds: list[float]) -> Record:
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return {"median_ms": float(p50), "p99_ms": float(p99)}


def warm_up(data: CRMData, fs: FeatureSet) -> None:
    """One untimed call of each: this VM pays a large first-touch cost on fresh memory."""
    snapshots = snapshots_for(data, pd.DatetimeIndex([AS_OF]))
    compute_features(data, snapshots, fs)
    baseline_features(data, snapshots, fs)


def machine() -> Record:
    """Date, machine and library versions for the results file."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


HEADER = (
    f"{'clients':>9}  {'case':<10} {'engine s':>9} {'baseline s':>11} {'ratio':>7} "
    f"{'engine rows/s':>14}  peak MB engine / baseline"
)


def format_bulk(r: Record) -> str:
    """One table row; an estimated baseline time is marked with '~' and 'est.'."""
    b, est = r["baseline"], r.get("baseline_estimate_s")
    if r.get("baseline_sample"):
        base = f"{f'~{est:.1f} smp':>11}"
    else:
        base = f"{b['s']:11.3f}" if b else f"{f'~{est:.0f} est' if est else 'skipped':>11}"
    ratio = f"{r['ratio']:6.1f}x" if r["ratio"] else f"{'':>7}"
    peaks = f"{r['engine']['peak_mb']:,.0f} / " + (f"{b['peak_mb']:,.0f}" if b else "-")
    return (
        f"{r['clients']:>9,}  {r['case']:<10} {r['engine']['s']:9.3f} {base} {ratio} "
        f"{r['engine']['rows_per_s'] / 1e6:13.1f}M  {peaks}"
    )


def format_single(r: Record) -> str:
    """The one-client table: median and p99 per call of each method."""
    lines = [
        f"one client at a time ({r['calls']:,} random clients of the {r['clients']:,}-client set,"
        f" {r['rows_per_client']:.0f} history rows per client on average)",
        f"  {'method':<20} {'median ms':>10} {'p99 ms':>8}  median / hand-written numpy",
    ]
    if r["handwritten_missing"]:
        lines.append(
            f"  (hand-written numpy leaves out {len(r['handwritten_missing'])} features the "
            f"engine computes: {', '.join(r['handwritten_missing'])})"
        )
    hand = r["handwritten_numpy"]["median_ms"]
    for name in ("compute_features", "feature_columns", "handwritten_numpy", "baseline_features"):
        ms = r[name]["median_ms"]
        lines.append(f"  {name:<20} {ms:10.3f} {r[name]['p99_ms']:8.3f}  {ms / hand:8.2f}x")
    return "\n".join(lines)


def run_size(n_clients: int, args: argparse.Namespace, results: Record, first: bool) -> None:
    """Generate one size's data once, run every case on it, save after each case."""
    start = time.perf_counter()
    data = bench_crm(n_clients)
    fs = feature_set_for(data)
    took = time.perf_counter() - start
    print(f"# {n_clients:,} clients: {data.n_rows:,} rows generated in {took:.0f} s", flush=True)
    if first and args.single_only:
        results["single"] = single_client(data, fs, args.single_calls)
        save(results, args.out)
        return
    if first:
        warm_up(data, fs)
    sample = None
    if args.baseline_sample is not None and n_clients > args.baseline_sample:
        sample = data.for_clients(pd.Index(data.clients["client_id"].iloc[: args.baseline_sample]))
    one = bulk_case(data, fs, pd.DatetimeIndex([AS_OF]), args.repeats, True, sample)
    del sample
    save(results, args.out, one)
    monthly = None
    if args.monthly_max is None or n_clients <= args.monthly_max:
        skip = args.skip_baseline_over is not None and n_clients > args.skip_baseline_over
        monthly = bulk_case(data, fs, MONTHLY, args.repeats, baseline=not skip)
        monthly = estimate_baseline(monthly, one)
        save(results, args.out, monthly)
    if first:
        results["single"] = single_client(data, fs, args.single_calls)
        save(results, args.out)
    del data, fs, one, monthly
    gc.collect()  # free this size's data before the next one is generated


def save(results: Record, path: Path, bulk: Record | None = None) -> None:
    """Add a bulk case (printed as a table row), then rewrite the JSON: a long run may be cut."""
    if bulk is not None:
        bulk["load_average_1min"] = os.getloadavg()[0]
        results["bulk"].append(bulk)
        print(format_bulk(bulk), flush=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    path.write_text(json.dumps(results, indent=2))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--single-calls", type=int, default=1000)
    p.add_argument(
        "--skip-baseline-over",
        type=int,
        default=None,
        metavar="N",
        help="skip the 12-date baseline for sizes above N clients (estimate it)",
    )
    p.add_argument(
        "--baseline-sample",
        type=int,
        default=None,
        metavar="N",
        help="above N clients, run the one-date baseline on the first N clients and scale its "
        "time by input rows (an estimate, marked 'smp')",
    )
    p.add_argument(
        "--monthly-max", type=int, default=None, metavar="N", help="skip 12 as_of above N clients"
    )
    p.add_argument("--startup-runs", type=int, default=10, help="CLI start runs (0: skip)")
    p.add_argument(
        "--single-only",
        action="store_true",
        help="only the one-client case, on the smallest size's data (no bulk cases)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results/features.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size, print the tables, write the JSON results."""
    args = parse_args(argv)
    results: Record = {"machine": machine(), "args": vars(args) | {"out": str(args.out)}}
    results |= {"bulk": [], "single": None, "startup": None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    for i, n_clients in enumerate(sorted(args.sizes)[: 1 if args.single_only else None]):
        run_size(n_clients, args, results, first=i == 0)
    if any("baseline_estimate_s" in r and "baseline_sample" not in r for r in results["bulk"]):
        print("~ est: baseline not run; engine time x one-date ratio (an estimate, not measured)")
    for r in results["bulk"]:
        if "baseline_sample" in r:
            sample = r["baseline_sample"]
            print(
                f"~ smp: {r['clients']:,} clients: baseline run on a sample of the first "
                f"{sample['clients']:,} clients ({sample['rows']:,} rows), its time x "
                f"{r['rows'] / sample['rows']:.2f} (input rows): an estimate, not measured"
            )
    for n in sorted(args.sizes):
        if args.monthly_max is not None and n > args.monthly_max:
            print(f"12 as_of not run for {n:,} clients (--monthly-max {args.monthly_max})")
    if results["single"]:
        print("\n" + format_single(results["single"]))
    if args.startup_runs:
        results["startup"] = startup_case(args.startup_runs)
        save(results, args.out)
        print("\n" + format_startup(results["startup"]))
    print(f"\nload average {results['machine']['load_average_end']}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
