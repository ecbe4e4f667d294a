"""The store's database: which URLs it runs on, how connections are set up, the schema, snapshots.

SQLAlchemy Core over SQLite (default; WAL journal, foreign keys on) or PostgreSQL
(``postgresql+psycopg://...``). ``Database`` holds the engine; ``ScoreStore`` (scores.py) builds
on it, and the functions of ``keys``, ``actions`` and ``sessions`` take either.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from churnguard.store.schema import UTCDateTime, metadata

_CHUNK = 5000  # rows per executemany call: bounds the driver's memory, not the transaction
_SQLITE_BUSY_SECONDS = 30  # a writer waits this long for another's transaction (a batch) to end
_CONNECT_SECONDS = 5  # PostgreSQL: give up connecting after this long (an unreachable host)
# SQLite's OperationalError also reports SQL mistakes; these messages mean the file is unusable
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open", "disk i/o error", "readonly")


class StoreUnavailableError(Exception):
    """The store's database cannot be reached or used now; trying again later may succeed."""

    retry_after = 5  # seconds: what a service tells its callers to wait before trying again


class Database:
    """An engine on the store's database, and the whole schema."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = store_url(url)
        is_sqlite = self.url.get_backend_name() == "sqlite"
        connect_args: dict[str, Any] = {"timeout": _SQLITE_BUSY_SECONDS}
        if not is_sqlite:
            connect_args = {"connect_timeout": _CONNECT_SECONDS}
        self.engine: Engine = sa.create_engine(
            self.url,
            echo=echo,
            connect_args=connect_args,
            json_serializer=to_json,
            pool_pre_ping=not is_sqlite,  # after a restart of the server, reconnect unseen
        )
        sa.event.listen(self.engine, "handle_error", _unavailable)
        if is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create(self) -> Self:
        """Create the tables that are missing (a SQLite file's folder too); returns ``self``."""
        database = self.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        metadata.create_all(self.engine)
        _check_schema(self.engine)
        return self

    def ping(self) -> None:
        """Check that the database answers; raises ``StoreUnavailableError`` if it does not."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        """The dialect's INSERT, which has ON CONFLICT."""
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    @contextlib.contextmanager
    def read_snapshot(self) -> Iterator[Connection]:
        """A connection in one read transaction: every query on it sees the same committed state.

        PostgreSQL runs it at REPEATABLE READ; SQLite (WAL) holds its snapshot from the first
        read to the end of the transaction.
        """
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if self.dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN")  # pysqlite begins no transaction for a SELECT
                yield conn

    @contextlib.contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        """``conn`` if given, else a connection of its own for the length of the block."""
        if conn is not None:
            yield conn
            return
        with self.engine.connect() as own:
            yield own


def _unavailable(context: sa.engine.ExceptionContext) -> None:
    """Raise ``StoreUnavailableError`` for a lost or refused connection, a locked or gone file."""
    error = context.original_exception
    if context.is_pre_ping:
        return  # the pool replaces a dead connection it finds before use
    if context.is_disconnect:
        raise StoreUnavailableError(f"the score store cannot be reached: {error}") from error
    if not isinstance(context.sqlalchemy_exception, sa.exc.OperationalError):
        return
    sqlite = context.dialect is not None and context.dialect.name == "sqlite"
    if sqlite and not any(m in str(error).lower() for m in _SQLITE_UNAVAILABLE):
        return
    raise StoreUnavailableError(f"the score store is unavailable: {error}") from error


def load_rows(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in the caller's transaction: COPY on PostgreSQL, executemany on SQLite.

    Every row has the same keys, column names of ``table``. For a scratch table filled in bulk.
    """
    if conn.dialect.name == "postgresql":
        _copy(conn, table, rows)
    else:
        _insert_many(conn, table, rows)


def _copy(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's COPY: one stream instead of a round trip per row."""
    names = list(rows[0])
    json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    psycopg_connection: Any = conn.connection.driver_connection
    sql = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    with psycopg_connection.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([to_json(row[n]) if n in json_columns else row[n] for n in names])


def _insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """SQLite: executemany straight through the driver, in slices, in the caller's transaction.

    SQLAlchemy's per-row parameter handling costs more than SQLite's own work on a large batch;
    here each column's bind processor is applied directly, and a timestamp (the same ``as_of``
    and write time on every row of a batch) is converted once. ``rows`` are converted in place.
    """
    names = list(rows[0])
    sql = str(table.insert().compile(dialect=sqlite.dialect(paramstyle="named"), column_keys=names))
    binders = [(n, bind) for n in names if (bind := _binder(table.c[n].type, conn.dialect))]
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        for row in chunk:
            for name, bind in binders:
                row[name] = bind(row[name])
        conn.exec_driver_sql(sql, chunk)


def _binder(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy would apply to a value of this type, if anything (timestamps: memoised)."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if process is not None and isinstance(type_, UTCDateTime):
        return functools.lru_cache(maxsize=256)(process)
    return process


def _check_schema(engine: Engine) -> None:
    """Refuse a store made before scores carried their source; add the curve column if missing."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns("scores")}
    if "source" not in columns:
        raise RuntimeError(
            "this score store was made by an older churnguard: its scores have no source column "
            "(batch or api). Move it aside and run `churnguard score` to start a new one."
        )
    if "curve" not in columns:  # scores before risk over several horizons: add the column
        kind = "JSONB" if engine.dialect.name == "postgresql" else "JSON"
        exists = " IF NOT EXISTS" if engine.dialect.name == "postgresql" else ""
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE scores ADD COLUMN{exists} curve {kind}")


def engine_of(db: Database | Engine) -> Engine:
    """The engine of a ``Database`` (or the engine itself)."""
    return db.engine if isinstance(db, Database) else db


def store_url(url: str) -> sa.URL:
    """The URL to connect with: SQLite, or PostgreSQL through psycopg 3 (its COPY loads batches)."""
    parsed = sa.make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" or parsed.drivername == "postgresql+psycopg":
        return parsed
    raise ValueError(
        f"the score store runs on SQLite or PostgreSQL through psycopg, not {parsed.drivername!r}"
        " (use sqlite:///path/scores.db or postgresql+psycopg://user:password@host/db)"
    )


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    """WAL lets readers work during a batch write; SQLite leaves foreign keys off unless asked."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed data
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def json_ready(value: Any) -> Any:
    """numpy scalars and timestamps as JSON-ready values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{value!r} ({type(value).__name__}) is not a number, text or timestamp")


_encode = json.JSONEncoder(
    check_circular=False, allow_nan=False, separators=(",", ":"), default=json_ready
).encode


def to_json(value: Any) -> str:
    """Compact JSON; NaN and infinity (say, a missing feature value) become null, as in JSON."""
    try:
        return _encode(value)
    except ValueError:
        return _encode(_finite(value))


def _finite(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
