"""The ``churnguard`` command: one sub-command per job, each a thin call into the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from churnguard.config import Settings
from churnguard.contract import CRMData, DataContractError

logger = logging.getLogger("churnguard")

Handler = Callable[[argparse.Namespace, Settings], int]


def _date(text: str) -> pd.Timestamp:
    """An --as-of value: a date (YYYY-MM-DD) read as UTC midnight."""
    try:
        ts = pd.Timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (expected YYYY-MM-DD)") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


# --- demo-data ----------------------------------------------------------------------------------


def demo_data(args: argparse.Namespace, settings: Settings) -> int:
    """Write a simulated service business's CRM tables to a folder."""
    from churnguard.synth import write_demo_data

    out = args.out or settings.demo_data_dir
    business = write_demo_data(
        out, clients=args.clients, months=args.months, seed=args.seed, fmt=args.format
    )
    rows = {name: len(df) for name, df in business.data.tables().items()}
    print(f"Wrote demo CRM data to {out} (observed until {business.observed_until.date()}):")
    for name, n in rows.items():
        print(f"  {name:<13} {n:>9,} rows")
    return 0


# --- validate -----------------------------------------------------------------------------------


def validate(args: argparse.Namespace, settings: Settings) -> int:
    """Check a CRM export against the data contract and print the report."""
    from churnguard.data import load_crm

    try:
        _, report = load_crm(args.data, args.mapping)
    except DataContractError as exc:
        print(exc.report.format())
        return 1
    print(report.format())
    return 0


# --- features -----------------------------------------------------------------------------------


def features(args: argparse.Namespace, settings: Settings) -> int:
    """Write point-in-time features of every client active at --as-of."""
    from churnguard.features import build_features
    from churnguard.labels import observation_end

    data = load_data(args)
    as_of = args.as_of or observation_end(data)
    table = build_features(data, as_of)
    if args.out is None:
        print(table.to_csv(index=False), end="")
    else:
        _write_table(table, args.out)
        print(f"Wrote features of {len(table):,} clients at {as_of.date()} to {args.out}")
    return 0


def load_data(args: argparse.Namespace) -> CRMData:
    """The validated CRM data named by --data and --mapping."""
    from churnguard.data import load_crm

    data, _ = load_crm(args.data, args.mapping)
    return data


def _write_table(table: pd.DataFrame, out: Path) -> None:
    """Write CSV or Parquet (by suffix) atomically: a partial file never replaces a good one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if out.suffix in (".parquet", ".pq"):
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- parser -------------------------------------------------------------------------------------


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder of CSV/Parquet tables, or a database URL")
    p.add_argument("--mapping", type=Path, help="YAML file renaming a CRM export's tables/columns")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="churnguard", description="Churn-risk prediction for service businesses."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo-data", help="write a simulated business's CRM tables")
    p.add_argument("--out", type=Path, help="output folder (default: <home>/demo)")
    p.add_argument("--clients", type=_positive, default=1000)
    p.add_argument("--months", type=_positive, default=36)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.set_defaults(handler=demo_data)

    p = sub.add_parser("validate", help="check CRM data against the data contract")
    _data_args(p)
    p.set_defaults(handler=validate)

    p = sub.add_parser("features", help="write point-in-time features for one as_of date")
    _data_args(p)
    p.add_argument("--as-of", type=_date, help="date (default: the end of the data)")
    p.add_argument("--out", type=Path, help="CSV or .parquet file (default: print CSV)")
    p.set_defaults(handler=features)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    settings = Settings()
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except DataContractError as exc:
        print(f"error: the data breaks the CRM data contract:\n{exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
