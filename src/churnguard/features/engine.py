"""Point-in-time features for (client, as_of), declared once and computed by one engine.

Every feature is declared here, once: the stream of events it reads (a table's rows keyed by one of
its timestamps), a filter, a window and an aggregation, with a plain-language description and the
reason explanations show. The same engine computes the declarations for a million clients at many
as_of dates, or for one client's records in the online API, so the two cannot disagree.

How the engine works: each stream's events are sorted by (client, time) once. For a snapshot
(client, as_of) the events of a window [as_of - w, as_of) are then a contiguous run found by binary
search, and counts and sums over it are differences of prefix sums. Only events with a timestamp
strictly before as_of are ever read. Values are carried as integers in micro-units, so sums are
exact and do not depend on which other clients share the batch: one client's features are equal,
bit for bit, to the same client's row in any batch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from churnguard.domain.churn import active_clients, stop_times
from churnguard.domain.contract import TABLES, CRMData, Kind, Table
from churnguard.domain.timeaxis import (
    DAY,
    EARLIEST_TIME,
    LATEST_TIME,
    utc_second,
)
from churnguard.domain.timeaxis import (
    TIME_BITS as _TIME_BITS,
)
from churnguard.domain.timeaxis import (
    TIME_MAX as _TIME_MAX,
)
from churnguard.domain.timeaxis import (
    TIME_OFFSET as _TIME_OFFSET,
)

SCALE = 1_000_000  # values are summed as int64 micro-units: exact, whatever the batch
NAT = np.iinfo(np.int64).min
_BLOCK = 1 << 16  # snapshots per block when combining formulas


class Columns(Protocol):
    """A table's columns as numpy arrays, by name."""

    def __call__(self, name: str) -> np.ndarray: ...  # numbers, bools (0/1), times (NAT = empty)

    def codes(self, name: str) -> np.ndarray: ...  # a categorical column's codes (-1 = empty)

    def isin(self, name: str, values: Sequence[str]) -> np.ndarray: ...  # categorical membership


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


@dataclass(frozen=True)
class Feature:
    """A declared feature: what it computes and how to say it in words."""

    name: str
    formula: Formula
    description: str
    reason: str = ""  # template for explanations, formatted with value=<feature value>
    categorical: bool = False


# ---------------------------------------------------------------------------------------------
# Streams


def _col(name: str) -> Callable[[Columns], np.ndarray]:
    return lambda c: c(name)


