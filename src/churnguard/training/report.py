"""What a training run says: the terminal summary and the markdown model report.

Both modes read the same way: the data and its windows, the candidates, the choice, the
held-out metrics with intervals, the mode's closing notes (oracle, backtest), warnings and the
registry decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from churnguard.training.evaluate import summarize_backtest
from churnguard.training.pipeline import (
    REPORTED,
    Candidate,
    Evaluation,
    Oracle,
    Promotion,
    TrainResult,
    short_params,
)


def format_summary(result: TrainResult) -> str:
    """The terminal summary: data, candidates, chosen model, metrics, notes, decision."""
    model = result.model
    lines = [
        *result.about,
        "",
        f"Candidates ({_candidate_scope(result)}, raw probabilities):",
        text_table(candidates_table(result.candidates)),
        "",
        f"Chosen: {result.chosen.name}, because: {result.fit.because}",
        f"Calibration: {model.calibrator.method}",
        "",
        *_metrics_lines(result),
        *(["", *result.notes] if result.notes else []),
        *(["", "Warnings:", *(f"  {w}" for w in result.warnings)] if result.warnings else []),
        "",
        decision_line(result),
    ]
    return "\n".join(lines)


def model_report(result: TrainResult) -> str:
    """The markdown model report logged with the run."""
    params = result.model.metadata.get("params", {})
    facts = [f"- {k}: {params[k]}" for k in ("mode", "evaluation", "calibration") if k in params]
    sections = [
        f"# churnguard model report — {result.chosen.name}",
        "",
        *facts,
        f"- data digest: `{result.digest}`",
        "",
        "## Summary",
        "",
        "```",
        format_summary(result),
        "```",
    ]
    if not result.folds.empty:
        title = "Per fold" if result.cross_validated else "Backtest per cutoff"
        sections += ["", f"## {title}", "", "```", text_table(result.folds), "```"]
    sections += ["", "## Features", "", ", ".join(result.model.feature_names)]
    return "\n".join(sections)


def candidates_table(candidates: list[Candidate]) -> pd.DataFrame:
    """One row per candidate: its validation metrics and params."""
    rows = [
        {
            "candidate": c.name,
            **{k: c.validation[k] for k in REPORTED},
            "params": short_params(c.params),
        }
        for c in candidates
    ]
    return pd.DataFrame(rows)


def _candidate_scope(result: TrainResult) -> str:
    if result.cross_validated:
        folds = result.model.metadata.get("params", {}).get("inner_folds", "")
        return f"out-of-fold over all rows in {folds} stratified folds"
    return "validation window"


def _metrics_lines(result: TrainResult) -> list[str]:
    ev = result.test
    if not result.cross_validated:
        spans = " | ".join(
            f"{w.window} {_when(w.start)}..{_when(w.end)} ({w.rows:,} rows, {w.churned:,} churned)"
            for w in result.windows.itertuples()
        )
        return [
            f"Windows: {spans}",
            f"Test window: {int(ev.metrics['n']):,} rows, {int(ev.metrics['n_positive'])} "
            "churned (90% bootstrap intervals):",
            text_table(metric_table(ev, {k: ev.metrics[k] for k in REPORTED})),
            base_rate_line(ev),
        ]
    summary = summarize_backtest(result.folds[list(REPORTED)])
    table = metric_table(ev, {str(k): float(v) for k, v in summary["mean"].items()})
    table.insert(2, "std", summary["std"].to_numpy())
    table.insert(3, "min", summary["min"].to_numpy())
    table.insert(4, "max", summary["max"].to_numpy())
    table.insert(5, "pooled", [ev.metrics[k] for k in REPORTED])
    return [
        f"Cross-validated metrics: value = mean over {len(result.folds)} folds (std, min, max "
        "over folds); pooled = on the first repeat's out-of-fold predictions together, with "
        "its 90% bootstrap interval and uncalibrated value (ECE is lower pooled: more rows a "
        "bin):",
        text_table(table),
        base_rate_line(ev),
    ]


def base_rate_line(ev: Evaluation) -> str:
    """What a model without information would score: everyone gets the held-out churn rate."""
    rate = ev.metrics["base_rate"]
    return (
        f"Base rate {rate:.1%}: predicting it for everyone scores Brier {rate * (1 - rate):.4f}, "
        f"PR AUC {rate:.4f}, ROC AUC 0.5"
    )


def metric_table(ev: Evaluation, values: dict[str, float]) -> pd.DataFrame:
    """Metric, value, 90% interval and the uncalibrated value, one row per reported metric."""
    rows = [
        {
            "metric": k,
            "value": values[k],
            "90% interval": "{:.4f} - {:.4f}".format(*ev.intervals[k]) if ev.intervals else "-",
            "uncalibrated": ev.raw[k],
        }
        for k in REPORTED
    ]
    return pd.DataFrame(rows)


def oracle_line(oracle: Oracle | None) -> str:
    """The model against the simulator's true probabilities (or that there are none)."""
    if oracle is None:
        return "Oracle: no ground truth (only simulated data has true probabilities)"
    cover = "" if oracle.coverage == 1 else f" on {oracle.coverage:.0%} of test snapshots"
    return (
        f"Oracle AUC (simulator's true probability){cover}: {oracle.roc_auc:.4f}; "
        f"model {oracle.model_roc_auc:.4f}; model/oracle {oracle.ratio:.3f}"
    )


def backtest_line(per_cutoff: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Mean and spread of the backtest's AUC and Brier (and oracle ratio) over its cutoffs."""
    if len(per_cutoff) < 2:
        return "Backtest: only the main cutoff had enough data"
    auc, brier = summary.loc["roc_auc"], summary.loc["brier"]
    line = (
        f"Backtest over {len(per_cutoff)} cutoffs ({_when(per_cutoff['cutoff'].min())} to "
        f"{_when(per_cutoff['cutoff'].max())}): AUC {auc['mean']:.4f} ± {auc['std']:.4f} "
        f"(min {auc['min']:.4f}), Brier {brier['mean']:.4f} ± {brier['std']:.4f}"
    )
    if "oracle_ratio" in summary.index:
        ratio = summary.loc["oracle_ratio"]
        line += f", model/oracle {ratio['mean']:.3f} ± {ratio['std']:.3f}"
    return line


class Registered(Protocol):
    """What a training result says about its registration."""

    @property
    def promotion(self) -> Promotion: ...
    @property
    def run_id(self) -> str: ...
    @property
    def version(self) -> int | None: ...
    @property
    def local_copy(self) -> Path | None: ...


def decision_line(result: Registered) -> str:
    """One line: the version registered, its run, champion or challenger and why."""
    from churnguard.modeling.registry import CHALLENGER, CHAMPION, MODEL_NAME

    promo = result.promotion
    where = f"model {MODEL_NAME} version {result.version}" if result.version else "model"
    status = CHAMPION if promo.promoted else CHALLENGER
    local = f"; local copy {result.local_copy}" if result.local_copy else ""
    return f"Registered {where} (run {result.run_id}) -> {status}: {promo.reason}{local}"


def text_table(table: pd.DataFrame) -> str:
    """A DataFrame as aligned text: floats with 4 decimals, dates as days."""
    shown = table.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: f"{v:.4f}")
        elif pd.api.types.is_datetime64_any_dtype(shown[column]):
            shown[column] = shown[column].map(_when)
    return shown.to_string(index=False)


def _when(value: Any) -> str:
    """A window bound: a timestamp as its day (or its time of day when it has one), else as is."""
    if isinstance(value, pd.Timestamp):
        return str(value) if value != value.normalize() else value.strftime("%Y-%m-%d")
    return str(value)
