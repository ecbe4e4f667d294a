"""Request and response bodies of the API, named by role (``ScoreRequest``, ``ScorePublic``).

A client's records (``ClientRecords``) are generated from the data contract by ``records.py``;
this module adds the envelopes around them and the shapes of what the API returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from churnguard.features.records import (
    ISO_TIME,
    STORABLE,
    IsoDatetime,
    read_columns,
    records_model,
)
from churnguard.scoring.horizons import curve_of
from churnguard.store.actions import LoggedAction, action_date_problem
from churnguard.store.schema import TEXT_LIMITS
from churnguard.store.scores import ORDERS, Score, ScoreRecord

MAX_ROWS_PER_TABLE = 10_000  # per client and table; the body size limit usually binds first
Band = Literal["low", "medium", "high"]
Order = Literal["revenue_at_risk", "probability", "monthly_value", "client_id"]
assert set(ORDERS) == set(Order.__args__)  # type: ignore[attr-defined]

ClientRecords: Any = records_model(MAX_ROWS_PER_TABLE)
ClientRows: Any = records_model(MAX_ROWS_PER_TABLE, raw_rows=True)

SCORE_REQUEST_EXAMPLE: dict[str, Any] = {
    "as_of": "2025-06-02T00:00:00Z",
    "clients": [
        {
            "client_id": "C-1042",
            "client": {
                "name": "Harbour & Finch Architects",
                "account_manager": "Dana Whitfield",
                "segment": "mid-market",
                "industry": "construction",
                "region": "northeast",
                "client_since": "2021-03-15",
            },
            "contracts": [
                {
                    "contract_id": "K-2207",
                    "service_line": "managed it",
                    "start_date": "2023-07-01",
                    "end_date": "2025-06-30",
                    "monthly_value": 4200.0,
                    "auto_renew": False,
                }
            ],
            "interactions": [
                {
                    "occurred_at": "2025-02-11T15:30:00Z",
                    "channel": "meeting",
                    "direction": "outbound",
                },
                {"occurred_at": "2025-03-20T09:12:00Z", "channel": "email", "direction": "inbound"},
            ],
            "feedback": [
                {
                    "submitted_at": "2025-03-02T10:00:00Z",
                    "survey": "nps",
                    "score": 5,
                    "comment": "Response times have slipped this quarter.",
                }
            ],
            "invoices": [
                {
                    "invoice_id": "INV-88121",
                    "issued_at": "2025-04-01",
                    "due_at": "2025-05-01",
                    "amount": 4200.0,
                    "disputed_at": "2025-04-18",
                    "dispute_reason": "Hours billed twice",
                },
                {
                    "invoice_id": "INV-88307",
                    "issued_at": "2025-05-01",
                    "due_at": "2025-05-31",
                    "amount": 4200.0,
                    "paid_at": "2025-05-29",
                },
            ],
            "tickets": [
                {
                    "ticket_id": "T-5531",
                    "opened_at": "2025-05-12T08:03:00Z",
                    "priority": "high",
                    "category": "incident",
                }
            ],
            "events": [
                {"occurred_at": "2025-05-30", "event_type": "billable_hours", "value": 31.5},
                {"occurred_at": "2025-05-28T14:02:00Z", "event_type": "portal_login"},
            ],
        }
    ],
}


class ScoreRequest(BaseModel):
    """Clients to score: each with its own CRM records, as the data contract defines them."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [SCORE_REQUEST_EXAMPLE]}
    )

    clients: list[ClientRecords] = Field(
        min_length=1,
        description="One entry per client (at most max_clients_per_request, 100 by default).",
    )
    as_of: IsoDatetime | None = Field(
        default=None,
        description="Score as of this time (UTC if no zone): only records before it count. "
        "A client's own as_of wins; default: the time of the request.",
    )


class ScoreRows(BaseModel):
    """A ``ScoreRequest`` as the fast path reads it: the bulk tables' rows kept as sent, for
    ``read_columns`` to check a column at a time instead of a row model per row."""

    model_config = ConfigDict(extra="forbid")

    clients: list[ClientRows] = Field(min_length=1)
    as_of: IsoDatetime | None = None

    def request(self) -> ScoreRequest | None:
        """The same body as a ``ScoreRequest`` (its clients read as columns), or None when a
        row is not one the row models would take as it is: they must say."""
        clients = [read_columns(c) for c in self.clients]
        if any(c is None for c in clients):
            return None
        return ScoreRequest.model_construct(clients=clients, as_of=self.as_of)


class DriverPublic(BaseModel):
    """A feature that raises the client's risk in its declared direction (a higher value means
    more risk, or less), with its value and the reason in words; context features (segment,
    region, monthly value) and renewal timing are never drivers."""

    feature: str
    value: float | str | None
    contribution: float = Field(description="In log-odds; positive: raises the risk.")
    reason: str = Field(examples=["No contact for 74 days"])


class ActionPublic(BaseModel):
    """A recommended action from the playbook and why it is recommended."""

    action: str = Field(examples=["Resolve the disputed invoice with finance"])
    why: str = Field(examples=["1 invoice in dispute"])


class ScoreChange(BaseModel):
    """What changed since the client's previous stored score."""

    direction: Literal["new", "rising", "falling", "steady"]
    delta: float | None = Field(default=None, description="Probability now minus before.")
    previous_probability: float | None = None
    previous_band: str | None = None
    previous_as_of: datetime | None = None


class HorizonPublic(BaseModel):
    """The chance of churning within a number of days of as_of."""

    days: int = Field(examples=[180])
    probability: float = Field(ge=0, le=1, description="Calibrated P(churn within days).")


