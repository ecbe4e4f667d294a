"""Batch scoring on Spark: ``score_partition`` in each partition of clients, scores to Parquet.

The scorer is pickled once and broadcast; each Python worker unpickles it once. Each partition
(a bucket of clients, see ``tables``) rebuilds its clients' CRM data with the same mapping and
validation as one machine and calls ``scoring.partition.score_partition``: the same features,
probabilities, drivers and actions, bit for bit (tests/spark). Data problems found in any
partition stop the run before anything is written, listed as ``churnguard validate`` lists them.
Each partition also counts its clients, active clients and skipped clients by reason
(``domain.coverage``): their sums are the run's coverage, recorded in ``churnguard runs``.
"""

from __future__ import annotations

import heapq
import logging
import pickle
import time
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnguard.domain.coverage import Coverage, ScoringDate, scoring_coverage
from churnguard.domain.mapping import Mapping
from churnguard.domain.problems import Problem
from churnguard.scoring.batch import TOP_CLIENTS, BatchSummary, summarize
from churnguard.scoring.partition import ScoreColumns, score_partition
from churnguard.scoring.score import score_as_of
from churnguard.scoring.scorer import Scorer
from churnguard.spark.coverage import (
    coverage_text,
    problem_of,
    problem_text,
    spark_default_as_of,
    summed_coverage,
)
from churnguard.spark.tables import (
    PartitionTables,
    SourceTables,
    by_bucket,
    pack_by_client,
    raise_problems,
    read_sources,
)
from churnguard.store.columns import PER_ROW, ScoreRows
from churnguard.store.scores import ScoreStore, ScoreSummary

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

CLIENTS_PER_BUCKET = 20_000  # default partition size: big enough for the vectorised engine
SCORES = (
    "as_of timestamp, model_version string, client_id string, probability double, band string, "
    "revenue_at_risk double, monthly_value double, account_manager string, segment string, "
    "client_name string, feature_digest string, drivers string, actions string, change string, "
    "curve string, explained boolean"
)
PROBLEM = "problem"  # a partition's data problem as JSON (client_id null on such rows)
COVERAGE = "coverage"  # a partition's coverage as JSON (one row a partition, client_id null)
NOTES = f"{PROBLEM} string, {COVERAGE} string"
SUMMARY_COLUMNS = ("client_id", "probability", "band", "revenue_at_risk", "client_name")


@dataclass(frozen=True)
class ScoringJob:
    """What every partition needs: the tables' layout, the broadcast scorer, the run's options."""

    tables: PartitionTables
    scorer: Broadcast[bytes]
    as_of: datetime
    drivers: bool
    explain_from: float
    previous: Broadcast[bytes] | None


