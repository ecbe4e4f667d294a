"""The ``churnguard`` command: one sub-command per job, each a thin call into the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy libraries load once a command runs, so --help answers at once
    import pandas as pd

    from churnguard.config import Settings
    from churnguard.domain.contract import CRMData

logger = logging.getLogger("churnguard")
_LIBRARIES = r"(sklearn|lightgbm|mlflow|pandas|numpy|scipy|pydantic|sqlalchemy|alembic)\b"

Handler = Callable[[argparse.Namespace, "Settings"], int]


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
    from churnguard.domain.problems import DataContractError, Problem
    from churnguard.features.catalog import event_type_clashes, event_types_in

    try:
        data, report = load_crm(args.data, args.mapping, log_warnings=False)  # printed below
    except DataContractError as exc:
        print(exc.report.format())
        return 1
    clashes = event_type_clashes(event_types_in(data))  # training would stop on them
    report.problems += [Problem("error", "events", "events", "event_type", (), m) for m in clashes]
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


# --- train, models, promote -----------------------------------------------------------------------


def train(args: argparse.Namespace, settings: Settings) -> int:
    """Train, evaluate and register a churn model; promote it if it passes the gate."""
    if args.table is not None or args.data is None:  # flat-table mode (training.table)
        return train_table(args, settings)
    from churnguard.modeling.registry import Registry
    from churnguard.training.dataset import TrainOptions
    from churnguard.training.report import format_summary
    from churnguard.training.train import train as run_training

    data = load_data(args)
    options = TrainOptions(
        horizon_days=args.horizon or settings.horizon_days,
        grace_days=settings.grace_days,
        seed=settings.seed,
        experiment=args.experiment,
        test_periods=args.test_months,
        val_periods=args.val_months,
        source=_shown_source(args.data),
    )
    registry = Registry.from_settings(settings)
    result = run_training(data, registry, settings.models_dir, options, _load_truth(args.data))
    print(format_summary(result))
    return 0


def _shown_source(source: str) -> str:
    """The --data value as runs record it: a folder's absolute path, a URL without password."""
    if "://" not in source:
        return str(Path(source).resolve())
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(source).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL: leave out anything before an "@"
        return source.split("@")[-1]


def train_table(args: argparse.Namespace, settings: Settings) -> int:
    """`train --table`: train on one row per client with a churn column (training.table)."""
    from churnguard.modeling.registry import Registry
    from churnguard.training.dataset import TrainOptions
    from churnguard.training.report import format_summary
    from churnguard.training.table import FlatOptions
    from churnguard.training.train import train_table as run_table_training

    problem = _table_args_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    options = FlatOptions(
        train=TrainOptions(seed=settings.seed, experiment=args.experiment),
        horizon_days=args.horizon or 0,
        folds=args.cv_folds,
        repeats=args.cv_repeats,
    )
    result = run_table_training(
        args.table,
        args.label,
        args.id_column,
        args.time_column,
        registry=Registry.from_settings(settings),
        models_dir=settings.models_dir,
        options=options,
    )
    print(format_summary(result))
    return 0


def _table_args_problem(args: argparse.Namespace) -> str:
    """What is wrong with the train arguments for table mode ("" when nothing)."""
    if args.table is None:
        return "train needs --data (CRM tables) or --table FILE --label COLUMN --id COLUMN"
    if args.data is not None or args.mapping is not None:
        return (
            "--data/--mapping (CRM tables) and --table (one row per client) are mutually exclusive"
        )
    if args.label is None or args.id_column is None:
        return "--table needs --label COLUMN (the churn column) and --id COLUMN (the client id)"
    if not args.table.is_file():
        return f"no table at {args.table}: give a CSV or Parquet file"
    return ""


def _load_truth(source: str) -> pd.DataFrame | None:
    """The simulator's true probabilities next to the tables (demo data only), else None."""
    import pandas as pd

    from churnguard.domain.data import TRUTH_FILE_STEM

    folder = Path(source)
    if "://" in source or not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{TRUTH_FILE_STEM}.*")):
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype={"client_id": str})
        if path.suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    return None


