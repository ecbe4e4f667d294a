"""Tests for store/alerts.py: alerts recorded once per channel, and what was sent when."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from churnguard.store.alerts import (
    SentAlert,
    already_sent,
    create_alerts_table,
    last_alerted,
    record_sent,
)
from churnguard.store.database import Database

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


def test_an_alert_is_recorded_once_per_channel(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    create_alerts_table(db)
    create_alerts_table(db)  # again: nothing happens
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
