"""Tests for store/followups.py: a client's last action and the next step planned with it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from churnguard.store.followups import (
    FollowUp,
    current_follow_ups,
    plan_follow_up,
)
from churnguard.store.scores import ScoreStore
from tests.factories import BACKENDS, open_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreStore]:
    with open_store(request.param, tmp_path) as store:
        store.create()  # open_store made the schema, follow_ups included; again: nothing happens
        yield store


def test_the_last_actions_next_step_is_the_follow_up(store: ScoreStore) -> None:
    call = store.log_action("A", "Call", "", date(2025, 6, 2), "Ana")
    plan_follow_up(store, call.id, "A", " Send the proposal ", date(2025, 6, 9))
    store.log_action("B", "Email", "", date(2025, 6, 1), "Ben")
    found = current_follow_ups(store, ["A", "B", "C"])
    assert found["A"] == FollowUp(
        "A", "Call", date(2025, 6, 2), "Ana", "Send the proposal", date(2025, 6, 9)
    )
    assert found["B"].next_step is None and "C" not in found
    store.log_action(
        "A", "Meeting", "", date(2025, 6, 4), "Ana"
    )  # a newer action replaces the plan
    assert current_follow_ups(store, ["A"])["A"].next_step is None
    with pytest.raises(ValueError, match="next step"):
        plan_follow_up(store, call.id, "A", "  ", date(2025, 6, 9))


def test_a_follow_up_is_planned_due_or_overdue() -> None:
    f = FollowUp("A", "Call", date(2025, 6, 2), "Ana", "Send", date(2025, 6, 9))
    assert [f.state(date(2025, 6, d)) for d in (8, 9, 10)] == ["planned", "due", "overdue"]
    assert FollowUp("A", "Call", date(2025, 6, 2), "Ana").state(date(2025, 6, 9)) == ""
