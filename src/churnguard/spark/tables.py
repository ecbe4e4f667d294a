"""CRM tables on Spark: read through the mapping, packed by client, unpacked per partition.

Every table keeps its source columns (the mapping is applied inside each partition, by the same
``map_table`` and ``validate`` as on one machine). Each row gets a bucket from the column the
mapping reads the client id from (``pmod(xxhash64(client id), buckets)``, stored as that
bucket's partition key), so all rows of a client, in every table, meet in one partition, and each
partition holds exactly one bucket (a plain ``repartition`` by bucket numbers puts two buckets in
some partitions and none in others, leaving cores idle). A table's rows of one bucket travel as
Arrow IPC bytes (``bucket, tbl, payload``), so tables of different columns and types share one
shuffle without a union of their schemas; each partition turns them back into pandas frames as
``pd.read_parquet`` does, in their source order.

Not on Spark: a mapping that numbers rows (``row_number``: the numbers need the whole table) or
recodes client ids (the bucket is taken before recoding); both are refused with a clear error.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard.domain.contract import TABLES, CRMData
from churnguard.domain.data import separator_of, separator_warning
from churnguard.domain.mapping import Derived, Mapping
from churnguard.domain.problems import DataContractError, Problem, ValidationReport
from churnguard.domain.rawtable import RawTable, map_table
from churnguard.domain.validation import validate

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, GroupedData, SparkSession

logger = logging.getLogger(__name__)
ROW = "_churnguard_row"  # source order of a row (monotonically_increasing_id at read)
BUCKET = "_churnguard_bucket"
PACKED = "bucket int, tbl string, payload binary"
POSTGRES_JAR = "/usr/share/java/postgresql.jar"  # Debian's libpostgresql-jdbc-java
JDBC_DRIVERS = {  # named, so a jar given by spark.jars is found (DriverManager alone does not)
    "jdbc:postgresql:": "org.postgresql.Driver",
    "jdbc:mysql:": "com.mysql.cj.jdbc.Driver",
    "jdbc:mariadb:": "org.mariadb.jdbc.Driver",
    "jdbc:sqlserver:": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
}
SPARK_NOTE = "on Spark, row positions are not known and counts are per partition of clients"


@dataclass(frozen=True)
class SourceTables:
    """The contract tables found in a source, as Spark DataFrames of their source columns."""

    frames: dict[str, DataFrame]  # contract table name -> source rows (with ROW)
    names: dict[str, str]  # contract table name -> what messages call it ("clients.parquet")
    schemas: dict[str, bytes]  # contract table name -> its Arrow schema, serialised
    problems: list[Problem] = field(default_factory=list)  # missing required tables


def check_mapping(mapping: Mapping) -> None:
    """Refuse a mapping Spark cannot apply per partition (module docstring), naming its entry."""
    for table, columns in mapping.columns.items():
        for column, entry in columns.items():
            if isinstance(entry, Derived) and entry.row_number:
                raise ValueError(
                    f"{mapping.where('columns', table, column)}: row_number ids need the whole "
                    "table and cannot be made per partition on Spark; give the export a real id "
                    "column, or score on one machine (--engine local)"
                )
    for table, values in mapping.values.items():
        if values.get("client_id"):
            raise ValueError(
                f"{mapping.where('values', table, 'client_id')}: recoded client ids are not "
                "supported on Spark (rows are partitioned by the id as read); recode them in "
                "the export, or score on one machine (--engine local)"
            )


def read_sources(spark: SparkSession, source: str, mapping: Mapping) -> SourceTables:
    """The contract tables of a folder (Parquet files or folders, CSV) or a JDBC URL."""
    from pyspark.sql import functions as sf

    check_mapping(mapping)
    frames, names, problems = {}, {}, []
    for name, spec in TABLES.items():
        stem = mapping.source_table(name)
        found = _read_jdbc(spark, source, stem) if source.startswith("jdbc:") else None
        if not source.startswith("jdbc:"):
            found = _read_path(spark, source.rstrip("/"), stem)
        if found is None:
            if spec.required:
                where = f"the database at {_safe(source)}" if source.startswith("jdbc:") else source
                message = f"required table {name} not found in {where} (expected {stem})"
                problems.append(Problem("error", name, stem, None, (), message))
            continue
        frame, names[name], separator = found
        if separator != ",":
            message = separator_warning(separator)
            problems.append(Problem("warning", name, names[name], None, (), message))
            logger.warning("%s: %s", names[name], message)
        frames[name] = frame.withColumn(ROW, sf.monotonically_increasing_id())
    schemas = {n: _arrow_schema(f.drop(ROW)) for n, f in frames.items()}
    return SourceTables(frames, names, schemas, problems)


def _read_path(spark: SparkSession, folder: str, stem: str) -> tuple[DataFrame, str, str] | None:
    """``<stem>.parquet``, ``<stem>.pq`` or ``<stem>`` (file or folder), else ``<stem>.csv``;
    with the name read and the CSV separator (``separator_of`` its header, as on one machine)."""
    for suffix in (".parquet", ".pq", ""):
        path = f"{folder}/{stem}{suffix}"
        if _exists(spark, path) and not path.endswith(".csv"):
            return spark.read.parquet(path), f"{stem}{suffix}", ","
    path = f"{folder}/{stem}.csv"
    if _exists(spark, path):  # text, as on one machine; an empty field reads as missing
        first = spark.read.text(path).first()
        separator = separator_of(first[0] if first is not None else "")
        frame = spark.read.csv(path, header=True, inferSchema=False, sep=separator)
        return frame, f"{stem}.csv", separator
    return None


def _exists(spark: SparkSession, path: str) -> bool:
    """Whether a path exists on its file system (local, HDFS, S3...), through Hadoop."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.exists(hadoop_path))


