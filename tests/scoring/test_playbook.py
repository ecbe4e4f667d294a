"""Tests for churnguard.scoring.playbook: the default rules, user playbooks, their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from churnguard.features.catalog import BASE_FEATURES, FeatureSet
from churnguard.scoring.explain import Driver
from churnguard.scoring.playbook import PlaybookError, load_playbook

FS = FeatureSet(("billable_hours",))

HEALTHY: dict[str, float | str | None] = {
    **{f.name: 0.0 for f in BASE_FEATURES if not f.categorical},
    "days_since_contact": 12.0,
    "nps_last": 9.0,
    "csat_last": 5.0,
    "mean_days_overdue": None,
    "tickets_90d": 2.0,
    "days_to_contract_end": 240.0,
    "value_change_90d": 0.0,
    "has_account_manager": 1.0,
    "segment": "mid",
}

# hand-built clients that should trigger each default action (one per alternative)
TRIGGERS: dict[str, list[dict[str, float | None]]] = {
    "Schedule a check-in call": [{"days_since_contact": 74.0}, {"days_since_contact": None}],
    "Call about the recent feedback": [
        {"nps_last": 5.0},
        {"detractor_responses_365d": 1.0},
        {"csat_last": 2.0},
    ],
    "Resolve the disputed invoice with finance": [{"open_disputes": 1.0}],
    "Follow up on overdue invoices with finance": [
        {"overdue_invoices": 3.0, "mean_days_overdue": 20.0},
        {"overdue_invoices": 1.0, "mean_days_overdue": 45.0},
    ],
    "Escalate open tickets to the service lead": [
        {"open_high_priority_tickets": 1.0},
        {"tickets_90d": 12.0},
    ],
    "Start the renewal conversation and book an account review": [{"days_to_contract_end": 30.0}],
    "Review the account's value and scope": [{"value_change_90d": -800.0}],
    "Assign an account manager": [{"has_account_manager": 0.0}],
}


def test_default_playbook_loads_and_validates() -> None:
    playbook = load_playbook(feature_set=FS)
    assert {r.action for r in playbook.rules} == set(TRIGGERS)
    assert load_playbook() == load_playbook(feature_set=FeatureSet())


def test_default_rules_fire_on_clients_that_need_them_and_not_on_a_healthy_one() -> None:
    playbook = load_playbook(feature_set=FS)
    assert playbook.actions(HEALTHY, [], limit=10) == []
    for action, clients in TRIGGERS.items():
        for change in clients:
            got = playbook.actions({**HEALTHY, **change}, [], limit=10)
            assert [a.action for a in got] == [action], change
            assert got[0].why and "nan" not in got[0].why.lower()


def test_actions_prefer_the_top_drivers_rules_and_respect_the_limit() -> None:
    playbook = load_playbook(feature_set=FS)
    client = {
        **HEALTHY,
        "days_since_contact": 74.0,
        "value_change_90d": -800.0,
        "open_disputes": 2.0,
        "days_to_contract_end": 30.0,
        "has_account_manager": 0.0,
    }
    drivers = [
        Driver(
            "value_change_90d", -800.0, 0.9, "Monthly contract value changed by -800 in 90 days"
        ),
        Driver("days_since_contact", 74.0, 0.4, "No contact for 74 days"),
    ]
    got = playbook.actions(client, drivers, limit=10)
    assert [(a.action, a.why, a.priority) for a in got] == [
        ("Review the account's value and scope", drivers[0].reason, 3),  # top driver first
        ("Schedule a check-in call", drivers[1].reason, 2),
        (
            "Start the renewal conversation and book an account review",
            "Contract ends in 30 days",
            1,
        ),
        ("Resolve the disputed invoice with finance", "2 disputed invoices open", 1),
        ("Assign an account manager", "No account manager assigned", 3),
    ]
    assert playbook.actions(client, drivers) == got[:3]
    assert playbook.actions(client, drivers, limit=1) == got[:1]
    assert playbook.actions(client, [], limit=2)[0].priority == 1  # no drivers: by priority


def _write(tmp_path: Path, text: str, name: str = "playbook.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_playbook_overrides_the_default(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
rules:
  - action: Offer a free quarterly review
    priority: 1
    when: {segment: {eq: mid}, any: [{days_since_meeting: {gt: 90}}, {meetings_90d: {eq: 0}}]}
  - action: Offer a free quarterly review
    priority: 2
    when: {event_billable_hours_90d: {lt: 10}}
""",
    )
    playbook = load_playbook(path, feature_set=FS)
    client = {**HEALTHY, "days_since_contact": 74.0, "event_billable_hours_90d": 5.0}
    got = playbook.actions(client, [])
    assert [a.action for a in got] == ["Offer a free quarterly review"]  # no default rules
    assert got[0].why == "Segment mid; 0 meetings in the last 90 days"  # what fired the rule
    assert (
        playbook.actions({**client, "segment": "smb", "event_billable_hours_90d": 50.0}, []) == []
    )


