"""The feature catalog: every feature declared once, with the event streams it reads.

A feature is the stream of events it reads (a table's rows keyed by one of its timestamps), a
filter, a window and an aggregation, with a plain-language description and the reason explanations
show. These declarations drive bulk computation, single-client computation and explanations alike;
the engine that computes them is ``engine.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from churnguard.domain.churn import stop_times
from churnguard.domain.contract import Attribute, CRMData, Kind
from churnguard.domain.problems import Problem
from churnguard.domain.timeaxis import DAY
from churnguard.features.arrays import NAT, CategoryTest, Columns, ColumnValue

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Declarations


@dataclass(frozen=True)
class Stream:
    """Events derived from one table: a row per table row whose event time is set."""

    name: str
    table: str
    time: Callable[[Columns], np.ndarray]  # int64 epoch seconds, NAT where no event
    values: dict[str, Callable[[Columns], np.ndarray]] = field(default_factory=dict)
    filters: dict[str, Callable[[Columns], np.ndarray]] = field(default_factory=dict)


How = Literal["count", "sum", "days_since", "days_since_first", "last"]


@dataclass(frozen=True)
class Agg:
    """One aggregation of a stream over a window ending ``offset`` days before as_of."""

    stream: str
    how: How
    window: int | None = None  # days; None = all history before as_of
    offset: int = 0
    where: str | None = None  # a filter name of the stream
    value: str | None = None  # a value name of the stream, for sum and last


@dataclass(frozen=True)
class Diff:
    """a - b."""

    a: Formula
    b: Formula


@dataclass(frozen=True)
class Ratio:
    """a / b, missing where b is zero."""

    a: Formula
    b: Formula


@dataclass(frozen=True)
class MeanAge:
    """Mean age in days at as_of of ``count`` events whose epoch days sum to ``day_sum``."""

    count: Formula
    day_sum: Formula


@dataclass(frozen=True)
class Custom:
    """A feature computed by a named function of the engine (for what prefix sums cannot do)."""

    name: str


Formula = Agg | Diff | Ratio | MeanAge | Custom


Direction = Literal["more_risk", "less_risk", "context"]  # what a higher value means


@dataclass(frozen=True)
class Feature:
    """A declared feature: what it computes, how to say it in words, which way it points.

    ``direction`` says what a higher value means: "more_risk", "less_risk", or "context" (neither,
    or both: segment, region, monthly value); only a feature with a direction is ever a reason,
    and only when it pushes risk up that way. A ``fact`` (renewal timing) is shown beside the
    reasons, never as one.
    """

    name: str
    formula: Formula
    description: str
    reason: str = ""  # template for explanations, formatted with value=<feature value>
    categorical: bool = False
    direction: Direction = "context"
    fact: bool = False

    @property
    def monotone(self) -> int:
        """The monotone constraint its direction asks of a model: 1, -1, or 0 (none)."""
        return {"more_risk": 1, "less_risk": -1}.get(self.direction, 0)


# ---------------------------------------------------------------------------------------------
# Streams


def _col(name: str) -> Callable[[Columns], np.ndarray]:
    return ColumnValue(name)


def _is(column: str, *values: str) -> Callable[[Columns], np.ndarray]:
    return CategoryTest(column, values)


def _settled_at(c: Columns) -> np.ndarray:
    """When an invoice stopped counting as overdue: paid, but never before it fell due."""
    paid, due = c("paid_at"), c("due_at")
    return np.where(paid == NAT, NAT, np.maximum(paid, due))


def _ended_at(c: Columns) -> np.ndarray:
    """When a contract stopped covering the client (``churn.stop_times``; NAT is NaT there)."""
    end, cancelled = (c(name).view("datetime64[s]") for name in ("end_date", "cancelled_at"))
    return stop_times(end, cancelled).view(np.int64)


def _days_between(start: str, end: str) -> Callable[[Columns], np.ndarray]:
    return lambda c: np.maximum(c(end) - c(start), 0) / DAY


def _day_of(column: str) -> Callable[[Columns], np.ndarray]:
    return lambda c: c(column) // DAY


def _value_or_one(c: Columns) -> np.ndarray:
    """An event's value; an event recorded without one counts as 1."""
    return np.nan_to_num(c("value"), nan=1.0)


