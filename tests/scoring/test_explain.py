"""Tests for churnguard.scoring.explain: reasons, drivers, the playbook, bands, revenue at risk."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.features.engine import BASE_FEATURES, Feature, FeatureSet
from churnguard.scoring import explain
from churnguard.scoring.explain import (
    Driver,
    PlaybookError,
    load_playbook,
    reason,
    revenue_at_risk,
    risk_band,
    top_drivers,
    top_drivers_batch,
)

FS = FeatureSet(("billable_hours",))
BY_NAME = {f.name: f for f in FS.features}
MISSING = (None, np.nan, float("nan"), pd.NA, np.float32("nan"))


def _typical(name: str) -> float | str:
    return "enterprise" if BY_NAME[name].categorical else 12.0


# ---------------------------------------------------------------------------------- reasons


@pytest.mark.parametrize("feature", FS.features, ids=lambda f: f.name)
def test_reason_reads_right_for_typical_and_missing_values(feature: Feature) -> None:
    typical = reason(feature, _typical(feature.name))
    assert typical and "nan" not in typical.lower() and "{" not in typical
    if "{value" in feature.reason:  # the value is in the sentence
        assert "12" in typical or "enterprise" in typical
    for value in MISSING:
        said = reason(feature, value)
        assert said and "{" not in said, said
        assert not re.search(r"\bnan\b|\bnone\b(?! on record)|<NA>", said, re.IGNORECASE), said


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("days_since_contact", 74.4, "No contact for 74 days"),
        ("days_since_contact", None, "No contact on record"),
        ("days_since_meeting", np.nan, "No meeting on record"),
        ("days_since_inbound", None, "Client has never reached out"),
        ("days_since_outbound", None, "We have never reached out"),
        ("days_since_billable_hours", None, "No billable_hours on record"),
        ("open_disputes", 2.0, "2 disputed invoices open"),
        ("overdue_amount", 12500.0, "12,500 overdue"),
        ("inbound_share_90d", 0.25, "25% of recent contacts came from the client"),
        ("value_change_90d", -1500.0, "Monthly contract value changed by -1,500 in 90 days"),
        ("contacts_change_90d", -0.0, "Contacts changed by +0 against the previous 90 days"),
        ("nps_last", None, "Latest NPS score (0-10): none on record"),
        ("has_account_manager", 0.0, "No account manager assigned"),
        ("has_account_manager", 1.0, "Account manager assigned"),
        ("segment", "enterprise", "Segment enterprise"),
        ("open_disputes", "two", "Disputed invoices not yet resolved: two"),  # not a number
        # A count of one reads singular; an amount of 1 and a 1.4 that shows as 1 too.
        ("open_disputes", 1.0, "1 disputed invoice open"),
        ("disputes_365d", 1.0, "1 invoice disputed in the last year"),
        ("days_to_contract_end", 1.0, "Contract ends in 1 day"),
        ("days_to_contract_end", 1.4, "Contract ends in 1 day"),
        ("days_to_contract_end", 0.0, "Contract ends in 0 days"),
        ("mean_days_overdue", 1.0, "Overdue invoices are 1 day late"),
        ("inbound_90d", 1.0, "Client got in touch 1 time in 90 days"),
        ("overdue_amount", 1.0, "1 overdue"),
    ],
)
def test_reason_examples(name: str, value: object, expected: str) -> None:
    assert reason(BY_NAME[name], value) == expected


# ---------------------------------------------------------------------------------- drivers

NAMES = ["days_since_contact", "open_disputes", "nps_last", "tickets_90d", "segment"]


def test_top_drivers_pick_the_largest_positive_contributions() -> None:
    values = [74.0, 2.0, 4.0, 3.0, "smb"]
    contributions = np.array([0.8, 1.2, -2.0, 0.1, 0.3])
    drivers = top_drivers(NAMES, values, contributions, FS, k=3)
    assert [d.feature for d in drivers] == ["open_disputes", "days_since_contact", "segment"]
    assert drivers[0] == Driver("open_disputes", 2.0, 1.2, "2 disputed invoices open")
    assert drivers[2].value == "smb" and drivers[2].reason == "Segment smb"
    all_rising = top_drivers(NAMES, values, contributions, FS, k=10)
    assert [d.feature for d in all_rising] == [
        "open_disputes",
        "days_since_contact",
        "segment",
        "tickets_90d",
    ]  # nps_last lowers the risk: never a driver
    assert top_drivers(NAMES, values, -np.abs(contributions), FS) == []
    assert top_drivers(NAMES, values, contributions, FS, k=0) == []


def test_top_drivers_skip_missing_values_unless_missingness_is_the_signal() -> None:
    values = [None, 2.0, np.nan, 3.0, None]
    contributions = np.array([0.5, 0.2, 0.9, 0.1, 0.7])  # nps_last, segment missing: skipped
    drivers = top_drivers(NAMES, values, contributions, FS, k=2)
    assert drivers == [
        Driver("days_since_contact", None, 0.5, "No contact on record"),
        Driver("open_disputes", 2.0, 0.2, "2 disputed invoices open"),
    ]


def test_top_drivers_accept_lightgbm_layout_and_check_lengths() -> None:
    values = pd.Series([74.0, 2.0, 4.0, 3.0, "smb"], index=NAMES)
    with_bias = np.array([[0.8, 1.2, -2.0, 0.1, 0.3, 5.0]])  # pred_contrib: bias column last
    drivers = top_drivers(NAMES, values, with_bias, FS, k=1)
    assert drivers == [Driver("open_disputes", 2.0, 1.2, "2 disputed invoices open")]
    with pytest.raises(ValueError, match="contributions for 5 features"):
        top_drivers(NAMES, values, np.zeros(3), FS)
    with pytest.raises(ValueError, match="4 values for 5 features"):
        top_drivers(NAMES, list(values)[:4], np.zeros(5), FS)
    with pytest.raises(KeyError, match="not_a_feature"):
        top_drivers(["not_a_feature"], [1.0], np.ones(1), FS)


def _random_batch(n: int, seed: int = 0) -> tuple[list[str], pd.DataFrame, np.ndarray]:
    """Feature values with gaps and categoricals; contributions with ties and few positives."""
    rng = np.random.default_rng(seed)
    names = FS.names
    frame = pd.DataFrame(rng.gamma(2.0, 20.0, (n, len(names))), columns=names)
    frame = frame.mask(rng.random(frame.shape) < 0.2)
    for name in FS.categorical:
        frame[name] = pd.Categorical(rng.choice(["smb", "mid", None], n))
    contributions = np.round(rng.normal(-0.2, 0.3, (n, len(names) + 1)), 1)  # ties are common
    contributions[: n // 10] = -1.0  # rows with no driver at all
    contributions[n // 10 : n // 5, 3:] = -1.0  # rows with fewer than k candidates
    return names, frame, contributions


@pytest.mark.parametrize("k", [1, 3, 5])
def test_batch_equals_per_row(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    names, frame, contributions = _random_batch(500)
    monkeypatch.setattr(explain, "_BATCH_ROWS", 128)  # several blocks, the last one short
    batch = top_drivers_batch(names, frame, contributions, FS, k=k)
    rows = frame.astype(object).to_numpy()
    single = [top_drivers(names, rows[i], contributions[i], FS, k=k) for i in range(len(frame))]
    assert batch == single
    assert sum(len(d) for d in batch) > 300 * k * 0.5  # the rows do have drivers
    assert any(len(d) < k for d in batch[50:100]) and batch[0] == []


def test_batch_accepts_an_array_in_names_order() -> None:
    names = [n for n in FS.names if n not in FS.categorical]
    _, frame, contributions = _random_batch(200, seed=1)
    numbers = frame[names].to_numpy(dtype=float)
    contributions = contributions[:, : len(names)]
    assert top_drivers_batch(names, numbers, contributions, FS) == top_drivers_batch(
        names, frame, contributions, FS
    )
    with pytest.raises(ValueError, match="rows of values"):
        top_drivers_batch(names, numbers[:10], contributions, FS)


# ---------------------------------------------------------------------------------- playbook

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
    when: {billable_hours_90d: {lt: 10}}
""",
    )
    playbook = load_playbook(path, feature_set=FS)
    client = {**HEALTHY, "days_since_contact": 74.0, "billable_hours_90d": 5.0}
    got = playbook.actions(client, [])
    assert [a.action for a in got] == ["Offer a free quarterly review"]  # no default rules
    assert got[0].why == "Segment mid; 0 meetings in the last 90 days"  # what fired the rule
    assert playbook.actions({**client, "segment": "smb", "billable_hours_90d": 50.0}, []) == []


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
        tmp_path, "rules:\n  - {action: Bill, priority: 1, when: {billable_hours_90d: {lt: 5}}}"
    )
    assert len(load_playbook(path, feature_set=FS).rules) == 1
    with pytest.raises(PlaybookError, match=r"unknown feature 'billable_hours_90d'$"):
        load_playbook(path, feature_set=FeatureSet(("portal login",)))
    with pytest.raises(PlaybookError, match="event-type features need the model's feature set"):
        load_playbook(path)  # without a feature set: the base catalogue only


