"""Tests for spark.scoring: on a local Spark the scores equal one machine's, bit for bit."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from churnguard.domain.churn import observation_end
from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping
from churnguard.scoring.batch import score_to_store
from churnguard.scoring.partition import score_partition
from churnguard.scoring.scorer import Scorer
from churnguard.spark.scoring import checked_scores, score_frame, score_to_parquet
from churnguard.spark.tables import read_sources
from churnguard.store.scores import ScoreStore
from tests.factories import stored_rows


def test_spark_scores_equal_one_machines_bit_for_bit(
    spark, parquet_dir: Path, scorer: Scorer
) -> None:
    data, _ = load_crm(parquet_dir)
    as_of = observation_end(data)
    expected = score_partition(data, scorer, as_of).frame()
    tables = read_sources(spark, str(parquet_dir), Mapping())
    scores = checked_scores(score_frame(spark, tables, Mapping(), scorer, as_of, buckets=3))
    got = scores.toPandas().sort_values("client_id", ignore_index=True)
    assert len(got) == len(expected) > 100
    for name in expected.columns.drop("as_of"):
        assert got[name].tolist() == expected[name].tolist(), name
    assert (pd.to_datetime(got["as_of"], utc=True) == as_of).all()


def test_a_spark_run_stores_and_summarises_what_a_batch_run_does(
    spark, parquet_dir: Path, scorer: Scorer, tmp_path: Path
) -> None:
    data, _ = load_crm(parquet_dir)
    as_of = observation_end(data)
    before = as_of - pd.Timedelta(days=30)
    stores, summaries = [], []
    for engine in ("local", "spark", "parquet only"):
        store = ScoreStore(f"sqlite:///{tmp_path / f'{engine}.db'}").create()
        if engine == "local":
            score_to_store(data, scorer, store, before, False, drivers=False, workers=1)
            summary = score_to_store(data, scorer, store, as_of, False, explain_from=0.1, workers=1)
        else:
            out = str(tmp_path / f"{engine}.parquet")
            kept = store if engine == "spark" else None
            run = partial(score_to_parquet, spark, str(parquet_dir), Mapping(), scorer, store=kept)
            run(before, out, drivers=False)
            summary = run(as_of, out, explain_from=0.1)
        stores.append(store)
        summaries.append(summary)
    local, on_spark, parquet_only = summaries
    for other in (on_spark, parquet_only):
        assert (other.n_scored, other.n_explained, other.by_band, other.top) == (
            local.n_scored, local.n_explained, local.by_band, local.top,
        )  # fmt: skip
        assert other.revenue_at_risk == local.revenue_at_risk
    assert 0 < local.n_explained < local.n_scored and local.top[0].reason
    for name, leave_out in [("scores", ("id", "created_at")), ("score_audit", ("id", "scored_at"))]:
        one, two = (stored_rows(store, name, leave_out) for store in stores[:2])
        assert one == two  # "what changed" included
        assert len(one) > local.n_scored  # two runs: as_of and a month before
    assert stored_rows(stores[2], "scores", ()) == []  # without a store, nothing is stored
