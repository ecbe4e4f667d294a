"""Tests for reading the CRM tables over JDBC on Spark: the demo data in PostgreSQL, scored on
Spark through the PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java, installed by
scripts/java.sh), equals the same tables scored on one machine, bit for bit."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churnguard.domain.churn import observation_end
from churnguard.domain.data import load_crm
from churnguard.domain.mapping import Mapping
from churnguard.scoring.partition import score_partition
from churnguard.scoring.scorer import Scorer
from churnguard.spark.scoring import checked_scores, score_frame
from churnguard.spark.tables import read_sources
from tests.factories import POSTGRES_ENV
from tests.spark.conftest import JDBC_JAR


@pytest.fixture(scope="module")
def crm_database(parquet_dir: Path) -> Iterator[tuple[str, str]]:
    """The demo tables in a PostgreSQL schema of their own: (SQLAlchemy URL, JDBC URL)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/postgres.sh starts a server, prints one)")
    if not JDBC_JAR.exists():
        pytest.fail(f"{JDBC_JAR} is missing: scripts/java.sh installs libpostgresql-jdbc-java")
    schema = f"crm_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        for path in sorted(parquet_dir.glob("*.parquet")):
            pd.read_parquet(path).to_sql(path.stem, conn, schema=schema, index=False)
    parsed = sa.make_url(url)
    scoped = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    jdbc = (
        f"jdbc:postgresql://{parsed.host}:{parsed.port or 5432}/{parsed.database}"
        f"?user={parsed.username}&password={parsed.password}&currentSchema={schema}"
    )
    try:
        yield scoped.render_as_string(hide_password=False), jdbc
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_spark_over_jdbc_scores_as_one_machine_reading_the_database(
    spark, crm_database: tuple[str, str], scorer: Scorer
) -> None:
    url, jdbc = crm_database
    data, _ = load_crm(url)
    as_of = observation_end(data)
    expected = score_partition(data, scorer, as_of).frame()
    tables = read_sources(spark, jdbc, Mapping())
    assert tables.names["clients"] == "db table clients" and not tables.problems
    scores = checked_scores(score_frame(spark, tables, Mapping(), scorer, as_of, buckets=2))
    got = scores.toPandas().sort_values("client_id", ignore_index=True)
    assert len(got) == len(expected) > 100
    for name in expected.columns.drop("as_of"):
        assert got[name].tolist() == expected[name].tolist(), name


def test_a_missing_jdbc_table_is_named_without_the_password(
    spark, crm_database: tuple[str, str]
) -> None:
    _, jdbc = crm_database
    tables = read_sources(spark, jdbc, Mapping(tables={"clients": "no_such_accounts"}))
    (problem,) = tables.problems
    assert "required table clients not found" in problem.message
    assert "no_such_accounts" in problem.message and "password" not in problem.message
