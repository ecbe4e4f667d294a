"""The parser: every sub-command with a one-line summary, its options' defaults and an example."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy libraries load once a command runs, so --help answers at once
    import pandas as pd


from churnguard.cli import data, keys, models, scores


def _date(text: str) -> pd.Timestamp:
    """An --as-of value: a date (YYYY-MM-DD) read as UTC midnight."""
    import pandas as pd

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


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder of CSV/Parquet tables, or a database URL")
    p.add_argument("--mapping", type=Path, help="YAML file renaming a CRM export's tables/columns")


def _table_args(p: argparse.ArgumentParser) -> None:
    """`train --table`: a flat table instead of CRM tables, so --data is no longer required."""
    p._option_string_actions["--data"].required = False
    p.add_argument("--table", type=Path, help="CSV/Parquet file, one row per client (not --data)")
    p.add_argument("--label", help="--table's churn column: 1/0, true/false or yes/no")
    p.add_argument(
        "--positive",
        help="--label's value meaning churned, for a label of two other values "
        "(e.g. 'Attrited Customer')",
    )
    p.add_argument("--id", dest="id_column", help="--table's client id column (not a feature)")
    p.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COLUMN",
        help="--table: keep a column the leakage check leaves out (one that alone separates "
        "churners); repeatable",
    )
    p.add_argument(
        "--time", dest="time_column", help="--table's time column: out-of-time split on it"
    )
    p.add_argument(
        "--cv-folds", type=_positive, default=5, help="cross-validation folds (--table, no --time)"
    )
    p.add_argument(
        "--cv-repeats",
        type=_positive,
        default=3,
        help="cross-validation repeats (--table, no --time)",
    )


def _spark_args(p: argparse.ArgumentParser) -> None:
    """`--engine spark` and its settings (README: Running on Spark)."""
    p.add_argument(
        "--engine", choices=("local", "spark"), default="local", help="where the work runs"
    )
    p.add_argument("--master", help="--engine spark: Spark master (default: spark-submit's)")
    p.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--engine spark: a Spark setting (repeatable)",
    )
    p.add_argument(
        "--partitions",
        type=_positive,
        help="--engine spark: partitions of clients (default: 20,000 clients each)",
    )


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; each option's default shown when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    example: str,
    more: str = "",
) -> argparse.ArgumentParser:
    """A sub-command: its one-line summary, what more there is to say, and an example."""
    import textwrap

    text = f"{summary[0].upper()}{summary[1:]}." + (
        f"\n\n{textwrap.fill(more, 78)}" if more else ""
    )
    return sub.add_parser(
        name,
        help=summary,
        description=text,
        epilog=f"example{'s' if chr(10) in example else ''}:\n  {example}",
        formatter_class=_HelpFormatter,
    )


def version() -> str:
    """The installed churnguard's version ("unknown" from a bare source tree)."""
    from importlib import metadata

    try:
        return metadata.version("churnguard")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="churnguard",
        description="Churn-risk prediction for service businesses.",
        epilog="`churnguard COMMAND --help` explains a command, with an example. Settings come "
        "from CHURNGUARD_* variables or .env (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(
        sub,
        "demo-data",
        "write a simulated business's CRM tables",
        "churnguard demo-data --clients 3000 --months 36",
    )
    p.add_argument("--out", type=Path, help="output folder (default: <home>/demo)")
    p.add_argument("--clients", type=_positive, default=1000, help="clients in the business")
    p.add_argument("--months", type=_positive, default=36, help="months of history")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same data)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format")
    p.set_defaults(handler=data.demo_data)

    p = _command(
        sub,
        "init",
        "draft a mapping file from someone's CRM export",
        "churnguard init --data ./export --out mapping.yaml",
        "Guesses which export table and column stands for each contract table and column; "
        "review the draft, then pass it to other commands with --mapping.",
    )
    p.add_argument("--data", required=True, help="folder of CSV/Parquet tables, or a database URL")
    p.add_argument("--out", type=Path, help="YAML file to write (default: print it)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=data.init)

    p = _command(
        sub,
        "validate",
        "check CRM data against the data contract",
        "churnguard validate --data ./export --mapping mapping.yaml",
        "Prints every problem found (exit 1 when the data cannot be used).",
    )
    _data_args(p)
    p.set_defaults(handler=data.validate)

    p = _command(
        sub,
        "features",
        "write point-in-time features for one as_of date",
        "churnguard features --data .churnguard/demo --as-of 2025-06-01 --out features.csv",
    )
    _data_args(p)
    p.add_argument("--as-of", type=_date, help="date (default: the end of the data)")
    p.add_argument("--out", type=Path, help="CSV or .parquet file (default: print CSV)")
    p.set_defaults(handler=data.features)

    p = _command(
        sub,
        "train",
        "train, evaluate and register a churn model",
        "churnguard train --data .churnguard/demo --horizon 90\n"
        "  churnguard train --table telco.csv --label Churn --id customerID",
        "CRM tables (--data): out-of-time train, validation and test windows, a backtest, an "
        "MLflow run and a registered version, promoted to champion if it passes the gate. A "
        "flat table (--table): one row per client, cross-validated unless --time is given.",
    )
    _data_args(p)
    _table_args(p)
    p.add_argument("--horizon", type=_positive, help="churn horizon in days (default: settings)")
    p.add_argument("--experiment", default="churnguard", help="MLflow experiment name")
    p.add_argument("--test-months", type=_positive, default=3, help="months in the test window")
    p.add_argument(
        "--val-months", type=_positive, default=3, help="months in the validation window"
    )
    _spark_args(p)
    p.set_defaults(handler=models.train)

    p = _command(
        sub,
        "models",
        "list registered model versions, aliases and metrics",
        "churnguard models",
    )
    p.set_defaults(handler=models.models)

    p = _command(
        sub,
        "promote",
        "make a model version the champion (also to roll back)",
        "churnguard promote 3",
    )
    p.add_argument("version", type=_positive, help="registered version number")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote a version its training run found no better than chance or the base rate",
    )
    p.set_defaults(handler=models.promote)

    p = _command(
        sub,
        "score",
        "score every active client into the score store",
        "churnguard score --data .churnguard/demo --as-of 2025-12-01",
        "Uses the champion model; sends the alert digests afterwards when an alert channel "
        "is configured.",
    )
    _data_args(p)
    p.add_argument("--as-of", type=_date, help="date (default: the end of the data)")
    p.add_argument(
        "--no-drivers", dest="drivers", action="store_false", help="scores only: much faster"
    )
    p.add_argument(
        "--explain-from",
        type=float,
        default=0.0,
        metavar="P",
        help="drivers and actions only for clients scored at least P (default 0: every client)",
    )
    _spark_args(p)
    p.add_argument("--out", help="--engine spark: folder (or URI) of the Parquet table of scores")
    p.add_argument(
        "--to-store",
        action="store_true",
        help="--engine spark: also write the scores into the score store (alerts, dashboard)",
    )
    p.set_defaults(handler=scores.score)

    p = _command(
        sub,
        "runs",
        "list the latest scoring runs and what each covered",
        "churnguard runs --limit 5",
        "Each `churnguard score` run records its as_of, model version, data, start and finish, "
        "and how many active clients it scored and skipped, by reason.",
    )
    p.add_argument("--limit", type=_positive, default=10, help="runs to list (default 10)")
    p.set_defaults(handler=scores.runs)

    p = _command(
        sub,
        "export",
        "write the clients' latest scores as CSV",
        'churnguard export --manager "Maya Khan" --band high --out maya-high.csv',
        "Each client's latest score, highest revenue at risk first (the dashboard's and "
        "GET /api/v1/clients.csv's columns).",
    )
    p.add_argument("--manager", help='one account manager\'s clients ("" for the unassigned)')
    p.add_argument("--band", choices=("high", "medium", "low"), help="one risk band only")
    p.add_argument("--search", help="part of the client id or name")
    p.add_argument(
        "--sort",
        choices=("revenue_at_risk", "probability", "monthly_value", "client_id"),
        default="revenue_at_risk",
        help="order",
    )
    p.add_argument("--out", type=Path, help="CSV file to write (default: print to stdout)")
    p.set_defaults(handler=scores.export)

    p = _command(
        sub,
        "alerts",
        "send the alert digests the latest scores call for",
        "churnguard alerts --dry-run",
        "Each account manager gets a digest of clients that entered the high band or rose "
        "sharply, follow-ups due and reviews not held, by email and/or webhook; each item only "
        "once. `churnguard score` sends them too when a channel is configured.",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    p.set_defaults(handler=scores.alerts)

    p = _command(
        sub,
        "serve",
        "run the HTTP service (CRM API, dashboard, health, metrics)",
        "churnguard serve --host 0.0.0.0 --port 8000",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_positive, default=8000, help="port to listen on")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler=scores.serve)

    p = _command(
        sub,
        "keys",
        "create, list and revoke API keys",
        'churnguard keys create --role manager --manager "Maya Khan"',
    )
    keys_sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = _command(
        keys_sub,
        "create",
        "create a key and print it (shown only once)",
        'churnguard keys create --role manager --manager "Maya Khan" --label "Maya, laptop"',
    )
    k.add_argument("--role", required=True, help="crm (scores), manager (own book) or admin")
    k.add_argument("--manager", help="the account manager a manager key is bound to")
    k.add_argument("--label", help="what the key is for, shown in listings")
    k.set_defaults(handler=keys.keys_create)
    k = _command(keys_sub, "list", "list keys (never the secrets)", "churnguard keys list")
    k.set_defaults(handler=keys.keys_list)
    k = _command(
        keys_sub,
        "demo",
        "replace the demo keys (admin, crm, top managers') and print them",
        "churnguard keys demo --managers 3",
    )
    k.add_argument(
        "--managers", type=_positive, default=2, help="manager keys for this many managers"
    )
    k.set_defaults(handler=keys.keys_demo)
    k = _command(keys_sub, "revoke", "revoke a key by its id", "churnguard keys revoke 3f2a9c1e")
    k.add_argument("key_id", help="the key id (as `keys list` shows it)")
    k.set_defaults(handler=keys.keys_revoke)
    return parser