class RenewalPublic(BaseModel):
    """The next fixed-term contract end within the longest horizon, and the risk up to it."""

    date: dt.date
    probability: float = Field(
        ge=0,
        le=1,
        description="Chance the client has churned by this date: does not renew this contract "
        "(or leaves before it ends).",
    )


class ScorePublic(BaseModel):
    """A client's churn risk within the model's horizon, why, and what to do about it."""

    client_id: str
    as_of: datetime
    probability: float = Field(
        ge=0,
        le=1,
        description="Calibrated chance the client churns within the model's horizon "
        "(horizon_days of GET /api/v1/model; 90 days by default).",
    )
    band: str = Field(examples=["high"])
    revenue_at_risk: float = Field(description="probability x monthly value x 12")
    monthly_value: float
    drivers: list[DriverPublic]
    actions: list[ActionPublic]
    model_version: str
    change: ScoreChange
    account_manager: str | None = None
    client_name: str | None = None
    segment: str | None = None
    horizons: list[HorizonPublic] = Field(
        default_factory=list,
        description="P(churn within 30, 90, 180 days): non-decreasing. Empty for a model "
        "trained without them (and for scores stored before them).",
    )
    renewal: RenewalPublic | None = Field(
        default=None,
        description="The next contract end when it falls within the longest horizon.",
    )

    @classmethod
    def of(cls, score: Score | ScoreRecord) -> ScorePublic:
        """A stored score, or one about to be stored, as the API shows it."""
        curve = curve_of(score.curve)
        renewal = curve.renewal
        return cls(
            horizons=[HorizonPublic(days=d, probability=p) for d, p in curve.horizons],
            renewal=None if renewal is None else RenewalPublic(**asdict(renewal)),
            client_id=score.client_id,
            as_of=score.as_of,
            probability=score.probability,
            band=score.band,
            revenue_at_risk=score.revenue_at_risk,
            monthly_value=score.monthly_value,
            drivers=[DriverPublic.model_validate(d) for d in score.drivers],
            actions=[_action(a) for a in score.actions],
            model_version=score.model_version,
            change=ScoreChange.model_validate(score.change),
            account_manager=score.account_manager,
            client_name=score.client_name,
            segment=score.segment,
        )


def _action(stored: dict[str, Any]) -> ActionPublic:
    """A stored action ({action, why} or {action, reason, ...}) as the API shows it."""
    return ActionPublic(action=stored["action"], why=stored.get("why") or stored.get("reason", ""))


class ScoresPublic(BaseModel):
    """The scores of a request, in the order the clients were sent."""

    model_version: str
    scores: list[ScorePublic]


class ClientsPublic(BaseModel):
    """One page of the clients' latest scores."""

    total: int = Field(description="Clients matching the filters, on all pages.")
    limit: int
    offset: int
    items: list[ScorePublic]


class ScoreHistoryItem(BaseModel):
    """One past score of a client."""

    model_config = ConfigDict(from_attributes=True)

    as_of: datetime
    probability: float
    band: str
    revenue_at_risk: float
    model_version: str
    source: Literal["batch", "api"] = Field(
        description='"batch": scored from the CRM data (the current score comes from these); '
        '"api": an answer to a score request.'
    )


class ActionCreate(BaseModel):
    """Something an account manager did about a client."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: Annotated[str, STORABLE] = Field(
        min_length=1, max_length=TEXT_LIMITS["action_type"], examples=["check-in call"]
    )
    note: Annotated[str, STORABLE] = Field(
        default="", max_length=5000, examples=["Agreed a service review in July"]
    )
    date: Annotated[dt.date, ISO_TIME] | None = Field(
        default=None,
        description="When it happened; default today (UTC). Not in the future, not before 2000.",
    )

    @field_validator("date")
    @classmethod
    def _could_have_happened(cls, value: dt.date | None) -> dt.date | None:
        problem = None if value is None else action_date_problem(value)
        if problem is not None:
            raise PydanticCustomError("date_out_of_range", problem)
        return value


class LoggedActionPublic(BaseModel):
    """A logged action."""

    id: int
    client_id: str
    type: str
    note: str
    date: dt.date
    logged_by: str
    created_at: datetime

    @classmethod
    def of(cls, action: LoggedAction) -> LoggedActionPublic:
        return cls(
            id=action.id,
            client_id=action.client_id,
            type=action.action_type,
            note=action.note,
            date=action.happened_on,
            logged_by=action.logged_by,
            created_at=action.created_at,
        )


class ClientDetail(BaseModel):
    """A client's latest score with its drivers and actions, its history and logged actions."""

    client_id: str
    latest: ScorePublic
    history: list[ScoreHistoryItem] = Field(description="Every stored score, oldest first.")
    logged_actions: list[LoggedActionPublic] = Field(description="Most recent first.")


class ModelPublic(BaseModel):
    """The model being served."""

    version: str
    kind: str
    horizon_days: int
    metrics: dict[str, float]
    trained_at: str | None
    source: str = Field(description="registry (the champion alias) or local (last-known-good)")


class ReloadPublic(BaseModel):
    """The outcome of loading the current champion."""

    previous_version: str | None
    version: str
    changed: bool


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadyPublic(BaseModel):
    status: Literal["ready"]
    model_version: str


class ErrorPublic(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class FieldError(BaseModel):
    """One invalid field: where it is (``loc``), what is wrong, and the error type."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorPublic(BaseModel):
    """A request that does not validate: one entry per invalid field."""

    detail: list[FieldError]
