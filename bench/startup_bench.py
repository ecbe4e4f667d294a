"""CLI start-up benchmark: `churnguard --help` against `python -c pass`, side by side.

Usage: python -m bench.startup_bench [--runs 10]

Each run starts a fresh interpreter (the venv's), alternating the two commands so both see the
same load; it reports the median and the slowest wall time of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMANDS = {  # the venv's interpreter and its console script
    "python -c pass": [sys.executable, "-c", "pass"],
    "churnguard --help": [str(Path(sys.executable).parent / "churnguard"), "--help"],
}


def wall_seconds(command: list[str]) -> float:
    """Wall time of one run of a command, output discarded; a failed run is an error."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def startup_case(runs: int) -> dict[str, Any]:
    """Median and slowest start of each command over `runs` alternating runs, and the ratio."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        wall_seconds(command)  # warm the file cache
    for _ in range(runs):
        for name, command in COMMANDS.items():
            times[name].append(wall_seconds(command))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "runs": runs,
        "load_average_1min": os.getloadavg()[0],
        **{name: {"median_s": medians[name], "max_s": max(t)} for name, t in times.items()},
        "ratio": medians["churnguard --help"] / medians["python -c pass"],
    }


def format_startup(r: dict[str, Any]) -> str:
    lines = [f"CLI start ({r['runs']} runs each, alternating)"]
    lines.append(f"  {'command':<20} median s  max s")
    for name in COMMANDS:
        lines.append(f"  {name:<20} {r[name]['median_s']:8.3f} {r[name]['max_s']:6.3f}")
    lines.append(f"  ratio churnguard / python: {r['ratio']:.1f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args(argv)
    print(format_startup(startup_case(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
