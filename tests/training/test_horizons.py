"""Person-periods from the churn labels, and a horizon model whose curve never decreases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.modeling.horizons import HORIZONS_DAYS
from churnguard.training.dataset import Dataset
from churnguard.training.horizons import (
    HorizonFit,
    _sample_clients,
    person_periods,
    train_horizons,
)


def test_person_periods_stop_at_the_churn_and_at_censoring() -> None:
    labels = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2024-01-01"] * 3, utc=True),
            "churned_1": pd.array([0, 0, 0], "Int8"),
            "churned_2": pd.array([1, 0, None], "Int8"),
            "churned_3": pd.array([1, 0, None], "Int8"),
        }
    )
    pp = person_periods(labels, periods=3)
    got = sorted(zip(pp.row.tolist(), pp.period.tolist(), pp.churned.tolist(), strict=True))
    assert got == [(0, 1, 0), (0, 2, 1), (1, 1, 0), (1, 2, 0), (1, 3, 0), (2, 1, 0)]


@pytest.fixture(scope="module")
def fit(dataset: Dataset) -> HorizonFit:
    return train_horizons(dataset, seed=7)


def test_every_clients_curve_is_non_decreasing(fit: HorizonFit) -> None:
    curve = fit.model.curve(fit.X)
    assert curve.shape == (len(fit.X), len(HORIZONS_DAYS))
    assert (np.diff(curve, axis=1) >= 0).all()
    assert ((curve > 0) & (curve < 1)).all()


def test_within_a_horizon_is_the_curve(fit: HorizonFit) -> None:
    curve = fit.model.curve(fit.X[:50])
    assert np.allclose(fit.model.within(fit.X[:50], 90), curve[:, 1])


def test_the_model_ranks_churners_higher(fit: HorizonFit, dataset: Dataset) -> None:
    y = fit.labels["churned_3"]
    known = y.notna().to_numpy()
    p = fit.model.within(fit.X[known], 90)
    churned = y[known].to_numpy().astype(bool)
    assert p[churned].mean() > p[~churned].mean()


def test_a_large_training_set_keeps_every_period_of_a_share_of_its_clients() -> None:
    clients = np.repeat(np.arange(1000), 6)  # 6 periods each
    mask = np.ones(len(clients), bool)
    mask[::7] = False
    kept = _sample_clients(mask, clients, 1200, seed=7)
    assert not (kept & ~mask).any()
    assert 800 <= kept.sum() <= 1600
    whole = {c: mask[clients == c].sum() for c in np.unique(clients[kept])}
    assert all(kept[clients == c].sum() == n for c, n in whole.items())
    assert (_sample_clients(mask, clients, len(clients), seed=7) == mask).all()
    assert (_sample_clients(mask, clients, 1200, seed=7) == kept).all()  # seeded
