"""What each dashboard page shows, built from the score store and the CRM data.

Routes call these functions and render the result; nothing here knows about HTTP.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from markupsafe import Markup
from sqlalchemy.sql.elements import ColumnElement

from churnguard.domain.contract import CRMData
from churnguard.service.web import charts, portfolio
from churnguard.service.web.crm import (
    ContractRow,
    CRMView,
    TimelineItem,
    client_contracts,
    client_timeline,
    renewal_dates,
)
from churnguard.service.web.portfolio import MonthStats, RiskSummary
from churnguard.service.web.templating import currency_prefix
from churnguard.store.actions import LoggedAction
from churnguard.store.attention import ATTENTION, attention_conditions, newest_score_date
from churnguard.store.followups import FollowUp, current_follow_ups
from churnguard.store.scores import MAX_PAGE, Score, ScoreStore

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer

PAGE_SIZE = 50
SORTS = {
    "revenue_at_risk": "Revenue at risk",
    "probability": "Risk",
    "monthly_value": "Value",
    "renewal": "Renewal date",
}
BANDS = ("high", "medium", "low")
UNASSIGNED = portfolio.UNASSIGNED  # the one word for clients without an account manager
STALE_AFTER = timedelta(days=35)  # scores older than this get a warning: a month and a margin
RENEWAL_SORT_LIMIT = 20_000  # clients sorted by renewal date at most; beyond, narrow the filter
TRAILING_MONTHS = 12  # the portfolio's trailing figures cover this many closed months
COMMON_ACTIONS = ("Call", "Meeting", "Email", "Discount", "Escalation", "Other")


@dataclass(frozen=True)
class ClientRow:
    """One line of "My clients"."""

    score: Score
    renewal: date | None
    has_renewal: bool  # False: no contract in force, or no CRM data
    top_reason: str | None
    direction: str
    delta: float | None
    follow_up: FollowUp | None = None


@dataclass(frozen=True)
class BookSummary:
    """The whole book a "My clients" filter selects, over every page."""

    clients: int  # with every filter, the band's too
    revenue_at_risk: float
    by_band: dict[str, int]  # every band of BANDS, by manager and search only


@dataclass(frozen=True)
class ClientsPage:
    rows: list[ClientRow]
    total: int
    page: int
    pages: int
    note: str | None = None
    summary: BookSummary | None = None
    attention: dict[str, int] | None = None  # clients needing attention, by kind ("all" too)

    @property
    def past_the_end(self) -> bool:
        """A page number beyond the last page of a non-empty list."""
        return self.total > 0 and self.page > self.pages


@dataclass(frozen=True)
class ManagerFilter:
    """The admin's manager filter as understood: whom to list, and a hint when it matched none."""

    book: str | None  # None: everyone; "": the unassigned; else one manager's exact name
    shown: str  # what the filter field shows
    hint: str | None = None


def manager_filter(requested: str, known: list[str]) -> ManagerFilter:
    """Match a typed manager name to a known one ignoring case and spacing; suggest close ones."""
    wanted = " ".join(requested.split())
    if not wanted:
        return ManagerFilter(None, "")
    if wanted.casefold() == UNASSIGNED.casefold():
        return ManagerFilter("", UNASSIGNED)
    by_key = {name.casefold(): name for name in known}
    if wanted.casefold() in by_key:
        name = by_key[wanted.casefold()]
        return ManagerFilter(name, name)
    close = difflib.get_close_matches(wanted.casefold(), list(by_key), n=3, cutoff=0.6)
    hint = f'No account manager is called "{wanted}".'
    if close:
        hint += " Did you mean " + " or ".join(by_key[c] for c in close) + "?"
    return ManagerFilter(wanted, wanted, hint)


def known_managers(store: ScoreStore) -> list[str]:
    """The account managers of the latest scores, A to Z."""
    groups = store.revenue_at_risk_by("account_manager")
    return sorted((name for name, _, _ in groups if name), key=str.casefold)


def stale_scores(store: ScoreStore, now: datetime | None = None) -> str | None:
    """A warning when the newest score is older than ``STALE_AFTER``, else None."""
    newest = newest_score_date(store)
    if newest is None:
        return None
    age = (now or datetime.now(newest.tzinfo)) - newest
    if age <= STALE_AFTER:
        return None
    return (
        f"These scores are {_age(age)} old (the newest is of {newest:%d %b %Y}): clients may "
        "have changed since. Run `churnguard score` to score them again."
    )


