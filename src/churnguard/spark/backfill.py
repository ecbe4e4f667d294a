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

The data digest (MLflow's, and the promotion gate's "same data" check) covers every table and is
computed in pass (1): per table, its dtypes, its row count and the sum (mod 2**64) of its rows'
``pd.util.hash_pandas_object`` hashes, over every partition. It is not one machine's
``data_digest`` (a sha256 over every row hash in row order, which would need each row's hash back
on the driver in source order: 8 bytes a row) and is marked ``spark:`` so the two never compare
equal: a champion trained on one engine is re-evaluated on the other's data, as for new data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.domain.churn import observation_end
from churnguard.domain.contract import TABLES, CRMData
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
_HISTORY = "end_s long, event_types string, digest string, problem string"
DIGEST_PREFIX = "spark:"


@dataclass(frozen=True)
class Backfill:
    """The training dataset built on Spark and the digest of the whole data."""

    dataset: Dataset
    digest: str


def backfill_dataset(
    spark: SparkSession,
    source: str,
    mapping: Mapping,
    options: TrainOptions,
    buckets: int | None = None,
) -> Backfill:
    """``build_dataset`` with the features computed on Spark, and the data's digest."""
    from pyspark import StorageLevel

    tables = read_sources(spark, source, mapping)
    raise_problems(tables.problems)
    n = buckets or default_buckets(spark, tables)
    packed = pack_by_client(tables, mapping, n).persist(StorageLevel.MEMORY_AND_DISK)
    layout = PartitionTables(tables.names, tables.schemas, mapping)
    end, event_types, digest = _history(packed, layout, n)
    skeleton = _driver_data(packed, layout)
    compute = SparkFeatures(spark, packed, layout, n)
    feature_set = FeatureSet(event_types, skeleton.attributes)
    return Backfill(build_dataset(skeleton, options, end, feature_set, compute), digest)


def _history(
    packed: DataFrame, layout: PartitionTables, buckets: int
) -> tuple[pd.Timestamp, tuple[str, ...], str]:
    """The whole data's end (``observation_end``), event types and digest, from every partition."""
    rows = by_bucket(packed, buckets).applyInPandas(lambda g: _history_of(layout, g), _HISTORY)
    found = rows.collect()
    problems = [Problem(**{**json.loads(r.problem), "rows": ()}) for r in found if r.problem]
    raise_problems(problems)
    ends = [r.end_s for r in found if r.end_s is not None]
    if not ends:
        raise ValueError("no timestamps in the data, so there is no end of observation")
    types = sorted({t for r in found if r.event_types for t in json.loads(r.event_types)})
    digest = spark_digest([json.loads(r.digest) for r in found if r.digest])
    return pd.Timestamp(max(ends), unit="s", tz="UTC"), tuple(types), digest


def _history_of(layout: PartitionTables, group: pd.DataFrame) -> pd.DataFrame:
    """One partition's end of data (seconds), event types and digest parts, or its data errors."""
    data, problems = layout.crm(group)
    errors = [p for p in problems if p.severity == "error"]
    if data is None or errors:
        texts = [json.dumps({**p.__dict__, "rows": []}) for p in errors]
        empty = [None] * len(texts)
        return pd.DataFrame(
            {"end_s": empty, "event_types": empty, "digest": empty, "problem": texts}
        )
    try:
        end: int | None = int(observation_end(data).timestamp())
    except ValueError:  # no timestamps in this partition
        end = None
    types = json.dumps(list(event_types_in(data)))
    digest = json.dumps(digest_parts(data))
    return pd.DataFrame(
        {"end_s": [end], "event_types": [types], "digest": [digest], "problem": [None]}
    )


def digest_parts(data: CRMData) -> dict[str, tuple[str, int, int]]:
    """Per table of some data: (dtypes, rows, sum of the rows' hashes mod 2**64)."""
    parts: dict[str, tuple[str, int, int]] = {}
    for name, frame in data.tables().items():
        hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        dtypes = str([(c, str(t)) for c, t in frame.dtypes.items()])
        parts[name] = (dtypes, len(frame), int(hashes.sum(dtype=np.uint64)))
    return parts


def spark_digest(parts: Sequence[dict[str, Any]]) -> str:
    """The whole data's digest from every partition's ``digest_parts`` (module docstring)."""
    h = hashlib.sha256()
    for name in TABLES:
        found = [p[name] for p in parts if name in p]
        dtypes = sorted({str(d) for d, rows, _ in found if rows})
        rows = sum(int(r) for _, r, _ in found)
        total = sum(int(t) for _, _, t in found) % 2**64
        h.update(f"{name}:{dtypes}:{rows}:{total}".encode())
    return DIGEST_PREFIX + h.hexdigest()


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


__all__: Sequence[str] = ("Backfill", "SparkFeatures", "backfill_dataset")
