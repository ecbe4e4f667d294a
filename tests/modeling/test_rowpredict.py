"""A few rows through LightGBM's single-row fast path give Booster.predict's bits."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import lightgbm as lgb
import numpy as np
import pytest

from churnguard.modeling.horizons import HorizonModel
from churnguard.modeling.rowpredict import FEW, RowPredictor
from tests.modeling.test_treeshap import _awkward, _data


@pytest.fixture(scope="module", params=["all trees", "early-stopped"])
def booster(request: pytest.FixtureRequest) -> lgb.Booster:
    """A booster with a categorical column; one that keeps an early-stopped best iteration."""
    X, y = _data(3000, 3)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1}
    data = lgb.Dataset(X[:2000], y[:2000], categorical_feature=[4], free_raw_data=False)
    if request.param == "all trees":
        return lgb.train(params, data, num_boost_round=30)
    held = lgb.Dataset(X[2000:], y[2000:], reference=data)
    stop = lgb.early_stopping(5, verbose=False)
    booster = lgb.train(
        {**params, "learning_rate": 0.5},
        data,
        200,
        valid_sets=[held],
        callbacks=[stop],
        keep_training_booster=True,  # trees after the best one stay: predict must skip them
    )
    assert 0 < booster.best_iteration < booster.num_trees()  # the case under test
    return booster


def test_a_few_rows_equal_booster_predict_bit_for_bit(booster: lgb.Booster) -> None:
    X = _awkward(_data(300, 4)[0])
    predict = RowPredictor(booster)
    own = booster.predict(X, num_threads=1)
    for n in (1, 2, FEW, FEW + 1):  # one by one up to FEW, then Booster.predict
        np.testing.assert_array_equal(predict(X[:n]), own[:n])
    for i in range(0, len(X), 7):  # every row alone, NaN, +-inf, unseen categories among them
        np.testing.assert_array_equal(predict(X[i : i + 1]), own[i : i + 1])
    np.testing.assert_array_equal(predict(np.asfortranarray(X[:5])), own[:5])  # any layout
    np.testing.assert_array_equal(predict(X[::2][:5]), own[::2][:5])


def test_pickled_and_threaded_predictors_agree(booster: lgb.Booster) -> None:
    X = _awkward(_data(200, 5)[0])
    predict = RowPredictor(booster)
    own = booster.predict(X, num_threads=1)
    again = pickle.loads(pickle.dumps(predict))
    np.testing.assert_array_equal(again(X[:3]), own[:3])
    chunks = [X[i : i + 3] for i in range(0, 120, 3)]
    with ThreadPoolExecutor(4) as pool:  # each thread makes and uses its own handle
        got = np.concatenate(list(pool.map(predict, chunks * 3)))
    np.testing.assert_array_equal(got, np.tile(own[:120], 3))


def test_a_wrong_width_is_left_to_lightgbm_to_refuse(booster: lgb.Booster) -> None:
    with pytest.raises(lgb.basic.LightGBMError):
        RowPredictor(booster)(np.zeros((1, booster.num_feature() + 1)))


def test_horizon_hazards_with_the_fast_path_equal_the_booster() -> None:
    X, y = _data(2000, 6)
    rows = np.column_stack([X, np.tile(np.arange(1, 7.0), len(X) // 6 + 1)[: len(X)]])
    params = {"objective": "binary", "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(rows, y), num_boost_round=20)
    model = HorizonModel(booster, periods=6, platt=(0.9, -0.1))
    some = _awkward(X)[-12:]
    np.testing.assert_array_equal(model.hazards(some, RowPredictor(booster)), model.hazards(some))
