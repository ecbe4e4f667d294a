"""Tests for the time axis: its bounds and conversion to UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd

from churnguard.domain.timeaxis import (
    EARLIEST,
    EARLIEST_TIME,
    LATEST,
    LATEST_TIME,
    utc_datetime,
    utc_second,
    utc_seconds,
    utc_timestamp,
)


def test_bounds_are_the_engine_range_in_both_forms() -> None:
    assert EARLIEST.timestamp() == EARLIEST_TIME and LATEST.timestamp() == LATEST_TIME
    assert EARLIEST.year == 1833 and LATEST.year == 2106


def test_naive_times_are_taken_as_utc_and_aware_ones_converted() -> None:
    berlin = timezone(timedelta(hours=1))
    assert utc_datetime(datetime(2024, 1, 1, 12)) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert utc_datetime(datetime(2024, 1, 1, 12, tzinfo=berlin)).hour == 11
    assert utc_timestamp("2024-01-01 12:00") == pd.Timestamp("2024-01-01 12:00", tz="UTC")
    assert utc_timestamp("2024-01-01 12:00+01:00").hour == 11


def test_second_resolution_floors() -> None:
    t = utc_second("2024-01-01 12:00:05.9")
    assert t == pd.Timestamp("2024-01-01 12:00:05", tz="UTC") and t.unit == "s"
    column = utc_seconds(pd.Series(["2024-01-01 12:00:05.9+01:00", None]))
    assert str(column.dtype) == "datetime64[s, UTC]"
    assert column.iloc[0] == pd.Timestamp("2024-01-01 11:00:05", tz="UTC")
    assert column.isna().tolist() == [False, True]
