"""The training backfill on Spark: the monthly snapshots' features computed per partition of
clients, and only the feature matrix brought back to the driver for fitting.

The driver keeps the clients and contracts (the labels, the snapshot dates, the risk over
several horizons need them, and they are small); the activity tables (interactions, feedback,
invoices, tickets, events) stay on the cluster. Three passes over the tables packed by client
(``tables.pack_by_client``, persisted): (1) each partition's end of data and event types (the
whole data's are their maximum and union), checking the data as one machine would; (2) the
clients and contracts to the driver; (3) ``features.engine.compute_features`` of the labelled
snapshots, which travel to their clients' partitions the same way. ``training.dataset``'s
``build_dataset`` does the rest, as on one machine: the same labels, the same features.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard.domain.churn import observation_end
from churnguard.domain.contract import CRMData
from churnguard.domain.mapping import Mapping
from churnguard.domain.problems import Problem
from churnguard.features.catalog import FeatureSet, event_types_in
from churnguard.features.engine import compute_features
from churnguard.spark.scoring import default_buckets
from churnguard.spark.tables import (
    PartitionTables,
    by_bucket,
    pack_by_client,
    pack_frame,
    raise_problems,
    read_sources,
    unpack_frame,
)
from churnguard.training.dataset import Dataset, TrainOptions, build_dataset

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SNAPSHOTS = "_snapshots"  # the labelled snapshots, packed like a table
_DRIVER_TABLES = ("clients", "contracts")
_HISTORY = "end_s long, event_types string, problem string"


def backfill_dataset(
    spark: SparkSession,
    source: str,
    mapping: Mapping,
    options: TrainOptions,
    buckets: int | None = None,
) -> Dataset:
    """``build_dataset`` with the features computed on Spark (module docstring)."""
    from pyspark import StorageLevel

    tables = read_sources(spark, source, mapping)
    raise_problems(tables.problems)
    n = buckets or default_buckets(spark, tables)
    packed = pack_by_client(tables, mapping, n).persist(StorageLevel.MEMORY_AND_DISK)
    layout = PartitionTables(tables.names, tables.schemas, mapping)
    end, event_types = _history(packed, layout, n)
    skeleton = _driver_data(packed, layout)
    compute = SparkFeatures(spark, packed, layout, n)
    feature_set = FeatureSet(event_types, skeleton.attributes)
    return build_dataset(skeleton, options, end, feature_set, compute)


def _history(
    packed: DataFrame, layout: PartitionTables, buckets: int
) -> tuple[pd.Timestamp, tuple[str, ...]]:
    """The whole data's end (``observation_end``) and event types, from every partition."""
    rows = by_bucket(packed, buckets).applyInPandas(lambda g: _history_of(layout, g), _HISTORY)
    found = rows.collect()
    problems = [Problem(**{**json.loads(r.problem), "rows": ()}) for r in found if r.problem]
    raise_problems(problems)
    ends = [r.end_s for r in found if r.end_s is not None]
    if not ends:
        raise ValueError("no timestamps in the data, so there is no end of observation")
    types = sorted({t for r in found if r.event_types for t in json.loads(r.event_types)})
    return pd.Timestamp(max(ends), unit="s", tz="UTC"), tuple(types)


def _history_of(layout: PartitionTables, group: pd.DataFrame) -> pd.DataFrame:
    """One partition's end of data (seconds) and event types, or its data errors."""
    data, problems = layout.crm(group)
    errors = [p for p in problems if p.severity == "error"]
    if data is None or errors:
        texts = [json.dumps({**p.__dict__, "rows": []}) for p in errors]
        return pd.DataFrame({"end_s": [None] * len(texts), "event_types": None, "problem": texts})
    try:
        end: int | None = int(observation_end(data).timestamp())
    except ValueError:  # no timestamps in this partition
        end = None
    types = json.dumps(list(event_types_in(data)))
    return pd.DataFrame({"end_s": [end], "event_types": [types], "problem": [None]})


