"""The simulated months: day numbers, the calendar of month starts, dates inside a month."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Array = np.ndarray
Chunk = dict[str, Array]
DAY = 86_400
MONTH_S = 30.4375 * DAY  # rates below are per average month
NAT = np.iinfo(np.int64).min  # int64 view of NaT
FAR_DAY = 10**7  # "no end" for rolling contracts, in days since the epoch


@dataclass(frozen=True)
class Calendar:
    """Month starts (days since the epoch) from the first simulated month on."""

    day: Array  # day[t] = first day of month t; runs past the end for forward simulation
    months: int
    horizon_days: int

    @property
    def end(self) -> int:
        return int(self.day[self.months])


def build_calendar(start: pd.Timestamp, months: int, horizon_days: int) -> Calendar:
    """Month starts from `start` (the 1st of a month, UTC midnight) with room to look ahead."""
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.normalize() or ts.day != 1:
        raise ValueError(f"start must be midnight on the 1st of a month, not {start}")
    if months < 1 or horizon_days < 1:
        raise ValueError("months and horizon_days must be positive")
    first = np.datetime64(ts.strftime("%Y-%m"), "M")
    extra = horizon_days // 28 + 30  # forward simulation and renewal terms run past the end
    day = (first + np.arange(months + extra + 1)).astype("M8[D]").astype(np.int64)
    return Calendar(day, months, horizon_days)


def add_months(day: Array, k: Array | int) -> Array:
    """Days `k` months after `day`, clamped to the end of shorter months."""
    d = day.astype("M8[D]")
    month = d.astype("M8[M]")
    dom = (d - month.astype("M8[D]")).astype(np.int64)
    target = month + np.asarray(k).astype("m8[M]")
    length = ((target + 1).astype("M8[D]") - target.astype("M8[D]")).astype(np.int64)
    return target.astype("M8[D]").astype(np.int64) + np.minimum(dom, length - 1)


def term_end(start: Array, term: Array) -> Array:
    """End date of a term starting on `start`: coverage is [start, end) (FAR_DAY when rolling)."""
    return np.where(term > 0, add_months(start, term), FAR_DAY)


def timestamp(day: int) -> pd.Timestamp:
    """A UTC midnight timestamp from days since the epoch."""
    return pd.Timestamp(day * DAY, unit="s", tz="UTC")


def geometric_month(t: int, p: Array, rng: np.random.Generator) -> Array:
    """Month of an outcome that happens each month from t + 1 on with probability p."""
    return t + rng.geometric(p)


def day_in_month(month: Array, cal: Calendar, rng: np.random.Generator) -> Array:
    """A uniform day in each given month."""
    m0 = cal.day[month]
    return m0 + (rng.random(len(month)) * (cal.day[month + 1] - m0)).astype(np.int64)


def schedule_resolutions(schedule: Array, client: Array, month: Array, months: int) -> None:
    """Count resolutions due in each month inside the data."""
    keep = month < months
    np.add.at(schedule, (client[keep], month[keep]), 1)


def known_before(day: Array, end: int) -> Array:
    """Days on or after the end of the data are not known yet (NAT)."""
    return np.where(day < end, day, NAT)
