"""What a training run was trained on, said for people: its MLflow name, description and dataset.

A run is named like ``lightgbm on demo (1,000 clients, 2023-01..2025-12), horizon 90d``; its
description (the run's note in the MLflow UI) and the registered version's description give the
windows, the base rate, the headline metrics and the promotion decision. The dataset input is the
feature matrix the model learnt from, with the churn label as its target.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from churnguard.training.pipeline import TrainResult

if TYPE_CHECKING:
    from churnguard.modeling.registry import RunLog

TARGET = "churned"


def source_name(result: TrainResult) -> str:
    """What the data is called: its folder, file or database name ("data" when unknown)."""
    source = str(result.params.get("source") or "")
    if not source:
        return "data"
    tail = source.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return tail or source


def run_name(result: TrainResult) -> str:
    """The run's name: the model kind, the data, its size and span, and the horizon."""
    return f"{result.chosen.kind} on {source_name(result)} ({_extent(result)}){_horizon(result)}"


def _extent(result: TrainResult) -> str:
    """ "1,000 clients, 2023-01..2025-12" (CRM history) or "7,043 rows" (flat table)."""
    params = result.params
    if "n_clients" in params:
        span = _months(params.get("history_start"), params.get("observed_until"))
        return f"{int(params['n_clients']):,} clients" + (f", {span}" if span else "")
    return f"{int(params.get('n_rows', 0)):,} rows"


def _months(start: object, end: object) -> str:
    """ "2023-01..2025-12" from two dates ("" when either is missing)."""
    if not start or not end:
        return ""
    return f"{pd.Timestamp(str(start)):%Y-%m}..{pd.Timestamp(str(end)):%Y-%m}"


def _horizon(result: TrainResult) -> str:
    days = int(result.params.get("horizon_days") or 0)
    return f", horizon {days}d" if days else ", cross-validated" if result.cross_validated else ""


def base_rate(result: TrainResult) -> float | None:
    """The churn rate of the labelled rows trained and tested on (None when unknown)."""
    if not result.windows.empty and "rows" in result.windows:
        rows = int(result.windows["rows"].sum())
        return int(result.windows["churned"].sum()) / rows if rows else None
    params = result.params
    if params.get("n_rows"):
        return int(params.get("n_positive", 0)) / int(params["n_rows"])
    return None


def windows_text(result: TrainResult) -> list[str]:
    """One line per window: "train 2023-04-01..2025-03-01: 24,000 rows, 480 churned"."""
    lines = []
    for row in result.windows.to_dict("records"):
        counts = f"{int(row['rows']):,} rows, {int(row['churned']):,} churned"
        lines.append(f"{row['window']} {_day(row['start'])}..{_day(row['end'])}: {counts}")
    return lines


def description(result: TrainResult) -> str:
    """The run's description (markdown): data, windows, base rate, metrics, promotion."""
    lines = [f"**{run_name(result)}**", "", *[f"- {line}" for line in result.about]]
    windows = windows_text(result)
    if windows:
        lines += ["", "Windows:", *[f"- {w}" for w in windows]]
    rate = base_rate(result)
    if rate is not None:
        lines += ["", f"Base rate (churned share of the labelled rows): {rate:.1%}"]
    lines += ["", f"Headline ({result.evaluation}): {_headline(result)}"]
    if result.promotion.reason:
        lines += ["", f"Promotion: {result.promotion.reason}"]
    return "\n".join(lines)


def version_description(result: TrainResult, run_id: str) -> str:
    """A registered version's description: the run's name, metrics, promotion and run id."""
    rate = base_rate(result)
    parts = [
        run_name(result),
        f"{result.evaluation}: {_headline(result)}",
        f"base rate {rate:.1%}" if rate is not None else "",
        f"promotion: {result.promotion.reason}" if result.promotion.reason else "",
        f"MLflow run {run_id}",
    ]
    return "\n\n".join(p for p in parts if p)


def _headline(result: TrainResult) -> str:
    names = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "brier": "Brier", "ece": "ECE"}
    found = [(label, result.test.metrics.get(k)) for k, label in names.items()]
    return ", ".join(f"{label} {v:.3f}" for label, v in found if v is not None) or "no metrics"


def feature_matrix(result: TrainResult) -> tuple[pd.DataFrame, str] | None:
    """The rows the model learnt from with the label, and the label's column name (None when
    the result keeps no data)."""
    data = result.dataset
    if hasattr(data, "features") and hasattr(data, "labels"):  # a CRM Dataset
        target = pd.Series(data.labels[TARGET].to_numpy(), data.features.index, name=TARGET)
        # concat, not assign: inserting into ~200 single-column blocks warns (fragmented frame)
        return pd.concat([data.features, target], axis=1), TARGET
    if hasattr(data, "rows") and hasattr(data, "y") and hasattr(data, "label"):  # a TableData
        return data.rows.assign(**{data.label: data.y}), str(data.label)
    return None


def log_dataset(run: RunLog, result: TrainResult) -> str:
    """Log the feature matrix as the run's training dataset; its digest ("" when none)."""
    found = feature_matrix(result)
    if found is None:
        return ""
    matrix, target = found
    source = str(result.params.get("source") or "data")
    return run.dataset(matrix, f"{source_name(result)} features", source, targets=target)


def model_facts(result: TrainResult, run_id: str) -> dict[str, object]:
    """What the model keeps of its run for the dashboard: run id and name, windows, base rate."""
    windows = [
        {"window": str(r["window"]), "start": _day(r["start"]), "end": _day(r["end"])}
        | {"rows": int(r["rows"]), "churned": int(r["churned"])}
        for r in result.windows.to_dict("records")
    ]
    return {
        "run_id": run_id,
        "run_name": run_name(result),
        "windows": windows,
        "base_rate": base_rate(result),
        "useless": result.promotion.useless,  # `churnguard promote` wants --force for such a model
    }


def _day(value: object) -> str:
    """A window edge as YYYY-MM-DD (as given when it is not a date: a flat table's time)."""
    if isinstance(value, date):  # datetime and pandas' Timestamp too
        return f"{value:%Y-%m-%d}"
    return str(value)
