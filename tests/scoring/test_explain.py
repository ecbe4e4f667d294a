"""Tests for churnguard.scoring.explain: reasons and drivers."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from churnguard.features.catalog import Feature, FeatureSet
from churnguard.scoring import explain
from churnguard.scoring.explain import Driver, reason, top_drivers, top_drivers_batch

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
        ("event_billable_hours_days_since", None, "No billable hours on record"),
        ("event_billable_hours_90d", 1.0, "Billable hours in the last 90 days: 1"),
        ("event_billable_hours_30d", 12345.6, "Billable hours in the last 30 days: 12,346"),
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
