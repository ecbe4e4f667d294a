"""Tests for modeling.recipes: declared directions, and a search that adapts to the data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.features.catalog import monotone_constraints
from churnguard.modeling.recipes import fit_estimator, recipes
from churnguard.training.dataset import Dataset
from tests.factories import PARAMS, ModelFactory


def test_lightgbm_keeps_each_declared_direction(make_model: ModelFactory, dataset: Dataset) -> None:
    model = make_model("lightgbm", PARAMS["lightgbm"])
    booster = model.booster
    assert booster is not None
    declared = monotone_constraints(model.feature_names)
    assert booster.params["monotone_constraints"] == declared and any(declared)
    X = model.inputs(dataset.features.sample(200, random_state=1))
    for name, sign in zip(model.feature_names, declared, strict=True):
        if sign == 0 or name in model.categories:
            continue
        low, high = X.copy(), X.copy()
        low[name], high[name] = 0.0, 1e6
        moved = model.raw_proba(high) - model.raw_proba(low)
        assert (sign * moved >= -1e-12).all(), name  # a higher value never moves the other way


def test_a_flat_tables_columns_get_no_constraint() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"tenure": rng.normal(size=400), "charges": rng.normal(size=400)})
    y = (X["tenure"] + rng.normal(size=400) > 0).to_numpy().astype(int)
    est, _ = fit_estimator("lightgbm", {"num_leaves": 4}, X, y, None, None, [], 0)
    assert not any(est.booster_.params.get("monotone_constraints") or [])


def test_regularised_trees_scale_rows_per_leaf_with_churn_events() -> None:
    def leaves(events: int) -> dict[str, int]:
        found = recipes(events, lightgbm_min_events=50)
        return {n: p["min_child_samples"] for n, k, p in found if k == "lightgbm"}

    assert leaves(200)["lightgbm leaves=4 min_child=40"] == 40  # a fifth of the events
    assert leaves(60)["lightgbm leaves=4 min_child=20"] == 20  # never below 20
    assert leaves(50_000)["lightgbm leaves=16 min_child=100"] == 100  # never above 100
    assert (
        leaves(400)["lightgbm leaves=15 min_child=5 rate=0.02"] == 5
    )  # the bushy ones keep theirs
    assert all("lightgbm" not in name for name, _, _ in recipes(49, lightgbm_min_events=50))


def test_no_two_candidates_share_a_name() -> None:
    # out-of-fold predictions and the calibrator are looked up by name: a clash would calibrate
    # one candidate on another's predictions (at 100 events two 16-leaf configurations met)
    for events in (50, 60, 100, 200, 400, 1_000, 50_000):
        names = [name for name, _, _ in recipes(events, lightgbm_min_events=50)]
        assert len(names) == len(set(names)), events
