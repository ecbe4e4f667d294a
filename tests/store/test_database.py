"""The store's database: supported URLs, SQLite's set-up, the schema."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from churnguard.store.database import StoreUnavailableError
from churnguard.store.schema import TEXT_LIMITS, metadata, scores
from churnguard.store.scores import ScoreRecord, ScoreStore
from tests.factories import POSTGRES_ENV, TcpRelay


def record() -> ScoreRecord:
    return ScoreRecord(
        client_id="C1",
        as_of=datetime(2025, 1, 1, tzinfo=UTC),
        model_version="1",
        probability=0.4,
        band="medium",
        revenue_at_risk=4800.0,
        monthly_value=1000.0,
        feature_digest="0" * 64,
        change={"direction": "new"},
    )


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "scores.db"
    with ScoreStore(f"sqlite:///{path}").create() as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        store.save_scores([record()])
    raw = sqlite3.connect(path)  # the journal mode is a property of the file
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


@pytest.mark.parametrize(
    "url", ["mysql://u:p@localhost/db", "postgresql+psycopg2://u:p@localhost/db"]
)
def test_other_databases_and_drivers_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite or PostgreSQL through psycopg"):
        ScoreStore(url)


@pytest.mark.parametrize("url", ["postgresql://u:p@db/scores", "postgres://u:p@db/scores"])
def test_postgres_urls_without_a_driver_use_psycopg(url: str) -> None:
    store = ScoreStore(url)  # no connection is made until the store is used
    assert store.url.drivername == "postgresql+psycopg"
    assert store.dialect == "postgresql"


def test_create_makes_every_table_of_the_one_schema(store: ScoreStore) -> None:
    every = set(metadata.tables)
    assert {"scores", "web_sessions", "follow_ups", "alerts_sent"} <= every
    assert every <= set(sa.inspect(store.engine).get_table_names())
    with store.engine.begin() as conn:  # a store made before these tables existed
        conn.execute(sa.text("DROP TABLE follow_ups"))
        conn.execute(sa.text("DROP TABLE alerts_sent"))
    store.create()
    store.create()  # again: nothing happens
    assert every <= set(sa.inspect(store.engine).get_table_names())


def test_text_columns_take_their_limit_from_one_definition() -> None:
    for name in ("client_id", "client_name", "account_manager", "segment"):
        column_type = scores.c[name].type
        assert isinstance(column_type, sa.String)
        assert column_type.length == TEXT_LIMITS[name]


def test_a_store_from_before_score_sources_is_refused_with_advice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with ScoreStore(url) as store, store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scores (id INTEGER PRIMARY KEY, client_id TEXT)")
    with ScoreStore(url) as store, pytest.raises(RuntimeError, match="older churnguard"):
        store.create()


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://u:p@127.0.0.1:9/db", "sqlite:////nonexistent/folder/scores.db"],
    ids=["postgresql-refused", "sqlite-unopenable"],
)
def test_an_unreachable_database_is_unavailable_not_an_error(url: str) -> None:
    with ScoreStore(url) as store:
        with pytest.raises(StoreUnavailableError):
            store.ping()
        with pytest.raises(StoreUnavailableError):
            store.latest_scores()


def test_a_mistake_in_sql_is_not_an_outage(store: ScoreStore) -> None:
    with pytest.raises(sa.exc.DBAPIError) as raised, store.engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert not isinstance(raised.value, StoreUnavailableError)


def test_lost_connections_are_replaced_without_a_restart(store: ScoreStore) -> None:
    store.save_scores([record()])
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no server connections to lose")
    with store.engine.connect() as conn:  # the pool now holds a connection; the server drops it
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    killer = sa.create_engine(store.url)
    with killer.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    killer.dispose()
    store.ping()
    assert store.latest_score("C1") is not None


def test_a_postgresql_outage_is_unavailable_and_passes_without_a_restart() -> None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    proxy = TcpRelay(url)
    proxy.start()
    with ScoreStore(proxy.url) as store:
        store.ping()
        proxy.cut()
        with pytest.raises(StoreUnavailableError):
            store.ping()  # the pooled connection is gone, and so is the server
        proxy.start()  # the same port: the database is back
        store.ping()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    proxy.cut()
