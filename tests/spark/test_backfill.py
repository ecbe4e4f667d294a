"""Tests for spark.backfill: the training dataset built on Spark is one machine's."""

from __future__ import annotations

from pathlib import Path

from pandas.testing import assert_frame_equal

from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping
from churnguard.spark.backfill import backfill_dataset
from churnguard.training.dataset import TrainOptions, build_dataset


def test_the_snapshot_features_on_spark_are_one_machines(spark, parquet_dir: Path) -> None:
    data, _ = load_crm(parquet_dir)
    expected = build_dataset(data, TrainOptions())
    got = backfill_dataset(spark, str(parquet_dir), Mapping(), TrainOptions(), buckets=3)
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