def _is(column: str, *values: str) -> Callable[[Columns], np.ndarray]:
    return lambda c: c.isin(column, values)


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
    ),
    _F(
        "days_since_meeting",
        _since("interaction", "meeting"),
        "Days since the last meeting",
        "No meeting for {value:.0f} days",
    ),
    _F(
        "days_since_call",
        _since("interaction", "call"),
        "Days since the last call",
        "No call for {value:.0f} days",
    ),
    _F(
        "days_since_inbound",
        _since("interaction", "inbound"),
        "Days since the client last got in touch",
        "Client has not reached out for {value:.0f} days",
    ),
    _F(
        "days_since_outbound",
        _since("interaction", "outbound"),
        "Days since the account team last reached out",
        "We have not reached out for {value:.0f} days",
    ),
    _F(
        "contacts_30d",
        _count("interaction", 30),
        "Contacts in the last 30 days",
        "{value:.0f} contacts in the last 30 days",
    ),
    _F(
        "contacts_90d",
        _contacts_90,
        "Contacts in the last 90 days",
        "Only {value:.0f} contacts in the last 90 days",
    ),
    _F(
        "contacts_365d",
        _count("interaction", 365),
        "Contacts in the last 365 days",
        "{value:.0f} contacts in the last year",
    ),
    _F(
        "contacts_change_90d",
        _change(_contacts_90),
        "Contacts in the last 90 days minus the 90 days before",
        "Contacts changed by {value:+.0f} against the previous 90 days",
    ),
    _F(
        "meetings_90d",
        _count("interaction", 90, "meeting"),
        "Meetings in the last 90 days",
        "{value:.0f} meetings in the last 90 days",
    ),
    _F(
        "calls_90d",
        _count("interaction", 90, "call"),
        "Calls in the last 90 days",
        "{value:.0f} calls in the last 90 days",
    ),
    _F(
        "emails_90d",
        _count("interaction", 90, "email"),
        "Emails in the last 90 days",
        "{value:.0f} emails in the last 90 days",
    ),
    _F(
        "reviews_365d",
        _count("interaction", 365, "review"),
        "Business reviews in the last year",
        "{value:.0f} business reviews in the last year",
    ),
    _F(
        "inbound_90d",
        _count("interaction", 90, "inbound"),
        "Contacts initiated by the client in the last 90 days",
        "Client got in touch {value:.0f} times in 90 days",
    ),
    _F(
        "outbound_90d",
        _count("interaction", 90, "outbound"),
        "Contacts initiated by the account team in the last 90 days",
        "We reached out {value:.0f} times in 90 days",
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
    ),
    _F(
        "nps_last",
        Agg("feedback", "last", where="nps", value="score"),
        "Latest NPS score (0-10)",
        "Latest NPS score is {value:.0f}",
    ),
    _F(
        "nps_mean_365d",
        _mean("feedback", "score", 365, "nps"),
        "Mean NPS score over the last year",
        "NPS averaged {value:.1f} over the last year",
    ),
    _F(
        "nps_change_180d",
        Diff(
            _mean("feedback", "score", 180, "nps"),
            Ratio(_sum("feedback", "score", 180, "nps", 180), _count("feedback", 180, "nps", 180)),
        ),
        "Mean NPS of the last 180 days minus the 180 days before",
        "NPS moved {value:+.1f} points against the previous half-year",
    ),
    _F(
        "csat_last",
        Agg("feedback", "last", where="csat", value="score"),
        "Latest CSAT score (1-5)",
        "Latest CSAT score is {value:.0f}",
    ),
    _F(
        "csat_mean_365d",
        _mean("feedback", "score", 365, "csat"),
        "Mean CSAT score over the last year",
        "CSAT averaged {value:.1f} over the last year",
    ),
    _F(
        "detractor_responses_365d",
        _count("feedback", 365, "detractor"),
        "NPS responses of 6 or lower in the last year",
        "{value:.0f} detractor survey responses in the last year",
    ),
    _F(
        "promoter_responses_365d",
        _count("feedback", 365, "promoter"),
        "NPS responses of 9 or 10 in the last year",
        "{value:.0f} promoter survey responses in the last year",
    ),
    _F(
        "feedback_responses_365d",
        _count("feedback", 365),
        "Survey responses in the last year",
        "{value:.0f} survey responses in the last year",
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
    ),
    _F(
        "open_disputes",
        _open(_count("dispute_opened"), _count("dispute_resolved")),
        "Disputed invoices not yet resolved",
        "{value:.0f} disputed invoices open",
    ),
    _F(
        "open_disputed_amount",
        _open(_sum("dispute_opened", "amount"), _sum("dispute_resolved", "amount")),
        "Amount of disputed invoices not yet resolved",
        "{value:,.0f} in unresolved disputes",
    ),
    _F(
        "disputes_365d",
        _count("dispute_opened", 365),
        "Invoices disputed in the last year",
        "{value:.0f} invoices disputed in the last year",
    ),
    _F(
        "days_since_dispute",
        _since("dispute_opened"),
        "Days since the last invoice dispute",
        "An invoice was disputed {value:.0f} days ago",
    ),
    _F(
        "disputed_share_365d",
        Ratio(_sum("dispute_opened", "amount", 365), _sum("invoice_issued", "amount", 365)),
        "Disputed amount as a share of the amount invoiced in the last year",
        "{value:.0%} of last year's invoiced amount was disputed",
    ),
    _F(
        "overdue_invoices",
        _open(_count("invoice_due"), _count("invoice_settled")),
        "Invoices past their due date and unpaid",
        "{value:.0f} invoices overdue",
    ),
    _F(
        "overdue_amount",
        _open(_sum("invoice_due", "amount"), _sum("invoice_settled", "amount")),
        "Amount past due and unpaid",
        "{value:,.0f} overdue",
    ),
    _F(
        "mean_days_overdue",
        MeanAge(
            _open(_count("invoice_due"), _count("invoice_settled")),
            _open(_sum("invoice_due", "due_day"), _sum("invoice_settled", "due_day")),
        ),
        "Mean days past due of the overdue invoices",
        "Overdue invoices are {value:.0f} days late",
    ),
    _F(
        "late_payment_share_365d",
        Ratio(_count("invoice_paid", 365, "late"), _count("invoice_paid", 365)),
        "Share of invoices paid in the last year that were paid late",
        "{value:.0%} of last year's invoices were paid late",
    ),
    _F(
        "mean_days_late_365d",
        _mean("invoice_paid", "days_late", 365),
        "Mean days past due of invoices paid in the last year (0 when on time)",
        "Invoices were paid {value:.0f} days late on average",
    ),
    # tickets
    _F(
        "open_tickets",
        _open(_count("ticket_opened"), _count("ticket_resolved")),
        "Support tickets not yet resolved",
        "{value:.0f} support tickets open",
    ),
    _F(
        "open_high_priority_tickets",
        _open(_count("ticket_opened", where="high"), _count("ticket_resolved", where="high")),
        "High or urgent tickets not yet resolved",
        "{value:.0f} high-priority tickets open",
    ),
    _F(
        "tickets_30d",
        _count("ticket_opened", 30),
        "Tickets opened in the last 30 days",
        "{value:.0f} tickets in the last 30 days",
    ),
    _F(
        "tickets_90d",
        _count("ticket_opened", 90),
        "Tickets opened in the last 90 days",
        "{value:.0f} tickets in the last 90 days",
    ),
    _F(
        "high_priority_tickets_90d",
        _count("ticket_opened", 90, "high"),
        "High or urgent tickets opened in the last 90 days",
        "{value:.0f} high-priority tickets in the last 90 days",
    ),
    _F(
        "tickets_change_90d",
        _change(_count("ticket_opened", 90)),
        "Tickets opened in the last 90 days minus the 90 days before",
        "Ticket volume changed by {value:+.0f} against the previous 90 days",
    ),
    _F(
        "mean_resolution_days_90d",
        _mean("ticket_resolved", "resolution_days", 90),
        "Mean days to resolve tickets closed in the last 90 days",
        "Tickets took {value:.1f} days to resolve",
    ),
    _F(
        "days_since_ticket",
        _since("ticket_opened"),
        "Days since the last ticket was opened",
        "Last ticket opened {value:.0f} days ago",
    ),
    # contract
    _F(
        "active_contracts",
        _active_contracts,
        "Contracts in force",
        "{value:.0f} contracts in force",
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
    ),
    _F(
        "tenure_days",
        Agg("contract_start", "days_since_first"),
        "Days since the first contract started",
        "Client for {value:.0f} days",
    ),
    _F(
        "days_to_contract_end",
        Custom("days_to_contract_end"),
        "Days until the next fixed-term contract in force ends (renewal point)",
        "Contract ends in {value:.0f} days",
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
    ),
    _F(
        "cancellations_365d",
        _count("contract_cancelled", 365),
        "Contracts cancelled before term in the last year",
        "{value:.0f} contracts cancelled in the last year",
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
    ),
    _F("segment", Custom("segment"), "Client segment", "Segment {value}", categorical=True),
    _F("industry", Custom("industry"), "Client industry", "Industry {value}", categorical=True),
    _F("region", Custom("region"), "Client region", "Region {value}", categorical=True),
)


