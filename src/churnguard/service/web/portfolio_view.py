"""What the admin's portfolio page shows: the headline month, provisional and trailing figures,
the monthly charts, the book's risk and the model serving.

Built from ``portfolio``'s figures and the score store; nothing here knows about HTTP.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from churnguard.domain.contract import CRMData
from churnguard.service.web import charts, portfolio
from churnguard.service.web.crm import CRMView
from churnguard.service.web.pages import BANDS
from churnguard.service.web.portfolio import MonthStats, RiskSummary
from churnguard.service.web.templating import currency_prefix
from churnguard.store.runs import ScoringRun, latest_runs
from churnguard.store.scores import ScoreStore

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer

TRAILING_MONTHS = 12  # the trailing figures cover this many closed months


@dataclass(frozen=True)
class PortfolioPage:
    months: list[MonthStats]
    summary: RiskSummary
    charts: dict[str, Markup]
    model: dict[str, Any] | None
    problem: str | None
    grace_days: int = 30  # a period's end is a churn once this many days are in the data
    headline: MonthStats | None = None  # the last closed month: its churn can no longer rise
    provisional: list[MonthStats] = dataclasses.field(default_factory=list)  # the months after
    trailing: Trailing | None = None  # the twelve months up to the headline month
    last_run: ScoringRun | None = None  # the latest `churnguard score` run: what it covered


@dataclass(frozen=True)
class Trailing:
    """The figures of the months ``first`` to ``last`` taken as one period."""

    first: date
    last: date
    stats: MonthStats


def portfolio_page(
    store: ScoreStore,
    crm: CRMView | None,
    scorer: Scorer | None,
    thresholds: tuple[float, float],
    grace_days: int,
    currency: str = "USD",
    mlflow_ui: str | None = None,
) -> PortfolioPage:
    """Retention, churn and revenue by month, the book's risk, and the model serving."""
    summary = portfolio.risk_summary(store)
    months: list[MonthStats] = []
    trailing = None
    problem = "No CRM data: retention by month is not shown."
    if crm is not None:
        data = crm.data
        months, problem = crm.memo(("months", grace_days), lambda: _months(data, grace_days))
        trailing = crm.memo(("trailing", grace_days), lambda: _trailing(data, months, grace_days))
    closed, provisional = split_closed(months)
    return PortfolioPage(
        months=months,
        summary=summary,
        charts=portfolio_charts(months, summary, thresholds, grace_days, currency),
        model=model_info(scorer, mlflow_ui),
        problem=problem,
        grace_days=grace_days,
        headline=closed[-1] if closed else None,
        provisional=provisional,
        trailing=trailing,
        last_run=next(iter(latest_runs(store, limit=1)), None),
    )


def split_closed(months: list[MonthStats]) -> tuple[list[MonthStats], list[MonthStats]]:
    """(closed months, provisional months): from the first month with an end still in its
    grace period on, churn may still rise."""
    first_open = next((i for i, m in enumerate(months) if m.pending_clients), len(months))
    return months[:first_open], months[first_open:]


def _trailing(data: CRMData, months: list[MonthStats], grace_days: int) -> Trailing | None:
    """The twelve months to the end of the last closed month, as one period."""
    closed, _ = split_closed(months)
    if not closed:
        return None
    last = closed[-1].month
    first = _add_months(last, 1 - TRAILING_MONTHS)  # before the data: no clients, no rates
    end = _add_months(last, 1)
    stats = portfolio.period_portfolio(data, start=first, end=end, grace_days=grace_days)
    return Trailing(first, last, stats)


