"""Tests for spark.tables: a mapping applies on Spark as on one machine; what Spark cannot apply,
and bad data, are clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from churnguard.domain.churn import observation_end
from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping, load_mapping
from churnguard.domain.problems import DataContractError
from churnguard.scoring.partition import score_partition
from churnguard.scoring.scorer import Scorer
from churnguard.spark.scoring import checked_scores, score_frame
from churnguard.spark.tables import check_mapping, pack_by_client, read_sources

MAPPING = (
    "tables:\n  clients: accounts\n"
    "columns:\n  clients:\n    client_id: AccountRef\n"
    "  contracts:\n    client_id: {concat: [Prefix, Number], sep: ''}\n"
)


@pytest.fixture(scope="module")
def renamed(parquet_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo as an export with other names: accounts.parquet, AccountRef, split contract ids."""
    out = tmp_path_factory.mktemp("export")
    for path in parquet_dir.glob("*.parquet"):
        shutil.copy(path, out / path.name)
    clients = pd.read_parquet(out / "clients.parquet").rename(columns={"client_id": "AccountRef"})
    clients.to_parquet(out / "accounts.parquet", index=False)
    (out / "clients.parquet").unlink()
    contracts = pd.read_parquet(out / "contracts.parquet")
    ids = contracts.pop("client_id").astype(str)
    contracts.assign(Prefix=ids.str[:1], Number=ids.str[1:]).to_parquet(
        out / "contracts.parquet", index=False
    )
    mapping = out.parent / f"{out.name}-mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return out, mapping


def test_a_mapped_export_scores_on_spark_as_on_one_machine(
    spark, renamed: tuple[Path, Path], scorer: Scorer
) -> None:
    folder, mapping_path = renamed
    data, _ = load_crm(folder, mapping_path)
    as_of = observation_end(data)
    expected = score_partition(data, scorer, as_of).frame()
    mapping = load_mapping(mapping_path)
    tables = read_sources(spark, str(folder), mapping)
    got = checked_scores(score_frame(spark, tables, mapping, scorer, as_of, buckets=2)).toPandas()
    got = got.sort_values("client_id", ignore_index=True)
    for name in ("client_id", "probability", "drivers", "actions", "feature_digest"):
        assert got[name].tolist() == expected[name].tolist(), name


def test_bad_data_in_a_partition_stops_the_run_naming_the_problem(
    spark, parquet_dir: Path, tmp_path: Path, scorer: Scorer
) -> None:
    for path in parquet_dir.glob("*.parquet"):
        shutil.copy(path, tmp_path / path.name)
    contracts = pd.read_parquet(tmp_path / "contracts.parquet")
    contracts.loc[3, "monthly_value"] = -5.0
    contracts.to_parquet(tmp_path / "contracts.parquet", index=False)
    tables = read_sources(spark, str(tmp_path), Mapping())
    scores = score_frame(spark, tables, Mapping(), scorer, pd.Timestamp("2025-01-01"))
    with pytest.raises(DataContractError, match=r"contracts\.parquet, column monthly_value"):
        checked_scores(scores)


def test_a_missing_required_table_is_an_error(spark, tmp_path: Path, scorer: Scorer) -> None:
    tables = read_sources(spark, str(tmp_path), Mapping())
    with pytest.raises(DataContractError, match="required table clients not found"):
        score_frame(spark, tables, Mapping(), scorer, pd.Timestamp("2025-01-01"))


def test_row_number_ids_are_refused_naming_the_mapping_line(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("columns:\n  contracts:\n    contract_id: {row_number: yes}\n")
    with pytest.raises(ValueError, match=r"mapping.yaml line 3 .*row_number ids need the whole"):
        check_mapping(load_mapping(path))


def test_each_partition_holds_exactly_one_bucket_of_clients(spark, parquet_dir: Path) -> None:
    from pyspark.sql import functions as sf

    tables = read_sources(spark, str(parquet_dir), Mapping())
    for buckets in (3, 5, 8):
        packed = pack_by_client(tables, Mapping(), buckets)
        packed = packed.repartition(buckets, "bucket")  # as by_bucket does
        found = packed.groupBy(sf.spark_partition_id().alias("p")).agg(
            sf.count_distinct("bucket").alias("n")
        )
        assert sorted(r.n for r in found.collect()) == [1] * buckets


def test_a_semicolon_separated_csv_export_scores_on_spark_as_on_one_machine(
    spark, parquet_dir: Path, tmp_path: Path, scorer: Scorer
) -> None:
    """The separator is read from the header as on one machine, and the read says so."""
    for path in parquet_dir.glob("*.parquet"):
        frame = pd.read_parquet(path)
        if path.stem in ("clients", "interactions"):
            frame.to_csv(tmp_path / f"{path.stem}.csv", sep=";", index=False)
        else:
            shutil.copy(path, tmp_path / path.name)
    data, report = load_crm(tmp_path)
    as_of = observation_end(data)
    expected = score_partition(data, scorer, as_of).frame()
    tables = read_sources(spark, str(tmp_path), Mapping())
    said = "the header has no comma: read as semicolon-separated"
    warned = {(f"{n}.csv", said) for n in ("clients", "interactions")}
    assert {(p.source, p.message) for p in report.problems} == warned
    assert {(p.source, p.message) for p in tables.problems} == warned
    got = checked_scores(score_frame(spark, tables, Mapping(), scorer, as_of, buckets=2))
    got = got.toPandas().sort_values("client_id", ignore_index=True)
    for name in ("client_id", "probability", "feature_digest"):
        assert got[name].tolist() == expected[name].tolist(), name