def event_features(event_type: str) -> tuple[Feature, ...]:
    """Generic features for one event_type of the events table (values summed; empty value = 1)."""
    slug = slugify(event_type)
    where = f"type:{event_type}"
    last_90 = _sum("event", "value", 90, where)
    return (
        _F(
            f"{slug}_30d",
            _sum("event", "value", 30, where),
            f"Total {event_type} in the last 30 days",
            f"{{value:,.1f}} {event_type} in the last 30 days",
        ),
        _F(
            f"{slug}_90d",
            last_90,
            f"Total {event_type} in the last 90 days",
            f"{{value:,.1f}} {event_type} in the last 90 days",
        ),
        _F(
            f"{slug}_change_90d",
            _change(last_90),
            f"Total {event_type} in the last 90 days minus the 90 days before",
            f"{event_type} changed by {{value:+,.1f}} against the previous 90 days",
        ),
        _F(
            f"days_since_{slug}",
            _since("event", where),
            f"Days since the last {event_type}",
            f"No {event_type} for {{value:.0f}} days",
        ),
    )


def slugify(text: str) -> str:
    """A feature-name-safe form of an event type."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "event"


@dataclass(frozen=True)
class FeatureSet:
    """The features a model uses: the base catalogue plus those of each event type."""

    event_types: tuple[str, ...] = ()

    @cached_property
    def features(self) -> tuple[Feature, ...]:
        extra = tuple(f for t in self.event_types for f in event_features(t))
        return BASE_FEATURES + extra

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.categorical]

    def get(self, name: str) -> Feature:
        return next(f for f in self.features if f.name == name)


def feature_set_for(data: CRMData) -> FeatureSet:
    """The feature set for a data set: one group of event features per event_type present."""
    types = data.events["event_type"].dropna()
    present = sorted(set(types.cat.categories[types.cat.codes.unique()]) if len(types) else ())
    return FeatureSet(tuple(str(t) for t in present))


# ---------------------------------------------------------------------------------------------
# The engine


@dataclass
class _Prepared:
    """One stream's events for a set of clients, sorted by (client, time), with prefix sums."""

    keys: np.ndarray  # (client code << 33) | encoded time, ascending
    times: np.ndarray  # epoch seconds, in key order
    columns: Columns  # the table's columns, in key order
    stream: Stream
    _cache: dict[tuple[str, str | None, str | None], np.ndarray] = field(default_factory=dict)

    def mask(self, where: str | None) -> np.ndarray | None:
        if where is None:
            return None
        return self._memo("mask", where, None, lambda: _filter(self.stream, where, self.columns))

    def prefix_into(self, key: tuple[str, str | None, str | None], out: np.ndarray) -> None:
        """Write prefix counts ("count", where) or micro-unit sums ("sum", where, value) to out.

        out[i] is the total over the first i events, so a run [lo, hi) is out[hi] - out[lo].
        """
        how, where, value = key
        m = self.mask(where)
        out[0] = 0
        if how == "count":
            np.cumsum(np.ones(len(self.keys), np.int64) if m is None else m, out=out[1:])
            return
        v = _micro(self.values_of(value or ""))
        np.cumsum(v if m is None else np.where(m, v, 0), out=out[1:])

    def last_index(self, where: str | None) -> np.ndarray:
        """For each position, the index of the last filtered event at or before it (-1: none)."""

        def build() -> np.ndarray:
            idx = np.arange(len(self.keys), dtype=np.int64)
            m = self.mask(where)
            return np.maximum.accumulate(idx if m is None else np.where(m, idx, -1))

        return self._memo("last", where, None, build)

    def first_index(self, where: str | None) -> np.ndarray:
        """For each position, the index of the first filtered event at or after it (n: none)."""

        def build() -> np.ndarray:
            n = len(self.keys)
            idx = np.arange(n, dtype=np.int64)
            m = self.mask(where)
            marked = idx if m is None else np.where(m, idx, n)
            return np.minimum.accumulate(marked[::-1])[::-1]

        return self._memo("first", where, None, build)

    def values_of(self, value: str) -> np.ndarray:
        """A value of the stream's events, in key order."""
        return self._memo("values", None, value, lambda: self.stream.values[value](self.columns))

    def _memo(
        self, kind: str, where: str | None, value: str | None, build: Callable[[], np.ndarray]
    ) -> np.ndarray:
        key = (kind, where, value)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