def _add_months(month: date, k: int) -> date:
    """The first of the month ``k`` months after ``month`` (a first of a month)."""
    index = month.year * 12 + month.month - 1 + k
    return date(index // 12, index % 12 + 1, 1)


def _months(data: CRMData, grace_days: int) -> tuple[list[MonthStats], str | None]:
    """The monthly figures from the data's first month on, or none and why.

    Months before the first contract are left out: they hold no clients, not "0% churn".
    """
    try:
        months = portfolio.monthly_portfolio(data, grace_days=grace_days)
    except ValueError as exc:  # no dated history at all
        return [], f"Retention by month is not shown: {exc}."
    shown = list(itertools.dropwhile(lambda m: not (m.clients_start or m.new_clients), months))
    if not shown:
        return [], (
            "Retention by month is not shown: the CRM data does not cover a whole calendar "
            "month yet."
        )
    return shown, None


def portfolio_charts(
    months: list[MonthStats],
    summary: RiskSummary,
    thresholds: tuple[float, float],
    grace_days: int = 30,
    currency: str = "USD",
) -> dict[str, Markup]:
    """The portfolio page's charts (rates are percentages in ``MonthStats``)."""
    prefix = currency_prefix(currency)

    def amount(value: float) -> str:
        return ("-" if value < 0 else "") + prefix + charts.money(abs(value))

    def by_month(name: str, rate: Callable[[MonthStats], float]) -> charts.Series:
        return charts.Series(name, [(m.month, rate(m) / 100) for m in months])

    provisional = provisional_notes(months, grace_days)

    bands = [(band, float(summary.by_band.get(band, 0))) for band in BANDS]
    colours = [
        f"bar bar-{'low' if lo < thresholds[0] else 'medium' if lo < thresholds[1] else 'high'}"
        for lo, _, _ in summary.histogram
    ]
    return {
        "retention": charts.wide_and_narrow(
            lambda width: charts.line_chart(
                [
                    by_month("Client retention", lambda m: m.retention_rate),
                    by_month("Net revenue retention", lambda m: m.net_revenue_retention),
                ],
                title="Client retention and net revenue retention by month",
                width=width,
                provisional=provisional,
            )
        ),
        "churn": charts.wide_and_narrow(
            lambda width: charts.line_chart(
                [
                    by_month("Client churn", lambda m: m.churn_rate),
                    by_month("Revenue churn", lambda m: m.revenue_churn_rate),
                ],
                title="Client churn and revenue churn by month",
                y_range=(0.0, 0.0),
                width=width,
                provisional=provisional,
            )
        ),
        "histogram": charts.histogram(
            summary.histogram, title="Clients by churn probability", classes=colours
        ),
        "bands": charts.bar_chart(
            bands,
            title="Clients by risk band",
            value_format=lambda v: f"{v:,.0f}",
            classes=[f"bar bar-{band}" for band, _ in bands],
        ),
        "managers": charts.bar_chart(
            [(name, value) for name, value, _ in summary.by_manager],
            title="Revenue at risk by account manager",
            value_format=amount,
            links=["/clients?" + urlencode({"manager": name}) for name, _, _ in summary.by_manager],
        ),
        "segments": charts.bar_chart(
            [(name, value) for name, value, _ in summary.by_segment],
            title="Revenue at risk by segment",
            value_format=amount,
        ),
    }


def provisional_notes(months: list[MonthStats], grace_days: int) -> dict[date, str]:
    """The months whose churn may still rise (ends still in their grace period), with why."""
    return {
        m.month: f"provisional: {m.pending_clients:,} "
        f"end{'s' if m.pending_clients != 1 else ''} still in the {grace_days}-day grace period"
        for m in months
        if m.pending_clients
    }


@dataclass(frozen=True)
class MetricRow:
    """One of the served model's recorded metrics, ready to show."""

    name: str
    value: str
    measured: str  # "test window", "cross-validated" or "" (other metrics)
    meaning: str


# The headline metrics `churnguard train` records (as test_<key>; a flat table's as cv_<key>)
HEADLINE_METRICS = {
    "roc_auc": ("ROC AUC", "{:.3f}", "ranking of churners above the rest; 0.5 is chance"),
    "pr_auc": ("PR AUC", "{:.3f}", "precision over recall; compare with the churn rate"),
    "brier": ("Brier score", "{:.3f}", "mean squared error of the probabilities; lower is better"),
    "ece": ("Calibration error", "{:.3f}", "gap between predicted and seen churn; lower is better"),
    "top_decile_lift": (
        "Top-decile lift",
        "{:.2f}\N{MULTIPLICATION SIGN}",
        "churn in the riskiest 10% ÷ churn overall",
    ),
    "log_loss": ("Log loss", "{:.3f}", "lower is better"),
}
METRIC_SCOPES = {"test": "test window", "cv": "cross-validated"}
OTHER_METRICS = {
    "oracle_roc_auc": ("Oracle ROC AUC", "ROC AUC of the simulator's true probabilities"),
    "oracle_ratio": ("Share of oracle AUC", "the model's ROC AUC ÷ the oracle's"),
}


def model_info(scorer: Scorer | None, mlflow_ui: str | None = None) -> dict[str, Any] | None:
    """The model serving: version, kind, horizon, trained at, its recorded metrics, the windows
    it was trained and tested on, the base rate, and its MLflow run (a link with mlflow_ui)."""
    if scorer is None:
        return None
    model = scorer.model
    meta = model.metadata
    run_id = str(meta.get("run_id") or "")
    return {
        "version": scorer.version,
        "kind": model.kind,
        "horizon_days": model.horizon_days,
        "trained_at": _as_day(meta.get("trained_at")),
        "metrics": model_metrics(meta.get("metrics") or {}),
        "windows": model_windows(meta),
        "base_rate": _percent(meta.get("base_rate")),
        "run_id": run_id,
        "run_name": str(meta.get("run_name") or ""),
        "run_url": run_url(mlflow_ui, run_id),
    }


@dataclass(frozen=True)
class WindowRow:
    """One window a model was trained, validated or tested on, ready to show."""

    name: str
    start: str
    end: str
    rows: str | None  # None: not recorded
    churn_rate: str | None


def model_windows(meta: dict[str, Any]) -> list[WindowRow]:
    """The train, validation and test windows a model records (none for older models)."""
    rows = []
    for w in meta.get("windows") or []:
        n, churned = _number(w.get("rows")), _number(w.get("churned"))
        rate = _percent(churned / n) if n and churned is not None else None
        count = f"{int(n):,}" if n is not None else None
        rows.append(
            WindowRow(
                str(w.get("window", "")),
                _date_text(w.get("start")),
                _date_text(w.get("end")),
                count,
                rate,
            )
        )
    return rows


def run_url(mlflow_ui: str | None, run_id: str) -> str | None:
    """The MLflow UI's page of a run (its direct route), None without a UI or a run."""
    if not mlflow_ui or not run_id:
        return None
    return f"{mlflow_ui.rstrip('/')}/#/runs/{quote(run_id, safe='')}"


def _percent(value: Any) -> str | None:
    number = _number(value)
    return f"{number:.1%}" if number is not None else None


def _date_text(value: Any) -> str:
    """A YYYY-MM-DD date as the dashboard writes dates; anything else as is."""
    try:
        return f"{date.fromisoformat(str(value)):%d %b %Y}"
    except ValueError:
        return str(value)


def model_metrics(metrics: dict[str, Any]) -> list[MetricRow]:
    """The headline metrics first, in a fixed order with readable names, then any other finite
    number recorded; values that are not finite numbers are left out."""
    values = {str(k): _number(v) for k, v in metrics.items()}
    left = {k: v for k, v in values.items() if v is not None}
    rows = []
    for prefix, measured in METRIC_SCOPES.items():
        for key, (name, fmt, meaning) in HEADLINE_METRICS.items():
            value = left.pop(f"{prefix}_{key}", None)
            if value is not None:
                rows.append(MetricRow(name, fmt.format(value), measured, meaning))
    for key, value in sorted(left.items()):
        name, meaning = OTHER_METRICS.get(key, (key.replace("_", " ").capitalize(), ""))
        rows.append(MetricRow(name, f"{value:.3f}", "", meaning))
    return rows


def _as_day(value: Any) -> str | None:
    """An ISO timestamp as the dashboard writes dates (01 Dec 2025); anything else as is."""
    if value is None:
        return None
    try:
        return f"{datetime.fromisoformat(str(value)):%d %b %Y}"
    except ValueError:
        return str(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