_HIGH = ("high", "urgent")

STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream(
            "interaction",
            "interactions",
            _col("occurred_at"),
            filters={
                "email": _is("channel", "email"),
                "call": _is("channel", "call"),
                "meeting": _is("channel", "meeting"),
                "review": _is("channel", "review"),
                "inbound": _is("direction", "inbound"),
                "outbound": _is("direction", "outbound"),
            },
        ),
        Stream(
            "feedback",
            "feedback",
            _col("submitted_at"),
            values={"score": _col("score")},
            filters={
                "nps": _is("survey", "nps"),
                "csat": _is("survey", "csat"),
                "detractor": lambda c: c.isin("survey", ("nps",)) & (c("score") <= 6),
                "promoter": lambda c: c.isin("survey", ("nps",)) & (c("score") >= 9),
            },
        ),
        Stream("invoice_issued", "invoices", _col("issued_at"), values={"amount": _col("amount")}),
        Stream(
            "invoice_due",
            "invoices",
            _col("due_at"),
            values={"amount": _col("amount"), "due_day": _day_of("due_at")},
        ),
        Stream(
            "invoice_settled",
            "invoices",
            _settled_at,
            values={"amount": _col("amount"), "due_day": _day_of("due_at")},
        ),
        Stream(
            "invoice_paid",
            "invoices",
            _col("paid_at"),
            values={"days_late": _days_between("due_at", "paid_at")},
            filters={"late": lambda c: c("paid_at") > c("due_at")},
        ),
        Stream(
            "dispute_opened", "invoices", _col("disputed_at"), values={"amount": _col("amount")}
        ),
        Stream(
            "dispute_resolved",
            "invoices",
            lambda c: np.where(c("disputed_at") == NAT, NAT, c("dispute_resolved_at")),
            values={"amount": _col("amount")},
        ),
        Stream(
            "ticket_opened", "tickets", _col("opened_at"), filters={"high": _is("priority", *_HIGH)}
        ),
        Stream(
            "ticket_resolved",
            "tickets",
            _col("resolved_at"),
            values={"resolution_days": _days_between("opened_at", "resolved_at")},
            filters={"high": _is("priority", *_HIGH)},
        ),
        Stream(
            "contract_start",
            "contracts",
            _col("start_date"),
            values={"monthly_value": _col("monthly_value"), "auto_renew": _col("auto_renew")},
        ),
        Stream(
            "contract_end",
            "contracts",
            _ended_at,
            values={"monthly_value": _col("monthly_value"), "auto_renew": _col("auto_renew")},
        ),
        Stream("contract_cancelled", "contracts", _col("cancelled_at")),
        Stream("event", "events", _col("occurred_at"), values={"value": _value_or_one}),
    )
}


# ---------------------------------------------------------------------------------------------
# The feature catalogue


def _count(
    stream: str, window: int | None = None, where: str | None = None, offset: int = 0
) -> Agg:
    return Agg(stream, "count", window, offset, where)


def _sum(
    stream: str, value: str, window: int | None = None, where: str | None = None, offset: int = 0
) -> Agg:
    return Agg(stream, "sum", window, offset, where, value)


def _mean(stream: str, value: str, window: int | None = None, where: str | None = None) -> Ratio:
    return Ratio(_sum(stream, value, window, where), _count(stream, window, where))


def _since(stream: str, where: str | None = None) -> Agg:
    return Agg(stream, "days_since", where=where)


def _change(agg: Agg) -> Diff:
    """The aggregate over its window minus the same over the window before it."""
    window = agg.window or 0
    return Diff(agg, Agg(agg.stream, agg.how, window, window, agg.where, agg.value))


def _open(opened: Agg, closed: Agg) -> Diff:
    return Diff(opened, closed)


_F = Feature
_contacts_90 = _count("interaction", 90)
_monthly_value = Diff(
    _sum("contract_start", "monthly_value"), _sum("contract_end", "monthly_value")
)
_active_contracts = Diff(_count("contract_start"), _count("contract_end"))

