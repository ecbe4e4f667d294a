"""HTTP serving benchmark: churnguard's POST /api/v1/score against a bare FastAPI app serving the
same booster and against `mlflow models serve`, side by side in one run, with ratios.

Usage: python -m bench.http_bench [--home DIR] [--clients 1000] [--pool 500]
       [--requests 5000] [--seconds 20] [--concurrency 1 8] [--out bench/results/http.json]

The three servers serve the same model (the registered champion ``models:/churnguard@champion``
and its local last-known-good copy) with one uvicorn worker pinned to CPU 0; the load generator
runs here, pinned to CPU 1, over loopback.

- churnguard: one client per request, its raw CRM records (a real client of the simulated
  business, cycling through ``--pool`` active clients): validation, point-in-time features,
  probability, drivers, actions, "what changed" (a score store read) and the score handed to
  the store writer, as in production.
- bare: ``bench/bare_app.py``, ``POST /predict`` with the same clients' model input rows (one
  float64 row a request, as the scorer builds it), a pydantic model and the booster on one thread:
  the floor of FastAPI + uvicorn + pydantic around one prediction.
- mlflow: ``POST /invocations`` with the same clients' precomputed feature rows
  (``dataframe_split``, one row a request): the model alone, no features, drivers or actions.

Each (server, concurrency) runs until ``--requests`` answers or ``--seconds`` pass, after 200
untimed warm-up requests. Latency is from writing a request to reading its last byte; every
answer must be 200. The generator is a few asyncio keep-alive connections speaking HTTP/1.1
directly (far lighter than an HTTP client library, so the generator does not become the limit).
When ``--home`` holds no champion, a business is simulated and a model trained there first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SERVER_CPU = 0
LOAD_CPU = 1
WARMUP = 200
START_SECONDS = 180


@dataclass(frozen=True)
class Result:
    """One (server, concurrency) run."""

    server: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rps: float
    server_cpu_ms: float  # CPU time of the server's processes per request (robust to load)


# ---------------------------------------------------------------------------------- the model


def prepare(home: Path, clients: int, months: int) -> Any:
    """Settings of a home with a champion: trained on a simulated business if it has none."""
    from churnguard.config import Settings
    from churnguard.modeling.registry import CHAMPION, Registry
    from churnguard.synth.business import write_demo_data
    from churnguard.training.dataset import TrainOptions
    from churnguard.training.train import train

    settings = Settings(home=home, models_dir=home / "models")
    data_dir = home / "demo"
    if not (data_dir / "clients.csv").exists():
        print(f"simulating {clients} clients over {months} months in {data_dir} ...", flush=True)
        write_demo_data(data_dir, clients=clients, months=months, seed=7)
    registry = Registry.from_settings(settings)
    if registry.alias_version(CHAMPION) is None:
        print("training a model (once per home) ...", flush=True)
        train(_load(data_dir), registry, settings.models_dir, TrainOptions())
    return settings


def _load(data_dir: Path) -> Any:
    from churnguard.domain.data import load_crm

    data, _ = load_crm(data_dir)
    return data


# ---------------------------------------------------------------------------------- payloads


def _json_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def records_json(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """One client's tables as the JSON a CRM sends to POST /api/v1/score (empties left out)."""
    body: dict[str, Any] = {}
    for name, df in tables.items():
        rows = [
            {k: v for k, v in ((k, _json_value(v)) for k, v in r.items()) if v is not None}
            for r in df.drop(columns="client_id").astype(object).to_dict("records")
        ]
        if name == "clients":
            body["client"] = rows[0]
        else:
            body[name] = rows
    return body


def payloads(
    settings: Any, pool: int
) -> tuple[list[bytes], list[bytes], list[bytes], dict[str, float]]:
    """Request bodies for churnguard, mlflow and the bare app (same clients, same order)."""
    from churnguard.domain.churn import active_clients, observation_end
    from churnguard.features.engine import compute_features
    from churnguard.modeling.model import load_local_model

    data = _load(settings.home / "demo")
    as_of = observation_end(data)
    ids = list(active_clients(data.contracts, as_of)[:pool])
    tables = {name: df.groupby("client_id", observed=True) for name, df in data.tables().items()}
    ours, rows_per_client = [], []
    for cid in ids:
        parts = {
            n: g.get_group(cid) if cid in g.groups else _empty(data, n) for n, g in tables.items()
        }
        rows_per_client.append(sum(len(p) for p in parts.values()))
        body = {"clients": [{"client_id": cid, **records_json(parts)}], "as_of": as_of.isoformat()}
        ours.append(json.dumps(body).encode())
    model = load_local_model(settings.models_dir)
    snaps = pd.DataFrame({"client_id": ids, "as_of": as_of})
    inputs = model.inputs(compute_features(data, snaps, model.feature_set))
    inputs = inputs.astype({c: object for c in model.categories})
    theirs = [
        json.dumps(
            {"dataframe_split": {"columns": list(inputs.columns), "data": [_row(inputs.iloc[i])]}}
        ).encode()
        for i in range(len(inputs))
    ]
    bare = [json.dumps({"row": _row(pd.Series(r))}).encode() for r in _matrix(model, inputs)]
    sizes = {
        "clients": len(ids),
        "median_rows_per_client": float(np.median(rows_per_client)),
        "median_body_bytes": float(np.median([len(b) for b in ours])),
    }
    return ours, theirs, bare, sizes