def _driver_data(packed: DataFrame, layout: PartitionTables) -> CRMData:
    """The clients and contracts on the driver, read and validated as on one machine."""
    from pyspark.sql import functions as sf

    group = packed.where(sf.col("tbl").isin(*_DRIVER_TABLES)).toPandas()
    kept = {n: layout.schemas[n] for n in _DRIVER_TABLES if n in layout.schemas}
    data, problems = replace(layout, schemas=kept).crm(group)
    raise_problems(problems)
    assert data is not None, "raise_problems raises on any error"
    return data


@dataclass(frozen=True)
class SparkFeatures:
    """``compute_features`` for snapshots of the driver's clients, computed on Spark."""

    spark: SparkSession
    packed: DataFrame
    layout: PartitionTables
    buckets: int

    def __call__(
        self, data: CRMData, snapshots: pd.DataFrame, feature_set: FeatureSet
    ) -> pd.DataFrame:
        """client_id, as_of, then the features, in the snapshots' order (``compute_features``)."""
        as_of = pd.to_datetime(snapshots["as_of"], utc=True).dt.as_unit("s")
        rows = pd.DataFrame(
            {
                "client_id": snapshots["client_id"].astype("str").to_numpy(object),
                "as_of_s": as_of.to_numpy(dtype="datetime64[s]").view(np.int64),
                "position": np.arange(len(snapshots), dtype=np.int64),
            }
        )
        found = self._features(rows, feature_set)
        found = found.sort_values("position", ignore_index=True)
        out: dict[str, object] = {"client_id": snapshots["client_id"].array, "as_of": as_of.array}
        for f in feature_set.features:
            values = found[f.name]
            out[f.name] = pd.Categorical(values.to_numpy(object)) if f.categorical else values
        return pd.DataFrame(out, copy=False)

    def _features(self, rows: pd.DataFrame, feature_set: FeatureSet) -> pd.DataFrame:
        """The snapshots' features from every partition (categoricals as text), with position."""
        from churnguard.spark.session import progress

        snapshots = pack_frame(self.spark, rows, SNAPSHOTS, "client_id", self.buckets)
        schema = ", ".join(
            ["position long"]
            + [
                f"`{f.name}` {'string' if f.categorical else 'double'}"
                for f in feature_set.features
            ]
        )
        layout, names = self.layout, feature_set
        job = by_bucket(self.packed.unionByName(snapshots), self.buckets)
        result = job.applyInPandas(lambda g: _features_of(layout, names, g), schema)
        with progress(self.spark, "snapshot features on Spark"):
            table = result.toArrow()
        return table.to_pandas()


def _features_of(
    layout: PartitionTables, feature_set: FeatureSet, group: pd.DataFrame
) -> pd.DataFrame:
    """One partition's snapshot features (``compute_features``), categoricals as text."""
    rows = unpack_frame(group, SNAPSHOTS)
    if rows is None or not len(rows):
        return pd.DataFrame({"position": pd.Series([], dtype="int64"), **_empty(feature_set)})
    data, _ = layout.crm(group.loc[group["tbl"] != SNAPSHOTS])
    assert data is not None, "the history pass raised on every data error"
    snapshots = pd.DataFrame(
        {
            "client_id": rows["client_id"],
            "as_of": pd.to_datetime(rows["as_of_s"], unit="s", utc=True),
        }
    )
    features = compute_features(data, snapshots, feature_set)
    out: dict[str, object] = {"position": rows["position"].to_numpy()}
    for f in feature_set.features:
        values = features[f.name]
        out[f.name] = values.astype(object).where(values.notna(), None) if f.categorical else values
    return pd.DataFrame(out)


def _empty(feature_set: FeatureSet) -> dict[str, pd.Series]:
    return {
        f.name: pd.Series([], dtype=object if f.categorical else "float64")
        for f in feature_set.features
    }


__all__: Sequence[str] = ("SparkFeatures", "backfill_dataset")
