"""Batch scoring: every client active at as_of into the score store, and a summary of the run.

The scores are built as columns (``scoring.partition``) and written in bulk. With drivers, the
clients are scored in chunks by a pool of worker processes, one thread each: per-row
contributions (``modeling.treeshap``'s numpy tables, or LightGBM's ``pred_contrib``, which barely
gains from a second thread) run on every core, and the per-client work of drivers and actions
too. The pool's processes start from a forkserver (never a fork of this process, whose OpenMP
threads a fork would break) while this process computes the features. The result is the same as
on one process.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import multiprocessing
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from tqdm import tqdm

from churnguard.domain.contract import CRMData
from churnguard.scoring.partition import ClientInfo, ScoreColumns, score_features
from churnguard.scoring.risk import RISK_BANDS
from churnguard.scoring.score import clients_info, score_as_of
from churnguard.scoring.scorer import CHUNK_ROWS, Scorer
from churnguard.store.columns import ScoreRows
from churnguard.store.scores import ScoreStore, ScoreSummary

TOP_CLIENTS = 5  # clients by revenue at risk kept in a BatchSummary
MIN_CHUNK = 1_000  # the smallest chunk of clients a worker process is given


@dataclass(frozen=True)
class TopClient:
    """One of the clients to call first: revenue at risk, probability, top reason."""

    client_id: str
    client_name: str | None
    revenue_at_risk: float
    probability: float
    reason: str | None  # the top driver's reason (None: no drivers)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch run wrote, and what it left out."""

    n_scored: int
    by_band: dict[str, int]
    revenue_at_risk: float  # total, per year
    seconds: float
    as_of: datetime
    model_version: str
    top: list[TopClient]  # highest revenue at risk first
    n_explained: int = 0  # clients given drivers and actions
    explain_from: float | None = None  # None: a scores-only run
    workers: int = 1  # processes that scored


def score_to_store(
    data: CRMData,
    scorer: Scorer,
    store: ScoreStore,
    as_of: datetime,
    progress: bool = True,
    drivers: bool = True,
    explain_from: float = 0.0,
    workers: int | None = None,
) -> BatchSummary:
    """Score every client active at as_of into the store, in one transaction.

    ``drivers`` and ``explain_from`` are as in ``Scorer.score_data``; ``workers`` is the number of
    processes that score (default: one per core with drivers; scores only, or 1: this process).

    Each score's "what changed" compares it with the client's latest stored score before as_of,
    so re-running an as_of rewrites the same rows with the same change (the store upserts on
    client, as_of and model version).
    """
    started = time.perf_counter()
    when = score_as_of(as_of)
    if workers is None:  # scores only: the pool's start costs more than it saves
        workers = (os.cpu_count() or 1) if drivers else 1
    # the pool's processes start, and the previous scores are read, while the features are computed
    with (
        _pool_beside(scorer, workers) as pool,
        ThreadPoolExecutor(1) as reader,
        store.score_rows_writer("batch") as write,  # each part as it comes; merged at the end
    ):
        reading = reader.submit(store.previous_scores, when)
        features = scorer.features_at(data, when)
        info = clients_info(data, features["client_id"])
        previous = reading.result()
        parts = _score_chunks(
            pool(), workers, scorer, features, when, info, previous, drivers, explain_from
        )
        done = []
        with tqdm(total=len(features), unit="client", disable=None if progress else True) as bar:
            for part in parts:  # the pool's workers go on with the next parts meanwhile
                write(part.rows)
                done.append(part)
                bar.update(len(part))
    columns = ScoreColumns.concat(done, when, scorer.version)
    return summarize(columns, scorer, time.perf_counter() - started, drivers, explain_from, workers)


def _score_chunks(
    pool: Executor | None,
    workers: int,
    scorer: Scorer,
    features: pd.DataFrame,
    when: datetime,
    info: Sequence[ClientInfo],
    previous: Mapping[str, ScoreSummary],
    drivers: bool,
    explain_from: float,
) -> Iterator[ScoreColumns]:
    """The clients' score columns, chunk by chunk in client order (in the pool, if any)."""
    if pool is None:  # scores only, or one process: one chunk, no copies
        cores = os.cpu_count() or 1
        yield score_features(
            scorer, features, when, info, previous, drivers, explain_from, predict_threads=cores
        )
        return
    chunks = []  # each worker predicts its chunk: a row's bits do not depend on the others'
    for start, stop in _chunk_bounds(len(features), workers):
        part = features.iloc[start:stop]
        known = {c: previous[c] for c in part["client_id"] if c in previous}
        chunks.append((part, when, info[start:stop], known, drivers, explain_from))
    yield from pool.map(_score_chunk, chunks)


