"""`train`, `models`, `promote`: training runs and the registry's aliases."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from churnguard.cli.data import load_data

if TYPE_CHECKING:  # heavy libraries load once a command runs, so --help answers at once
    import pandas as pd

    from churnguard.config import Settings
    from churnguard.modeling.registry import Registry
    from churnguard.modeling.versions import VersionInfo
    from churnguard.training.dataset import TrainOptions
    from churnguard.training.pipeline import TrainResult

logger = logging.getLogger("churnguard")


# --- train, models, promote -----------------------------------------------------------------------


def train(args: argparse.Namespace, settings: Settings) -> int:
    """Train, evaluate and register a churn model; promote it if it passes the gate."""
    if args.table is not None or args.data is None:  # flat-table mode (training.table)
        return train_table(args, settings)
    flags: dict[str, object] = {
        "--label": args.label,
        "--id": args.id_column,
        "--time": args.time_column,
    }
    flags |= {"--positive": args.positive, "--keep": args.keep}
    given = [flag for flag, value in flags.items() if value]
    if given:  # else they would be ignored without a word
        print(f"error: {', '.join(given)}: only with --table, not with --data", file=sys.stderr)
        return 2
    from churnguard.modeling.registry import Registry
    from churnguard.training.dataset import TrainOptions
    from churnguard.training.report import format_summary
    from churnguard.training.train import train as run_training

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
    if args.engine == "spark":
        result = _train_on_spark(args, registry, settings, options)
    else:
        data = load_data(args)
        result = run_training(data, registry, settings.models_dir, options, _load_truth(args.data))
    print(format_summary(result))
    return 0


def _train_on_spark(
    args: argparse.Namespace, registry: Registry, settings: Settings, options: TrainOptions
) -> TrainResult:
    """`train --engine spark`: the snapshot features on Spark, the fit here (spark.backfill)."""
    from churnguard.domain.mapping import Mapping, load_mapping
    from churnguard.spark.backfill import backfill_dataset
    from churnguard.spark.session import start_session
    from churnguard.training.train import train_on

    mapping = load_mapping(args.mapping) if args.mapping is not None else Mapping()
    spark = start_session(args.master, args.spark_conf)
    found = backfill_dataset(spark, str(args.data), mapping, options, args.partitions)
    truth = _load_truth(args.data) if "://" not in str(args.data) else None
    return train_on(found.dataset, registry, settings.models_dir, options, truth, found.digest)


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
        positive=args.positive,
        keep=tuple(args.keep),
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

    from churnguard.modeling.versions import MODEL_NAME, sqlite_versions

    # a local SQLite store of a known MLflow schema is read directly (no MLflow import)
    versions = sqlite_versions(settings.tracking_uri, MODEL_NAME)
    if versions is None:  # any other store: through MLflow's client
        from churnguard.modeling.registry import Registry

        versions = Registry.from_settings(settings).versions()
    if not versions:
        print(f"No registered versions of model {MODEL_NAME} in {settings.tracking_uri}")
        return 0
    rows = [
        {
            "version": v.version,
            "aliases": ",".join(v.aliases) or "-",
            "created": v.created.strftime("%Y-%m-%d %H:%M"),
            "run": _RUN_STATES[v.run_state],
            "kind": v.params.get("kind", "?"),
            "horizon": _horizon(v.params.get("horizon_days")),
            **_held_out(v),
            "backtest_auc": _metric(v.metrics, "backtest_roc_auc_mean"),
            "oracle_ratio": _metric(v.metrics, "oracle_ratio"),
        }
        for v in versions
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _horizon(days: str | None) -> str:
    """A version's horizon in days ("label": a flat table's, whatever its label looks ahead)."""
    return "?" if days is None else "label" if days == "0" else days


def _held_out(v: VersionInfo) -> dict[str, str]:
    """A version's held-out AUC, Brier and ECE, and where they come from: its test window, or
    for a flat table without a time column its cross-validation (it has no test window)."""
    if "cv_roc_auc" in v.metrics and "test_roc_auc" not in v.metrics:
        prefix = "cv"
        where = f"cross-validation {v.params.get('folds', '?')}x{v.params.get('repeats', '?')}"
    else:
        prefix = "test"
        where = f"test {v.params.get('test_start', '?')}..{v.params.get('test_end', '?')}"
    return {
        "auc": _metric(v.metrics, f"{prefix}_roc_auc"),
        "brier": _metric(v.metrics, f"{prefix}_brier"),
        "ece": _metric(v.metrics, f"{prefix}_ece"),
        "held_out": where,
    }


_RUN_STATES = {
    "active": "ok",
    "deleted": "run deleted",
    "gone": "run deleted for good: no metrics",
    "none": "no run",
}


def _metric(metrics: dict[str, float], name: str) -> str:
    return f"{metrics[name]:.4f}" if name in metrics else "-"


def promote(args: argparse.Namespace, settings: Settings) -> int:
    """Point the champion alias at a version (also back: rollback) and refresh the local copy."""
    from churnguard.modeling.model import model_card, save_local_model
    from churnguard.modeling.registry import CHAMPION, Registry

    registry = Registry.from_settings(settings)
    previous = registry.alias_version(CHAMPION)
    model = registry.load_model(args.version)
    useless = model.metadata.get("useless")
    if useless and not args.force:
        print(
            f"error: version {args.version} stays as it is: its training run found it {useless}. "
            f"`churnguard promote {args.version} --force` makes it the champion anyway",
            file=sys.stderr,
        )
        return 1
    if useless:
        logger.warning("version %s promoted with --force: %s", args.version, useless)
    registry.set_alias(CHAMPION, args.version)
    info = registry.version_info(args.version)
    path = save_local_model(
        model, model_card(model, args.version, info.run_id), settings.models_dir
    )
    was = f"was version {previous}" if previous is not None else "there was none"
    print(f"champion -> version {args.version} ({was}); local copy {path}")
    return 0
