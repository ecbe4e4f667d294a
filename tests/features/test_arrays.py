"""Tests for the engine's array view of CRM data and its time encoding."""

from __future__ import annotations

import numpy as np

from churnguard.domain.timeaxis import EARLIEST_TIME, LATEST_TIME, TIME_MAX
from churnguard.features.arrays import NAT, crm_arrays, encode_times, group_order
from tests.factories import random_crm


def test_tables_become_seconds_codes_and_floats() -> None:
    data = random_crm(n_clients=20, seed=1)
    arrays = crm_arrays(data)
    contracts = arrays.table("contracts")
    assert arrays.client_ids.tolist() == data.clients["client_id"].tolist()
    assert contracts("client_code").tolist() == data.contracts["client_id"].cat.codes.tolist()
    seconds = data.contracts["start_date"].to_numpy("datetime64[s]").view(np.int64)
    assert contracts("start_date").tolist() == seconds.tolist()
    empty_end = data.contracts["end_date"].isna().to_numpy()
    assert (contracts("end_date")[empty_end] == NAT).all()
    interactions = arrays.table("interactions")
    calls = interactions.isin("channel", ("call",))
    assert calls.tolist() == (data.interactions["channel"] == "call").tolist()


def test_time_encoding_keeps_order_over_the_whole_range() -> None:
    times = np.array([EARLIEST_TIME, -1, 0, 1, LATEST_TIME], dtype=np.int64)
    encoded = encode_times(times)
    assert encoded[0] == 0 and encoded[-1] == TIME_MAX
    assert (np.diff(encoded) > 0).all()


def test_group_order_sorts_by_client_then_time_then_row() -> None:
    codes = np.array([1, 0, 1, 0, 1], dtype=np.int64)
    times = np.array([5, 9, 5, 1, 2], dtype=np.int64)
    assert group_order(codes, times).tolist() == [3, 1, 4, 0, 2]