def _chunk_bounds(n: int, workers: int) -> list[tuple[int, int]]:
    """Chunks of clients for the pool, smaller towards the end (what is left / (4 x workers),
    between ``MIN_CHUNK`` and ``CHUNK_ROWS``), so that the workers finish close together."""
    bounds, start = [], 0
    while start < n:
        size = min(CHUNK_ROWS, max(MIN_CHUNK, (n - start) // (4 * workers)))
        bounds.append((start, min(n, start + size)))
        start += size
    return bounds


# --- the worker processes ------------------------------------------------------------------------

_scorer: Scorer | None = None  # a worker process's scorer, set once as it starts


@contextlib.contextmanager
def _pool_beside(scorer: Scorer, workers: int) -> Iterator[Callable[[], Executor | None]]:
    """Worker processes that each hold the scorer, started in a thread while the caller goes on:
    the first waits for the forkserver to import the libraries (~2 s that this process spends on
    the features meanwhile). The block gets a function that waits for the pool and gives it (None:
    no pool, for one worker); the pool is shut down when the block ends."""
    if workers <= 1:
        yield lambda: None
        return
    with ThreadPoolExecutor(1) as starter:
        starting = starter.submit(_pool, scorer, workers)
        try:
            yield starting.result
        finally:
            if starting.exception() is None:  # waits for the start, if the block did not
                starting.result().shutdown()  # waits for the processes, as ``with pool`` does


def _pool(scorer: Scorer, workers: int) -> ProcessPoolExecutor:
    """Worker processes that each hold the scorer, all started."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # the libraries load once, in the forkserver
    pool = ProcessPoolExecutor(
        workers, context, initializer=_take_scorer, initargs=(pickle.dumps(scorer),)
    )
    for _ in range(workers):  # start them now, not at the first chunk
        pool.submit(os.getpid)
    return pool


def _take_scorer(pickled: bytes) -> None:
    global _scorer
    _scorer = pickle.loads(pickled)


def _score_chunk(
    args: tuple[
        pd.DataFrame, datetime, Sequence[ClientInfo], Mapping[str, ScoreSummary], bool, float
    ],
) -> ScoreColumns:
    """One chunk of clients, in a worker process, on one thread."""
    assert _scorer is not None, "a worker process without its scorer"
    features, when, info, previous, drivers, explain_from = args
    return score_features(_scorer, features, when, info, previous, drivers, explain_from, 1)


# --- the summary ---------------------------------------------------------------------------------


def summarize(
    columns: ScoreColumns,
    scorer: Scorer,
    seconds: float,
    drivers: bool,
    explain_from: float,
    workers: int,
) -> BatchSummary:
    """A run's summary from its score columns (a batch run's or a Spark job's)."""
    rows = columns.rows
    bands = Counter(rows.band)
    ranked = heapq.nlargest(
        TOP_CLIENTS, range(len(rows)), key=lambda i: (rows.revenue_at_risk[i], rows.client_id[i])
    )
    return BatchSummary(
        n_scored=len(rows),
        by_band={band: bands[band] for band in RISK_BANDS},
        revenue_at_risk=sum(rows.revenue_at_risk),
        seconds=seconds,
        as_of=rows.as_of,
        model_version=scorer.version,
        top=[_top_client(rows, i) for i in ranked],
        n_explained=int(columns.explained.sum()),
        explain_from=explain_from if drivers else None,
        workers=workers,
    )


def _top_client(rows: ScoreRows, i: int) -> TopClient:
    found = json.loads(rows.drivers[i])
    return TopClient(
        rows.client_id[i],
        rows.client_name[i],
        rows.revenue_at_risk[i],
        rows.probability[i],
        found[0]["reason"] if found else None,
    )


def format_summary(summary: BatchSummary) -> str:
    """A batch run in a few lines: counts by band, revenue at risk, the clients to call first."""
    lines = [
        f"Scored {summary.n_scored:,} clients at {summary.as_of:%Y-%m-%d} with model "
        f"{summary.model_version} in {summary.seconds:.1f} s",
        *(f"  {band:<7}{summary.by_band[band]:>10,}" for band in reversed(RISK_BANDS)),
        f"Revenue at risk: {summary.revenue_at_risk:,.0f} per year",
        _explained(summary),
    ]
    if summary.top:
        lines.append(f"Top {len(summary.top)} clients by revenue at risk:")
    for s in summary.top:
        name = s.client_name or ""
        lines.append(
            f"  {s.client_id:<12} {name[:28]:<28} {s.revenue_at_risk:>12,.0f}  "
            f"p={s.probability:.2f}  {s.reason or '-'}"
        )
    return "\n".join(lines)


def _explained(summary: BatchSummary) -> str:
    """Which clients got drivers and actions, and which did not (and why)."""
    if summary.explain_from is None:
        return "Drivers and actions: none (scores only, --no-drivers)"
    left = summary.n_scored - summary.n_explained
    line = f"Drivers and actions: {summary.n_explained:,} clients"
    if left:
        line += f"; not for {left:,} scored below {summary.explain_from:g} (--explain-from)"
    return line + f" ({summary.workers} process{'es' if summary.workers > 1 else ''})"


__all__: Sequence[str] = (
    "BatchSummary",
    "TopClient",
    "format_summary",
    "score_to_store",
    "summarize",
)
