"""Tree contributions from look-up tables equal LightGBM's own pred_contrib, row by row."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pytest

from churnguard.modeling.treeshap import Explainer


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaN, a column with many zeros, a categorical code column, interactions."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[rng.random(n) < 0.15, 0] = np.nan  # missing values the trees learn a way for
    X[:, 1] = np.where(rng.random(n) < 0.4, 0.0, X[:, 1])  # zeros (missing for zero_as_missing)
    X[:, 4] = rng.integers(0, 9, n)  # a categorical column, codes 0-8
    X[rng.random(n) < 0.05, 4] = np.nan
    logit = X[:, 2] * X[:, 3] + np.nan_to_num(X[:, 0]) - (X[:, 4] % 3 == 0) + 0.5 * X[:, 5] ** 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _awkward(X: np.ndarray) -> np.ndarray:
    """Rows that take every way: NaN everywhere, zeros, tiny values, unseen, negative and
    fractional category codes, values beyond every threshold."""
    rows = X[:40].copy()
    rows[::3] = np.nan
    rows[1::5, 1] = 0.0
    rows[2::5, 1] = 1e-40  # "zero" to LightGBM (|x| <= 1e-35)
    rows[3::7, 4] = 42.0  # a category never seen
    rows[4::7, 4] = -1.0
    rows[5::7, 4] = 2.7  # C's int(): 2
    rows[6::7, 2] = 1e12
    rows[7::11, 3] = -np.inf
    return np.vstack([X, rows])


@pytest.fixture(scope="module", params=["nan", "zero_as_missing", "no_missing"])
def booster(request: pytest.FixtureRequest) -> lgb.Booster:
    X, y = _data(3000, 3)
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "learning_rate": 0.2,
        "verbose": -1,
        "seed": 1,
        "deterministic": True,
        "num_threads": 1,
        "zero_as_missing": request.param == "zero_as_missing",
        "use_missing": request.param != "no_missing",
    }
    data = lgb.Dataset(X, y, categorical_feature=[4], free_raw_data=False)
    return lgb.train(params, data, num_boost_round=40)


def test_contributions_equal_lightgbms_pred_contrib(booster: lgb.Booster) -> None:
    explainer = Explainer.of(booster.dump_model())
    assert explainer is not None
    X = _awkward(_data(500, 4)[0])
    own = np.asarray(booster.predict(X, pred_contrib=True, num_threads=1))[:, :-1]
    np.testing.assert_allclose(explainer.contributions(X), own, rtol=0, atol=1e-12)


def test_every_row_reaches_lightgbms_leaf_in_every_tree(booster: lgb.Booster) -> None:
    explainer = Explainer.of(booster.dump_model())
    assert explainer is not None
    X = _awkward(_data(500, 5)[0])
    leaf = np.asarray(booster.predict(X, pred_leaf=True))
    reached = explainer.leaves(X)
    for p, (tree, index) in enumerate(explainer.path_leaf):
        np.testing.assert_array_equal(reached[:, p], leaf[:, tree] == index)
    assert (explainer.path_width > 1).any()  # paths of several features were checked
    assert any(len(at.more) for at in explainer.positions)  # and features split twice on a path


def test_a_rows_contributions_do_not_depend_on_the_rows_beside_it(booster: lgb.Booster) -> None:
    explainer = Explainer.of(booster.dump_model())
    assert explainer is not None
    X = _awkward(_data(300, 6)[0])
    together = explainer.contributions(X)
    one_by_one = np.vstack([explainer.contributions(X[i : i + 1]) for i in range(len(X))])
    in_sevens = np.vstack([explainer.contributions(X[i : i + 7]) for i in range(0, len(X), 7)])
    assert np.array_equal(together, one_by_one) and np.array_equal(together, in_sevens)


def test_a_model_of_one_leaf_trees_adds_to_no_feature() -> None:
    X, y = _data(300, 7)
    params = {"objective": "binary", "min_data_in_leaf": 200, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=3)  # no split can be made
    assert {t["num_leaves"] for t in booster.dump_model()["tree_info"]} == {1}
    explainer = Explainer.of(booster.dump_model())
    assert explainer is not None
    own = np.asarray(booster.predict(X, pred_contrib=True))[:, :-1]
    assert np.array_equal(explainer.contributions(X), own)


def test_models_it_does_not_cover_are_left_to_lightgbm_and_the_log_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    X, y = _data(400, 8)
    base = {"verbose": -1, "num_threads": 1, "num_leaves": 4}
    multiclass = lgb.train(
        {**base, "objective": "multiclass", "num_class": 3},
        lgb.Dataset(X, (y + (X[:, 2] > 0)).astype(int)),
        num_boost_round=3,
    )
    assert Explainer.of(multiclass.dump_model()) is None
    linear = lgb.train(
        {**base, "objective": "binary", "linear_tree": True},
        lgb.Dataset(np.nan_to_num(X), y),
        num_boost_round=3,
    )
    with caplog.at_level(logging.INFO, logger="churnguard.modeling.treeshap"):
        assert Explainer.of(linear.dump_model()) is None
    assert "left to LightGBM's pred_contrib (slower): it has linear trees" in caplog.text


def test_rows_of_the_wrong_width_are_refused(booster: lgb.Booster) -> None:
    explainer = Explainer.of(booster.dump_model())
    assert explainer is not None
    with pytest.raises(ValueError, match="rows of 6 features expected"):
        explainer.contributions(np.zeros((2, 5)))


def test_tables_worked_out_in_small_steps_are_the_same_and_large_ones_are_refused(
    booster: lgb.Booster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from churnguard.modeling import treeshap

    whole = Explainer.of(booster.dump_model())
    assert whole is not None
    monkeypatch.setattr(treeshap, "_WORK", 1)  # one path at a time
    stepped = Explainer.of(booster.dump_model())
    assert stepped is not None and np.array_equal(stepped.table, whole.table)
    monkeypatch.setattr(treeshap, "MAX_TABLE", whole.table.size - 1)
    with caplog.at_level(logging.INFO, logger="churnguard.modeling.treeshap"):
        assert Explainer.of(booster.dump_model()) is None  # LightGBM's pred_contrib is used
    assert f"its tables would hold {whole.table.size:,} values" in caplog.text


def test_an_explainer_of_some_features_gives_their_bits_and_zeros(booster: lgb.Booster) -> None:
    explainer = Explainer.of(booster.dump_model())
    assert explainer is not None
    X = _awkward(_data(300, 8)[0])
    full = explainer.contributions(X)
    for chosen in ([0, 3], [4], [1, 2, 5], []):
        part = explainer.only(chosen).contributions(X)
        others = [j for j in range(X.shape[1]) if j not in chosen]
        np.testing.assert_array_equal(part[:, chosen], full[:, chosen])
        assert not part[:, others].any()
