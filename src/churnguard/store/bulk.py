"""The bulk writer: a batch of scores through a scratch table, merged by set-based statements.

A batch (``ScoreStore.save_scores``' records, or a batch run's ``ScoreRows`` in parts) is loaded
into the temporary table ``incoming``, which locks none of the store's tables, then merged into
``scores``, ``current_scores`` and the audit in one transaction: a stored score with the same key
(client, as_of, model version, source) takes the new values, only batch scores become current.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from churnguard.store.columns import ScoreRows, load_score_rows
from churnguard.store.database import Database
from churnguard.store.schema import SCORE_KEY, SOURCES, Source, audit, current, incoming, scores

_KEY_NAMES = list(SCORE_KEY)
_SQLITE_CACHE_KIB = 65_536  # page cache of a batch merge on SQLite (its default is 2 MiB)


def write_time() -> datetime:
    """The time a write records (UTC)."""
    return datetime.now(UTC)


def check_source(source: str) -> None:
    """Raise ValueError for a source that is not one of ``SOURCES``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")


class BulkWriter(Database):
    """Batches of scores into the store: ``save_score_rows``, ``score_rows_writer``, ``_merge``."""

    def save_score_rows(self, rows: ScoreRows, source: Source = "batch") -> int:
        """``save_scores`` from columns (a batch run's scores): the same rows, written in bulk.

        Raises:
            ValueError: an unknown source, columns of different lengths, a client twice.
        """
        with self.score_rows_writer(source) as add:
            add(rows)
        return len(rows)

    @contextlib.contextmanager
    def score_rows_writer(self, source: Source = "batch") -> Iterator[Callable[[ScoreRows], None]]:
        """``save_score_rows`` of a batch given in parts, each part loaded as soon as it comes.

        The parts wait in the (temporary) scratch table, which locks none of the store's tables;
        they are merged into them together, in one transaction, when the block ends: the rows
        ``save_score_rows`` of all the parts at once would write. If the block raises, nothing is
        written.

        Raises:
            ValueError: an unknown source, columns of different lengths, a client twice (in a
                part or in two).
        """
        check_source(source)
        seen: set[str] = set()
        now: list[datetime] = []  # the write time, taken at the first part
        with self.engine.begin() as conn, _large_cache(conn):

            def add(rows: ScoreRows) -> None:
                rows.check()
                if not seen.isdisjoint(rows.client_id):
                    raise ValueError("a client appears twice in one batch of score rows")
                now[:] = now or [write_time()]
                load_score_rows(conn, rows, now[0], source, first_seq=len(seen))
                seen.update(rows.client_id)

            conn.execute(sa.schema.DropTable(incoming, if_exists=True))
            conn.execute(sa.schema.CreateTable(incoming))
            yield add
            if seen:
                self._merge_incoming(conn, source, one_per_client=True)
            conn.execute(sa.schema.DropTable(incoming))

    def _merge(self, load: Callable[[Connection], None], source: Source) -> None:
        """Load a batch into the scratch table, then merge it with set-based statements."""
        with self.engine.begin() as conn:
            conn.execute(sa.schema.DropTable(incoming, if_exists=True))
            conn.execute(sa.schema.CreateTable(incoming))
            load(conn)
            self._merge_incoming(conn, source)
            conn.execute(sa.schema.DropTable(incoming))

    def _merge_incoming(
        self, conn: Connection, source: Source, one_per_client: bool = False
    ) -> None:
        """Merge the scratch table into the scores, the current scores and the audit
        (``one_per_client``: no client has two rows in it, so none needs ranking)."""
        conn.execute(self._merge_scores())
        if source == "batch":
            conn.execute(self._merge_current(one_per_client))
        conn.execute(_append_audit())

    def _merge_scores(self) -> sa.Insert:
        """Insert the batch; a stored score with the same key (source included) takes its values."""
        names = [c.name for c in scores.columns if c.name != "id"]
        # SQLite needs a WHERE to tell INSERT ... SELECT ... ON CONFLICT from a join's ON
        batch = sa.select(*(incoming.c[n] for n in names)).where(sa.true())
        stmt = self._insert(scores).from_select(names, batch)
        return stmt.on_conflict_do_update(
            index_elements=_KEY_NAMES,
            set_={n: stmt.excluded[n] for n in names if n not in _KEY_NAMES},
        )

    def _merge_current(self, one_per_client: bool) -> sa.Insert:
        """Point each client at its newest score in the batch, unless a newer as_of is stored."""
        if one_per_client:  # each client's one row is its newest
            newest = sa.select(*(incoming.c[n] for n in _KEY_NAMES)).where(sa.true())
        else:
            rank = sa.func.row_number().over(
                partition_by=incoming.c.client_id,
                order_by=(incoming.c.as_of.desc(), incoming.c.seq.desc()),
            )
            ranked = sa.select(*(incoming.c[n] for n in _KEY_NAMES), rank.label("rank")).subquery()
            newest = sa.select(*(ranked.c[n] for n in _KEY_NAMES)).where(ranked.c.rank == 1)
        stmt = self._insert(current).from_select(_KEY_NAMES, newest)
        return stmt.on_conflict_do_update(
            index_elements=["client_id"],
            set_={n: stmt.excluded[n] for n in _KEY_NAMES if n != "client_id"},
            where=stmt.excluded.as_of >= current.c.as_of,
        )


@contextlib.contextmanager
def _large_cache(conn: Connection) -> Iterator[None]:
    """On SQLite, a page cache that holds the indexes a batch merge updates, for the block
    (the connection goes back to the pool with the default)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    (default,) = conn.exec_driver_sql("PRAGMA cache_size").one()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        with contextlib.suppress(sa.exc.DBAPIError):  # a broken connection: its error stands
            conn.exec_driver_sql(f"PRAGMA cache_size={int(default)}")


def _append_audit() -> sa.Insert:
    """One audit record per score in the batch."""
    names = [*_KEY_NAMES, "feature_digest", "scored_at"]
    batch = sa.select(*(incoming.c[n] for n in [*_KEY_NAMES, "feature_digest", "created_at"]))
    return audit.insert().from_select(names, batch)


__all__: Sequence[str] = ("BulkWriter", "check_source", "write_time")
