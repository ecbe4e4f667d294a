"""Tests for the feature catalog: descriptions, reasons and event-type features."""

from __future__ import annotations

from churnguard.features.catalog import BASE_FEATURES, FeatureSet, describe, feature_set_for
from tests.factories import random_crm


def test_every_feature_is_described_once() -> None:
    fs = FeatureSet(("billable hours",))
    table = describe(fs)
    assert table["feature"].is_unique
    assert (table["description"].str.len() > 10).all()
    for f in fs.features:  # every reason reads as a sentence for a typical value
        assert f.reason.format(value="ent" if f.categorical else 12.0).strip(), f.name
    assert "billable_hours_90d" in fs.names and len(fs.names) == len(BASE_FEATURES) + 4


def test_event_types_come_from_the_data() -> None:
    assert feature_set_for(random_crm(n_clients=60, seed=3)).event_types == (
        "billable hours",
        "login",
    )