BASE_FEATURES: tuple[Feature, ...] = (
    # contact
    _F(
        "days_since_contact",
        _since("interaction"),
        "Days since the last contact of any kind",
        "No contact for {value:.0f} days",
        direction="more_risk",
    ),
    _F(
        "days_since_meeting",
        _since("interaction", "meeting"),
        "Days since the last meeting",
        "No meeting for {value:.0f} days",
        direction="more_risk",
    ),
    _F(
        "days_since_call",
        _since("interaction", "call"),
        "Days since the last call",
        "No call for {value:.0f} days",
        direction="more_risk",
    ),
    _F(
        "days_since_inbound",
        _since("interaction", "inbound"),
        "Days since the client last got in touch",
        "Client has not reached out for {value:.0f} days",
        direction="more_risk",
    ),
    _F(
        "days_since_outbound",
        _since("interaction", "outbound"),
        "Days since the account team last reached out",
        "We have not reached out for {value:.0f} days",
        direction="more_risk",
    ),
    _F(
        "contacts_30d",
        _count("interaction", 30),
        "Contacts in the last 30 days",
        "{value:.0f} contacts in the last 30 days",
        direction="less_risk",
    ),
    _F(
        "contacts_90d",
        _contacts_90,
        "Contacts in the last 90 days",
        "Only {value:.0f} contacts in the last 90 days",
        direction="less_risk",
    ),
    _F(
        "contacts_365d",
        _count("interaction", 365),
        "Contacts in the last 365 days",
        "{value:.0f} contacts in the last year",
        direction="less_risk",
    ),
    _F(
        "contacts_change_90d",
        _change(_contacts_90),
        "Contacts in the last 90 days minus the 90 days before",
        "Contacts changed by {value:+.0f} against the previous 90 days",
        direction="less_risk",
    ),
    _F(
        "meetings_90d",
        _count("interaction", 90, "meeting"),
        "Meetings in the last 90 days",
        "{value:.0f} meetings in the last 90 days",
        direction="less_risk",
    ),
    _F(
        "calls_90d",
        _count("interaction", 90, "call"),
        "Calls in the last 90 days",
        "{value:.0f} calls in the last 90 days",
        direction="less_risk",
    ),
    _F(
        "emails_90d",
        _count("interaction", 90, "email"),
        "Emails in the last 90 days",
        "{value:.0f} emails in the last 90 days",
        direction="less_risk",
    ),
    _F(
        "reviews_365d",
        _count("interaction", 365, "review"),
        "Business reviews in the last year",
        "{value:.0f} business reviews in the last year",
        direction="less_risk",
    ),
    _F(
        "inbound_90d",
        _count("interaction", 90, "inbound"),
        "Contacts initiated by the client in the last 90 days",
        "Client got in touch {value:.0f} times in 90 days",
        direction="less_risk",
    ),
    _F(
        "outbound_90d",
        _count("interaction", 90, "outbound"),
        "Contacts initiated by the account team in the last 90 days",
        "We reached out {value:.0f} times in 90 days",
        direction="less_risk",
    ),
    _F(
        "inbound_share_90d",
        Ratio(_count("interaction", 90, "inbound"), _contacts_90),
        "Share of the last 90 days' contacts initiated by the client",
        "{value:.0%} of recent contacts came from the client",
    ),
    # feedback
    _F(
        "days_since_feedback",
        _since("feedback"),
        "Days since the last survey response",
        "No survey response for {value:.0f} days",
        direction="more_risk",
    ),
    _F(
        "nps_last",
        Agg("feedback", "last", where="nps", value="score"),
        "Latest NPS score (0-10)",
        "Latest NPS score is {value:.0f}",
        direction="less_risk",
    ),
    _F(
        "nps_mean_365d",
        _mean("feedback", "score", 365, "nps"),
        "Mean NPS score over the last year",
        "NPS averaged {value:.1f} over the last year",
        direction="less_risk",
    ),
    _F(
        "nps_change_180d",
        Diff(
            _mean("feedback", "score", 180, "nps"),
            Ratio(_sum("feedback", "score", 180, "nps", 180), _count("feedback", 180, "nps", 180)),
        ),
        "Mean NPS of the last 180 days minus the 180 days before",
        "NPS moved {value:+.1f} points against the previous half-year",
        direction="less_risk",
    ),
    _F(
        "csat_last",
        Agg("feedback", "last", where="csat", value="score"),
        "Latest CSAT score (1-5)",
        "Latest CSAT score is {value:.0f}",
        direction="less_risk",
    ),
    _F(
        "csat_mean_365d",
        _mean("feedback", "score", 365, "csat"),
        "Mean CSAT score over the last year",
        "CSAT averaged {value:.1f} over the last year",
        direction="less_risk",
    ),
    _F(
        "detractor_responses_365d",
        _count("feedback", 365, "detractor"),
        "NPS responses of 6 or lower in the last year",
        "{value:.0f} detractor survey responses in the last year",
        direction="more_risk",
    ),
    _F(
        "promoter_responses_365d",
        _count("feedback", 365, "promoter"),
        "NPS responses of 9 or 10 in the last year",
        "{value:.0f} promoter survey responses in the last year",
        direction="less_risk",
    ),
    _F(
        "feedback_responses_365d",
        _count("feedback", 365),
        "Survey responses in the last year",
        "{value:.0f} survey responses in the last year",
        direction="less_risk",
    ),
    # billing
    _F(
        "invoiced_90d",
        _sum("invoice_issued", "amount", 90),
        "Amount invoiced in the last 90 days",
        "{value:,.0f} invoiced in the last 90 days",
    ),
    _F(
        "invoiced_change_90d",
        _change(_sum("invoice_issued", "amount", 90)),
        "Amount invoiced in the last 90 days minus the 90 days before",
        "Invoiced revenue changed by {value:+,.0f} against the previous 90 days",
        direction="less_risk",
    ),
    _F(
        "open_disputes",
        _open(_count("dispute_opened"), _count("dispute_resolved")),
        "Disputed invoices not yet resolved",
        "{value:.0f} disputed invoices open",
        direction="more_risk",
    ),
    _F(
        "open_disputed_amount",
        _open(_sum("dispute_opened", "amount"), _sum("dispute_resolved", "amount")),
        "Amount of disputed invoices not yet resolved",
        "{value:,.0f} in unresolved disputes",
        direction="more_risk",
    ),
    _F(
        "disputes_365d",
        _count("dispute_opened", 365),
        "Invoices disputed in the last year",
        "{value:.0f} invoices disputed in the last year",
        direction="more_risk",
    ),
    _F(
        "days_since_dispute",
        _since("dispute_opened"),
        "Days since the last invoice dispute",
        "An invoice was disputed {value:.0f} days ago",
        direction="less_risk",
    ),
    _F(
        "disputed_share_365d",
        Ratio(_sum("dispute_opened", "amount", 365), _sum("invoice_issued", "amount", 365)),
        "Disputed amount as a share of the amount invoiced in the last year",
        "{value:.0%} of last year's invoiced amount was disputed",
        direction="more_risk",
    ),
    _F(
        "overdue_invoices",
        _open(_count("invoice_due"), _count("invoice_settled")),
        "Invoices past their due date and unpaid",
        "{value:.0f} invoices overdue",
        direction="more_risk",
    ),
    _F(
        "overdue_amount",
        _open(_sum("invoice_due", "amount"), _sum("invoice_settled", "amount")),
        "Amount past due and unpaid",
        "{value:,.0f} overdue",
        direction="more_risk",
    ),
    _F(
        "mean_days_overdue",
        MeanAge(
            _open(_count("invoice_due"), _count("invoice_settled")),
            _open(_sum("invoice_due", "due_day"), _sum("invoice_settled", "due_day")),
        ),
        "Mean days past due of the overdue invoices",
        "Overdue invoices are {value:.0f} days late",
        direction="more_risk",
    ),
    _F(
        "late_payment_share_365d",
        Ratio(_count("invoice_paid", 365, "late"), _count("invoice_paid", 365)),
        "Share of invoices paid in the last year that were paid late",
        "{value:.0%} of last year's invoices were paid late",
        direction="more_risk",
    ),
    _F(
        "mean_days_late_365d",
        _mean("invoice_paid", "days_late", 365),
        "Mean days past due of invoices paid in the last year (0 when on time)",
        "Invoices were paid {value:.0f} days late on average",
        direction="more_risk",
    ),
    # tickets
    _F(
        "open_tickets",
        _open(_count("ticket_opened"), _count("ticket_resolved")),
        "Support tickets not yet resolved",
        "{value:.0f} support tickets open",
        direction="more_risk",
    ),
    _F(
        "open_high_priority_tickets",
        _open(_count("ticket_opened", where="high"), _count("ticket_resolved", where="high")),
        "High or urgent tickets not yet resolved",
        "{value:.0f} high-priority tickets open",
        direction="more_risk",
    ),
    _F(
        "tickets_30d",
        _count("ticket_opened", 30),
        "Tickets opened in the last 30 days",
        "{value:.0f} tickets in the last 30 days",
        direction="more_risk",
    ),
    _F(
        "tickets_90d",
        _count("ticket_opened", 90),
        "Tickets opened in the last 90 days",
        "{value:.0f} tickets in the last 90 days",
        direction="more_risk",
    ),
    _F(
        "high_priority_tickets_90d",
        _count("ticket_opened", 90, "high"),
        "High or urgent tickets opened in the last 90 days",
        "{value:.0f} high-priority tickets in the last 90 days",
        direction="more_risk",
    ),
    _F(
        "tickets_change_90d",
        _change(_count("ticket_opened", 90)),
        "Tickets opened in the last 90 days minus the 90 days before",
        "Ticket volume changed by {value:+.0f} against the previous 90 days",
        direction="more_risk",
    ),
    _F(
        "mean_resolution_days_90d",
        _mean("ticket_resolved", "resolution_days", 90),
        "Mean days to resolve tickets closed in the last 90 days",
        "Tickets took {value:.1f} days to resolve",
        direction="more_risk",
    ),
    _F(
        "days_since_ticket",
        _since("ticket_opened"),
        "Days since the last ticket was opened",
        "Last ticket opened {value:.0f} days ago",
        direction="less_risk",
    ),
    # contract
    _F(
        "active_contracts",
        _active_contracts,
        "Contracts in force",
        "{value:.0f} contracts in force",
        direction="less_risk",
    ),
    _F(
        "monthly_value",
        _monthly_value,
        "Monthly value of the contracts in force",
        "Monthly contract value is {value:,.0f}",
    ),
    _F(
        "value_change_90d",
        Diff(
            _sum("contract_start", "monthly_value", 90), _sum("contract_end", "monthly_value", 90)
        ),
        "Change in monthly contract value over the last 90 days",
        "Monthly contract value changed by {value:+,.0f} in 90 days",
    ),
    _F(
        "value_change_365d",
        Diff(
            _sum("contract_start", "monthly_value", 365), _sum("contract_end", "monthly_value", 365)
        ),
        "Change in monthly contract value over the last year",
        "Monthly contract value changed by {value:+,.0f} in a year",
    ),
    _F(
        "auto_renew_share",
        Ratio(
            Diff(_sum("contract_start", "auto_renew"), _sum("contract_end", "auto_renew")),
            _active_contracts,
        ),
        "Share of contracts in force that renew automatically",
        "{value:.0%} of contracts renew automatically",
        direction="less_risk",
    ),
    _F(
        "tenure_days",
        Agg("contract_start", "days_since_first"),
        "Days since the first contract started",
        "Client for {value:.0f} days",
        direction="less_risk",
    ),
    _F(
        "days_to_contract_end",
        Custom("days_to_contract_end"),
        "Days until the next fixed-term contract in force ends (renewal point)",
        "Contract ends in {value:.0f} days",
        direction="less_risk",
        fact=True,
    ),
    _F(
        "rolling_contracts",
        Custom("rolling_contracts"),
        "Contracts in force with no end date",
        "{value:.0f} rolling contracts",
    ),
    _F(
        "service_lines",
        Custom("service_lines"),
        "Distinct service lines in force",
        "Buys {value:.0f} service lines",
        direction="less_risk",
    ),
    _F(
        "price_change_365d",
        Custom("price_change_365d"),
        "Relative change in the monthly value of the service lines held a year ago and now",
        "Price of the same services changed by {value:+.0%} in a year",
        direction="more_risk",
    ),
    _F(
        "scope_change_365d",
        Custom("scope_change_365d"),
        "Monthly value of service lines taken up minus those given up over the last year",
        "Services taken up or given up changed the monthly value by {value:+,.0f} in a year",
        direction="less_risk",
    ),
    _F(
        "cancellations_365d",
        _count("contract_cancelled", 365),
        "Contracts cancelled before term in the last year",
        "{value:.0f} contracts cancelled in the last year",
        direction="more_risk",
    ),
    # client
    _F(
        "client_age_days",
        Custom("client_age_days"),
        "Days since the client relationship began",
        "Client relationship is {value:.0f} days old",
    ),
    _F(
        "has_account_manager",
        Custom("has_account_manager"),
        "1 when an account manager is assigned",
        "No account manager assigned",
        direction="less_risk",
    ),
    _F("segment", Custom("segment"), "Client segment", "Segment {value}", categorical=True),
    _F("industry", Custom("industry"), "Client industry", "Industry {value}", categorical=True),
    _F("region", Custom("region"), "Client region", "Region {value}", categorical=True),
)


