"""One feature-engine case in a process of its own: wall time, CPU time and peak memory.

Usage: python -m bench.features_process CLIENTS [DATES]   (e.g. 1000000 1; run under
/usr/bin/time -v for the whole process's peak, data generation included)

Prints one JSON line: the wall and CPU (all threads) seconds of ``compute_features`` for every
client of ``bench_crm(CLIENTS)`` at DATES monthly as_of dates, the resident memory of the data
before the call, and the peak resident memory above it during the call (Linux: VmHWM is reset
through /proc/self/clear_refs just before the call).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_data import bench_crm
from churnguard.features.catalog import feature_set_for
from churnguard.features.engine import compute_features

GB = 2**20  # /proc reports kB


def _memory_gb() -> tuple[float, float]:
    """(peak, current) resident memory of this process, in GB."""
    lines = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return int(fields["VmHWM"].split()[0]) / GB, int(fields["VmRSS"].split()[0]) / GB


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    n_clients, n_dates = int(args[0]), int(args[1]) if len(args) > 1 else 1
    data = bench_crm(n_clients)
    fs = feature_set_for(data)
    ids = data.clients["client_id"].to_numpy()
    dates = pd.date_range(end="2025-06-01", periods=n_dates, freq="MS", tz="UTC")
    snapshots = pd.DataFrame(
        {"client_id": np.tile(ids, n_dates), "as_of": dates.as_unit("s").repeat(len(ids))}
    )
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current memory
    before = _memory_gb()[1]
    wall, cpu = time.perf_counter(), time.process_time()
    compute_features(data, snapshots, fs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    record = {
        "clients": n_clients,
        "dates": n_dates,
        "rows": data.n_rows,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "data_gb": round(before, 2),
        "peak_above_data_gb": round(_memory_gb()[0] - before, 2),
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
