"""Logged actions: what account managers did about their clients."""

from __future__ import annotations

from datetime import date

import pytest

from churnguard.store.actions import action_date_problem
from churnguard.store.scores import ScoreStore


def test_actions_are_logged_and_listed_newest_first(store: ScoreStore) -> None:
    first = store.log_action("C1", "call", "Talked about renewal", date(2025, 1, 5), "Ana")
    store.log_action("C1", "meeting", "Quarterly review", date(2025, 2, 1), "Ana")
    store.log_action("C2", "email", "Sent the invoice copy", date(2025, 1, 9), "Ben")
    listed = store.list_actions("C1")
    assert [(a.action_type, a.happened_on) for a in listed] == [
        ("meeting", date(2025, 2, 1)),
        ("call", date(2025, 1, 5)),
    ]
    assert listed[1] == first
    assert (first.note, first.logged_by, first.client_id) == ("Talked about renewal", "Ana", "C1")
    assert first.id > 0 and first.created_at.tzinfo is not None
    assert store.list_actions("C3") == []


def test_an_action_needs_a_type_and_an_author(store: ScoreStore) -> None:
    with pytest.raises(ValueError, match="action_type"):
        store.log_action("C1", " ", "", date(2025, 1, 5), "Ana")
    with pytest.raises(ValueError, match="logged_by"):
        store.log_action("C1", "call", "", date(2025, 1, 5), "")


def test_an_action_happened_by_today_and_not_before_2000() -> None:
    today = date(2025, 6, 2)
    assert action_date_problem(today, today) is None
    assert action_date_problem(date(2000, 1, 1), today) is None
    assert action_date_problem(date(2025, 6, 3), today) == "The date cannot be in the future."
    assert action_date_problem(date(9999, 12, 31), today) == "The date cannot be in the future."
    assert action_date_problem(date(1999, 12, 31), today) == "The date is too far in the past."
    assert action_date_problem(date(9999, 12, 31)) is not None  # today in UTC by default