def test_comparisons_never_hold_on_missing_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
rules:
  - {action: Ask for feedback, priority: 1, when: {nps_last: {missing: true}}}
  - {action: Call about the score, priority: 1, when: {nps_last: {missing: false, lte: 6}}}
  - {action: Not a promoter, priority: 1, when: {nps_last: {ne: 10}}}
""",
    )
    playbook = load_playbook(path)

    def fired(client: dict[str, object]) -> list[str]:
        return [a.action for a in playbook.actions(client, [], limit=5)]

    assert fired({"nps_last": None}) == fired({"nps_last": np.nan}) == ["Ask for feedback"]
    assert fired({"nps_last": 4.0}) == ["Call about the score", "Not a promoter"]
    assert fired({"nps_last": 10.0}) == []
    assert fired({}) == []  # a feature the client's record lacks fires nothing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", r"not valid YAML"),
        ("rules: {action: x}", r"'rules:' as a list, got dict"),
        ("- action: x", r"'rules:' as a list, got list"),
        (
            "rules:\n  - {action: Call, priority: 1, when: {days_since_contact: {gte: 30}}}\n"
            "  - {action: Call them, priority: 1, when: {days_since_contcat: {gte: 30}}}",
            r"rules\[1\] \('Call them'\): unknown feature 'days_since_contcat'; "
            r"did you mean 'days_since_contact'\?",
        ),
        (
            "rules:\n  - {action: Call, priority: 1, when: {days_since_contact: {ge: 30}}}",
            r"rules\[0\] \('Call'\): days_since_contact: unknown operator 'ge'",
        ),
        (
            "rules:\n  - {action: Call, priority: 1, when: {days_since_contact: {gte: soon}}}",
            r"rules\[0\] \('Call'\): days_since_contact: gte takes a number",
        ),
        (
            "rules:\n  - {action: Call, priority: 1, when: {days_since_contact: 30}}",
            r"rules\[0\] \('Call'\): days_since_contact: expected \{operator: value\}",
        ),
        ("rules:\n  - {action: Call, when: {open_disputes: {gt: 0}}}", r"'priority' must be"),
        ("rules:\n  - {action: Call, priority: 1}", r"rules\[0\] \('Call'\): conditions must"),
        ("rules:\n  - {action: Call, priority: 1, when: {any: []}}", r"'any' must be a non-empty"),
        (
            "rules:\n  - {action: Call, priority: 1, when: {x: 1}, prio: 2}",
            r"unknown keys \['prio'",
        ),
        ("rules:\n  - Call them", r"rules\[0\]: a rule must be a mapping"),
    ],
)
def test_bad_playbooks_name_the_file_the_rule_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text, "my-playbook.yaml")
    with pytest.raises(PlaybookError, match=message) as error:
        load_playbook(path)
    assert str(error.value).startswith(f"{path}:")


def test_feature_names_are_checked_against_the_given_feature_set(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rules:\n  - {action: Bill, priority: 1, when: {event_billable_hours_90d: {lt: 5}}}",
    )
    assert len(load_playbook(path, feature_set=FS).rules) == 1
    with pytest.raises(PlaybookError, match=r"unknown feature 'event_billable_hours_90d'$"):
        load_playbook(path, feature_set=FeatureSet(("portal login",)))
    with pytest.raises(PlaybookError, match="event-type features need the model's feature set"):
        load_playbook(path)  # without a feature set: the base catalogue only
