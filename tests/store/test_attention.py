"""Tests for store/attention.py: which clients need attention, the last actions, score age."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from churnguard.store.attention import (
    ATTENTION,
    attention_conditions,
    last_actions,
    newest_score_date,
)
from churnguard.store.scores import ScoreStore, describe_change
from tests.factories import BACKENDS, open_store, score_record

BEFORE = datetime(2025, 5, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 1, tzinfo=UTC)
TODAY = date(2025, 6, 10)


record = score_record


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreStore]:
    """Two scorings a month apart: (before, now) probabilities per client."""
    with open_store(request.param, tmp_path) as store:
        yield _scored(store)


def _scored(store: ScoreStore) -> ScoreStore:
    history = {
        "newly-high": (0.2, 0.45, "Ana"),
        "still-high": (0.5, 0.52, "Ana"),
        "rising-medium": (0.05, 0.2, "Ana"),
        "rising-low": (0.01, 0.07, "Ana"),
        "falling": (0.6, 0.2, "Ana"),
        "nobodys": (0.12, 0.25, None),
        "nobodys-low": (0.02, 0.02, None),
    }
    for step, when in enumerate((BEFORE, NOW)):
        previous = store.previous_scores(when)
        store.save_scores(
            dataclasses.replace(
                record(c, when, ps[step], m), change=describe_change(previous.get(c), ps[step])
            )
            for c, (*ps, m) in history.items()
        )
    store.save_scores([record("first-high", NOW, 0.8)])  # no earlier score
    return store


def listed(store: ScoreStore, kind: str, manager: str | None = None) -> set[str]:
    scores, _ = store.latest_scores(manager=manager, where=attention_conditions(kind, TODAY))
    return {s.client_id for s in scores}


def test_each_kind_of_attention_picks_its_clients(store: ScoreStore) -> None:
    assert listed(store, "new-high") == {"newly-high"}  # a first score is not "newly" high
    assert listed(store, "rising") == {"newly-high", "rising-medium", "nobodys"}
    assert listed(store, "no-action") == {"newly-high", "still-high", "first-high"}
    assert listed(store, "unassigned") == {"nobodys"}
    every = set().union(*(listed(store, k) for k in ATTENTION))
    assert listed(store, "all") == every
    assert "falling" not in every and "rising-low" not in every


def test_a_recent_action_takes_a_high_risk_client_off_the_no_action_list(
    store: ScoreStore,
) -> None:
    store.log_action("still-high", "Call", "", TODAY - timedelta(days=3), "Ana")
    store.log_action("first-high", "Call", "", TODAY - timedelta(days=45), "Ana")  # too old
    assert listed(store, "no-action") == {"newly-high", "first-high"}
    assert listed(store, "no-action", manager="Ben") == set()
    with pytest.raises(ValueError, match="kind"):
        attention_conditions("everything", TODAY)


@pytest.mark.parametrize("manager", [None, "Ana", "Ben", ""])
def test_counts_in_one_pass_are_each_kinds_list_length(
    store: ScoreStore, manager: str | None
) -> None:
    store.log_action("still-high", "Call", "", TODAY - timedelta(days=3), "Ana")
    kinds = ["all", *ATTENTION]
    counts = store.latest_counts(
        {k: attention_conditions(k, TODAY) for k in kinds}, manager=manager
    )
    assert counts == {k: len(listed(store, k, manager)) for k in kinds}
    assert manager != "Ana" or counts["all"] == 3  # newly-high, rising-medium, first-high
    assert store.latest_counts({}) == {}


def test_last_actions_and_the_newest_score(store: ScoreStore) -> None:
    store.log_action("falling", "Email", "", date(2025, 6, 2), "Ana")
    store.log_action("falling", "Meeting", "", date(2025, 6, 5), "Ana")
    store.log_action("falling", "Call", "", date(2025, 6, 5), "Ana")  # same day, logged later
    assert last_actions(store, ["falling", "still-high"]) == {"falling": ("Call", date(2025, 6, 5))}
    assert newest_score_date(store) == NOW
    assert newest_score_date(ScoreStore("sqlite://").create()) is None
