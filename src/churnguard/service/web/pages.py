"""What "My clients" and a client's page show, built from the score store and the CRM data.

Routes call these functions and render the result; nothing here knows about HTTP. The
portfolio page is ``portfolio_view``'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy.sql.elements import ColumnElement

from churnguard.features.catalog import BASE_FEATURES
from churnguard.service.web import charts, portfolio
from churnguard.service.web.crm import (
    ContractRow,
    CRMView,
    TimelineItem,
    client_attributes,
    client_contracts,
    client_timeline,
    renewal_dates,
)
from churnguard.store.actions import LoggedAction
from churnguard.store.attention import ATTENTION, attention_conditions, newest_score_date
from churnguard.store.followups import FollowUp, current_follow_ups
from churnguard.store.scores import Score, ScoreStore

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
COMMON_ACTIONS = ("Call", "Meeting", "Email", "Discount", "Escalation", "Other")
# What a client page states as context beside the reasons, never as one: attribute -> label
CONTEXT = {"segment": "Segment", "industry": "Industry", "region": "Region"}
CONTEXT_FEATURES = frozenset(f.name for f in BASE_FEATURES if f.direction == "context")


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
        "have changed since. Run 'churnguard score' to score them again."
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
    reasons: tuple[dict[str, Any], ...] = ()  # the drivers shown under "why"
    context: tuple[tuple[str, str], ...] = ()  # (label, value): segment, industry, region


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
    conditions = {kind: attention_conditions(kind, today) for kind in kinds}
    return store.latest_counts(conditions, manager=manager)


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
    ranked, total = store.latest_ranking(
        manager=manager, band=band, search=search, limit=RENEWAL_SORT_LIMIT, where=where or []
    )
    renewals = renewal_dates(crm, {c: as_of for c, as_of, _ in ranked}) if crm else {}
    ranked.sort(key=lambda k: (renewals.get(k[0]) is None, renewals.get(k[0]) or date.max, -k[2]))
    ids = [c for c, _, _ in ranked]
    if latest_first:
        dated = [c for c in ids if renewals.get(c) is not None]
        ids = dated[::-1] + ids[len(dated) :]
    start = (page - 1) * PAGE_SIZE
    shown = store.latest_scores_of(ids[start : start + PAGE_SIZE])
    page_ids = [c for c in ids[start : start + PAGE_SIZE] if c in shown]
    rows = _rows([shown[c] for c in page_ids], crm, renewals)
    note = None
    if total > len(ranked):
        note = (
            f"Only the {len(ranked):,} clients with the most revenue at risk are sorted by "
            "renewal date; filter by band, manager or name to see the others."
        )
    return ClientsPage(rows, total, page, _pages(len(ranked)), note)


def _rows(
    scores: list[Score], crm: CRMView | None, renewals: dict[str, date | None] | None = None
) -> list[ClientRow]:
    """The list's rows of these scores; ``renewals``: their renewal dates, if already known."""
    if renewals is None:
        renewals = renewal_dates(crm, {s.client_id: s.as_of for s in scores}) if crm else {}
    return [
        ClientRow(
            score=s,
            renewal=renewals.get(s.client_id),
            has_renewal=s.client_id in renewals,
            top_reason=next((d["reason"] for d in reasons(s)), None),
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
        reasons=tuple(reasons(score)),
        context=tuple(client_context(score, crm)),
    )


def reasons(score: Score) -> list[dict[str, Any]]:
    """The score's drivers that are reasons: none of a context feature (older scores kept some)."""
    return [d for d in score.drivers if d.get("feature") not in CONTEXT_FEATURES]


def client_context(score: Score, crm: CRMView | None) -> list[tuple[str, str]]:
    """The client's segment, industry and region as (label, value): from the score's stored
    drivers when they carry them, else the score's segment, else the CRM data."""
    found = client_attributes(crm, score.client_id, tuple(CONTEXT)) if crm else {}
    if score.segment:
        found["segment"] = score.segment
    for d in score.drivers:
        if d.get("feature") in CONTEXT and d.get("value") not in (None, ""):
            found[d["feature"]] = str(d["value"])
    return [(label, found[name]) for name, label in CONTEXT.items() if found.get(name)]


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