def _read_jdbc(spark: SparkSession, url: str, table: str) -> tuple[DataFrame, str, str] | None:
    """A JDBC table, its name and "," (as ``_read_path``); None when the database has no such
    table or view."""
    try:
        reader = spark.read.format("jdbc").option("url", url).option("dbtable", table)
        driver = next((c for p, c in JDBC_DRIVERS.items() if url.startswith(p)), None)
        frame = (reader.option("driver", driver) if driver else reader).load()
    except Exception as exc:  # the driver says "no such table" its own way
        text = str(exc).lower()
        if any(w in text for w in ("not exist", "no such table", "not found", "unknown table")):
            return None
        if "suitable driver" in text or "classnotfound" in text:
            raise ConnectionError(
                f"no JDBC driver for {_safe(url)} on Spark's classpath: add its jar, e.g. "
                f"--spark-conf spark.jars={POSTGRES_JAR} (Debian's libpostgresql-jdbc-java, "
                "which scripts/java.sh installs) or spark.jars.packages=org.postgresql:"
                "postgresql:<version> where Maven Central is reachable"
            ) from exc
        raise ConnectionError(
            f"cannot read table {table} of {_safe(url)}: {_first_line(exc)}"
        ) from exc
    return frame, f"db table {table}", ","


def _safe(url: str) -> str:
    """A JDBC URL without its password= parameter."""
    return ";".join(p for p in url.replace("&", ";").split(";") if "password" not in p.lower())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _arrow_schema(frame: DataFrame) -> bytes:
    """A Spark DataFrame's Arrow schema (as its rows will arrive in a partition), serialised."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema, timezone="UTC").serialize().to_pybytes()


# --- packing by client ---------------------------------------------------------------------------


def client_key(frame: DataFrame, table: str, mapping: Mapping) -> Column:
    """The client id of each row as text, as ``map_table`` would read it (before validation)."""
    from pyspark.sql import functions as sf

    entry = mapping.columns.get(table, {}).get("client_id", "client_id")
    if isinstance(entry, Derived) and entry.constant is not None:
        return sf.lit(entry.constant)
    if isinstance(entry, Derived) and entry.concat:
        if not set(entry.concat) <= set(frame.columns):
            return sf.lit(None)  # validation reports the missing column
        return sf.concat_ws(entry.sep, *(_text(frame, c) for c in entry.concat))
    column = entry if isinstance(entry, str) else (entry.column or "")
    return _text(frame, column) if column in frame.columns else sf.lit(None)


def _text(frame: DataFrame, column: str) -> Column:
    """A column as stripped text; whole floats without '.0' (``rawtable.as_text``'s rule)."""
    from pyspark.sql import functions as sf
    from pyspark.sql.types import DoubleType, FloatType

    c = sf.col(f"`{column}`")
    if isinstance(frame.schema[column].dataType, (DoubleType, FloatType)):
        return sf.when(c == sf.floor(c), c.cast("long").cast("string")).otherwise(c.cast("string"))
    return sf.trim(c.cast("string"))


@cache
def partition_keys(spark: SparkSession, buckets: int) -> tuple[int, ...]:
    """For each bucket b, the smallest int k that ``repartition(buckets, k)`` puts in partition b.

    Spark's hash partitioning sends a row to ``pmod(hash(key), n)`` (Murmur3, ``sf.hash``), so a
    bucket column holding these keys gives one bucket per partition.
    """
    from pyspark.sql import functions as sf

    ids = spark.range(0, 64 * buckets + 64).select(sf.col("id").cast("int").alias("k"))
    found = ids.groupBy(sf.pmod(sf.hash("k"), sf.lit(buckets)).alias("p")).agg(sf.min("k"))
    keys: dict[int, int] = {int(r[0]): int(r[1]) for r in found.collect()}
    if len(keys) < buckets:
        raise RuntimeError(f"no partition key found for some of {buckets} buckets")
    return tuple(keys[b] for b in range(buckets))


def bucket_of(spark: SparkSession, key: Column, buckets: int) -> Column:
    """A client id's bucket, as its partition key (``partition_keys``): int."""
    from pyspark.sql import functions as sf

    keys = sf.array(*(sf.lit(k) for k in partition_keys(spark, buckets)))
    return sf.element_at(keys, sf.pmod(sf.xxhash64(key), sf.lit(buckets)).cast("int") + 1)


def pack_by_client(tables: SourceTables, mapping: Mapping, buckets: int) -> DataFrame:
    """Every table's rows as (bucket, table, Arrow IPC bytes of its rows in that bucket)."""
    packed = None
    for name, frame in tables.frames.items():
        key = client_key(frame, name, mapping)
        keyed = frame.withColumn(BUCKET, bucket_of(frame.sparkSession, key, buckets))
        part = keyed.mapInArrow(_packer(name), PACKED)
        packed = part if packed is None else packed.unionByName(part)
    assert packed is not None, "clients and contracts are required"
    return packed


def by_bucket(packed: DataFrame, buckets: int) -> GroupedData:
    """The packed rows grouped by bucket, one bucket per task (not spark.sql.shuffle.partitions)."""
    return packed.repartition(buckets, "bucket").groupBy("bucket")


def pack_frame(
    spark: SparkSession, frame: pd.DataFrame, name: str, key: str, buckets: int
) -> DataFrame:
    """A driver's frame packed like a table (``name``), by its client id column ``key``."""
    from pyspark.sql import functions as sf

    rows = spark.createDataFrame(frame)
    keyed = rows.withColumn(BUCKET, bucket_of(spark, sf.col(key), buckets))
    return keyed.mapInArrow(_packer(name), PACKED)


def unpack_frame(group: pd.DataFrame, name: str) -> pd.DataFrame | None:
    """The rows packed under ``name`` in a group (None: none there), as ``pd.read_parquet``."""
    payloads = group.loc[group["tbl"] == name, "payload"]
    if not len(payloads):
        return None
    pieces = [pa.ipc.open_stream(io.BytesIO(p)).read_all() for p in payloads]
    return pa.concat_tables(pieces).to_pandas()


def _packer(name: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def pack(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield _pack_batch(name, pa.Table.from_batches([batch]))

    return pack


def _pack_batch(name: str, table: pa.Table) -> pa.RecordBatch:
    """One Arrow batch split by bucket: one (bucket, name, IPC bytes) row per bucket in it."""
    table = table.take(pc.sort_indices(table[BUCKET]))
    buckets = table[BUCKET].to_numpy()
    changes = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    starts: list[int] = changes.tolist() if len(buckets) else []
    ends = [*starts[1:], len(buckets)] if starts else []
    rows = table.drop_columns([BUCKET])
    payloads = [_ipc(rows.slice(s, e - s)) for s, e in zip(starts, ends, strict=True)]
    return pa.RecordBatch.from_pydict(
        {
            "bucket": [int(buckets[s]) for s in starts],
            "tbl": [name] * len(payloads),
            "payload": payloads,
        },
        schema=pa.schema([("bucket", pa.int32()), ("tbl", pa.string()), ("payload", pa.binary())]),
    )


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# --- unpacking in a partition --------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionTables:
    """What a partition function needs to rebuild its clients' CRM data (pickled to workers)."""

    names: dict[str, str]
    schemas: dict[str, bytes]
    mapping: Mapping

    def frames(self, group: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Each table's source rows of this group, in source order (empty: no rows here)."""
        out = {}
        for name, schema_bytes in self.schemas.items():
            payloads = group.loc[group["tbl"] == name, "payload"]
            pieces = [pa.ipc.open_stream(io.BytesIO(p)).read_all() for p in payloads]
            schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
            table = (
                pa.concat_tables(pieces)
                if pieces
                else schema.append(pa.field(ROW, pa.int64())).empty_table()
            )
            table = table.take(pc.sort_indices(table[ROW])).drop_columns([ROW])
            out[name] = table.to_pandas()  # as pd.read_parquet converts
        return out

    def crm(self, group: pd.DataFrame) -> tuple[CRMData | None, list[Problem]]:
        """The group's CRM data (validated as on one machine), or None and the errors found."""
        raw: dict[str, RawTable] = {}
        for name, frame in self.frames(group).items():
            raw[name] = map_table(name, self.names[name], frame, None, self.mapping)
        try:
            data, report = validate(raw, consume=True)
        except DataContractError as exc:
            return None, [replace(p, rows=()) for p in exc.report.problems]
        return data, [replace(p, rows=()) for p in report.problems]


def raise_problems(problems: Sequence[Problem], counts: dict[str, int] | None = None) -> None:
    """Raise DataContractError when any problem is an error (duplicates removed)."""
    unique = list(dict.fromkeys(problems))
    report = ValidationReport(unique, counts or {})
    if report.errors:
        raise DataContractError(report)


def problem_text(problem: Problem) -> str:
    """A problem as one line: severity, then what ``Problem.__str__`` says."""
    return f"{problem.severity}: {problem}"
