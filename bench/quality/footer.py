"""The line every quality benchmark ends with: when, on how many cores, at what load, how long."""

from __future__ import annotations

import datetime as dt
import os
import time


def footer(started: float) -> str:
    """Date and time, cores, 1-minute load average and seconds since ``started`` (perf_counter)."""
    return (
        f"\n{dt.datetime.now().isoformat(timespec='minutes')}, {os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.2f}, total {time.perf_counter() - started:.0f} s"
    )