EVENT_PREFIX = "event_"  # every event-type feature's name starts so: none can shadow a base one


def event_features(event_type: str) -> tuple[Feature, ...]:
    """Generic features for one event_type of the events table (values summed; empty value = 1).

    Named ``event_<type>_30d``, ``_90d``, ``_change_90d`` and ``_days_since``, where ``<type>``
    is ``slugify(event_type)``.
    """
    slug = event_slug(event_type)
    where = f"type:{event_type}"
    last_90 = _sum("event", "value", 90, where)
    said = event_type.replace("_", " ")  # reasons read "portal login", not "portal_login"
    return (
        _F(
            f"{slug}_30d",
            _sum("event", "value", 30, where),
            f"Total {said} in the last 30 days",
            f"{said.capitalize()} in the last 30 days: {{value:,.0f}}",
            direction="less_risk",
        ),
        _F(
            f"{slug}_90d",
            last_90,
            f"Total {said} in the last 90 days",
            f"{said.capitalize()} in the last 90 days: {{value:,.0f}}",
            direction="less_risk",
        ),
        _F(
            f"{slug}_change_90d",
            _change(last_90),
            f"Total {said} in the last 90 days minus the 90 days before",
            f"{said.capitalize()} changed by {{value:+,.0f}} against the previous 90 days",
            direction="less_risk",
        ),
        _F(
            f"{slug}_days_since",
            _since("event", where),
            f"Days since the last {said}",
            f"No {said} for {{value:.0f}} days",
            direction="more_risk",
        ),
    )


