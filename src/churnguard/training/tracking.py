"""MLflow tracking of a training run, the one place that writes runs (through ``registry.py``).

One run per training: params, metrics, tags, tables, plots and the markdown report; then the
model is registered, the aliases move (``champion`` when promoted, else ``challenger``) and a
promoted model gets its local last-known-good copy.
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from churnguard.modeling.model import ChurnModel, model_card, save_local_model
from churnguard.training.evaluate import (
    calibration_table,
    lift_table,
    plot_calibration,
    plot_feature_importance,
    plot_gains,
    plot_precision_recall,
    plot_roc,
    summarize_backtest,
)
from churnguard.training.pipeline import REPORTED, Promotion, TrainResult
from churnguard.training.provenance import (
    description,
    log_dataset,
    model_facts,
    run_name,
    version_description,
)
from churnguard.training.report import candidates_table, model_report

if TYPE_CHECKING:
    from churnguard.modeling.registry import Registry, RunLog


def log_and_register(
    result: TrainResult,
    registry: Registry,
    models_dir: Path,
    experiment: str,
    example: pd.DataFrame,
) -> TrainResult:
    """One MLflow run with everything; register the model; move aliases; save the local copy."""
    with registry.start_run(experiment, run_name(result), description(result)) as run:
        result.model.metadata |= model_facts(result, run.run_id)
        log_run(run, result)
        log_dataset(run, result)
        about = version_description(result, run.run_id)
        version = registry.log_model(run, result.model, example, about)
        run.tags({"registered_version": version, "promotion": result.promotion.reason})
    local = apply_promotion(
        registry, result.model, version, run.run_id, result.promotion, models_dir
    )
    return replace(result, run_id=run.run_id, version=version, local_copy=local)


def apply_promotion(
    registry: Registry,
    model: ChurnModel,
    version: int,
    run_id: str,
    promotion: Promotion,
    models_dir: Path,
) -> Path | None:
    """A new version is the challenger, or when promoted the champion with a local copy saved.

    Returns the local last-known-good copy's path, None when the version was not promoted.
    """
    from churnguard.modeling.registry import CHALLENGER, CHAMPION

    if not promotion.promoted:
        registry.set_alias(CHALLENGER, version)
        return None
    registry.set_alias(CHAMPION, version)
    registry.delete_alias(CHALLENGER)
    return save_local_model(model, model_card(model, version, run_id), models_dir)


def log_run(run: RunLog, result: TrainResult) -> None:
    """Params, metrics, tags, tables, plots and the report of a training run."""
    meta = result.model.metadata
    run.params({**meta["params"], **{f"model_{k}": v for k, v in result.chosen.params.items()}})
    run.metrics(run_metrics(result))
    run.tags(
        {
            "kind": result.chosen.kind,
            "candidate": result.chosen.name,
            "mode": result.mode,
            "evaluation": result.evaluation,
        }
    )
    run.text(json.dumps(result.model.feature_names, indent=1), "features.json")
    for path, text in result.texts.items():
        run.text(text, path)
    run.table(candidates_table(result.candidates), "tables/candidates.csv")
    if not result.folds.empty:
        name = "cv_folds" if result.cross_validated else "backtest"
        run.table(_as_text(result.folds), f"tables/{name}.csv")
    if not result.windows.empty:
        run.table(_as_text(result.windows), "tables/windows.csv")
    run.table(calibration_table(result.test.y, result.test.p), "tables/calibration.csv")
    run.table(lift_table(result.test.y, result.test.p), "tables/lift.csv")
    for name, figure in figures(result).items():
        run.figure(figure, f"plots/{name}.png")
    run.text(model_report(result), "model_report.md")


def run_metrics(result: TrainResult) -> dict[str, float]:
    """Every metric of a run: candidates, headline with intervals, folds, oracle, champion."""
    out: dict[str, float] = {}
    for c in result.candidates:
        out |= {f"val_{slug(c.name)}_{k}": c.validation[k] for k in REPORTED}
    out |= {f"val_{k}": result.chosen.validation[k] for k in REPORTED}
    prefix, ev = result.prefix, result.test
    if result.cross_validated:
        out |= _fold_metrics(result.folds, "cv", ("mean", "std", "min", "max"))
        out |= {f"cv_{k}": out[f"cv_{k}_mean"] for k in REPORTED}
        out["cv_folds"] = float(len(result.folds))
    else:
        out |= {f"test_{k}": v for k, v in ev.metrics.items()}
        out |= {f"test_raw_{k}": ev.raw[k] for k in REPORTED}
        if not result.folds.empty:
            out |= _fold_metrics(result.folds, "backtest", ("mean", "std"))
            out["backtest_cutoffs"] = float(len(result.folds))
    for k, (low, high) in ev.intervals.items():
        out |= {f"{prefix}_{k}_low": low, f"{prefix}_{k}_high": high}
    out |= {f"seconds_{slug(step)}": t for step, t in result.timings.items()}
    if result.oracle is not None:
        o = result.oracle
        out |= {"oracle_roc_auc": o.roc_auc, "oracle_brier": o.brier, "oracle_ratio": o.ratio}
        out |= {"oracle_coverage": o.coverage}
    if result.promotion.champion_metrics:
        champion = result.promotion.champion_metrics
        out |= {f"champion_{prefix}_{k}": champion[k] for k in REPORTED}
    return out


def _fold_metrics(folds: pd.DataFrame, prefix: str, stats: tuple[str, ...]) -> dict[str, float]:
    """Summary statistics of the per-fold metrics that are there."""
    known = [k for k in (*REPORTED, "raw_roc_auc", "oracle_roc_auc", "oracle_ratio") if k in folds]
    summary = summarize_backtest(folds[known])
    out: dict[str, float] = {}
    for k in summary.index:
        values = summary.loc[k, list(stats)].to_numpy(np.float64)
        out |= {f"{prefix}_{k}_{s}": float(v) for s, v in zip(stats, values, strict=True)}
    return out


def figures(result: TrainResult) -> dict[str, Figure]:
    """The run's plots on the test (or pooled out-of-fold) predictions."""
    y, p = result.test.y, result.test.p
    oracle = result.oracle
    full = oracle is not None and oracle.coverage == 1.0
    return {
        "roc": plot_roc(y, p, oracle=oracle.p if full and oracle else None),
        "precision_recall": plot_precision_recall(y, p),
        "calibration": plot_calibration(y, p),
        "gains": plot_gains(y, p),
        "feature_importance": plot_feature_importance(result.model.feature_importance()),
    }


