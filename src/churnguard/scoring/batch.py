"""Batch scoring: every client active at as_of into the score store, and a summary of the run."""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from churnguard.domain.contract import CRMData
from churnguard.scoring.risk import RISK_BANDS
from churnguard.scoring.score import ClientScore, score_as_of
from churnguard.scoring.scorer import Scorer
from churnguard.store.scores import ScoreRecord, ScoreStore

TOP_CLIENTS = 5  # clients by revenue at risk kept in a BatchSummary


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run wrote."""

    n_scored: int
    by_band: dict[str, int]
    revenue_at_risk: float  # total, per year
    seconds: float
    as_of: datetime
    model_version: str
    top: list[ClientScore]  # highest revenue at risk first


def score_to_store(
    data: CRMData,
    scorer: Scorer,
    store: ScoreStore,
    as_of: datetime,
    progress: bool = True,
    drivers: bool = True,
    explain_from: float = 0.0,
) -> BatchSummary:
    """Score every client active at as_of into the store, in one transaction.

    ``drivers`` and ``explain_from`` are as in ``Scorer.score_data``.

    Each score's "what changed" compares it with the client's latest stored score before as_of,
    so re-running an as_of rewrites the same rows with the same change (the store upserts on
    client, as_of and model version).
    """
    started = time.perf_counter()
    when = score_as_of(as_of)
    previous = store.previous_scores(when)
    records: list[ScoreRecord] = []
    bands: Counter[str] = Counter()
    total = 0.0
    top: list[ClientScore] = []
    for chunk in scorer.iter_scores(data, when, drivers, progress, explain_from, previous):
        for s in chunk:
            records.append(s.to_record())
            bands[s.band] += 1
            total += s.revenue_at_risk
        top = heapq.nlargest(TOP_CLIENTS, [*top, *chunk], key=_by_revenue)
    store.save_scores(records, source="batch")
    return BatchSummary(
        n_scored=len(records),
        by_band={band: bands[band] for band in RISK_BANDS},
        revenue_at_risk=total,
        seconds=time.perf_counter() - started,
        as_of=when,
        model_version=scorer.version,
        top=top,
    )


def _by_revenue(s: ClientScore) -> tuple[float, str]:
    return s.revenue_at_risk, s.client_id


def format_summary(summary: BatchSummary) -> str:
    """A batch run in a few lines: counts by band, revenue at risk, the clients to call first."""
    lines = [
        f"Scored {summary.n_scored:,} clients at {summary.as_of:%Y-%m-%d} with model "
        f"{summary.model_version} in {summary.seconds:.1f} s",
        *(f"  {band:<7}{summary.by_band[band]:>10,}" for band in reversed(RISK_BANDS)),
        f"Revenue at risk: {summary.revenue_at_risk:,.0f} per year",
    ]
    if summary.top:
        lines.append(f"Top {len(summary.top)} clients by revenue at risk:")
    for s in summary.top:
        reason = s.drivers[0].reason if s.drivers else "-"
        name = s.client_name or ""
        lines.append(
            f"  {s.client_id:<12} {name[:28]:<28} {s.revenue_at_risk:>12,.0f}  "
            f"p={s.probability:.2f}  {reason}"
        )
    return "\n".join(lines)


__all__: Sequence[str] = ("BatchSummary", "format_summary", "score_to_store")
