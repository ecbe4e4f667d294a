"""Start-up benchmark: `churnguard --help`, `churnguard models` and `churnguard serve` start to
ready, each against `python -c pass`, side by side in one run.

Usage:
    python -m bench.startup_bench [--runs 10] [--home DIR] [--src DIR] [--before DIR]
        [--pycache DIR]

Each run starts a fresh interpreter (the venv's), the commands alternating so that all see the
same load; it reports the median and the slowest wall time of each, its median CPU time (user
+ system, the server's own until ready for `serve`), and each median wall time over
`python -c pass`'s. `serve` is timed from the process start to the first 200 from
`/health/ready` (polled every 20 ms), then stopped.

- `--home DIR`: a churnguard home with a registered champion (its `mlflow.db`, `models/`,
  `scores.db`): `models` and `serve` run against it. Without it they are not run, and the
  output says so. `make-home` below makes one (demo data and one training run, a few minutes).
- `--src DIR`: run the churnguard package of another tree (`DIR/churnguard`, through
  PYTHONPATH), e.g. a `git archive` of a commit, rather than the venv's (the working tree).
- `--before DIR`: also run every churnguard command from that tree, alternating with the
  others in the same loop, so that "before" and "after" see the same load; named "(before)".
- `--pycache DIR`: let Python cache compiled bytecode in DIR (PYTHONPYCACHEPREFIX), as an
  ordinary install does in its own folders. Without it the environment decides; with
  PYTHONDONTWRITEBYTECODE=1 and no compiled files in the venv (a uv install without
  `--compile-bytecode`), every start compiles every module it imports, and the output says so.

`python -m bench.startup_bench make-home DIR` writes the demo data there and trains once.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 300.0  # a serve that is not ready by then is a failed run
POLL_S = 0.02


Timing = tuple[float, float]  # wall seconds, CPU seconds (user + system) of the command


def wall_seconds(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one run of a command, output discarded; a failed run is an error."""
    return timed_run(command, env)[0]


