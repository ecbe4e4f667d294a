"""Spark benchmark: batch scoring on local Spark with 1 and 2 cores against one process, in one run.

Usage: python -m bench.spark_bench [--clients 20000 100000] [--cores 1 2] [--engines local spark:2]
       [--explain-from 0.3] [--train-clients 600] [--work DIR] [--out bench/results/spark.json]
       [--stages DIR]  (Spark: wall, JVM CPU, Python CPU and idle per stage, ``spark_stages``)

Data: ``bench.bench_data.bench_crm`` (about 100 history rows per client; its CSAT scores of 0
raised to 1, the contract's floor), written once per size by ``bench.bench_parquet`` in blocks of
100,000 clients (one part file per table and block; up to 100,000 clients that is
``bench_crm(n)``) and scored at its end of observation. The model is the pipeline's
LightGBM recipe trained on a small simulated business (--train-clients), as in scoring_bench.

Each configuration runs in its own process, from the Parquet folder to a Parquet table of scores:

- ``one process``: ``load_crm`` + ``scoring.partition.score_partition`` (the engine of
  ``scoring.batch``, without the store) + the scores written as Parquet;
- ``spark local[k]``: ``spark.scoring`` (read, pack by client, ``score_partition`` per partition,
  write), with k cores; its session start is timed apart.

Drivers and actions for clients scored at least --explain-from (the default 0.3: the high band).
Peak memory: the Python driver's maxrss and, for Spark, the JVM's (VmHWM). CPU: user + system
seconds of every process of a configuration (the driver, and for Spark the JVM and its Python
workers, counted once the JVM has exited): the steadier figure on a shared machine. Every
configuration's probabilities are checked equal to the one process's. ``--engines`` picks some
configurations (default: ``local`` then ``spark:<k>`` for each ``--cores``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.spark_stages import StageProfile, event_log_conf, stage_lines

Record = dict[str, Any]


def build_scorer(train_clients: int, path: Path) -> None:
    """The benchmark's scorer (LightGBM recipe, simulated training data), pickled to path."""
    from bench.scoring_bench import train_models
    from churnguard.scoring.playbook import load_playbook
    from churnguard.scoring.scorer import Scorer

    models, _ = train_models(train_clients, 30)
    model = models["lightgbm"]
    scorer = Scorer(model, "bench", load_playbook(feature_set=model.feature_set))
    path.write_bytes(pickle.dumps(scorer))


def write_data(clients: int, folder: Path) -> str:
    """bench_crm(clients) as Parquet tables in folder, block by block (kept for the next run)."""
    from bench.bench_parquet import write_bench_parquet

    return write_bench_parquet(clients, folder)


# --- one configuration, in its own process --------------------------------------------------------


