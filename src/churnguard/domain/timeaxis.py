"""The time axis: the range of instants churnguard can encode, and conversion to UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

DAY = 86_400  # seconds
TIME_BITS = 33  # the feature engine encodes seconds in 33 bits: 1833..2106
TIME_OFFSET = 1 << 32
TIME_MAX = (1 << TIME_BITS) - 1
EARLIEST_TIME = -TIME_OFFSET  # epoch seconds the engine can encode: 1833-11-24T17:31:44Z ..
LATEST_TIME = TIME_MAX - TIME_OFFSET  # .. 2106-02-07T06:28:15Z; others would be clamped
EARLIEST = datetime.fromtimestamp(EARLIEST_TIME, UTC)
LATEST = datetime.fromtimestamp(LATEST_TIME, UTC)


def utc_timestamp(ts: pd.Timestamp | str | datetime) -> pd.Timestamp:
    """A pandas timestamp in UTC; a naive one is taken to be UTC already."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_datetime(value: datetime) -> datetime:
    """A datetime in UTC; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_second(ts: pd.Timestamp | str | datetime) -> pd.Timestamp:
    """A pandas timestamp in UTC floored to the second (the engine's resolution); naive = UTC."""
    return utc_timestamp(ts).floor("s").as_unit("s")


def utc_seconds(values: pd.Series) -> pd.Series:
    """A column of datetimes (or their text) as datetime64[s, UTC], floored; naive = UTC."""
    stamps = pd.to_datetime(values)
    utc = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    return utc.dt.floor("s").dt.as_unit("s")
