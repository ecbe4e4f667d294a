"""Tests for scoring.score: the as_of a score carries, and a score as the store keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd

from churnguard.scoring.explain import Driver
from churnguard.scoring.playbook import Action
from churnguard.scoring.score import ClientScore, _text, clients_info, score_as_of
from churnguard.store.scores import feature_digest


def test_a_score_is_as_of_a_utc_second() -> None:
    second = datetime(2025, 6, 1, 12, 30, 15, tzinfo=UTC)
    assert score_as_of(datetime(2025, 6, 1, 12, 30, 15, 999_999)) == second  # naive: UTC
    paris = timezone(timedelta(hours=2))
    assert score_as_of(datetime(2025, 6, 1, 14, 30, 15, 500, tzinfo=paris)) == second
    from_pandas = score_as_of(pd.Timestamp("2025-06-01T14:30:15.25+02:00"))
    assert from_pandas == second and type(from_pandas) is datetime
    assert score_as_of(second).tzinfo is not None


def test_the_stored_record_carries_the_whole_score() -> None:
    drivers = [
        Driver("open_disputes", 2.0, 0.8, "2 disputed invoices open"),
        Driver("days_since_contact", None, 0.3, "No contact on record"),
    ]
    actions = [
        Action("Resolve the disputed invoice with finance", "2 disputed invoices open", 1),
        Action("Assign an account manager", "No account manager assigned", 3),
    ]
    change = {"direction": "rising", "delta": 0.2}
    features = {"open_disputes": 2.0, "days_since_contact": None, "segment": "smb"}
    score = ClientScore(
        client_id="C1",
        as_of=datetime(2025, 6, 1, tzinfo=UTC),
        probability=0.4,
        band="high",
        revenue_at_risk=4_800.0,
        monthly_value=1_000.0,
        drivers=drivers,
        actions=actions,
        model_version="3",
        account_manager="Dana",
        segment="smb",
        client_name="Harbour",
        features=features,
        change=change,
    )
    record = score.to_record()
    assert (record.client_id, record.as_of, record.model_version) == ("C1", score.as_of, "3")
    assert (record.probability, record.band, record.revenue_at_risk, record.monthly_value) == (
        0.4,
        "high",
        4_800.0,
        1_000.0,
    )
    assert (record.account_manager, record.segment, record.client_name) == (
        "Dana",
        "smb",
        "Harbour",
    )
    assert record.change == change and record.feature_digest == feature_digest(features)
    assert record.drivers[1] == {
        "feature": "days_since_contact",
        "value": None,
        "contribution": 0.3,
        "reason": "No contact on record",
    }
    assert [(a["action"], a["reason"], a["priority"], a["feature"]) for a in record.actions] == [
        (
            "Resolve the disputed invoice with finance",
            "2 disputed invoices open",
            1,
            "open_disputes",
        ),
        ("Assign an account manager", "No account manager assigned", 3, None),  # no driver
    ]


def test_clients_info_reads_each_attribute_as_one_client_at_a_time_would() -> None:
    import dataclasses

    import numpy as np

    from tests.factories import random_crm

    data = random_crm(12)
    odd: list[object] = [None, np.nan, pd.NA, "", "  ", " Ann ", 3, 3.5, True, "b\u00e9a"]
    n = min(len(odd), len(data.clients))
    clients = data.clients.head(n).astype({"account_manager": object, "name": object})
    clients["account_manager"] = odd[:n]
    clients["name"] = odd[::-1][:n]
    data = dataclasses.replace(data, clients=clients.drop(columns=["segment"], errors="ignore"))
    ids = pd.Series([*clients["client_id"], "nobody"])
    got = clients_info(data, ids)
    want = [(_text(m), None, _text(c)) for m, c in zip(odd[:n], odd[::-1][:n], strict=True)]
    assert got == [*want, (None, None, None)]
    assert got[5][0] == "Ann" and got[6][0] == "3" and got[7][0] == "3.5"
