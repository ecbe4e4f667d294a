"""Tests for the computation plan: shared aggregations computed once, formulas combined in steps."""

from __future__ import annotations

from churnguard.features.catalog import BASE_FEATURES, Agg, Custom, FeatureSet
from churnguard.features.plan import plan_for


def test_every_feature_gets_an_output_and_shared_aggregations_one_row() -> None:
    fs = FeatureSet(("login",))
    plan = plan_for(fs)
    assert [name for name, _ in plan.outputs] == fs.names
    aggs = {a for streams in plan.tables.values() for sp in streams for a in sp.aggs}
    assert plan.n_aggs == len(aggs)  # contacts_90d and its ratios read one "count 90 days" row
    customs = {f.formula.name for f in BASE_FEATURES if isinstance(f.formula, Custom)}
    assert {s for _, s in plan.outputs if isinstance(s, str)} == customs


def test_totals_come_first_in_each_stream_and_plans_are_cached() -> None:
    fs = FeatureSet()
    for streams in plan_for(fs).tables.values():
        for sp in streams:
            totals = sp.aggs[: sp.n_totals]
            assert all(a.how == "sum" or (a.how == "count" and a.where) for a in totals)
            assert all(isinstance(a, Agg) for a in sp.aggs)
    assert plan_for(FeatureSet()) is plan_for(fs)
