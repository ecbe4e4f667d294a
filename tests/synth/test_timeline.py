"""Tests for synth/timeline.py: month arithmetic and the calendar of month starts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.synth.timeline import FAR_DAY, add_months, build_calendar, term_end


def days(*dates: str) -> np.ndarray:
    return np.asarray(dates, dtype="M8[D]").astype(np.int64)


def test_adding_months_clamps_to_the_end_of_shorter_months() -> None:
    start = days("2024-01-31", "2024-03-15", "2023-12-31")
    assert (add_months(start, 1) == days("2024-02-29", "2024-04-15", "2024-01-31")).all()
    assert (
        add_months(start, np.array([-1, 12, 2])) == days("2023-12-31", "2025-03-15", "2024-02-29")
    ).all()


def test_a_rolling_term_has_no_end() -> None:
    ends = term_end(days("2024-05-10", "2024-05-10"), np.array([12, 0]))
    assert ends[0] == days("2025-05-10")[0] and ends[1] == FAR_DAY


def test_the_calendar_starts_on_the_1st_and_runs_past_the_end() -> None:
    cal = build_calendar(pd.Timestamp("2024-01-01"), 3, 90)
    assert cal.end == days("2024-04-01")[0]
    assert len(cal.day) > cal.months + 90 // 28
    with pytest.raises(ValueError, match="1st of a month"):
        build_calendar(pd.Timestamp("2024-01-02", tz="UTC"), 3, 90)