def timed_run(command: list[str], env: dict[str, str] | None = None) -> Timing:
    """Wall and CPU time of one run of a command, output discarded; a failed run is an error."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - start, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_ready_seconds(env: dict[str, str]) -> Timing:
    """Wall time from starting `churnguard serve` to its first 200 from /health/ready, and the
    CPU time the server used until then."""
    port = _free_port()
    command = [str(BIN / "churnguard"), "serve", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/health/ready"
    start = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        while time.perf_counter() - start < READY_TIMEOUT_S:
            if server.poll() is not None:
                raise RuntimeError(f"serve exited with {server.returncode} before it was ready")
            if _ready(url):
                return time.perf_counter() - start, _process_cpu(server.pid)
            time.sleep(POLL_S)
        raise RuntimeError(f"serve was not ready within {READY_TIMEOUT_S:.0f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False  # not listening yet, or 503 while the model loads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(home: Path | None, src: Path | None, pycache: Path | None) -> dict[str, str]:
    """The environment of the timed commands: the home, the source tree, the bytecode cache."""
    env = dict(os.environ)
    if home is not None:
        env |= {
            "CHURNGUARD_HOME": str(home),
            "CHURNGUARD_MODELS_DIR": str(home / "models"),
            "CHURNGUARD_CRM_DATA": str(home / "demo"),
        }
        env.pop("MLFLOW_TRACKING_URI", None)  # the home's own sqlite:///<home>/mlflow.db
        env.pop("CHURNGUARD_DATABASE_URL", None)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def cases(env: dict[str, str], with_home: bool, label: str = "") -> dict[str, Callable[[], Timing]]:
    """The timed churnguard commands by name (with ``label``); `models`, `serve` need a home."""
    churnguard = str(BIN / "churnguard")
    found: dict[str, Callable[[], Timing]] = {
        f"churnguard --help{label}": lambda: timed_run([churnguard, "--help"], env),
    }
    if with_home:
        found[f"churnguard models{label}"] = lambda: timed_run([churnguard, "models"], env)
        found[f"serve to ready{label}"] = lambda: serve_ready_seconds(env)
    return found


def startup_case(
    runs: int,
    home: Path | None = None,
    src: Path | None = None,
    pycache: Path | None = None,
    before: Path | None = None,
) -> dict[str, Any]:
    """Median and slowest time of each command over `runs` alternating runs, and the ratios."""
    env = child_env(home, src, pycache)
    timed = {"python -c pass": lambda: timed_run([sys.executable, "-c", "pass"], env)}
    timed |= cases(env, home is not None)
    if before is not None:
        timed |= cases(child_env(home, before, pycache), home is not None, " (before)")
    times: dict[str, list[Timing]] = {name: [] for name in timed}
    for run in timed.values():
        run()  # warm the file cache (and, with --pycache, the bytecode cache)
    for _ in range(runs):
        for name, run in timed.items():
            times[name].append(run())
    base = statistics.median(wall for wall, _ in times["python -c pass"])
    return {
        "runs": runs,
        "load_average_1min": os.getloadavg()[0],
        "src": str(src) if src else "the venv's churnguard",
        "before": str(before) if before else None,
        "bytecode": _bytecode_note(env),
        "skipped": [] if home else ["churnguard models", "serve to ready"],
        **{name: _figures(t, base) for name, t in times.items()},
    }


def _figures(timings: list[Timing], base: float) -> dict[str, float]:
    """Median and slowest wall time, median CPU time, and the median over ``base``."""
    walls = [wall for wall, _ in timings]
    return {
        "median_s": statistics.median(walls),
        "max_s": max(walls),
        "cpu_median_s": statistics.median(cpu for _, cpu in timings),
        "ratio": statistics.median(walls) / base,
    }


def _bytecode_note(env: dict[str, str]) -> str:
    if env.get("PYTHONPYCACHEPREFIX"):
        return f"cached in {env['PYTHONPYCACHEPREFIX']} (warmed by an untimed run)"
    if env.get("PYTHONDONTWRITEBYTECODE"):
        return "PYTHONDONTWRITEBYTECODE is set: modules without compiled files compile every start"
    return "Python's default (compiled files written next to the sources)"


def format_startup(r: dict[str, Any]) -> str:
    lines = [f"Start-up ({r['runs']} runs each, alternating; load {r['load_average_1min']:.1f})"]
    lines.append(f"  package: {r.get('src', '')}; bytecode: {r.get('bytecode', '')}")
    if r.get("before"):
        lines.append(f"  (before): the package in {r['before']}")
    lines.append(f"  {'command':<29} median s  max s  CPU s  / python -c pass")
    for name, figures in r.items():
        if isinstance(figures, dict) and "median_s" in figures:
            ratio = figures.get("ratio", figures["median_s"] / r["python -c pass"]["median_s"])
            wall, slowest, cpu = figures["median_s"], figures["max_s"], figures.get("cpu_median_s")
            cpu_text = f"{cpu:6.2f}" if cpu is not None else f"{'':6}"
            lines.append(f"  {name:<29} {wall:8.3f} {slowest:6.3f} {cpu_text} {ratio:8.1f}x")
    for name in r.get("skipped", []):
        lines.append(f"  {name:<29} not run: no --home with a registered champion")
    return "\n".join(lines)


def make_home(home: Path) -> None:
    """Demo data and one training run (a registered champion) in a new churnguard home."""
    env = child_env(home, None, None)
    churnguard = str(BIN / "churnguard")
    subprocess.run([churnguard, "demo-data"], check=True, env=env)
    subprocess.run([churnguard, "train", "--data", str(home / "demo")], check=True, env=env)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["make-home"]:
        if len(argv) != 2:
            print("usage: python -m bench.startup_bench make-home DIR", file=sys.stderr)
            return 2
        make_home(Path(argv[1]).resolve())
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--home", type=Path, help="churnguard home with a champion (models, serve)")
    p.add_argument("--src", type=Path, help="run the churnguard package of this folder instead")
    p.add_argument("--before", type=Path, help="also run the churnguard package of this folder")
    p.add_argument("--pycache", type=Path, help="cache compiled bytecode in this folder")
    args = p.parse_args(argv)
    given = (args.home, args.src, args.before, args.pycache)
    home, src, before, pycache = (path.resolve() if path else None for path in given)
    print(format_startup(startup_case(args.runs, home, src, pycache, before)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
