"""Tests for scoring.directions: a row's largest reasons are the same whether or not the
candidates after them are checked."""

from __future__ import annotations

import numpy as np

from churnguard.scoring.directions import SAFEST, Directions


def _top_reasons(c: np.ndarray, X: np.ndarray, k: int) -> list[list[int]]:
    """Each row's k largest positive contributions with a value (ties: column order)."""
    eligible = np.where((c > 0) & ~np.isnan(X), c, -np.inf)
    order = np.argsort(-eligible, axis=1, kind="stable")[:, :k]
    return [[j for j in row if eligible[i, j] > -np.inf] for i, row in enumerate(order.tolist())]


def test_rows_settled_by_their_first_candidates_keep_the_same_largest_reasons() -> None:
    rng = np.random.default_rng(5)
    n, m = 400, 12
    X = rng.normal(size=(n, m))
    X[rng.random((n, m)) < 0.1] = np.nan
    c = rng.normal(size=(n, m))
    c[:, :2] = np.abs(c[:, :2]) + 3.0  # columns 0-1 lead in most rows, column 1 never a reason
    safest = np.where(rng.random(m) < 0.5, -SAFEST, SAFEST)
    weight = -np.sign(safest) * rng.uniform(0.1, 1.0, size=m)  # the safest value lowers risk...
    weight[[4, 9]] *= -1  # ...except where the model weighs a feature against its direction
    safest[1] = np.nan

    def raw(rows: np.ndarray) -> np.ndarray:
        z = np.nan_to_num(np.clip(rows, -5, 5)) @ weight
        return 1 / (1 + np.exp(-z))

    directions = Directions(~np.isnan(safest), safest)
    every = directions.agreeing(X, c, raw, 6)
    lazy = directions.agreeing(X, c, raw, 6, settled=3)
    assert _top_reasons(lazy, X, 3) == _top_reasons(every, X, 3)
    assert (lazy != every).any()  # some candidates were left unchecked
    assert ((lazy == every) | (lazy == 0)).all()
    assert (every[:, 1] <= 0).all()  # never a reason: only its negative contributions stay