def models(args: argparse.Namespace, settings: Settings) -> int:
    """List registered model versions with their aliases and key test metrics."""
    import pandas as pd

    from churnguard.modeling.registry import Registry

    registry = Registry.from_settings(settings)
    versions = registry.versions()
    if not versions:
        print(f"No registered versions of model churnguard in {registry.tracking_uri}")
        return 0
    rows = [
        {
            "version": v.version,
            "aliases": ",".join(v.aliases) or "-",
            "created": v.created.strftime("%Y-%m-%d %H:%M"),
            "kind": v.params.get("kind", "?"),
            "horizon": v.params.get("horizon_days", "?"),
            "test_auc": _metric(v.metrics, "test_roc_auc"),
            "test_brier": _metric(v.metrics, "test_brier"),
            "test_ece": _metric(v.metrics, "test_ece"),
            "backtest_auc": _metric(v.metrics, "backtest_roc_auc_mean"),
            "oracle_ratio": _metric(v.metrics, "oracle_ratio"),
            "test_window": f"{v.params.get('test_start', '?')}..{v.params.get('test_end', '?')}",
        }
        for v in versions
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _metric(metrics: dict[str, float], name: str) -> str:
    return f"{metrics[name]:.4f}" if name in metrics else "-"


def promote(args: argparse.Namespace, settings: Settings) -> int:
    """Point the champion alias at a version (also back: rollback) and refresh the local copy."""
    from churnguard.modeling.model import model_card, save_local_model
    from churnguard.modeling.registry import CHAMPION, Registry

    registry = Registry.from_settings(settings)
    previous = registry.alias_version(CHAMPION)
    model = registry.load_model(args.version)
    registry.set_alias(CHAMPION, args.version)
    info = registry.version_info(args.version)
    path = save_local_model(
        model, model_card(model, args.version, info.run_id), settings.models_dir
    )
    was = f"was version {previous}" if previous is not None else "there was none"
    print(f"champion -> version {args.version} ({was}); local copy {path}")
    return 0


# --- score --------------------------------------------------------------------------------------


def score(args: argparse.Namespace, settings: Settings) -> int:
    """Score every client active at --as-of into the score store and print a summary."""
    from churnguard.domain.coverage import default_as_of, scoring_coverage
    from churnguard.scoring.batch import format_summary, score_to_store
    from churnguard.scoring.loading import load_scorer
    from churnguard.store.scores import ScoreStore

    scorer = load_scorer(settings)  # before the data: no model, no point loading it
    data = load_data(args)
    as_of = args.as_of
    if as_of is None:  # the end of the data, or of the contracts when they stop well before it
        chosen = default_as_of(data)
        as_of = chosen.as_of
        if chosen.note:
            print(chosen.note)
    explain_from = args.explain_from
    with ScoreStore(settings.score_store_url) as store:
        summary = score_to_store(
            data, scorer, store.create(), as_of, drivers=args.drivers, explain_from=explain_from
        )
    print(format_summary(summary))
    print(scoring_coverage(data, as_of).format())
    return _alert_after_scoring(settings)


def _alert_after_scoring(settings: Settings) -> int:
    """Send the alert digests after a scoring run, when SMTP or a webhook is configured."""
    from churnguard.alerts import channels

    if not channels(settings):
        return 0
    return alerts(argparse.Namespace(dry_run=False), settings)


def alerts(args: argparse.Namespace, settings: Settings) -> int:
    """Send the alert digests the latest scores call for (--dry-run: print them instead)."""
    from datetime import UTC, datetime

    from churnguard.alerts import channels, digest_text, run_alerts
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        run = run_alerts(
            store.create(), settings, today=datetime.now(UTC).date(), dry_run=args.dry_run
        )
    if args.dry_run:
        for digest in run.digests:
            print(f"To: {digest.recipient or '(no address)'}\nSubject: {digest.subject}\n")
            print(digest_text(digest))
        print(f"Dry run: {len(run.digests)} digest(s) would be sent; nothing was sent.")
        return 0
    if not channels(settings):
        print("No alert channel is configured (CHURNGUARD_SMTP_HOST, CHURNGUARD_WEBHOOK_URL).")
        return 0
    sent = ", ".join(f"{n:,} by {c}" for c, n in run.sent.items()) or "nothing new"
    print(f"Alerts: {len(run.digests)} digest(s); sent {sent}.")
    return 0


# --- export -------------------------------------------------------------------------------------


def export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the clients' latest scores as CSV (the dashboard's and the API's columns)."""
    from churnguard.store.export import csv_lines, export_rows
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        rows = export_rows(
            store.create(),
            manager=None if args.manager is None else args.manager.strip(),
            band=args.band,
            search=args.search,
            order_by=args.sort,
        )
        if args.out is None:
            sys.stdout.writelines(csv_lines(rows))
            return 0
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            lines = sum(out.write(line) >= 0 for line in csv_lines(rows))
    clients = lines - 1  # the header
    print(f"Wrote {clients:,} client{'' if clients == 1 else 's'} to {args.out}", file=sys.stderr)
    return 0


# --- serve, keys --------------------------------------------------------------------------------


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP service (one uvicorn worker) until interrupted."""
    import uvicorn

    from churnguard.service import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        workers=1,
        access_log=args.access_log,
        log_level="debug" if args.verbose else "info",
    )
    return 0


def keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key and print it: the only time the key itself is shown."""
    from churnguard.store.database import Database
    from churnguard.store.keys import create_key

    with Database(settings.score_store_url) as store:
        key = create_key(store.create(), args.role, args.manager, args.label)
    whose = f" for account manager {args.manager.strip()}" if args.manager else ""
    print(f"New {args.role} key{whose}; keep it now, it is not shown again:", file=sys.stderr)
    print(key)
    return 0


def keys_list(args: argparse.Namespace, settings: Settings) -> int:
    """List API keys (ids, roles, managers; never the keys themselves)."""
    import pandas as pd

    from churnguard.store.database import Database
    from churnguard.store.keys import list_keys

    with Database(settings.score_store_url) as store:
        found = list_keys(store.create())
    if not found:
        print("No API keys yet; create one with `churnguard keys create --role ...`")
        return 0
    rows = [
        {
            "key_id": k.key_id,
            "role": k.role,
            "manager": k.manager or "-",
            "label": k.label or "-",
            "created": f"{k.created_at:%Y-%m-%d %H:%M}",
            "revoked": f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        }
        for k in found
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke an API key by its id; it stops working at once."""
    from churnguard.store.database import Database
    from churnguard.store.keys import revoke

    with Database(settings.score_store_url) as store:
        revoked = revoke(store.create(), args.key_id)
    if not revoked:
        print("error: no active key with that id (see `churnguard keys list`)", file=sys.stderr)
        return 1
    print("Revoked; the key no longer works.")
    return 0


# --- parser -------------------------------------------------------------------------------------


DEMO_KEY_LABEL = "demo"


def keys_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Replace the demo keys: an admin, a crm and a manager key per top account manager."""
    from churnguard.store.keys import create_key, list_keys, revoke
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        by_manager = store.create().revenue_at_risk_by("account_manager")  # largest first
        managers = [m for m, _, _ in by_manager if m is not None][: args.managers]
        if not managers:
            print(
                "error: no scored clients with an account manager yet; run `churnguard score`",
                file=sys.stderr,
            )
            return 1
        for old in list_keys(store):
            if old.label == DEMO_KEY_LABEL and old.active:
                revoke(store, old.key_id)
        made = [("admin", "-", create_key(store, "admin", None, DEMO_KEY_LABEL))]
        made.append(("crm", "-", create_key(store, "crm", None, DEMO_KEY_LABEL)))
        made += [("manager", m, create_key(store, "manager", m, DEMO_KEY_LABEL)) for m in managers]
    print("Demo API keys (earlier demo keys are revoked; these are not shown again):")
    for role, manager, key in made:
        print(f"  {role:<8} {manager:<24} {key}")
    print("Use one as `Authorization: Bearer <key>`, or sign in to the dashboard with it.")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder of CSV/Parquet tables, or a database URL")
    p.add_argument("--mapping", type=Path, help="YAML file renaming a CRM export's tables/columns")


def _table_args(p: argparse.ArgumentParser) -> None:
    """`train --table`: a flat table instead of CRM tables, so --data is no longer required."""
    p._option_string_actions["--data"].required = False
    p.add_argument("--table", type=Path, help="CSV/Parquet file, one row per client (not --data)")
    p.add_argument("--label", help="--table's churn column: 1/0, true/false or yes/no")
    p.add_argument("--id", dest="id_column", help="--table's client id column (not a feature)")
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
    p.set_defaults(handler=demo_data)

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
    p.set_defaults(handler=init)

    p = _command(
        sub,
        "validate",
        "check CRM data against the data contract",
        "churnguard validate --data ./export --mapping mapping.yaml",
        "Prints every problem found (exit 1 when the data cannot be used).",
    )
    _data_args(p)
    p.set_defaults(handler=validate)

    p = _command(
        sub,
        "features",
        "write point-in-time features for one as_of date",
        "churnguard features --data .churnguard/demo --as-of 2025-06-01 --out features.csv",
    )
    _data_args(p)
    p.add_argument("--as-of", type=_date, help="date (default: the end of the data)")
    p.add_argument("--out", type=Path, help="CSV or .parquet file (default: print CSV)")
    p.set_defaults(handler=features)

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
    p.set_defaults(handler=train)

    p = _command(
        sub,
        "models",
        "list registered model versions, aliases and metrics",
        "churnguard models",
    )
    p.set_defaults(handler=models)

    p = _command(
        sub,
        "promote",
        "make a model version the champion (also to roll back)",
        "churnguard promote 3",
    )
    p.add_argument("version", type=_positive, help="registered version number")
    p.set_defaults(handler=promote)

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
    p.set_defaults(handler=score)

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
    p.set_defaults(handler=export)

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
    p.set_defaults(handler=alerts)

    p = _command(
        sub,
        "serve",
        "run the HTTP service (CRM API, dashboard, health, metrics)",
        "churnguard serve --host 0.0.0.0 --port 8000",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_positive, default=8000, help="port to listen on")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler=serve)

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
    k.set_defaults(handler=keys_create)
    k = _command(keys_sub, "list", "list keys (never the secrets)", "churnguard keys list")
    k.set_defaults(handler=keys_list)
    k = _command(
        keys_sub,
        "demo",
        "replace the demo keys (admin, crm, top managers') and print them",
        "churnguard keys demo --managers 3",
    )
    k.add_argument(
        "--managers", type=_positive, default=2, help="manager keys for this many managers"
    )
    k.set_defaults(handler=keys_demo)
    k = _command(keys_sub, "revoke", "revoke a key by its id", "churnguard keys revoke 3f2a9c1e")
    k.add_argument("key_id", help="the key id (as `keys list` shows it)")
    k.set_defaults(handler=keys_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, OperationalError

    from churnguard.config import Settings
    from churnguard.domain.problems import DataContractError
    from churnguard.store.database import StoreUnavailableError

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # library warnings speak to developers, not to users (-v shows them)
        warnings.filterwarnings("ignore", module=_LIBRARIES)
    handler: Handler = args.handler
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid settings (CHURNGUARD_* variables or .env):\n{exc}", file=sys.stderr)
        return 1
    try:
        return handler(args, settings)
    except DataContractError as exc:
        print(f"error: the data breaks the CRM data contract:\n{exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # a database refused, missing or unknown
    except (OperationalError, StoreUnavailableError, ArgumentError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)]
        print(f"error: the database could not be used: {reason[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
