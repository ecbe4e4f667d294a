"""Group commit of the API's scores: requests hand scores over, one thread writes them in batches.

A score store transaction costs far more than a row (``ScoreStore.save_scores`` builds a scratch
table and merges it with three statements: about 5 ms of CPU per call, then some 0.05 ms per
score), so writing each request's scores in its own transaction would put that in every request's
latency and cap the API near 200 requests a second. Requests instead hand their scores to
``ScoreWriter.submit`` and answer at once; a thread writes whatever has gathered, at most
``interval`` seconds after it was handed over. A crash loses at most that window's scores (the
caller has them in its answer); a graceful stop (``close``) writes everything first.

Reads stay consistent within the service: ``flush()`` returns once everything handed over before
the call is written, and readers call it first (it returns at once when nothing is pending).
A batch that fails is retried one score at a time, so one bad score does not lose the others;
scores that still fail are logged and counted in ``failed``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from churnguard.store.schema import Source
from churnguard.store.scores import ScoreRecord

logger = logging.getLogger(__name__)


class ScoreSink(Protocol):
    """Where scores go: a ``ScoreStore`` (one transaction per call)."""

    def save_scores(self, records: list[ScoreRecord], source: Source) -> int: ...


class ScoreWriter:
    """Writes scores to a ``ScoreStore`` in the background, many requests per transaction."""

    def __init__(self, store: ScoreSink, interval: float = 0.5, max_pending: int = 50_000) -> None:
        self.store = store
        self.interval = interval
        self.max_pending = max_pending
        self.failed = 0
        self._cond = threading.Condition()
        self._queue: list[ScoreRecord] = []
        self._clients: Counter[str] = Counter()  # pending scores per client
        self._submitted = 0
        self._written = 0
        self._urgent = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="score-writer", daemon=True)

    def start(self) -> ScoreWriter:
        self._thread.start()
        return self

    @property
    def pending(self) -> int:
        """Scores handed over and not yet written."""
        return self._submitted - self._written

    def is_pending(self, client_id: str) -> bool:
        """Whether a score of this client waits to be written."""
        with self._cond:
            return self._clients[client_id] > 0

    def submit(self, records: Sequence[ScoreRecord]) -> None:
        """Hand scores over for writing (waits while ``max_pending`` scores are queued)."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the score writer is closed")
            while self.pending >= self.max_pending:  # the store is down or too slow: push back
                self._urgent = True
                self._cond.notify_all()
                self._cond.wait()
            wake = not self._queue  # the writer sleeps only while the queue is empty
            self._queue.extend(records)
            self._clients.update(r.client_id for r in records)
            self._submitted += len(records)
            if wake:
                self._cond.notify_all()

    def flush(self) -> None:
        """Return once every score handed over before this call is written (or has failed)."""
        with self._cond:
            target = self._submitted
            if self._written >= target:
                return
            self._urgent = True
            self._cond.notify_all()
            while self._written < target and self._thread.is_alive():
                self._cond.wait()

    def close(self) -> None:
        """Write what is pending and stop the thread."""
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
                # let more gather, so that one transaction writes them all
                self._cond.wait_for(lambda: self._urgent or self._stopping, self.interval)
                batch, self._queue, self._urgent = self._queue, [], False
            self._write(batch)
            with self._cond:
                self._clients.subtract(r.client_id for r in batch)
                self._clients += Counter()  # drop the zero counts
                self._written += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[ScoreRecord]) -> None:
        try:
            self.store.save_scores(batch, source="api")
        except Exception:
            logger.exception("writing %d scores failed; retrying them one at a time", len(batch))
            for record in batch:
                self._write_one(record)

    def _write_one(self, record: ScoreRecord) -> None:
        try:
            self.store.save_scores([record], source="api")
        except Exception:
            self.failed += 1
            logger.exception(
                "score of client %s at %s (model %s) was not stored",
                record.client_id,
                record.as_of.isoformat(),
                record.model_version,
            )
