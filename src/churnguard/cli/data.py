"""`demo-data`, `init`, `validate`, `features`: CRM data in, checked, described."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy libraries load once a command runs, so --help answers at once
    import pandas as pd

    from churnguard.config import Settings
    from churnguard.domain.contract import CRMData

logger = logging.getLogger("churnguard")


# --- demo-data ----------------------------------------------------------------------------------


def demo_data(args: argparse.Namespace, settings: Settings) -> int:
    """Write a simulated service business's CRM tables to a folder."""
    from churnguard.synth.business import write_demo_data

    out = args.out or settings.demo_data_dir
    business = write_demo_data(
        out, clients=args.clients, months=args.months, seed=args.seed, fmt=args.format
    )
    rows = {name: len(df) for name, df in business.data.tables().items()}
    print(f"Wrote demo CRM data to {out} (observed until {business.observed_until.date()}):")
    for name, n in rows.items():
        print(f"  {name:<13} {n:>9,} rows")
    return 0


# --- init ---------------------------------------------------------------------------------------


def init(args: argparse.Namespace, settings: Settings) -> int:
    """Draft a mapping file from someone's CRM export, with a comment on every guess."""
    from churnguard.domain.data import sample_tables
    from churnguard.domain.guess import format_draft, guess_mapping

    text = format_draft(guess_mapping(sample_tables(args.data)), str(args.data))
    if args.out is None:
        print(text, end="")
        return 0
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return 1
    args.out.write_text(text, encoding="utf-8")
    print(
        f"Wrote a draft mapping to {args.out}: check each guess, fill in the TODOs, then run "
        f"churnguard validate --data {args.data} --mapping {args.out}"
    )
    return 0


# --- validate -----------------------------------------------------------------------------------


def validate(args: argparse.Namespace, settings: Settings) -> int:
    """Check a CRM export against the data contract and print the report."""
    from churnguard.domain.data import load_crm
    from churnguard.domain.problems import DataContractError
    from churnguard.features.catalog import feature_name_problems

    try:
        data, report = load_crm(args.data, args.mapping, log_warnings=False)  # printed below
    except DataContractError as exc:
        print(exc.report.format())
        return 1
    report.problems += feature_name_problems(data)  # training would stop on them
    print(report.format())
    return 0 if report.ok else 1


# --- features -----------------------------------------------------------------------------------


def features(args: argparse.Namespace, settings: Settings) -> int:
    """Write point-in-time features of every client active at --as-of."""
    from churnguard.domain.churn import observation_end
    from churnguard.features.engine import build_features

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
    from churnguard.domain.data import load_crm

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
