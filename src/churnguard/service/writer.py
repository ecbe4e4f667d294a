"""Group commit of the API's scores: a request's answer waits until its scores are stored.

A score store transaction costs more than a row (a commit, and for a large group a scratch table
merged into the store), so a transaction per request would cap the API's throughput at the
commit rate. Requests instead hand their scores to
``ScoreWriter.submit``, which returns once they are committed: one thread writes everything
handed over while its previous commit ran, in one transaction, then wakes those requests. Under
load a commit carries many requests; alone, a request waits for its own commit only. So a 200
from ``POST /api/v1/score`` means the scores are in the store, and a crash loses no answered score
(SQLite: the WAL journal with synchronous=NORMAL keeps every commit through a kill -9 of the
service; PostgreSQL: its commit).

A group that fails is written again one request at a time, so one request's bad scores do not
fail the others; the request whose scores still fail gets the error (``StoreUnavailableError``
when the database cannot be reached: the API answers 503 with Retry-After, and the caller retries).
``flush()`` returns once everything handed over before the call is written.

``write`` and ``flushed`` are the same for a coroutine: the event loop waits for the commit
without a worker thread blocked on it (the writer thread wakes the loop when it is done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from churnguard.store.database import StoreUnavailableError
from churnguard.store.schema import Source
from churnguard.store.scores import ScoreRecord

logger = logging.getLogger(__name__)


class ScoreSink(Protocol):
    """Where scores go: a ``ScoreStore`` (one transaction per call)."""

    def save_scores(self, records: list[ScoreRecord], source: Source) -> int: ...


@dataclass
class _Ticket:
    """One request's scores, and how their write ended."""

    records: Sequence[ScoreRecord]
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None
    wakes: list[Callable[[], None]] = field(default_factory=list)  # called once it is done

    def settle(self) -> None:
        """Mark the write done and wake whoever waits for it."""
        self.done.set()
        for wake in self.wakes:
            wake()


class ScoreWriter:
    """Writes scores to a ``ScoreStore``, many requests per transaction, before they answer."""

    def __init__(self, store: ScoreSink, max_batch: int = 50_000) -> None:
        self.store = store
        self.max_batch = max_batch  # scores in one transaction at most
        self.failed = 0  # scores whose write failed (their requests got the error)
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._writing: list[_Ticket] = []  # the group in the transaction now
        self._clients: Counter[str] = Counter()  # scores per client handed over, not yet written
        self._pending = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="score-writer", daemon=True)

    def start(self) -> ScoreWriter:
        self._thread.start()
        return self

    @property
    def pending(self) -> int:
        """Scores handed over and not yet written."""
        return self._pending

    def is_pending(self, client_id: str) -> bool:
        """Whether a score of this client waits to be written."""
        with self._cond:
            return self._clients[client_id] > 0

    def submit(self, records: Sequence[ScoreRecord]) -> None:
        """Write scores; returns once they are committed.

        Raises:
            StoreUnavailableError: the database cannot be reached; nothing of these was written.
            RuntimeError: the writer is closed.
        """
        if not records:
            return
        ticket = self._hand_over(_Ticket(records))
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error

    async def write(self, records: Sequence[ScoreRecord]) -> None:
        """``submit`` for a coroutine: returns once the scores are committed, raises as it does.

        If the waiting coroutine is cancelled (the caller went away), the scores are written all
        the same.
        """
        if not records:
            return
        wake = _Wake()
        ticket = self._hand_over(_Ticket(records, wakes=[wake]))
        await wake.future
        if ticket.error is not None:
            raise ticket.error

    def flush(self) -> None:
        """Return once every score handed over before this call is written (or has failed)."""
        with self._cond:
            waiting = [t.done for t in (*self._writing, *self._queue)]
        for done in waiting:
            done.wait()

    async def flushed(self) -> None:
        """``flush`` for a coroutine."""
        with self._cond:
            # groups are written in the order they were handed over: the last one settles last
            waiting = self._queue or self._writing
            if not waiting:
                return
            last = waiting[-1]
            wake = _Wake()
            last.wakes.append(wake)
        await wake.future

    def _hand_over(self, ticket: _Ticket) -> _Ticket:
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                raise RuntimeError("the score writer is closed")
            self._queue.append(ticket)
            self._clients.update(r.client_id for r in ticket.records)
            self._pending += len(ticket.records)
            self._cond.notify_all()
        return ticket

    def close(self) -> None:
        """Write what was handed over and stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    return  # stopping, and everything is written
                group = self._writing = self._take()
            self._write(group)
            with self._cond:
                for ticket in group:
                    self._clients.subtract(r.client_id for r in ticket.records)
                    self._pending -= len(ticket.records)
                self._clients += Counter()  # drop the zero counts
                self._writing = []
                self._cond.notify_all()
            for ticket in group:
                ticket.settle()

    def _take(self) -> list[_Ticket]:
        """The queued requests for one transaction: all of them, up to ``max_batch`` scores."""
        group: list[_Ticket] = []
        size = 0
        while self._queue and (not group or size + len(self._queue[0].records) <= self.max_batch):
            ticket = self._queue.pop(0)
            group.append(ticket)
            size += len(ticket.records)
        return group

    def _write(self, group: list[_Ticket]) -> None:
        """One transaction for the group; if it fails, one per request."""
        try:
            self.store.save_scores([r for t in group for r in t.records], source="api")
            return
        except StoreUnavailableError as exc:  # the same for every request: no point in retrying
            logger.warning("the score store is unavailable: %s", exc)
            for ticket in group:
                self._fail(ticket, StoreUnavailableError(*exc.args))  # one per raising thread
            return
        except Exception as exc:
            if len(group) == 1:
                self._fail(group[0], exc)
                return
            logger.exception("writing %d requests' scores failed; retrying one by one", len(group))
        for ticket in group:
            try:
                self.store.save_scores(list(ticket.records), source="api")
            except Exception as exc:
                self._fail(ticket, exc)

    def _fail(self, ticket: _Ticket, error: Exception) -> None:
        self.failed += len(ticket.records)
        ticket.error = error
        if not isinstance(error, StoreUnavailableError):
            logger.error("%d scores were not stored", len(ticket.records), exc_info=error)


class _Wake:
    """Wakes a coroutine's future on its event loop from the writer thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def __call__(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if not self.future.done():  # a cancelled waiter's future is done already
            self.future.set_result(None)