def _age(age: timedelta) -> str:
    """A rough age in words: 40 days, 11 months, 2 years."""
    days = age.days
    if days < 60:
        return plural(days, "day")
    if days < 730:
        return plural(round(days / 30.44), "month")
    return plural(round(days / 365.25), "year")


def plural(n: int, word: str) -> str:
    """'1 day', '3 days', '1,200 clients'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class ClientPage:
    score: Score
    chart: Markup
    history: list[Score]
    actions: list[LoggedAction]
    action_types: list[str]
    renewal: date | None
    has_renewal: bool
    contracts: list[ContractRow]
    timeline: list[TimelineItem]
    follow_up: FollowUp | None = None


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


@dataclass(frozen=True)
class Trailing:
    """The figures of the months ``first`` to ``last`` taken as one period."""

    first: date
    last: date
    stats: MonthStats


# ---------------------------------------------------------------------------------- my clients


def clients_page(
    store: ScoreStore,
    crm: CRMView | None,
    *,
    manager: str | None,
    band: str | None,
    search: str | None,
    sort: str,
    page: int,
    ascending: bool | None = None,
    attention: str = "",
    today: date | None = None,
) -> ClientsPage:
    """One page of a book's latest scores, in the chosen order, with the whole book's summary.

    Numbers sort high to low and renewal dates soonest first unless ``ascending`` says otherwise.
    ``attention`` narrows the list to the clients needing it ("all" or one of ``ATTENTION``).
    """
    today = today or datetime.now(UTC).date()
    where = attention_conditions(attention, today) if attention else []
    summary = book_summary(store, manager=manager, band=band, search=search, where=where)
    if sort == "renewal":
        listing = _by_renewal(store, crm, (manager, band, search), page, ascending is False, where)
    else:
        scores, total = store.latest_scores(
            manager=manager,
            band=band,
            search=search,
            order_by=sort,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            ascending=bool(ascending),
            where=where,
        )
        listing = ClientsPage(_rows(scores, crm), total, page, _pages(total))
    listing = _with_follow_ups(store, listing)
    counts = attention_counts(store, manager=manager, today=today)
    return dataclasses.replace(listing, summary=summary, attention=counts)


def book_summary(
    store: ScoreStore,
    *,
    manager: str | None,
    band: str | None,
    search: str | None,
    where: list[ColumnElement[bool]] | None = None,
) -> BookSummary:
    """Clients, revenue at risk and clients per band of a filtered book, aggregated in SQL."""
    extra = where or []
    with store.read_snapshot() as conn:
        clients, revenue = store.latest_totals(
            conn, manager=manager, band=band, search=search, where=extra
        )
        bands = store.band_counts(conn, manager=manager, search=search, where=extra)
    return BookSummary(clients, revenue, {b: bands.get(b, 0) for b in BANDS})


def attention_counts(store: ScoreStore, *, manager: str | None, today: date) -> dict[str, int]:
    """How many clients of a book need attention, in all and by kind."""
    kinds = ["all", *ATTENTION]
    with store.read_snapshot() as conn:
        return {
            kind: store.latest_totals(
                conn, manager=manager, where=attention_conditions(kind, today)
            )[0]
            for kind in kinds
        }


def _with_follow_ups(store: ScoreStore, listing: ClientsPage) -> ClientsPage:
    """The page's rows with each client's last action and planned next step."""
    found = current_follow_ups(store, [r.score.client_id for r in listing.rows])
    rows = [dataclasses.replace(r, follow_up=found.get(r.score.client_id)) for r in listing.rows]
    return dataclasses.replace(listing, rows=rows)


def _by_renewal(
    store: ScoreStore,
    crm: CRMView | None,
    filters: tuple[str | None, str | None, str | None],
    page: int,
    latest_first: bool = False,
    where: list[ColumnElement[bool]] | None = None,
) -> ClientsPage:
    """Soonest renewal first (then revenue at risk), or latest first; rolling and unknown last.

    ``filters`` are (manager, band, search).
    """
    manager, band, search = filters
    scores: list[Score] = []
    total = 0
    while len(scores) < RENEWAL_SORT_LIMIT:
        chunk, total = store.latest_scores(
            manager=manager,
            band=band,
            search=search,
            limit=MAX_PAGE,
            offset=len(scores),
            where=where or [],
        )
        scores += chunk
        if len(chunk) < MAX_PAGE:
            break
    rows = _rows(scores, crm)
    rows.sort(key=lambda r: (r.renewal is None, r.renewal or date.max, -r.score.revenue_at_risk))
    if latest_first:
        dated = [r for r in rows if r.renewal is not None]
        rows = dated[::-1] + rows[len(dated) :]
    start = (page - 1) * PAGE_SIZE
    note = None
    if total > len(scores):
        note = (
            f"Only the {len(scores):,} clients with the most revenue at risk are sorted by "
            "renewal date; filter by band, manager or name to see the others."
        )
    return ClientsPage(rows[start : start + PAGE_SIZE], total, page, _pages(len(rows)), note)


def _rows(scores: list[Score], crm: CRMView | None) -> list[ClientRow]:
    renewals = renewal_dates(crm, {s.client_id: s.as_of for s in scores}) if crm else {}
    return [
        ClientRow(
            score=s,
            renewal=renewals.get(s.client_id),
            has_renewal=s.client_id in renewals,
            top_reason=s.drivers[0]["reason"] if s.drivers else None,
            direction=str(s.change.get("direction", "new")),
            delta=s.change.get("delta"),
        )
        for s in scores
    ]


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


# ---------------------------------------------------------------------------------- one client


def client_page(
    store: ScoreStore, crm: CRMView | None, score: Score, thresholds: tuple[float, float]
) -> ClientPage:
    """A client's risk over time, drivers, actions, history and what was done."""
    history = store.client_history(score.client_id)
    chart = _risk_chart(score, history, thresholds)
    renewals = renewal_dates(crm, {score.client_id: score.as_of}) if crm else {}
    return ClientPage(
        score=score,
        chart=chart,
        history=history,
        actions=store.list_actions(score.client_id),
        action_types=action_types(score),
        renewal=renewals.get(score.client_id),
        has_renewal=score.client_id in renewals,
        contracts=client_contracts(crm, score.client_id, score.as_of) if crm else [],
        timeline=client_timeline(crm, score.client_id, score.as_of) if crm else [],
        follow_up=current_follow_ups(store, [score.client_id]).get(score.client_id),
    )