def _filter(stream: Stream, where: str, columns: Columns) -> np.ndarray:
    if where.startswith("type:"):
        return columns.isin("event_type", (where.removeprefix("type:"),))
    return np.asarray(stream.filters[where](columns), dtype=bool)


def _micro(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64) * SCALE
    v[np.isnan(v)] = 0.0
    return np.rint(v, out=v).astype(np.int64)


def _encode(times: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(times + _TIME_OFFSET, 0), _TIME_MAX)


def _is_sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or (a[1:] >= a[:-1]).all())


def _group_order(codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Row order by (code, time, row): sorts of packed integers, far faster than argsort."""
    n = len(codes)
    bits = max(int(n - 1).bit_length(), 1)
    if n < 2 or bits + _TIME_BITS > 63 or int(codes.max()) >= 1 << (63 - bits):
        return np.lexsort((np.arange(n), times, codes))
    low = (1 << bits) - 1
    rows = np.arange(n)
    # CRM exports usually list rows in time order; then the first sort is not needed
    by_time = rows if _is_sorted(times) else np.sort((_encode(times) << bits) | rows) & low
    return by_time[np.sort((codes[by_time] << bits) | rows) & low]


@dataclass(frozen=True)
class TableArrays:
    """One contract table as numpy arrays, the form the engine reads.

    Timestamps are int64 epoch seconds (NAT when empty), numbers and booleans float64, and
    categorical columns int codes (-1 when empty) into ``categories[column]``; ``client_code`` is
    each row's position in the clients table.
    """

    columns: dict[str, np.ndarray]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __call__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def codes(self, name: str) -> np.ndarray:
        return self.columns[name]

    def isin(self, name: str, values: Sequence[str]) -> np.ndarray:
        labels = self.categories[name]
        lookup = np.zeros(len(labels) + 1, dtype=bool)  # last slot: empty (code -1)
        lookup[[labels.index(v) for v in values if v in labels]] = True
        return lookup[self.columns[name]]


@dataclass(frozen=True)
class CRMArrays:
    """All contract tables as numpy arrays, with the clients' ids (row i = client code i)."""

    client_ids: np.ndarray
    tables: dict[str, TableArrays]

    def table(self, name: str) -> TableArrays:
        return self.tables[name]


def crm_arrays(data: CRMData) -> CRMArrays:
    """The engine's view of validated CRM data: each column converted to numpy once."""
    tables = {name: _table_arrays(df, TABLES[name]) for name, df in data.tables().items()}
    return CRMArrays(data.clients["client_id"].to_numpy(dtype=object), tables)


def _table_arrays(df: pd.DataFrame, spec: Table) -> TableArrays:
    columns: dict[str, np.ndarray] = {}
    categories: dict[str, tuple[str, ...]] = {}
    for col in spec.columns:
        s = df[col.name]
        if col.name == "client_id":
            codes = s.array.codes if spec.name != "clients" else np.arange(len(s))
            columns["client_code"] = np.asarray(codes, dtype=np.int64)
        elif col.kind in (Kind.CHOICE, Kind.CATEGORY):
            columns[col.name] = np.asarray(s.array.codes, dtype=np.int64)
            categories[col.name] = tuple(str(c) for c in s.cat.categories)
        elif col.kind == Kind.DATETIME:
            seconds = s.to_numpy(dtype="datetime64[s]").view(np.int64)
            columns[col.name] = _encodable(seconds, f"{spec.name}.{col.name}")
        elif col.kind in (Kind.NUMBER, Kind.BOOL):
            columns[col.name] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        elif col.name == "account_manager":
            columns["has_account_manager"] = (s.fillna("").str.strip() != "").to_numpy(float)
    return TableArrays(columns, categories)


def _encodable(times: np.ndarray, column: str) -> np.ndarray:
    """Epoch seconds the engine can encode (or NAT); ValueError for any other time."""
    known = times[times != NAT]
    if len(known) and (known.min() < EARLIEST_TIME or known.max() > LATEST_TIME):
        bad = known[(known < EARLIEST_TIME) | (known > LATEST_TIME)][0]
        raise ValueError(
            f"{column}: {np.datetime64(int(bad), 's')} is outside the range the feature engine "
            f"encodes: {np.datetime64(EARLIEST_TIME, 's')} .. {np.datetime64(LATEST_TIME, 's')} UTC"
        )
    return times


class _Reordered:
    """Columns taken in a given row order, converted once and on demand."""

    def __init__(self, columns: Columns, order: np.ndarray) -> None:
        self._columns = columns
        self._order = order
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        return self._memo("values", name, lambda: self._columns(name)[self._order])

    def codes(self, name: str) -> np.ndarray:
        return self._memo("codes", name, lambda: self._columns.codes(name)[self._order])

    def isin(self, name: str, values: Sequence[str]) -> np.ndarray:
        return self._columns.isin(name, values)[self._order]

    def _memo(self, kind: str, name: str, build: Callable[[], np.ndarray]) -> np.ndarray:
        if (kind, name) not in self._arrays:
            self._arrays[kind, name] = build()
        return self._arrays[kind, name]


@dataclass
class _Grouped:
    """A table's rows grouped by client and ordered by the table's own time within a client."""

    codes: np.ndarray  # client code of each row, in group order
    columns: _Reordered


def _group(table: TableArrays, time_column: str) -> _Grouped:
    codes = table("client_code")
    columns: Columns = table
    known = np.flatnonzero(codes >= 0)
    if len(known) < len(codes):
        codes = codes[known]
        columns = _Reordered(columns, known)
    order = _group_order(codes, columns(time_column))
    return _Grouped(codes[order], _Reordered(columns, order))


def _prepare(stream: Stream, grouped: _Grouped) -> _Prepared:
    """One stream's events sorted by (client, time), from its table grouped by client."""
    times = stream.time(grouped.columns)
    keep = np.flatnonzero(times != NAT)
    keys = (grouped.codes[keep] << _TIME_BITS) | _encode(times[keep])
    if not _is_sorted(keys):  # the stream's time differs from the table's: nearly sorted
        order = np.argsort(keys, kind="stable")
        keys, keep = keys[order], keep[order]
    elif len(keep) == len(times):  # every row is an event, in order: nothing to reorder
        return _Prepared(keys, times, grouped.columns, stream)
    return _Prepared(keys, times[keep], _Reordered(grouped.columns, keep), stream)


@dataclass(frozen=True)
class _Spans:
    """Windows [as_of - offset - window, as_of - offset), in seconds; window 0 where unbounded."""

    offset: np.ndarray  # int64 per span
    window: np.ndarray  # int64 per span
    bounded: np.ndarray  # bool per span; False: all history before as_of - offset

    @classmethod
    def of(cls, pairs: Sequence[tuple[int | None, int]]) -> _Spans:
        """From (window days or None, offset days) pairs."""
        return cls(
            np.array([[offset * DAY] for _, offset in pairs], dtype=np.int64),
            np.array([[(window or 0) * DAY] for window, _ in pairs], dtype=np.int64),
            np.array([[window is not None] for window, _ in pairs], dtype=bool),
        )


_ALL_HISTORY = _Spans.of([(None, 0)])


class _Snapshots:
    """The (client code, as_of) pairs features are computed for."""

    def __init__(self, codes: np.ndarray, as_of: np.ndarray) -> None:
        self.codes = codes
        self.as_of = as_of  # epoch seconds
        self.base = codes << _TIME_BITS

    def bounds(self, p: _Prepared, spans: _Spans) -> tuple[np.ndarray, np.ndarray]:
        """Positions lo, hi (a row per span) of events in [as_of - offset - window, as_of - offset).

        One binary search answers every span of the stream.
        """
        end = self.as_of - spans.offset
        start = np.where(spans.bounded, self.base | _encode(end - spans.window), self.base)
        queries = np.concatenate([start, self.base | _encode(end)])
        found = np.searchsorted(p.keys, queries.ravel()).reshape(queries.shape)
        return found[: len(spans.offset)], found[len(spans.offset) :]


def _prefix_key(a: Agg) -> tuple[str, str | None, str | None]:
    return (a.how, a.where, a.value if a.how == "sum" else None)


def _aggs_in(f: Formula) -> list[Agg]:
    """The aggregations a formula reads."""
    if isinstance(f, Agg):
        return [f]
    return [a for part in _parts(f) for a in _aggs_in(part)]


def _parts(f: Formula) -> tuple[Formula, ...]:
    """The formulas a formula combines."""
    if isinstance(f, Diff | Ratio):
        return f.a, f.b
    if isinstance(f, MeanAge):
        return f.count, f.day_sum
    return ()


@dataclass(frozen=True)
class _StreamPlan:
    """What to compute on one stream, worked out once per feature set.

    Its aggregations' results are rows ``first ..`` of the engine's value matrix: the totals
    (answered by prefix sums) first, then the others (answered one by one).
    """

    stream: str
    aggs: tuple[Agg, ...]  # totals first
    spans: _Spans  # distinct (window, offset) pairs
    span: tuple[int, ...]  # each agg's span
    prefix_keys: tuple[tuple[str, str | None, str | None], ...]
    rows: np.ndarray  # per total: its prefix row (column vector)
    cols: np.ndarray  # per total: its span
    sums: np.ndarray  # positions of the totals that are sums (micro-units, to scale)
    n_totals: int
    first: int  # the value matrix row of aggs[0]


@dataclass(frozen=True)
class _Step:
    """One vectorised step of a program: value rows ``out`` = kind(rows a, rows b)."""

    kind: type[Diff | Ratio | MeanAge]
    a: np.ndarray
    b: np.ndarray
    out: slice


@dataclass(frozen=True)
class _Plan:
    """A feature set's computation: aggregations by table and stream, then formula steps.

    The value matrix holds a row per aggregation, then a row per custom value a formula reads,
    then a row per combined formula; ``steps`` fill the latter level by level, all formulas of a
    kind and level at once, so one client costs a few array operations, not one per feature.
    """

    tables: dict[str, list[_StreamPlan]]
    n_aggs: int
    customs: tuple[str, ...]  # custom values formulas read, rows n_aggs ..
    steps: tuple[_Step, ...]
    n_rows: int
    outputs: tuple[tuple[str, int | str], ...]  # per feature: its value row, or a custom's name


def _stream_plan(stream: str, found: list[Agg], first: int) -> _StreamPlan:
    aggs = sorted(found, key=lambda a: not _by_prefix(a))  # stable: totals first
    pairs = list(dict.fromkeys((a.window, a.offset) for a in aggs))
    span = [pairs.index((a.window, a.offset)) for a in aggs]
    totals = [a for a in aggs if _by_prefix(a)]
    keys = list(dict.fromkeys(_prefix_key(a) for a in totals))
    return _StreamPlan(
        stream,
        tuple(aggs),
        _Spans.of(pairs),
        tuple(span),
        tuple(keys),
        np.array([keys.index(_prefix_key(a)) for a in totals], dtype=np.intp)[:, None],
        np.array(span[: len(totals)], dtype=np.intp),
        np.array([i for i, a in enumerate(totals) if a.how == "sum"], dtype=np.intp),
        len(totals),
        first,
    )


def _by_prefix(a: Agg) -> bool:
    """Whether prefix totals answer an aggregation (an unfiltered count is a run's length)."""
    return a.how == "sum" or (a.how == "count" and a.where is not None)


@lru_cache(maxsize=32)
def _plan(feature_set: FeatureSet) -> _Plan:
    """The computation plan of a feature set (cached: the online path reuses it every call)."""
    by_stream: dict[str, list[Agg]] = {}
    for a in dict.fromkeys(a for f in feature_set.features for a in _aggs_in(f.formula)):
        by_stream.setdefault(a.stream, []).append(a)
    tables: dict[str, list[_StreamPlan]] = {}
    row: dict[Formula, int] = {}
    for stream, found in by_stream.items():
        sp = _stream_plan(stream, found, len(row))
        row.update((a, sp.first + i) for i, a in enumerate(sp.aggs))
        tables.setdefault(STREAMS[stream].table, []).append(sp)
    n_aggs = len(row)
    combined = [f.formula for f in feature_set.features if not isinstance(f.formula, Custom)]
    customs, steps, row = _combine(combined, row)
    outputs = tuple(
        (f.name, f.formula.name if isinstance(f.formula, Custom) else row[f.formula])
        for f in feature_set.features
    )
    return _Plan(tables, n_aggs, customs, steps, len(row), outputs)


def _combine(
    formulas: Sequence[Formula], leaves: dict[Formula, int]
) -> tuple[tuple[str, ...], tuple[_Step, ...], dict[Formula, int]]:
    """The custom values the formulas read, the steps that combine the rest, and every row.

    ``leaves`` are the aggregations' rows; customs get the next rows, then each step's formulas.
    """
    levels = _levels(formulas)
    customs = tuple(dict.fromkeys(c.name for c in levels.pop(0, []) if isinstance(c, Custom)))
    row = dict(leaves)
    row.update((Custom(name), len(leaves) + i) for i, name in enumerate(customs))
    steps = []
    for level in sorted(levels):
        for kind in (Diff, Ratio, MeanAge):
            nodes = [f for f in levels[level] if type(f) is kind]
            if nodes:
                start = len(row)
                row.update((f, start + i) for i, f in enumerate(nodes))
                a, b = ([row[_parts(f)[k]] for f in nodes] for k in (0, 1))
                steps.append(_Step(kind, np.array(a), np.array(b), slice(start, len(row))))
    return customs, tuple(steps), row


def _levels(formulas: Iterable[Formula]) -> dict[int, list[Formula]]:
    """Distinct formulas by level: 0 for aggregations and customs, else 1 + their parts' highest."""
    level: dict[Formula, int] = {}

    def visit(f: Formula) -> int:
        if f not in level:
            parts = _parts(f)
            level[f] = 1 + max(visit(p) for p in parts) if parts else 0
        return level[f]

    for f in formulas:
        visit(f)
    out: dict[int, list[Formula]] = {}
    for f, n in level.items():
        out.setdefault(n, []).append(f)
    return out


def _run(steps: Sequence[_Step], v: np.ndarray, as_of_day: np.ndarray) -> None:
    """Fill the combined formulas' rows of a value matrix (columns: snapshots)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in steps:
            a, b = v[s.a], v[s.b]
            if s.kind is Diff:
                v[s.out] = a - b
            elif s.kind is Ratio:
                v[s.out] = np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)
            else:  # MeanAge: a counts events, b sums their epoch days
                v[s.out] = np.where(a > 0, (a * as_of_day - b) / np.where(a > 0, a, 1), np.nan)


class _Engine:
    """Evaluates feature formulas for a set of snapshots over prepared streams.

    Aggregations are computed stream by stream and each stream's sorted arrays are dropped
    as soon as its aggregations are done, so memory holds one table's work at a time (two when
    tables are processed in parallel).
    """

    def __init__(self, data: CRMArrays, snapshots: _Snapshots, plan: _Plan) -> None:
        self.data = data
        self.snap = snapshots
        self.plan = plan
        self.values = np.empty((plan.n_aggs + len(plan.customs), len(snapshots.as_of)))
        self._customs: dict[str, np.ndarray] = {}
        self._kept: dict[str, _Prepared] = {}  # streams the custom features read again

    def prepared(self, name: str) -> _Prepared:
        """One stream, prepared (used by the contract-state features)."""
        if name in self._kept:
            return self._kept[name]
        s = STREAMS[name]
        return _prepare(s, _group(self.data.table(s.table), TABLES[s.table].time or ""))

    def precompute(self, workers: int = 1) -> None:
        """Compute every aggregation of the plan, one table (and stream) at a time."""
        jobs = list(self.plan.tables.items())
        if workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda job: self._table_aggs(*job), jobs))
        else:
            for job in jobs:
                self._table_aggs(*job)
        for i, name in enumerate(self.plan.customs):
            self.values[self.plan.n_aggs + i] = self._custom(name)

    def _table_aggs(self, table: str, streams: list[_StreamPlan]) -> None:
        grouped = _group(self.data.table(table), TABLES[table].time or "")
        for sp in streams:
            p = _prepare(STREAMS[sp.stream], grouped)
            self._stream_aggs(p, sp)
            if sp.stream in _KEPT:
                self._kept[sp.stream] = p

    def _stream_aggs(self, p: _Prepared, sp: _StreamPlan) -> None:
        """Every aggregation of one stream: windowed totals in one gather, the rest one by one."""
        lo, hi = self.snap.bounds(p, sp.spans)
        if sp.n_totals:
            prefix = np.empty((len(sp.prefix_keys), len(p.keys) + 1), dtype=np.int64)
            for row, key in enumerate(sp.prefix_keys):
                p.prefix_into(key, prefix[row])
            totals = self.values[sp.first : sp.first + sp.n_totals]
            totals[:] = prefix[sp.rows, hi[sp.cols]] - prefix[sp.rows, lo[sp.cols]]
            totals[sp.sums] /= SCALE
        for i in range(sp.n_totals, len(sp.aggs)):
            k = sp.span[i]
            self.values[sp.first + i] = self._agg(p, sp.aggs[i], lo[k], hi[k])

    def features(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Every feature, in the snapshots' original order (``order``: their sorted positions)."""
        plan, n = self.plan, len(order)
        numeric = [(name, row) for name, row in plan.outputs if isinstance(row, int)]
        rows = np.array([row for _, row in numeric], dtype=np.intp)
        combined = np.empty((len(rows), n))
        for start in range(0, n, _BLOCK):  # blocks bound the formulas' temporaries
            block = slice(start, start + _BLOCK)
            v = np.empty((plan.n_rows, min(_BLOCK, n - start)))
            v[: len(self.values)] = self.values[:, block]
            _run(plan.steps, v, self.snap.as_of[block] // DAY)
            combined[:, order[block]] = v[rows]
        out = {name: combined[k] for k, (name, _) in enumerate(numeric)}
        for name, source in plan.outputs:
            if isinstance(source, str):
                value = self._custom(source)
                out[name] = np.empty_like(value)
                out[name][order] = value
        return {name: out[name] for name, _ in plan.outputs}

    def _agg(self, p: _Prepared, a: Agg, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if a.how == "count":  # unfiltered: the run's length
            return (hi - lo).astype(np.float64)
        if a.how == "days_since_first":
            first = p.first_index(a.where)
            j = first[np.minimum(lo, len(first) - 1)] if len(first) else lo
            return self._days_since(p, j, (j >= lo) & (j < hi))
        last = p.last_index(a.where)
        j = last[np.maximum(hi - 1, 0)] if len(last) else hi - 1
        found = (hi > lo) & (j >= lo)
        if a.how == "days_since":
            return self._days_since(p, j, found)
        values = p.values_of(a.value or "")
        return np.where(found, values[np.where(found, j, 0)] if len(values) else 0.0, np.nan)

    def _days_since(self, p: _Prepared, j: np.ndarray, found: np.ndarray) -> np.ndarray:
        t = p.times[np.where(found, j, 0)] if len(p.times) else np.zeros(len(j), np.int64)
        return np.where(found, (self.snap.as_of - t) / DAY, np.nan)

    def _custom(self, name: str) -> np.ndarray:
        if name not in self._customs:
            self._customs.update(_CUSTOM_GROUPS[name](self))
        return self._customs[name]


# ---------------------------------------------------------------------------------------------
# Features that prefix sums cannot compute: the contracts in force, and client attributes


def _contract_state(e: _Engine) -> dict[str, np.ndarray]:
    """Per snapshot: days to the nearest fixed end, rolling contracts and service lines in force."""
    p = e.prepared("contract_start")
    lo, hi = (b[0] for b in e.snap.bounds(p, _ALL_HISTORY))  # contracts started before as_of
    lengths = hi - lo
    snap = np.repeat(np.arange(len(lo)), lengths)
    rows = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    as_of = e.snap.as_of[snap]
    ended = _ended_at(p.columns)[rows]
    in_force = (ended == NAT) | (ended >= as_of)
    end = p.columns("end_date")[rows]
    fixed = in_force & (end != NAT)
    n = len(lo)
    days_to_end = np.full(n, np.inf)
    np.minimum.at(days_to_end, snap[fixed], (end[fixed] - as_of[fixed]) / DAY)
    rolling = np.bincount(snap[in_force & (end == NAT)], minlength=n).astype(np.float64)
    lines = p.columns.codes("service_line")[rows][in_force].astype(np.int64) + 1  # 0 = empty
    width = int(lines.max(initial=0)) + 1
    held = np.bincount(snap[in_force] * width + lines, minlength=n * width).reshape(n, width)
    n_lines = (held > 0).sum(axis=1)
    return {
        "days_to_contract_end": np.where(np.isinf(days_to_end), np.nan, days_to_end),
        "rolling_contracts": rolling,
        "service_lines": n_lines.astype(np.float64),
    }


def _client_attributes(e: _Engine) -> dict[str, np.ndarray]:
    """Per snapshot: the client's own attributes, as known at as_of."""
    clients = e.data.table("clients")
    codes = e.snap.codes
    since = clients("client_since")[codes]
    known = (since != NAT) & (since < e.snap.as_of)
    out: dict[str, np.ndarray] = {
        "client_age_days": np.where(known, (e.snap.as_of - since) / DAY, np.nan),
        "has_account_manager": clients("has_account_manager")[codes],
    }
    for name in ("segment", "industry", "region"):
        labels = np.array([*clients.categories[name], None], dtype=object)
        out[name] = labels[clients.codes(name)[codes]]  # code -1 picks the trailing None
    return out


_KEPT = ("contract_start",)  # prepared streams the custom features read

_CUSTOM_GROUPS: dict[str, Callable[[_Engine], dict[str, np.ndarray]]] = {
    "days_to_contract_end": _contract_state,
    "rolling_contracts": _contract_state,
    "service_lines": _contract_state,
    "client_age_days": _client_attributes,
    "has_account_manager": _client_attributes,
    "segment": _client_attributes,
    "industry": _client_attributes,
    "region": _client_attributes,
}


# ---------------------------------------------------------------------------------------------
# Public entry points


def compute_features(
    data: CRMData, snapshots: pd.DataFrame, feature_set: FeatureSet | None = None
) -> pd.DataFrame:
    """Features for given (client_id, as_of) snapshots, in their order.

    Args:
        data: validated CRM tables; only rows timestamped strictly before each as_of are used.
        snapshots: columns client_id (ids present in data.clients) and as_of (UTC timestamps).
        feature_set: which features; default: the base catalogue plus data's event types.

    Returns:
        client_id, as_of, then one column per feature (float64; categorical attributes as
        pandas categoricals).
    """
    fs = feature_set or feature_set_for(data)
    codes = _client_codes(data, snapshots["client_id"])
    as_of = pd.to_datetime(snapshots["as_of"], utc=True).dt.as_unit("s")
    seconds = as_of.to_numpy(dtype="datetime64[s]").view(np.int64)
    columns = feature_columns(crm_arrays(data), codes, seconds, fs)
    out: dict[str, object] = {"client_id": snapshots["client_id"].array, "as_of": as_of.array}
    for f in fs.features:
        out[f.name] = pd.Categorical(columns[f.name]) if f.categorical else columns[f.name]
    return pd.DataFrame(out, copy=False)


def feature_columns(
    data: CRMArrays, codes: np.ndarray, as_of: np.ndarray, feature_set: FeatureSet
) -> dict[str, np.ndarray]:
    """The engine itself: one array per feature for snapshots (client codes, as_of seconds)."""
    codes, as_of = np.asarray(codes, np.int64), np.asarray(as_of, np.int64)
    # In (client, as_of) order every binary search below walks the events front to back.
    order = np.lexsort((as_of, codes)) if len(codes) > 1 else np.arange(len(codes))
    engine = _Engine(data, _Snapshots(codes[order], as_of[order]), _plan(feature_set))
    n_rows = sum(len(t.columns.get("client_code", ())) for t in data.tables.values())
    engine.precompute(workers=_workers(n_rows))
    return engine.features(order)


def _workers(n_rows: int) -> int:
    """Threads for the bulk path: numpy releases the GIL; one client is faster on one thread."""
    return min(2, os.cpu_count() or 1) if n_rows > 200_000 else 1


def _client_codes(data: CRMData, client_ids: pd.Series) -> np.ndarray:
    """Positions of the ids in data.clients; an unknown id is an error."""
    codes = pd.Index(data.clients["client_id"]).get_indexer(client_ids.astype("str"))
    if (codes < 0).any():
        missing = client_ids[codes < 0].astype("str").unique()[:5].tolist()
        raise KeyError(f"clients not in the clients table: {missing}")
    return codes.astype(np.int64)


def build_features(
    data: CRMData,
    as_of_dates: Iterable[pd.Timestamp] | pd.Timestamp,
    feature_set: FeatureSet | None = None,
) -> pd.DataFrame:
    """Features for every client active at each as_of date (one row per active client and date)."""

    dates = [as_of_dates] if isinstance(as_of_dates, pd.Timestamp) else list(as_of_dates)
    parts = [
        pd.DataFrame({"client_id": active_clients(data.contracts, d), "as_of": utc_second(d)})
        for d in dates
    ]
    snapshots = pd.concat(parts, ignore_index=True) if parts else _no_snapshots()
    return compute_features(data, snapshots, feature_set)


def _no_snapshots() -> pd.DataFrame:
    return pd.DataFrame(
        {"client_id": pd.Series(dtype="str"), "as_of": pd.Series(dtype="datetime64[s, UTC]")}
    )


def describe(feature_set: FeatureSet | None = None) -> pd.DataFrame:
    """The feature registry as a table: name, description, reason template."""
    fs = feature_set or FeatureSet()
    return pd.DataFrame(
        [(f.name, f.description, f.reason) for f in fs.features],
        columns=["feature", "description", "reason"],
    )


__all__: Sequence[str] = (
    "BASE_FEATURES",
    "STREAMS",
    "Feature",
    "FeatureSet",
    "build_features",
    "compute_features",
    "describe",
    "event_features",
    "feature_set_for",
)
