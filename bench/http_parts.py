"""Where a ``POST /api/v1/score`` request's CPU goes: a table by part, from a running server.

Usage: python -m bench.http_parts [--home DIR] [--requests 1500] [--concurrency 1] [--plain]

The churnguard app runs under uvicorn in this process (httptools + uvloop, as ``churnguard
serve``), pinned to CPU 0, and is loaded by a separate generator process on CPU 1 with the
bodies of ``bench.http_bench`` (one client's raw records a request), after 200 untimed requests.
Each part is a function wrapped to add up its thread's CPU time (exclusive: a part's time leaves
out the parts it calls), on every thread: the event loop's and the score writer's, whose insert
and commit a request waits for. "rest of the loop thread" is what no wrapper saw (uvicorn's
and uvloop's own work, Starlette's routing and middleware, awaiting and waking).

The wrappers cost about a microsecond a call, so the parts add up to a little more than the
server spends uninstrumented; ``--plain`` runs without them and prints only the CPU per request
of each thread (for side-by-side runs of two trees: put the other tree's ``src`` first on
PYTHONPATH).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.http_bench import SERVER_CPU, _free_port, _request, payloads, prepare

_spent: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_local = threading.local()

# (module, owner or "", attribute, part): the functions timed, by the part they belong to
PARTS: list[tuple[str, str, str, str]] = [
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol", "data_received", "HTTP parse"),
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle", "send", "HTTP send"),
    ("fastapi.security", "HTTPBearer", "__call__", "auth"),
    ("churnguard.service.deps", "", "_authenticate", "auth"),
    ("fastapi.dependencies.utils", "", "solve_dependencies", "FastAPI dependencies"),
    ("churnguard.service.routes.score", "", "read_request", "body (JSON, column checks)"),
    ("churnguard.service.routes.score", "", "_check_clients", "route checks"),
    ("churnguard.service.routes.score", "", "_dated", "route checks"),
    ("churnguard.service.routes.score", "", "_records", "route checks"),
    ("churnguard.scoring.scorer", "", "client_arrays", "features: records to arrays"),
    ("churnguard.scoring.scorer", "", "feature_columns", "features: engine"),
    ("churnguard.scoring.scorer", "Scorer", "_row", "model input row"),
    ("churnguard.scoring.scorer", "Scorer", "_raw", "model: probability"),
    ("churnguard.scoring.scorer", "Scorer", "_contributions", "drivers: contributions"),
    ("churnguard.scoring.scorer", "Scorer", "_reasons", "drivers: direction check"),
    ("churnguard.scoring.scorer", "", "top_drivers", "drivers: top k, reasons"),
    ("churnguard.scoring.playbook", "Playbook", "actions", "actions"),
    ("churnguard.scoring.scorer", "", "risk_curves", "curve"),
    ("churnguard.store.scores", "ScoreStore", "previous_summary", "what-changed read"),
    ("churnguard.scoring.scorer", "Scorer", "score_records", "score_records, the rest"),
    ("churnguard.scoring.score", "ClientScore", "to_record", "score to store record (digest)"),
    ("churnguard.service.schemas", "ScorePublic", "of", "response: models"),
    ("fastapi.routing", "", "serialize_response", "response: JSON"),
    ("fastapi.routing", "", "run_endpoint_function", "route, the rest"),
    ("churnguard.service.writer", "ScoreWriter", "_write", "writer: insert + commit"),
    ("churnguard.store.scores", "", "_incoming_rows", "writer: rows"),
    ("churnguard.store.database", "", "to_json", "writer: JSON"),
]


def _enter(name: str) -> None:
    now = time.thread_time()
    stack = _local.__dict__.setdefault("stack", [])
    if stack:
        _spent[stack[-1][0]] += now - stack[-1][1]
    stack.append([name, now])


def _leave() -> None:
    now = time.thread_time()
    stack = _local.stack
    name, start = stack.pop()
    _spent[name] += now - start
    _calls[name] += 1
    if stack:
        stack[-1][1] = now


def _timed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``function`` adding its thread's exclusive CPU time to ``name``."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
            _enter(name)
            try:
                return await function(*args, **kwargs)
            finally:
                _leave()

        return timed_coroutine

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        _enter(name)
        try:
            return function(*args, **kwargs)
        finally:
            _leave()

    return timed


def instrument() -> None:
    """Wrap every function of ``PARTS`` (before the app is built)."""
    import importlib

    for module_name, owner_name, attribute, part in PARTS:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        found = inspect.getattr_static(owner, attribute)
        if isinstance(found, classmethod):
            setattr(owner, attribute, classmethod(_timed(found.__func__, part)))
        else:
            setattr(owner, attribute, _timed(found, part))


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by name and id."""
    out = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[f"{name} {task.name}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


_GENERATOR = """
import asyncio, json, os, sys
from bench.http_bench import LOAD_CPU, WARMUP, _drive
os.sched_setaffinity(0, {LOAD_CPU})
port, n, c, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
requests = json.loads(open(path).read())
requests = [r.encode('latin-1') for r in requests]
asyncio.run(_drive(port, requests, WARMUP, 120, 1))
print('warm', flush=True)
sys.stdin.readline()
latencies, failures, seconds = asyncio.run(_drive(port, requests, n, 600, c))
print(json.dumps({'requests': len(latencies), 'failures': len(failures), 'seconds': seconds}))
"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Serve, load, and return CPU per request by thread and by part."""
    import uvicorn

    from churnguard.service import create_app
    from churnguard.store import keys
    from churnguard.store.scores import ScoreStore

    os.sched_setaffinity(0, {SERVER_CPU})
    settings = prepare(args.home.resolve(), args.clients, args.months)
    bodies, _, _, _ = payloads(settings, args.pool)
    with ScoreStore(settings.score_store_url) as store:
        key = keys.create_key(store.create(), "crm", label="http parts")
    port = _free_port()
    auth = {"Authorization": f"Bearer {key}"}
    requests = [_request(port, "/api/v1/score", b, auth).decode("latin-1") for b in bodies]
    saved = args.home.resolve() / "bench-parts-requests.json"
    saved.write_text(json.dumps(requests))
    if not args.plain:
        instrument()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    found: dict[str, Any] = {}
    command = [sys.executable, "-c", _GENERATOR, str(port), str(args.requests)]
    command += [str(args.concurrency), str(saved)]

    def drive() -> None:
        while not server.started:
            time.sleep(0.2)
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
        ) as generator:
            assert generator.stdin is not None and generator.stdout is not None
            generator.stdout.readline()  # warmed up
            _spent.clear()
            _calls.clear()
            before = thread_cpu()
            generator.stdin.write("go\n")
            generator.stdin.flush()
            found["load"] = json.loads(generator.stdout.readline())
            found["threads"] = {t: s - before.get(t, 0.0) for t, s in thread_cpu().items()}
        server.should_exit = True

    threading.Thread(target=drive, daemon=True).start()
    server.run()
    return found


