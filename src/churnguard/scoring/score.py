"""What a score carries (ARCHITECTURE.md): ``ClientScore``, and its form in the score store.

A ``ClientScore`` is complete when the scorer returns it: probability, band, revenue at risk,
drivers, actions, model version and what changed since the client's previous stored score.
``to_record`` converts it at the store's boundary; the API converts the store's record in turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnguard.domain.timeaxis import utc_datetime
from churnguard.scoring.explain import Driver
from churnguard.scoring.horizons import NO_CURVE, RiskCurve, curve_json
from churnguard.scoring.playbook import Action
from churnguard.store.scores import ScoreRecord, feature_digest

if TYPE_CHECKING:
    from pydantic import BaseModel

    from churnguard.domain.contract import CRMData

FeatureValue = float | str | None


@dataclass(frozen=True, slots=True)
class ClientScore:
    """One client's score, "what changed" included.

    ``features`` are the model's inputs by name (missing = None), kept for the audit digest;
    ``change`` is ``store.describe_change`` of the client's previous stored score; ``curve`` the
    risk over several horizons and at the renewal (``scoring.horizons``).
    """

    client_id: str
    as_of: datetime
    probability: float
    band: str
    revenue_at_risk: float
    monthly_value: float
    drivers: list[Driver]
    actions: list[Action]
    model_version: str
    account_manager: str | None
    segment: str | None
    client_name: str | None
    features: dict[str, FeatureValue]
    change: dict[str, Any]
    curve: RiskCurve = NO_CURVE

    def to_record(self) -> ScoreRecord:
        """The score as the store keeps it."""
        return ScoreRecord(
            client_id=self.client_id,
            as_of=self.as_of,
            model_version=self.model_version,
            probability=self.probability,
            band=self.band,
            revenue_at_risk=self.revenue_at_risk,
            monthly_value=self.monthly_value,
            feature_digest=feature_digest(self.features),
            change=self.change,
            account_manager=self.account_manager,
            segment=self.segment,
            client_name=self.client_name,
            drivers=drivers_json(self.drivers),
            actions=actions_json(self.actions, self.drivers),
            curve=curve_json(self.curve),
        )


def score_as_of(as_of: datetime) -> datetime:
    """The as_of a score carries: in UTC (naive = UTC), to the second."""
    if isinstance(as_of, pd.Timestamp):
        as_of = as_of.to_pydatetime()
    return utc_datetime(as_of).replace(microsecond=0)


def drivers_json(drivers: Sequence[Driver]) -> list[dict[str, Any]]:
    """Drivers as the store keeps them."""
    return [
        {"feature": d.feature, "value": d.value, "contribution": d.contribution, "reason": d.reason}
        for d in drivers
    ]


def actions_json(actions: Sequence[Action], drivers: Sequence[Driver]) -> list[dict[str, Any]]:
    """Actions as the store keeps them, each with the driver it answers (the playbook words its
    why as that driver's reason)."""
    feature_of: dict[str, str] = {}
    for d in drivers:
        feature_of.setdefault(d.reason, d.feature)  # the first driver with that reason
    return [
        {
            "action": a.action,
            "reason": a.why,
            "priority": a.priority,
            "feature": feature_of.get(a.why),
        }
        for a in actions
    ]


__all__: Sequence[str] = (
    "ClientScore",
    "FeatureValue",
    "actions_json",
    "drivers_json",
    "score_as_of",
)


def _text(value: object) -> str | None:
    """A client attribute: text, or None when empty or missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def client_info(client: BaseModel | None) -> tuple[str | None, str | None, str | None]:
    """(account manager, segment, name) of a client record."""
    if client is None:
        return None, None, None
    manager, segment, name = (
        _text(getattr(client, k, None)) for k in ("account_manager", "segment", "name")
    )
    return manager, segment, name


def clients_info(data: CRMData, ids: pd.Series) -> list[tuple[str | None, str | None, str | None]]:
    """(account manager, segment, name) of each client id, from the clients table."""
    clients = data.clients.set_index("client_id")
    rows = clients.reindex(pd.Index(ids.astype(str)))
    columns = [
        rows[k].astype(object).tolist() if k in rows else [None] * len(rows)
        for k in ("account_manager", "segment", "name")
    ]
    return [(_text(m), _text(s), _text(n)) for m, s, n in zip(*columns, strict=True)]
