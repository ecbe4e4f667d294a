"""Tests for spark.scoring: on a local Spark the scores equal one machine's, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnguard.domain.churn import observation_end
from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping
from churnguard.scoring.partition import score_partition
from churnguard.scoring.scorer import Scorer
from churnguard.spark.scoring import checked_scores, score_frame
from churnguard.spark.tables import read_sources


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