def slugify(text: str) -> str:
    """A feature-name-safe form of an event type."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "event"


def event_slug(event_type: str) -> str:
    """The prefix of an event type's feature names: ``event_`` and its slug."""
    return f"{EVENT_PREFIX}{slugify(event_type)}"


def monotone_constraints(names: Sequence[str]) -> list[int]:
    """Per column: the monotone constraint its feature's declared direction asks (1 or -1), or 0
    for a context feature and for a name the catalog does not declare (a flat table's column)."""
    declared = {f.name: f.monotone for f in BASE_FEATURES}
    prefix = event_slug("x")
    by_suffix = sorted(
        ((f.name[len(prefix) :], f.monotone) for f in event_features("x")),
        key=lambda s: -len(s[0]),  # the longest suffix first: _change_90d before _90d
    )
    out = []
    for name in names:
        if name in declared:
            out.append(declared[name])
        elif name.startswith(EVENT_PREFIX):
            out.append(next((m for s, m in by_suffix if name.endswith(s)), 0))
        else:
            out.append(0)
    return out


class FeatureNameError(ValueError):
    """Two event types whose features would have the same names."""


def event_type_clashes(event_types: Iterable[str]) -> list[str]:
    """One message per group of event types that would make features of the same name."""
    by_slug: dict[str, list[str]] = {}
    for t in event_types:
        by_slug.setdefault(event_slug(t), []).append(t)
    return [
        f"event types {' and '.join(repr(t) for t in types)} would make the same features "
        f"({slug}_*); give them distinct names (or one name) under values: events: event_type: "
        "in the mapping file"
        for slug, types in by_slug.items()
        if len(types) > 1
    ]