def _matrix(model: Any, inputs: pd.DataFrame) -> np.ndarray:
    """The model's float64 input rows (categoricals as training category codes), as the scorer's."""
    X = np.empty(inputs.shape)
    for j, name in enumerate(inputs.columns):
        if name in model.categories:
            codes = pd.Categorical(inputs[name], categories=model.categories[name]).codes
            X[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            X[:, j] = inputs[name].to_numpy(np.float64)
    return X


def _empty(data: Any, name: str) -> pd.DataFrame:
    return data.tables()[name].iloc[:0]


def _row(row: pd.Series) -> list[Any]:
    out: list[Any] = []
    for v in row.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        else:
            out.append(v)
    return out


def engine_cpu_ms(settings: Any, bodies: Sequence[bytes]) -> dict[str, float]:
    """CPU ms (median over the bodies) of the library's part, in this process, without HTTP.

    validate: the request body read as the route reads it (``routes.score.read_request``: the
    bulk tables a column at a time, straight into the engine's arrays); score:
    ``Scorer.score_records``; row_models: the same body through the row models
    (``ScoreRequest``) instead, for comparison (the route's fallback).
    """
    from churnguard.scoring.loading import load_scorer
    from churnguard.service.routes.score import read_request
    from churnguard.service.schemas import ScoreRequest

    scorer = load_scorer(settings)
    validate, score, row_models = [], [], []
    for body in bodies:
        start = time.thread_time()
        request = read_request(body)
        middle = time.thread_time()
        assert request is not None
        scorer.score_records(request.clients[0], request.as_of or datetime.now(UTC))
        end = time.thread_time()
        ScoreRequest.model_validate_json(body)
        validate.append(middle - start)
        score.append(end - middle)
        row_models.append(time.thread_time() - end)
    return {
        "validate_cpu_ms": round(float(np.median(validate)) * 1000, 3),
        "score_records_cpu_ms": round(float(np.median(score)) * 1000, 3),
        "row_models_validate_cpu_ms": round(float(np.median(row_models)) * 1000, 3),
    }


# ---------------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin_to_server_cpu() -> None:
    os.sched_setaffinity(0, {SERVER_CPU})


@contextmanager
def server(
    command: list[str], env: dict[str, str], ready: str, log: Path
) -> Iterator[tuple[int, int]]:
    """Start a server pinned to the server CPU; yields (port, pid) once ``ready`` answers 200."""
    port = _free_port()
    command = [c.replace("{port}", str(port)) for c in command]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin_to_server_cpu,
            start_new_session=True,
        )
    try:
        _wait(f"http://127.0.0.1:{port}{ready}", process, log)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(session: int) -> float:
    """User + system CPU time of every process in a session (the server and its children)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields after the command: state, ppid, pgrp, session
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _wait(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {START_SECONDS} s; see {log}")


# ---------------------------------------------------------------------------------- load


def _request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _connection(
    port: int,
    requests: Sequence[bytes],
    tickets: Iterator[int],
    deadline: float,
    latencies: list[float],
    failures: list[bytes],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in tickets:
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status, body = await _answer(reader)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                failures.append(body[:300])
    finally:
        writer.close()


async def _drive(
    port: int, requests: Sequence[bytes], n: int, seconds: float, concurrency: int
) -> tuple[list[float], list[bytes], float]:
    tickets = iter(range(n))  # shared: the connections take requests from one counter
    latencies: list[float] = []
    failures: list[bytes] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(
            _connection(port, requests, tickets, deadline, latencies, failures)
            for _ in range(concurrency)
        )
    )
    return latencies, failures, time.perf_counter() - start


def measure(
    name: str,
    served: tuple[int, int],
    requests: Sequence[bytes],
    n: int,
    seconds: float,
    concurrency: int,
) -> Result:
    """Warm up, then load the server at a concurrency; every answer must be 200."""
    port, pid = served
    asyncio.run(_drive(port, requests, WARMUP, seconds, 1))
    cpu = cpu_seconds(pid)
    latencies, failures, elapsed = asyncio.run(_drive(port, requests, n, seconds, concurrency))
    cpu = cpu_seconds(pid) - cpu
    if failures:
        print(f"  {name}: {len(failures)} non-200 answers, e.g. {failures[0]!r}", flush=True)
    ms = np.array(latencies) * 1000
    return Result(
        server=name,
        concurrency=concurrency,
        requests=len(latencies),
        errors=len(failures),
        seconds=round(elapsed, 2),
        p50_ms=round(float(np.percentile(ms, 50)), 3),
        p99_ms=round(float(np.percentile(ms, 99)), 3),
        max_ms=round(float(ms.max()), 3),
        rps=round(len(latencies) / elapsed, 1),
        server_cpu_ms=round(cpu * 1000 / max(len(latencies), 1), 3),
    )


# ---------------------------------------------------------------------------------- the run


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def _table(results: list[Result]) -> str:
    lines = [
        f"{'server':<34} {'conc':>4} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'req/s':>8} {'cpu ms/req':>10} {'errors':>6}"
    ]
    for r in results:
        lines.append(
            f"{r.server:<34} {r.concurrency:>4} {r.requests:>8} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.max_ms:>8.1f} {r.rps:>8.0f} {r.server_cpu_ms:>10.2f} "
            f"{r.errors:>6}"
        )
    return "\n".join(lines)


def _ratios(results: list[Result]) -> str:
    """churnguard against the bare app (its floor) and mlflow at each concurrency."""
    by = {(r.server.split()[0], r.concurrency): r for r in results}
    lines = []
    for c in sorted({r.concurrency for r in results}):
        ours = by.get(("churnguard", c))
        if ours is None:
            continue
        for other in ("bare", "mlflow"):
            them = by.get((other, c))
            if them is not None:
                lines.append(
                    f"concurrency {c}: churnguard / {other}: p50 {ours.p50_ms / them.p50_ms:.1f}x, "
                    f"req/s {ours.rps / them.rps:.2f}x, "
                    f"server CPU/req {ours.server_cpu_ms / them.server_cpu_ms:.1f}x"
                )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, serve, load, and return the results."""
    from churnguard.store import keys
    from churnguard.store.scores import ScoreStore

    home = args.home.resolve()
    settings = prepare(home, args.clients, args.months)
    ours, theirs, bare, sizes = payloads(settings, args.pool)
    sizes |= engine_cpu_ms(settings, ours)
    print(f"in-process, no HTTP: {sizes}", flush=True)
    with ScoreStore(settings.score_store_url) as store:
        key = keys.create_key(store.create(), "crm", label="http bench")
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CHURNGUARD_HOME": str(home),
        "CHURNGUARD_MODELS_DIR": str(settings.models_dir),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
    }
    results: list[Result] = []
    churnguard = [sys.executable, "-m", "churnguard.cli", "serve", "--port", "{port}"]
    with server(churnguard, env, "/health/ready", home / "bench-churnguard.log") as served:
        port = served[0]
        requests = [
            _request(port, "/api/v1/score", b, {"Authorization": f"Bearer {key}"}) for b in ours
        ]
        for c in args.concurrency:
            name = "churnguard /api/v1/score (records)"
            results.append(measure(name, served, requests, args.requests, args.seconds, c))
            print(_table(results[-1:]).splitlines()[-1], flush=True)
    floor = [sys.executable, "-m", "bench.bare_app", "--models-dir", str(settings.models_dir)]
    with server([*floor, "--port", "{port}"], env, "/ping", home / "bench-bare.log") as served:
        port = served[0]
        requests = [_request(port, "/predict", b, {}) for b in bare]
        for c in args.concurrency:
            name = "bare FastAPI /predict (input row)"
            results.append(measure(name, served, requests, args.requests, args.seconds, c))
            print(_table(results[-1:]).splitlines()[-1], flush=True)
    if args.skip_mlflow:
        return {"sizes": sizes, "results": [asdict(r) for r in results]}
    mlflow = [
        str(Path(sys.executable).with_name("mlflow")),
        "models",
        "serve",
        "-m",
        "models:/churnguard@champion",
        "--env-manager",
        "local",
        "-p",
        "{port}",
        "-w",
        "1",
    ]
    with server(mlflow, env, "/ping", home / "bench-mlflow.log") as served:
        port = served[0]
        requests = [_request(port, "/invocations", b, {}) for b in theirs]
        for c in args.concurrency:
            name = "mlflow /invocations (feature row)"
            results.append(measure(name, served, requests, args.requests, args.seconds, c))
            print(_table(results[-1:]).splitlines()[-1], flush=True)
    return {"sizes": sizes, "results": [asdict(r) for r in results]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".churnguard/bench-http"))
    parser.add_argument("--clients", type=int, default=1000, help="simulated business size")
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--pool", type=int, default=500, help="distinct clients sent")
    parser.add_argument("--requests", type=int, default=5000, help="per run, at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="per run, at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip-mlflow", action="store_true", help="churnguard only")
    parser.add_argument("--out", type=Path, default=Path("bench/results/http.json"))
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2 or (os.cpu_count() or 1) < 2:
        print("needs two CPUs: the server on one, the load generator on the other")
        return 1
    os.sched_setaffinity(0, {LOAD_CPU})  # servers started from here set their own CPU
    before = _uptime()
    print(f"uptime before: {before}", flush=True)
    report = run(args)
    after = _uptime()
    results = [Result(**r) for r in report["results"]]
    print()
    print(_table(results))
    print()
    print(_ratios(results))
    print(f"clients: {report['sizes']}")
    print(f"uptime before: {before}\nuptime after:  {after}")
    report |= {
        "uptime_before": before,
        "uptime_after": after,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
