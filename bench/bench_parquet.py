"""Large bench CRM data sets written to Parquet block by block: 5M clients in one block's memory.

``write_bench_parquet(n, folder)`` writes ``bench.bench_data.bench_crm`` in blocks of clients
(default 100,000): block k is ``bench_crm(block, seed + k, first=k * block)`` (its own ids), each
table of it one part file ``<table>.parquet/part-<k>.parquet``. A folder of part files is one table
to ``load_crm`` and to Spark. Block 0 is today's ``bench_crm(block, seed)``, row for row, so
``n <= block`` gives the data ``bench_crm(n, seed)`` gives. A larger book is not
``bench_crm(n, seed)``: each block draws its clients' rows and times on its own (the same rates
per client; time order holds within a block, not across blocks). Feedback's CSAT scores of 0
are raised to 1, the contract's floor (``bench_crm`` draws 0-5 for both surveys).

Usage: python -m bench.bench_parquet --clients 5000000 --out /work/sparkdata/crm-5000000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from bench.bench_data import bench_crm
from churnguard.domain.churn import observation_end

BLOCK = 100_000
AS_OF_FILE = "as_of.txt"  # written last: the folder is complete


def write_bench_parquet(
    n_clients: int, folder: Path, seed: int = 0, block: int = BLOCK, progress: bool = False
) -> str:
    """Write n_clients in blocks to folder (kept: an existing complete folder is reused).

    Returns the data's end of observation (ISO), the scoring date of the benchmarks.
    """
    written = folder / AS_OF_FILE
    if written.exists():
        return written.read_text().strip()
    ends = []
    started = time.perf_counter()
    for k, first in enumerate(range(0, n_clients, block)):
        data = bench_crm(min(block, n_clients - first), seed + k, first=first)
        ends.append(observation_end(data))
        for name, frame in data.tables().items():
            part = folder / f"{name}.parquet"
            part.mkdir(parents=True, exist_ok=True)
            _contract_floor(name, frame).to_parquet(part / f"part-{k:05d}.parquet", index=False)
        del data
        if progress:
            done = first + block
            print(f"{min(done, n_clients):,} clients: {time.perf_counter() - started:.0f} s")
    as_of = max(ends).isoformat()  # the end of every block's observation: the book's
    written.write_text(as_of)
    return as_of


def _contract_floor(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Feedback with its CSAT scores of 0 raised to 1; other tables as they are."""
    if name != "feedback":
        return frame
    csat = (frame["survey"] == "csat") & (frame["score"] < 1)
    return frame.assign(score=frame["score"].mask(csat, 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=BLOCK)
    args = parser.parse_args()
    as_of = write_bench_parquet(args.clients, args.out, args.seed, args.block, progress=True)
    print(f"{args.clients:,} clients in {args.out}, end of observation {as_of}")


if __name__ == "__main__":
    main()