def model_metadata(result: TrainResult) -> dict[str, Any]:
    """Facts kept inside the model: the run's params, headline metrics, provenance."""
    from churnguard.modeling.registry import MODEL_NAME

    chosen, model = result.chosen, result.model
    params = {
        "mode": result.mode,
        "evaluation": result.evaluation,
        **result.params,
        "features": ",".join(model.feature_names),
        "n_features": len(model.feature_names),
        "kind": chosen.kind,
        "candidate": chosen.name,
        "calibration": model.calibrator.method,
        "data_digest": result.digest,
        "package_version": package_version(),
    }
    metrics = {f"{result.prefix}_{k}": v for k, v in result.metrics.items()}
    if result.oracle is not None:
        metrics |= {"oracle_roc_auc": result.oracle.roc_auc, "oracle_ratio": result.oracle.ratio}
    return {
        "registered_model": MODEL_NAME,
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "data_digest": result.digest,
        "package_version": params["package_version"],
        "params": params,
        "metrics": metrics,
    }


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as text (MLflow tables are JSON)."""
    dates = [c for c in table.columns if pd.api.types.is_datetime64_any_dtype(table[c])]
    return table.astype({c: str for c in dates})


def slug(name: str) -> str:
    """A candidate name as a metric-name part."""
    return "_".join(name.replace("=", "").replace(",", "").split())


def package_version() -> str:
    """The installed churnguard version ("unknown" from a source tree)."""
    try:
        return metadata.version("churnguard")
    except metadata.PackageNotFoundError:
        return "unknown"
