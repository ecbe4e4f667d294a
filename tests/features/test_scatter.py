"""The one-date executor (scatter) against the sorted one: equal bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from churnguard.domain.contract import TABLES, from_frames
from churnguard.features import engine, scatter
from churnguard.features.arrays import crm_arrays
from churnguard.features.catalog import feature_set_for
from tests.factories import as_of_dates, random_crm


@pytest.mark.parametrize(("seed", "date", "first"), [(1, 1, 0), (2, 3, 0), (5, 4, 12)])
def test_one_date_scatter_equals_the_sorted_executor(
    monkeypatch: pytest.MonkeyPatch, seed: int, date: int, first: int
) -> None:
    data = random_crm(n_clients=50, seed=seed)
    fs, arrays = feature_set_for(data), crm_arrays(data)
    # not every client, in any order; from the 13th, rows of clients before and after are skipped
    codes = first + np.random.default_rng(seed).permutation(50 - first)[:30]
    as_of = np.full(len(codes), as_of_dates(5)[date].value // 10**9)
    scattered = engine.feature_columns(arrays, codes, as_of, fs)
    monkeypatch.setattr(engine, "_one_date", lambda snap: False)
    sorted_ = engine.feature_columns(arrays, codes, as_of, fs)
    _assert_same_columns(scattered, sorted_)
    numeric = [v for v in sorted_.values() if v.dtype != object]
    assert np.mean([np.any(np.nan_to_num(v) != 0) for v in numeric]) > 0.9  # data exercised


@pytest.mark.parametrize(
    ("seed", "first", "in_order", "block"),
    [(3, 0, True, scatter.BLOCK_ROWS), (6, 9, True, 7), (7, 5, False, 7)],
)
def test_rows_in_time_order_and_blocks_of_rows_give_the_same_features(
    monkeypatch: pytest.MonkeyPatch, seed: int, first: int, in_order: bool, block: int
) -> None:
    """Rows listed by time (as exports usually are: windows are runs of rows), and passes over
    blocks of a few rows (a stream's order checked across blocks)."""
    data = random_crm(n_clients=50, seed=seed)
    frames = {
        name: df.sort_values(TABLES[name].time, na_position="first", kind="stable")
        if TABLES[name].time and in_order
        else df
        for name, df in data.tables().items()
    }
    data = from_frames(frames, data.attributes)
    monkeypatch.setattr(scatter, "BLOCK_ROWS", block)
    fs, arrays = feature_set_for(data), crm_arrays(data)
    codes = first + np.random.default_rng(seed).permutation(50 - first)[:30]
    as_of = np.full(len(codes), as_of_dates(5)[2].value // 10**9)
    scattered = engine.feature_columns(arrays, codes, as_of, fs)
    monkeypatch.setattr(engine, "_one_date", lambda snap: False)
    sorted_ = engine.feature_columns(arrays, codes, as_of, fs)
    _assert_same_columns(scattered, sorted_)


def _assert_same_columns(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Every feature column of ``expected`` equal in ``got``, bit for bit (NaN equal to NaN)."""
    for name, values in expected.items():
        if values.dtype == object:
            assert got[name].tolist() == values.tolist(), name
        else:
            assert np.array_equal(got[name], values, equal_nan=True), name
