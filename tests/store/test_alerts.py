"""Tests for store/alerts.py: alerts recorded once per channel, and what was sent when."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from churnguard.store.alerts import (
    SentAlert,
    already_sent,
    last_alerted,
    record_sent,
)
from churnguard.store.database import Database
from tests.factories import BACKENDS, open_store

T1, T2 = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)


def sent(key: str, channel: str, as_of: datetime, kind: str = "high") -> SentAlert:
    return SentAlert(
        dedupe_key=key,
        channel=channel,
        kind=kind,
        client_id=key.split(":")[1],
        account_manager="Ana",
        recipient="ana@example.com",
        as_of=as_of,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_alert_is_recorded_once_per_channel(backend: str, tmp_path: Path) -> None:
    with open_store(backend, tmp_path) as db:
        _record_twice(db)


def _record_twice(db: Database) -> None:
    db.create()  # open_store made the schema, alerts_sent included; again: nothing happens
    assert record_sent(db, [sent("high:A:1", "email", T1), sent("high:A:1", "webhook", T1)]) == 2
    assert record_sent(db, [sent("high:A:1", "email", T1), sent("high:A:2", "email", T2)]) == 1
    assert already_sent(db, ["high:A:1", "high:A:2", "high:B:1"], "email") == {
        "high:A:1",
        "high:A:2",
    }
    assert already_sent(db, ["high:A:2"], "webhook") == set()
    assert record_sent(db, []) == 0
    record_sent(db, [sent("rising:B:1", "email", T2, kind="rising")])
    assert last_alerted(db, ["A", "B", "C"], "high") == {"A": T2}
