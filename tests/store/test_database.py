"""The store's database: supported URLs, SQLite's set-up, the schema."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
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
        with store.driver() as dbapi:  # the one-client path's connections are set up alike
            # NORMAL with WAL: a commit survives a killed process (only power loss can undo it)
            assert dbapi.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
            assert dbapi.execute("PRAGMA foreign_keys").fetchone()[0] == 1
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
        with pytest.raises(StoreUnavailableError):  # the prepared statements, on the driver
            store.previous_summary("C1", datetime(2025, 2, 1, tzinfo=UTC))
        with pytest.raises(StoreUnavailableError):
            store.save_scores([record()], source="api")


def test_a_mistake_in_sql_is_not_an_outage(store: ScoreStore) -> None:
    with pytest.raises(sa.exc.DBAPIError) as raised, store.engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert not isinstance(raised.value, StoreUnavailableError)


def test_a_mistake_in_sql_on_the_driver_is_not_an_outage(store: ScoreStore) -> None:
    with pytest.raises(sa.exc.DBAPIError) as raised, store.driver() as dbapi:
        store.prepared(sa.text("SELECT * FROM no_such_table")).first(dbapi, {})
    assert not isinstance(raised.value, StoreUnavailableError)
    assert "no_such_table" in str(raised.value)


def test_an_api_score_the_schema_refuses_is_sqlalchemys_error_and_writes_nothing(
    store: ScoreStore,
) -> None:
    bad = replace(record(), probability=1.5)  # the check constraint refuses it
    with pytest.raises(sa.exc.IntegrityError):
        store.save_scores([replace(record(), client_id="C2"), bad], source="api")
    with store.engine.connect() as conn:  # the score before it in the same call: rolled back
        assert conn.exec_driver_sql("SELECT count(*) FROM scores").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM score_audit").scalar_one() == 0
    assert store.save_scores([record()], source="api") == 1  # the store still works afterwards


def test_prepared_statements_keep_the_stores_utc_handling(store: ScoreStore) -> None:
    five = timezone(timedelta(hours=5))
    store.save_scores([record()], source="api")  # 2025-01-01 00:00 UTC, through the driver
    just_after = datetime(2025, 1, 1, 5, 0, 1, tzinfo=five)  # one second after, at +05:00
    summary = store.previous_summary("C1", just_after)
    assert summary is not None and summary.as_of == datetime(2025, 1, 1, tzinfo=UTC)
    assert summary.as_of.utcoffset() == timedelta(0)
    assert store.previous_summary("C1", datetime(2025, 1, 1, 5, tzinfo=five)) is None  # not before
    stored = store.client_history("C1")  # read back by SQLAlchemy: the same row
    assert [(s.as_of, s.source, s.probability) for s in stored] == [
        (datetime(2025, 1, 1, tzinfo=UTC), "api", 0.4)
    ]
    with store.engine.connect() as conn:  # the audit row came in the same transaction
        assert conn.exec_driver_sql("SELECT count(*) FROM score_audit").scalar_one() == 1


def test_a_driver_transaction_is_the_callers_to_commit(store: ScoreStore) -> None:
    insert = store.prepared(
        sa.text("INSERT INTO api_keys VALUES (:k, 'h', 'crm', NULL, NULL, :t, NULL)")
    )
    now = datetime(2025, 1, 1, 12, tzinfo=UTC).isoformat()
    with pytest.raises(RuntimeError), store.driver() as dbapi:
        insert.run_many(dbapi, [{"k": "rolled-back", "t": now}])
        raise RuntimeError("the caller fails before it commits")
    with store.driver() as dbapi:
        insert.run_many(dbapi, [{"k": "committed", "t": now}])
        dbapi.commit()
    url = store.url.render_as_string(hide_password=False)
    with ScoreStore(url) as other, other.engine.connect() as conn:  # another pool
        keys = conn.exec_driver_sql("SELECT key_id FROM api_keys").scalars().all()
    assert keys == ["committed"]


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
    with store.driver() as dbapi:  # the one-client path's pooled connection is lost too
        pid = store.prepared(sa.text("SELECT pg_backend_pid()")).first(dbapi, {})
    with killer.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid[0] if pid else 0})
    killer.dispose()
    assert store.previous_summary("C1", datetime(2025, 2, 1, tzinfo=UTC)) is not None


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
        with pytest.raises(StoreUnavailableError):  # the one-client path's statements too
            store.previous_summary("C1", datetime(2025, 2, 1, tzinfo=UTC))
        with pytest.raises(StoreUnavailableError):
            store.save_scores([record()], source="api")
        proxy.start()  # the same port: the database is back
        store.ping()
        with store.driver() as dbapi:
            assert store.prepared(sa.text("SELECT 1")).first(dbapi, {}) == (1,)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    proxy.cut()
