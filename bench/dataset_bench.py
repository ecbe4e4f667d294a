"""A run's dataset input: MLflow's own digest and schema against churnguard's, side by side.

Usage: python -m bench.dataset_bench [--rows 1000000]

A table shaped like a feature matrix (144 float columns with 5% missing, 5 categoricals, a client
id as text, a tz-aware as_of) goes through MLflow's ``compute_pandas_digest`` and
``PandasDataset.schema`` (every value tested in Python) and through ``modeling.registry``'s
``pandas_digest`` and ``table_schema`` (a column at a time); it prints the CPU seconds of each,
their ratio, and whether the results are equal.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd


def table(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {
        f"f{i}": np.where(rng.random(rows) < 0.05, np.nan, rng.random(rows)) for i in range(144)
    }
    for i in range(5):
        cols[f"c{i}"] = pd.Categorical(rng.choice(["a", "b", "c", "d"], rows))
    ids = rng.integers(0, 20_000, rows)
    cols["client_id"] = np.array([f"C{i:07d}" for i in ids], dtype=object)
    days = pd.to_timedelta(rng.integers(0, 900, rows), "D")
    cols["as_of"] = pd.Timestamp("2025-01-01", tz="UTC") + days
    return pd.DataFrame(cols)


def main(argv: list[str] | None = None) -> int:
    from mlflow.data.digest_utils import compute_pandas_digest
    from mlflow.data.pandas_dataset import PandasDataset

    from churnguard.modeling.registry import pandas_digest, table_schema

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # MLflow's hints on integers and time zones
    frame = table(args.rows)
    print(f"table {frame.shape[0]:,} x {frame.shape[1]}, load average {os.getloadavg()}")

    def timed(fn):  # type: ignore[no-untyped-def]
        started = time.process_time()
        out = fn()
        return out, time.process_time() - started

    theirs, a = timed(lambda: compute_pandas_digest(frame))
    ours, b = timed(lambda: pandas_digest(frame))
    print(
        f"digest: MLflow {a:.2f} s CPU, churnguard {b:.2f} s ({a / b:.0f}x), equal {theirs == ours}"
    )
    their_schema, a = timed(lambda: PandasDataset(frame, source=None, digest="-").schema)  # type: ignore[arg-type]
    our_schema, b = timed(lambda: table_schema(frame))
    same = their_schema.to_dict() == our_schema.to_dict()
    print(f"schema: MLflow {a:.2f} s CPU, churnguard {b:.2f} s ({a / b:.0f}x), equal {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
