"""Tests for the feature catalog: descriptions, reasons and event-type features."""

from __future__ import annotations

import pytest

from churnguard.features.catalog import (
    BASE_FEATURES,
    FeatureNameError,
    FeatureSet,
    describe,
    event_features,
    feature_set_for,
    monotone_constraints,
)
from tests.factories import random_crm


def test_every_feature_is_described_once() -> None:
    fs = FeatureSet(("billable hours",))
    table = describe(fs)
    assert table["feature"].is_unique
    assert (table["description"].str.len() > 10).all()
    for f in fs.features:  # every reason reads as a sentence for a typical value
        assert f.reason.format(value="ent" if f.categorical else 12.0).strip(), f.name
    assert "event_billable_hours_90d" in fs.names and len(fs.names) == len(BASE_FEATURES) + 4


def test_event_types_come_from_the_data() -> None:
    assert feature_set_for(random_crm(n_clients=60, seed=3)).event_types == (
        "billable hours",
        "login",
    )


@pytest.mark.parametrize("event_type", ["meeting", "calls", "value", "contacts", "tickets"])
def test_no_event_type_can_make_a_base_feature_name(event_type: str) -> None:
    base = {f.name for f in BASE_FEATURES}
    names = [f.name for f in event_features(event_type)]
    assert not base & set(names)
    assert all(n.startswith(f"event_{event_type}_") for n in names)
    assert len(set(FeatureSet((event_type,)).names)) == len(BASE_FEATURES) + 4


def test_event_types_with_the_same_feature_names_are_a_clear_error() -> None:
    with pytest.raises(FeatureNameError, match="'Billable Hours' and 'billable-hours'"):
        FeatureSet(("Billable Hours", "billable-hours"))


def test_monotone_constraints_follow_the_declared_directions() -> None:
    fs = FeatureSet(("billable hours",))
    by_name = dict(zip(fs.names, monotone_constraints(fs.names), strict=True))
    assert by_name["days_since_contact"] == 1 and by_name["nps_last"] == -1
    assert by_name["segment"] == by_name["monthly_value"] == 0  # context
    assert by_name["event_billable_hours_change_90d"] == -1
    assert by_name["event_billable_hours_days_since"] == 1
    for f in fs.features:
        assert by_name[f.name] == {"more_risk": 1, "less_risk": -1, "context": 0}[f.direction]
    assert monotone_constraints(["tenure", "MonthlyCharges"]) == [0, 0]  # not in the catalog