def _risk_chart(score: Score, history: list[Score], thresholds: tuple[float, float]) -> Markup:
    """The client's risk over time; with a single score, that score in words instead."""
    if len(history) < 2:
        text = (
            f"One score so far: {charts.percent(score.probability)} on {score.as_of:%d %b %Y}. "
            "The chart starts with the next scoring."
        )
        return Markup('<p class="muted one-score" data-testid="one-score">{}</p>').format(text)
    risk = charts.Series("Churn probability", [(s.as_of.date(), s.probability) for s in history])
    return charts.wide_and_narrow(
        lambda width: charts.line_chart(
            [risk],
            title=f"Churn risk of {score.client_name or score.client_id} over time",
            y_range=(0.0, max(0.5, *(s.probability for s in history))),
            thresholds=[
                charts.Threshold(thresholds[0], "medium"),
                charts.Threshold(thresholds[1], "high"),
            ],
            x_format="%d %b %Y",
            width=width,
        )
    )


def action_types(score: Score) -> list[str]:
    """The choices of the action form: the client's recommended actions, then common ones."""
    recommended = [str(a["action"]) for a in score.actions if a.get("action")]
    return list(dict.fromkeys([*recommended, *COMMON_ACTIONS]))


# ---------------------------------------------------------------------------------- portfolio


def portfolio_page(
    store: ScoreStore,
    crm: CRMView | None,
    scorer: Scorer | None,
    thresholds: tuple[float, float],
    grace_days: int,
    currency: str = "USD",
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
        model=model_info(scorer),
        problem=problem,
        grace_days=grace_days,
        headline=closed[-1] if closed else None,
        provisional=provisional,
        trailing=trailing,
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


def model_info(scorer: Scorer | None) -> dict[str, Any] | None:
    """The model serving: version, kind, horizon, trained at, its recorded metrics."""
    if scorer is None:
        return None
    model = scorer.model
    return {
        "version": scorer.version,
        "kind": model.kind,
        "horizon_days": model.horizon_days,
        "trained_at": _as_day(model.metadata.get("trained_at")),
        "metrics": model_metrics(model.metadata.get("metrics") or {}),
    }


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
