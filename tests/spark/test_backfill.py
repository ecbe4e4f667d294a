"""Tests for spark.backfill: the training dataset built on Spark is one machine's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pandas.testing import assert_frame_equal

from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping
from churnguard.spark.backfill import backfill_dataset, digest_parts, spark_digest
from churnguard.training.dataset import TrainOptions, build_dataset


def test_the_snapshot_features_on_spark_are_one_machines(spark, parquet_dir: Path) -> None:
    data, _ = load_crm(parquet_dir)
    expected = build_dataset(data, TrainOptions())
    found = backfill_dataset(spark, str(parquet_dir), Mapping(), TrainOptions(), buckets=3)
    got = found.dataset
    assert got.observed_until == expected.observed_until
    assert got.feature_set == expected.feature_set
    assert_frame_equal(got.labels, expected.labels)
    assert_frame_equal(got.features, expected.features, check_exact=True)
    assert len(got.features) > 1000
    assert got.data.interactions.empty  # the activity stayed on the cluster
    some = expected.labels.loc[
        expected.labels["as_of"] == expected.dates[-1], ["client_id", "as_of"]
    ]
    assert_frame_equal(
        got.compute(got.data, some, expected.feature_set),
        expected.compute(expected.data, some, expected.feature_set),
        check_exact=True,
    )
    # the digest covers every table, whatever the partitions: the whole data's, in one piece
    assert found.digest == spark_digest([digest_parts(data)])
    assert found.digest.startswith("spark:")


def test_the_spark_digest_sees_a_change_in_any_table_but_not_the_partitioning(
    parquet_dir: Path,
) -> None:
    data, _ = load_crm(parquet_dir)
    whole = spark_digest([digest_parts(data)])
    ids = data.clients["client_id"].astype(str)
    halves = [data.for_clients(ids[:100]), data.for_clients(ids[100:])]
    assert spark_digest([digest_parts(half) for half in halves]) == whole
    for name in ("interactions", "feedback", "invoices", "tickets", "events"):
        assert len(data.table(name)) > 0, name
        changed = replace(data, **{name: data.table(name).iloc[1:]})  # one row fewer
        assert spark_digest([digest_parts(changed)]) != whole, name