def attribute_feature(attribute: Attribute) -> Feature:
    """The feature of a client or contract attribute a mapping declares: its value as it is (a
    client's) or that of the contract in force at as_of (the latest started, when several are).

    Named as its column (``client_<name>``, ``contract_<name>``); a category is context, never a
    reason; a number is a reason only when the mapping gives its direction.
    """
    a = attribute
    whose = "the contract in force" if a.table == "contracts" else "the client"
    description = f"{a.words} of {whose} (an attribute from the CRM)"
    formula = Custom(a.column)
    if a.kind == Kind.CATEGORY:
        return _F(a.column, formula, description, f"{a.words}: {{value}}", categorical=True)
    directions: dict[str, Direction] = {"more_risk": "more_risk", "less_risk": "less_risk"}
    reason = f"{a.words}: {{value:,.12g}}"
    return _F(
        a.column, formula, description, reason, direction=directions.get(a.direction, "context")
    )


def attribute_clashes(attributes: Iterable[Attribute]) -> list[tuple[Attribute, str]]:
    """Each attribute whose feature would take a built-in feature's name or another attribute's,
    and why."""
    base = {f.name for f in BASE_FEATURES}
    seen: set[str] = set()
    out = []
    for a in attributes:
        if a.column in base | seen:
            what = "a built-in feature's name" if a.column in base else "another attribute's"
            out.append((a, f"the attribute would make the feature {a.column}, {what}; rename it"))
        seen.add(a.column)
    return out