def report(found: dict[str, Any]) -> str:
    """The table: CPU ms per request by thread, then by part."""
    n = max(found["load"]["requests"], 1)
    lines = [f"requests: {found['load']}"]
    threads = {t: s * 1000 / n for t, s in found["threads"].items() if s > 0}
    lines.append(f"server CPU per request: {sum(threads.values()):.3f} ms")
    lines += [f"  thread {t}: {ms:.3f} ms" for t, ms in sorted(threads.items())]
    if _spent:
        loop = max(threads.values())  # the event loop's thread does most of the work
        on_loop = sum(s for p, s in _spent.items() if not p.startswith("writer")) * 1000 / n
        lines.append(f"{'part':<34} {'ms/req':>7} {'calls/req':>9}")
        for part, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
            lines.append(f"{part:<34} {seconds * 1000 / n:7.3f} {_calls[part] / n:9.1f}")
        lines.append(f"{'rest of the loop thread':<34} {loop - on_loop:7.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path(".churnguard/bench-http"))
    parser.add_argument("--clients", type=int, default=1000, help="simulated business size")
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--pool", type=int, default=500, help="distinct clients sent")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="no wrappers: CPU by thread only")
    args = parser.parse_args(argv)
    print(f"load average: {os.getloadavg()}", flush=True)
    print(report(run(args)))
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