# ---------------------------------------------------------------------------------- bands, revenue


def test_risk_band_thresholds() -> None:
    assert [risk_band(p) for p in (0.0, 0.0999, 0.1, 0.2999, 0.3, 1.0)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    bands = risk_band(np.array([0.05, 0.5, 0.25]), thresholds=(0.2, 0.4))
    assert isinstance(bands, np.ndarray) and bands.tolist() == ["low", "high", "medium"]


@pytest.mark.parametrize("thresholds", [(0.3, 0.1), (0.0, 0.3), (0.1, 1.0), (0.2, 0.2), (0.1,)])
def test_risk_band_rejects_bad_thresholds(thresholds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="two ascending numbers in \\(0, 1\\)"):
        risk_band(0.5, thresholds=thresholds)  # type: ignore[arg-type]


@pytest.mark.parametrize("probability", [-0.1, 1.5, np.nan, np.array([0.2, np.nan])])
def test_risk_band_rejects_bad_probabilities(probability: float | np.ndarray) -> None:
    with pytest.raises(ValueError, match="probabilities must lie in"):
        risk_band(probability)


def test_revenue_at_risk_is_probability_times_a_year_of_monthly_value() -> None:
    assert revenue_at_risk(0.25, 1_000.0) == pytest.approx(3_000.0)
    assert isinstance(revenue_at_risk(0.25, 1_000), float)
    got = revenue_at_risk(np.array([0.1, 0.5, 0.0]), np.array([2_000.0, 100.0, 5_000.0]))
    np.testing.assert_allclose(got, [2_400.0, 600.0, 0.0])