def run_one(
    engine: str,
    folder: Path,
    scorer_path: Path,
    as_of: str,
    explain: float,
    out: Path,
    stages: Path | None = None,
) -> Record:
    """Score the folder with one engine ("local" or "spark:<cores>"); timings and peak memory."""
    scorer = pickle.loads(scorer_path.read_bytes())
    when = pd.Timestamp(as_of)
    record: Record = {"engine": engine}
    started = time.perf_counter()
    if engine == "local":
        from churnguard.domain.data import load_crm
        from churnguard.scoring.partition import score_partition

        data, _ = load_crm(folder)
        frame = score_partition(data, scorer, when, explain_from=explain).frame()
        frame.to_parquet(out, index=False)
        record["scored"] = len(frame)
    else:
        cores = int(engine.split(":")[1])
        record.update(_run_spark(cores, folder, scorer, when, explain, out, stages))
    record["seconds"] = time.perf_counter() - started
    record["driver_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["cpu_s"] = sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return record


def _run_spark(
    cores: int,
    folder: Path,
    scorer: Any,
    when: pd.Timestamp,
    explain: float,
    out: Path,
    stages: Path | None,
) -> Record:
    from churnguard.domain.mapping import Mapping
    from churnguard.spark.scoring import checked_scores, score_frame
    from churnguard.spark.session import start_session
    from churnguard.spark.tables import read_sources

    t0 = time.perf_counter()
    conf = [
        "spark.ui.enabled=false",
        "spark.driver.memory=6g",
        f"spark.default.parallelism={cores}",
    ]
    log = stages / f"{out.stem}-{time.time_ns()}" if stages else None
    spark = start_session(
        f"local[{cores}]", conf + (event_log_conf(log) if log else []), "churnguard-bench"
    )
    start = time.perf_counter() - t0
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    profile = StageProfile(proc.pid).start() if log and proc else None
    tables = read_sources(spark, str(folder), Mapping())
    scores = checked_scores(
        score_frame(spark, tables, Mapping(), scorer, when, explain_from=explain)
    )
    scores.write.mode("overwrite").parquet(str(out))
    scored = scores.count()
    jvm = _jvm_peak_mb(spark)
    spark.stop()  # writes the event log out
    _stop_jvm(spark)
    record: Record = {"session_start_s": start, "scored": scored, "jvm_peak_mb": jvm}
    if profile is not None and log is not None:
        profile.stop()
        record["stages"] = profile.stages(log, cores)
    return record


def _stop_jvm(spark: Any) -> None:
    """End the local JVM and wait for it, so its CPU (and its workers') counts as a child's."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    try:
        proc.stdin.close()  # pyspark's gateway exits when its stdin closes
        proc.wait(timeout=120)
    except (AttributeError, OSError, subprocess.TimeoutExpired):
        print("JVM not waited for: its CPU is not counted", file=sys.stderr)


def _jvm_peak_mb(spark: Any) -> float | None:
    """The driver JVM's peak resident memory (VmHWM), when it is a local process."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except (AttributeError, OSError):
        return None
    line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


# --- the whole run ------------------------------------------------------------------------------


def same_probabilities(a: Path, b: Path) -> bool:
    left = pd.read_parquet(a).sort_values("client_id")["probability"].to_numpy()
    right = pd.read_parquet(b).sort_values("client_id")["probability"].to_numpy()
    return len(left) == len(right) and bool((left == right).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--engines", nargs="+", help="e.g. spark:2 local (default: all, local first)"
    )
    parser.add_argument("--explain-from", type=float, default=0.3)
    parser.add_argument("--train-clients", type=int, default=600)
    parser.add_argument("--work", type=Path, default=Path("/tmp/churnguard-spark-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/spark.json"))
    parser.add_argument(
        "--stages", type=Path, help="Spark: event logs here; print time and CPU per stage"
    )
    parser.add_argument("--run", nargs=5, metavar=("ENGINE", "FOLDER", "SCORER", "AS_OF", "OUT"))
    args = parser.parse_args()
    if args.run:  # one configuration, in a child process
        engine, folder, scorer, as_of, out = args.run
        record = run_one(
            engine, Path(folder), Path(scorer), as_of, args.explain_from, Path(out), args.stages
        )
        print(json.dumps(record))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    scorer = args.work / "scorer.pkl"
    if not scorer.exists():
        build_scorer(args.train_clients, scorer)
    results = []
    for clients in args.clients:
        folder = args.work / f"crm-{clients}"
        as_of = write_data(clients, folder)
        engines = args.engines or ["local", *(f"spark:{c}" for c in args.cores)]
        for engine in engines:
            out = args.work / f"scores-{clients}-{engine.replace(':', '')}.parquet"
            command = [
                sys.executable,
                "-m",
                "bench.spark_bench",
                "--explain-from",
                str(args.explain_from),
                *(["--stages", str(args.stages)] if args.stages else []),
                "--run",
                engine,
                str(folder),
                str(scorer),
                as_of,
                str(out),
            ]
            load = os.getloadavg()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                done.check_returncode()
            record = json.loads(done.stdout.strip().splitlines()[-1])
            record.update(
                clients=clients,
                load_before=round(load[0], 1),
                load_after=round(os.getloadavg()[0], 1),
            )
            local = args.work / f"scores-{clients}-local.parquet"
            record["same_probabilities"] = (
                same_probabilities(local, out) if local.exists() else None
            )
            results.append(record)
            print(_line(record, results), flush=True)
            for line in stage_lines(record.get("stages", [])) if "stages" in record else []:
                print(f"    {line}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "explain_from": args.explain_from,
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


def _line(record: Record, results: list[Record]) -> str:
    same = [r for r in results if r["clients"] == record["clients"] and r["engine"] == "local"]
    base = same[0] if same else record
    ratio = record["seconds"] / base["seconds"]
    cpu = record["cpu_s"] / base["cpu_s"]
    extra = (
        f", session start {record['session_start_s']:.1f} s, "
        f"JVM peak {record['jvm_peak_mb'] or 0:,.0f} MB"
        if "session_start_s" in record
        else ""
    )
    return (
        f"{record['clients']:>9,} clients  {record['engine']:<8} {record['seconds']:7.1f} s "
        f"(x{ratio:.2f} of one process)  CPU {record['cpu_s']:,.0f} s (x{cpu:.2f})  "
        f"driver peak {record['driver_peak_mb']:,.0f} MB{extra}  "
        f"scored {record['scored']:,}  same probabilities: {record['same_probabilities']}  "
        f"load {record['load_before']}->{record['load_after']}"
    )


if __name__ == "__main__":
    main()