class MissingAttributeError(ValueError):
    """Data without an attribute a model was trained with, or with it of another kind."""


def check_attributes(feature_set: FeatureSet, attributes: Iterable[Attribute]) -> None:
    """Raise MissingAttributeError unless the data has every attribute the feature set reads,
    of the same kind; log the data's attributes it does not read (a model trained without them)."""
    have = {a.column: a for a in attributes}
    unread = sorted(set(have) - {a.column for a in feature_set.attributes})
    if unread:
        logger.warning(
            "attributes not read (the model was trained without them; retrain to use them): %s",
            ", ".join(unread),
        )
    problems = []
    for a in feature_set.attributes:
        got = have.get(a.column)
        entry = f"attributes: {a.table}: {a.name}"
        if got is None:
            problems.append(
                f"the model reads the {a.table} attribute {a.name!r} ({a.kind}), which the data "
                f"does not have: declare it in the mapping file ({entry}: {a.kind})"
            )
        elif got.kind != a.kind:
            problems.append(
                f"the model reads the {a.table} attribute {a.name!r} as a {a.kind}; the mapping "
                f"declares it a {got.kind} ({got.where or entry})"
            )
    if problems:
        raise MissingAttributeError("; ".join(problems))


@dataclass(frozen=True)
class FeatureSet:
    """The features a model uses: the base catalogue, those of each event type, and those of
    the client and contract attributes a mapping declares."""

    event_types: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        clashes = event_type_clashes(self.event_types)
        clashes += [f"{a.where or a.name}: {m}" for a, m in attribute_clashes(self.attributes)]
        if clashes:
            raise FeatureNameError("; ".join(clashes))

    @cached_property
    def features(self) -> tuple[Feature, ...]:
        extra = tuple(f for t in self.event_types for f in event_features(t))
        return BASE_FEATURES + extra + tuple(attribute_feature(a) for a in self.attributes)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.categorical]

    def get(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)


def feature_set_for(data: CRMData) -> FeatureSet:
    """The feature set for a data set: one group of event features per event_type present, and
    one feature per attribute its mapping declares."""
    return FeatureSet(event_types_in(data), data.attributes)


def feature_name_problems(data: CRMData) -> list[Problem]:
    """Errors for event types and attributes whose features would share a name: what training
    would stop on, reported by ``validate`` first."""
    events = event_type_clashes(event_types_in(data))
    attributes = attribute_clashes(data.attributes)
    return [Problem("error", "events", "events", "event_type", (), m) for m in events] + [
        Problem("error", a.table, a.where or "mapping", None, (), m) for a, m in attributes
    ]


def event_types_in(data: CRMData) -> tuple[str, ...]:
    """The event types that occur in the events table, sorted."""
    types = data.events["event_type"].dropna()
    present = sorted(set(types.cat.categories[types.cat.codes.unique()]) if len(types) else ())
    return tuple(str(t) for t in present)


def describe(feature_set: FeatureSet | None = None) -> pd.DataFrame:
    """The feature registry as a table: name, description, reason template."""
    fs = feature_set or FeatureSet()
    return pd.DataFrame(
        [(f.name, f.description, f.reason) for f in fs.features],
        columns=["feature", "description", "reason"],
    )
