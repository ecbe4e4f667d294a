"""A score run's date and coverage on Spark: the default as_of, the clients scored and skipped.

The rules are one machine's (``domain.coverage``), applied to every partition of clients and
combined on the driver: the end of the data and the end of the contracts are the latest of their
partitions' (each is the midnight after a latest timestamp, which only grows with the data, so the
latest over partitions is the whole data's); clients, active clients and skipped clients by reason
are sums over partitions (all of a client's contracts are in its partition).

Without ``--as-of`` this costs one more pass over the data before scoring (each partition
validated to read its dates) and, only when the contracts stop well before the other tables, a
second one (the clients active at both candidate dates).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

import pandas as pd

from churnguard.domain.churn import active_clients, observation_end
from churnguard.domain.coverage import Coverage, ScoringDate, choose_as_of, contracts_end
from churnguard.domain.problems import Problem
from churnguard.domain.timeaxis import utc_second
from churnguard.spark.tables import PartitionTables, by_bucket, raise_problems

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_DATES = "end_s long, contracts_end_s long, problem string"
_COUNTS = "when_s long, active long"


def spark_default_as_of(packed: DataFrame, layout: PartitionTables, buckets: int) -> ScoringDate:
    """``domain.coverage.default_as_of`` over every partition of the packed tables."""
    rows = (
        by_bucket(packed, buckets)
        .applyInPandas(lambda group: _dates_of(layout, group), _DATES)
        .collect()
    )
    raise_problems([problem_of(r.problem) for r in rows if r.problem])
    ends = [r.end_s for r in rows if r.end_s is not None]
    if not ends:
        raise ValueError("no timestamps in the data, so there is no end of observation")
    end = _stamp(max(ends))
    found = [r.contracts_end_s for r in rows if r.contracts_end_s is not None]
    stop = _stamp(max(found)) if found else None
    counts: dict[pd.Timestamp, int] = {}

    def active_at(when: pd.Timestamp) -> int:
        if not counts:  # both dates in one pass
            dates = [end] if stop is None else [end, stop]
            counts.update(_active_counts(packed, layout, buckets, dates))
        return counts[when]

    return choose_as_of(end, stop, active_at)


def coverage_text(data_coverage: Coverage) -> str:
    """A partition's coverage as JSON (``summed_coverage`` adds them up)."""
    found = asdict(data_coverage)
    found.pop("as_of")
    return json.dumps(found)


def summed_coverage(texts: Sequence[str], as_of: pd.Timestamp) -> Coverage:
    """The run's coverage: the partitions' (``coverage_text``) added up."""
    parts = [json.loads(t) for t in texts]
    skipped: dict[str, int] = {}
    for part in parts:
        for reason, n in part["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + int(n)
    return Coverage(
        utc_second(as_of),
        sum(int(p["clients"]) for p in parts),
        sum(int(p["active"]) for p in parts),
        skipped,
    )


def problem_text(problem: Problem) -> str:
    """A partition's data problem as JSON (its row positions left out: not known on Spark)."""
    return json.dumps({**asdict(problem), "rows": []})


def problem_of(text: str) -> Problem:
    """A problem from ``problem_text``."""
    return Problem(**{**json.loads(text), "rows": ()})


# --- in each partition ---------------------------------------------------------------------------


def _dates_of(layout: PartitionTables, group: pd.DataFrame) -> pd.DataFrame:
    """One partition's end of data and end of contracts (seconds), or its data errors."""
    data, problems = layout.crm(group)
    errors = [p for p in problems if p.severity == "error"]
    if data is None or errors:
        texts = [problem_text(p) for p in errors]
        return pd.DataFrame(
            {"end_s": [None] * len(texts), "contracts_end_s": None, "problem": texts}
        )
    try:
        end: int | None = int(observation_end(data).timestamp())
    except ValueError:  # no timestamps in this partition
        end = None
    stop = contracts_end(data)
    stop_s = int(stop.timestamp()) if stop is not None else None
    return pd.DataFrame({"end_s": [end], "contracts_end_s": [stop_s], "problem": [None]})


def _active_counts(
    packed: DataFrame, layout: PartitionTables, buckets: int, dates: Sequence[pd.Timestamp]
) -> dict[pd.Timestamp, int]:
    """How many clients are active at each date, over every partition."""
    seconds = [int(d.timestamp()) for d in dates]

    def count(group: pd.DataFrame) -> pd.DataFrame:
        data, _ = layout.crm(group)
        assert data is not None, "the dates pass raised on every data error"
        found = [len(active_clients(data.contracts, _stamp(s))) for s in seconds]
        return pd.DataFrame({"when_s": seconds, "active": found})

    rows = by_bucket(packed, buckets).applyInPandas(count, _COUNTS).collect()
    totals = {s: 0 for s in seconds}
    for row in rows:
        totals[row.when_s] += row.active
    return {_stamp(s): n for s, n in totals.items()}


def _stamp(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")