def default_buckets(spark: SparkSession, tables: SourceTables) -> int:
    """Partitions of clients: at most about CLIENTS_PER_BUCKET each, a multiple of the cores
    (so the last wave of tasks keeps every core busy)."""
    clients = tables.frames["clients"].count()
    cores = max(1, spark.sparkContext.defaultParallelism)
    waves = max(1, -(-clients // (CLIENTS_PER_BUCKET * cores)))
    return waves * cores


def score_frame(
    spark: SparkSession,
    tables: SourceTables,
    mapping: Mapping,
    scorer: Scorer,
    as_of: datetime,
    drivers: bool = True,
    explain_from: float = 0.0,
    previous: MappingABC[str, ScoreSummary] | None = None,
    buckets: int | None = None,
) -> DataFrame:
    """The scores of every client active at as_of (lazy), with the partitions' notes.

    Rows with a note (``client_id`` null) carry a partition's data problem or its coverage
    instead of a score: ``checked_run`` raises on errors and takes them out.
    """
    raise_problems(tables.problems)
    n = buckets or default_buckets(spark, tables)
    packed = pack_by_client(tables, mapping, n)
    layout = PartitionTables(tables.names, tables.schemas, mapping)
    return score_packed(spark, packed, layout, scorer, as_of, drivers, explain_from, previous, n)


def score_packed(
    spark: SparkSession,
    packed: DataFrame,
    layout: PartitionTables,
    scorer: Scorer,
    as_of: datetime,
    drivers: bool,
    explain_from: float,
    previous: MappingABC[str, ScoreSummary] | None,
    buckets: int,
) -> DataFrame:
    """``score_frame`` of tables already packed by client (``tables.pack_by_client``)."""
    context = spark.sparkContext
    job = ScoringJob(
        layout,
        context.broadcast(pickle.dumps(scorer)),
        score_as_of(as_of),
        drivers,
        explain_from,
        context.broadcast(pickle.dumps(dict(previous))) if previous else None,
    )
    return by_bucket(packed, buckets).applyInPandas(
        lambda group: _score_group(job, group), f"{SCORES}, {NOTES}"
    )


def checked_scores(scores: DataFrame) -> DataFrame:
    """The scores, persisted, after raising DataContractError on any partition's data error."""
    return checked_run(scores, pd.Timestamp(0, tz="UTC"))[0]


def checked_run(scores: DataFrame, as_of: datetime) -> tuple[DataFrame, Coverage]:
    """The scores (persisted) and the run's coverage, after raising DataContractError on any
    partition's data error; warnings are logged."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as sf

    scores = scores.persist(StorageLevel.MEMORY_AND_DISK)
    noted = sf.col(PROBLEM).isNotNull() | sf.col(COVERAGE).isNotNull()
    notes = scores.where(noted).select(PROBLEM, COVERAGE).collect()
    problems = list(dict.fromkeys(problem_of(r[PROBLEM]) for r in notes if r[PROBLEM]))
    try:
        raise_problems(problems)
    except Exception:
        scores.unpersist()
        raise
    for problem in problems:
        logger.warning("%s", problem)
    covered = summed_coverage([r[COVERAGE] for r in notes if r[COVERAGE]], pd.Timestamp(as_of))
    return scores.where(~noted).drop(PROBLEM, COVERAGE), covered


# --- in each partition ---------------------------------------------------------------------------


def unpickled(value: Broadcast[bytes]) -> Any:
    """A broadcast's object, unpickled once per worker process (kept on the broadcast, which
    the worker keeps in its registry across tasks)."""
    found = getattr(value, "_churnguard_object", None)
    if found is None:
        found = pickle.loads(value.value)
        value._churnguard_object = found  # type: ignore[attr-defined]
    return found


def _score_group(job: ScoringJob, group: pd.DataFrame) -> pd.DataFrame:
    """One bucket of clients: their scores and coverage, or their data problems."""
    data, problems = job.tables.crm(group)
    if data is None:
        return _note_rows(problems)
    scorer: Scorer = unpickled(job.scorer)
    previous = unpickled(job.previous) if job.previous is not None else None
    columns = score_partition(
        data, scorer, job.as_of, job.drivers, job.explain_from, previous, threads=1
    )
    frame = columns.frame().assign(**{PROBLEM: None, COVERAGE: None})
    notes = _note_rows(problems, coverage_text(scoring_coverage(data, pd.Timestamp(job.as_of))))
    return pd.concat([frame, notes], ignore_index=True)


def _note_rows(problems: Sequence[Problem], coverage: str | None = None) -> pd.DataFrame:
    """A row per problem (and one for the coverage): every score column empty."""
    names = [part.split()[0] for part in SCORES.split(", ")]
    texts = [problem_text(p) for p in problems]
    n = len(texts) + (coverage is not None)
    return pd.DataFrame(
        {
            **{name: [None] * n for name in names},
            PROBLEM: texts + [None] * (coverage is not None),
            COVERAGE: [None] * len(texts) + ([coverage] if coverage is not None else []),
        }
    )


# --- a whole run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkScoreRun:
    """What a Spark score run did: its summary, its coverage, why its as_of (empty: the end)."""

    summary: BatchSummary
    coverage: Coverage
    note: str = ""


def score_to_parquet(
    spark: SparkSession,
    source: str,
    mapping: Mapping,
    scorer: Scorer,
    as_of: datetime | None,
    out: str,
    drivers: bool = True,
    explain_from: float = 0.0,
    store: ScoreStore | None = None,
    buckets: int | None = None,
) -> SparkScoreRun:
    """Score every client active at as_of (None: the default date, ``spark.coverage``) into a
    Parquet table at ``out`` (replaced), and into the score store when one is given (its previous
    scores then give "what changed")."""
    from pyspark import StorageLevel

    from churnguard.spark.session import progress

    started = time.perf_counter()
    tables = read_sources(spark, source, mapping)
    raise_problems(tables.problems)
    n = buckets or default_buckets(spark, tables)
    packed = pack_by_client(tables, mapping, n)
    layout = PartitionTables(tables.names, tables.schemas, mapping)
    chosen = ScoringDate(pd.Timestamp(as_of)) if as_of is not None else None
    if chosen is None:  # the dates pass, then scoring, read the same shuffled data
        packed = packed.repartition(n, "bucket").persist(StorageLevel.MEMORY_AND_DISK)
        with progress(spark, "default as_of on Spark"):
            chosen = spark_default_as_of(packed, layout, n)
    when = score_as_of(chosen.as_of)
    previous = store.previous_scores(when) if store is not None else None
    with progress(spark, "scoring on Spark"):
        frame = score_packed(
            spark, packed, layout, scorer, when, drivers, explain_from, previous, n
        )
        scores, covered = checked_run(frame, when)
        scores.write.mode("overwrite").parquet(out)
    spark.catalog.clearCache()  # the persisted scores (and packed tables)
    if store is not None:
        columns = read_scores(out, when, scorer.version)
        store.save_score_rows(columns.rows, source="batch")
    else:  # the summary's columns only: the drivers of a million clients stay on disk
        columns = read_scores(out, when, scorer.version, SUMMARY_COLUMNS)
    seconds = time.perf_counter() - started
    workers = spark.sparkContext.defaultParallelism
    summary = summarize(columns, scorer, seconds, drivers, explain_from, workers)
    return SparkScoreRun(summary, covered, chosen.note)


def read_scores(
    out: str, as_of: datetime, version: str, only: Sequence[str] = PER_ROW
) -> ScoreColumns:
    """A Parquet table of scores (``score_to_parquet``'s) as ScoreColumns, in client id order.

    Columns not in ``only`` are left empty ("") but for the drivers of the clients a summary
    names (``TOP_CLIENTS`` by revenue at risk), which are read for their top reason.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pds

    found = pds.dataset(out, format="parquet")
    table = found.to_table(columns=[*dict.fromkeys([*only, "client_id", "explained"])])
    table = table.sort_by("client_id")
    columns: dict[str, list[Any]] = {
        n: table[n].to_pylist() if n in only else [""] * len(table) for n in PER_ROW
    }
    if "drivers" not in only and len(table):
        columns["drivers"] = _top_drivers(found, columns)
    rows = ScoreRows(as_of=as_of, model_version=version, **columns)
    return ScoreColumns(rows, pc.fill_null(table["explained"], False).to_numpy())


def _top_drivers(found: Any, columns: dict[str, list[Any]]) -> list[str]:
    """Drivers "[]" for every client but those a summary names, read for them alone."""
    import pyarrow.compute as pc

    ids, risk = columns["client_id"], columns["revenue_at_risk"]
    top = heapq.nlargest(TOP_CLIENTS, range(len(ids)), key=lambda i: (risk[i], ids[i]))
    wanted = [ids[i] for i in top]
    part = found.to_table(
        columns=["client_id", "drivers"], filter=pc.field("client_id").isin(wanted)
    )
    texts = dict(zip(part["client_id"].to_pylist(), part["drivers"].to_pylist(), strict=True))
    drivers = ["[]"] * len(ids)
    for i in top:
        drivers[i] = texts[ids[i]]
    return drivers
