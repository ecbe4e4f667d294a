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
from sqlalchemy.sql.compiler import SQLCompiler

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
        self._statements: dict[sa.ClauseElement, Prepared] = {}  # ``prepared``'s, by statement
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

    def prepared(self, statement: sa.ClauseElement, keys: list[str] | None = None) -> Prepared:
        """``statement`` compiled for this database once (``keys``: an INSERT's columns)."""
        found = self._statements.get(statement)
        if found is None:
            found = self._statements[statement] = Prepared(statement, self.engine.dialect, keys)
        return found

    @contextlib.contextmanager
    def driver(self) -> Iterator[DBAPIConnection]:
        """A pooled connection of the database driver itself, for ``Prepared`` statements.

        Its transaction is the caller's to commit (rolled back if it does not). A database that
        cannot be reached or used raises ``StoreUnavailableError``, any other error of the
        driver SQLAlchemy's exception for it, as on ``engine``'s connections.
        """
        pooled = None
        try:
            pooled = self.engine.raw_connection()  # the pool checks a PostgreSQL one first
            yield pooled
        except self._driver_error as exc:
            outage = self._driver_outage(exc, pooled)
            if outage is not None:
                raise outage from exc
            # the error SQLAlchemy raises for it (IntegrityError, ...), as on ``engine``'s
            raise sa.exc.DBAPIError.instance(None, None, exc, self._driver_error) from exc
        finally:
            if pooled is not None:
                pooled.close()  # back to the pool, rolled back

    @functools.cached_property
    def _driver_error(self) -> type[Exception]:
        error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        return error

    def _driver_outage(self, error: Exception, pooled: Any) -> StoreUnavailableError | None:
        """What ``_unavailable`` makes of a driver's error; a lost connection leaves the pool."""
        dialect = self.engine.dialect
        connection = None if pooled is None else pooled.dbapi_connection
        disconnect = connection is not None and dialect.is_disconnect(error, connection, None)  # type: ignore[arg-type]
        if disconnect:
            pooled.invalidate(error)
        operational = isinstance(error, dialect.loaded_dbapi.OperationalError)
        return _outage(self.dialect, error, disconnect, operational)

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
    operational = isinstance(context.sqlalchemy_exception, sa.exc.OperationalError)
    name = context.dialect.name if context.dialect is not None else ""
    outage = _outage(name, error, context.is_disconnect, operational)
    if outage is not None:
        raise outage from error


def _outage(
    dialect: str, error: BaseException, disconnect: bool, operational: bool
) -> StoreUnavailableError | None:
    """The ``StoreUnavailableError`` a database error means, or None when it is no outage (an
    SQL mistake, a constraint: those stay errors)."""
    if disconnect:
        return StoreUnavailableError(f"the score store cannot be reached: {error}")
    if not operational:
        return None
    if dialect == "sqlite" and not any(m in str(error).lower() for m in _SQLITE_UNAVAILABLE):
        return None
    return StoreUnavailableError(f"the score store is unavailable: {error}")


class Prepared:
    """A statement compiled once for a dialect and run on the driver's own connection
    (``Database.driver``): what SQLAlchemy's ``execute`` sends for it, without building its
    cache key, parameters and result objects on every call (the API's one-client path).

    Values go through the bind processors of the parameters' types (``UTCDateTime``: UTC, and
    SQLite's text), rows through the result processors of the selected columns.
    """

    def __init__(
        self, statement: sa.ClauseElement, dialect: Dialect, keys: list[str] | None = None
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._order = compiled.positiontup  # parameter names in order (qmark), else None
        binds = compiled.bind_names  # each parameter and the name it is sent as
        self._names = list(binds.values())
        self._fixed = {name: b.effective_value for b, name in binds.items() if not b.required}
        self._binders = [(name, bind) for b, name in binds.items()
                         if (bind := _binder(b.type, dialect))]  # fmt: skip
        self._dialect = dialect
        self._types: list[sa.ColumnElement[Any]] = (
            list(statement.selected_columns) if isinstance(statement, sa.Select) else []
        )
        self._results: list[Callable[[Any], Any] | None] | None = None  # at the first row

    def params(self, values: dict[str, Any]) -> dict[str, Any] | list[Any]:
        """The driver's parameters for these values (named: a dict; positional: a list)."""
        given = self._fixed | values
        for name, bind in self._binders:
            given[name] = bind(given[name])
        if self._order is not None:
            return [given[name] for name in self._order]
        return {name: given[name] for name in self._names}

    def first(self, dbapi: DBAPIConnection, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a query, its values processed as SQLAlchemy reads them."""
        cursor = dbapi.cursor()
        try:
            cursor.execute(self.sql, self.params(values))
            row = cursor.fetchone()
            if row is not None and self._results is None:
                self._results = self._readers(cursor.description)
        finally:
            cursor.close()
        if row is None or self._results is None:
            return None
        return tuple(
            v if read is None else read(v) for read, v in zip(self._results, row, strict=True)
        )

    def _readers(self, description: Any) -> list[Callable[[Any], Any] | None]:
        """Each selected column's result processor, for the type the driver says it sends."""
        d = self._dialect
        if not self._types:  # a text statement: its values as the driver gives them
            return [None] * len(description)
        return [c.type.dialect_impl(d).result_processor(d, sent[1])
                for c, sent in zip(self._types, description, strict=True)]  # fmt: skip

    def run_many(self, dbapi: DBAPIConnection, rows: list[dict[str, Any]]) -> None:
        """Run the statement once per row, in the connection's transaction."""
        cursor = dbapi.cursor()
        try:
            cursor.executemany(self.sql, [self.params(row) for row in rows])  # type: ignore[arg-type]
        finally:
            cursor.close()


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
