"""The dense executor (few snapshots) against the sorted one (bulk): equal bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.features import engine
from churnguard.features.arrays import crm_arrays
from churnguard.features.catalog import feature_set_for
from tests.factories import as_of_dates, random_crm


def _both(monkeypatch: pytest.MonkeyPatch, n_clients: int, seed: int) -> list[dict]:
    data = random_crm(n_clients=n_clients, seed=seed)
    fs = feature_set_for(data)
    dates = as_of_dates(4)
    codes = np.tile(np.arange(n_clients), len(dates))
    as_of = np.repeat([d.value // 10**9 for d in dates], n_clients)
    out = []
    for cells in (0, 10**12):  # 0: always sorted; huge: always dense
        monkeypatch.setattr(engine, "DENSE_CELLS", cells)
        out.append(engine.feature_columns(crm_arrays(data), codes, as_of, fs))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_dense_and_sorted_executors_agree_exactly(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    sorted_, dense = _both(monkeypatch, n_clients=8, seed=seed)
    assert list(dense) == list(sorted_)
    for name, values in sorted_.items():
        if values.dtype == object:
            assert dense[name].tolist() == values.tolist(), name
        else:
            assert np.array_equal(dense[name], values, equal_nan=True), name
    numeric = [v for v in sorted_.values() if v.dtype != object]
    assert np.mean([np.any(np.nan_to_num(v) != 0) for v in numeric]) > 0.9  # data exercised


def test_a_client_without_history_gets_zero_counts_on_the_dense_path() -> None:
    data = random_crm(n_clients=3, seed=4)
    one = data.for_clients([data.clients["client_id"].iloc[0]])
    as_of = np.array([pd.Timestamp("2021-01-01", tz="UTC").value // 10**9])  # before all rows
    cols = engine.feature_columns(
        crm_arrays(one), np.zeros(1, np.int64), as_of, feature_set_for(one)
    )
    assert cols["contacts_90d"][0] == 0 and np.isnan(cols["days_since_contact"][0])
