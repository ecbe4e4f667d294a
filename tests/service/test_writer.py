"""The score writer: a request returns once its scores are committed, many per transaction."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest

from churnguard.service.writer import ScoreWriter
from churnguard.store.database import StoreUnavailableError
from churnguard.store.schema import Source
from churnguard.store.scores import ScoreRecord


class _FlakyStore:
    """A store that refuses any batch holding client "bad", and is down while ``down``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.saved: list[str] = []
        self.calls = 0
        self.down = False
        self.delay = delay

    def save_scores(self, records: list[ScoreRecord], source: Source) -> int:
        self.calls += 1
        time.sleep(self.delay)
        if self.down:
            raise StoreUnavailableError("the database is down")
        if any(r.client_id == "bad" for r in records):
            raise ValueError("refused")
        self.saved.extend(r.client_id for r in records)
        return len(records)


def _record(client_id: str) -> ScoreRecord:
    return ScoreRecord(
        client_id=client_id,
        as_of=datetime(2025, 1, 1, tzinfo=UTC),
        model_version="1",
        probability=0.5,
        band="high",
        revenue_at_risk=6.0,
        monthly_value=1.0,
        feature_digest="0" * 64,
        change={"direction": "new"},
    )


def test_submit_returns_once_the_scores_are_stored() -> None:
    store = _FlakyStore()
    writer = ScoreWriter(store).start()
    writer.submit([_record("a"), _record("b")])
    assert store.saved == ["a", "b"] and writer.pending == 0 and not writer.is_pending("a")
    writer.flush()  # nothing pending: returns at once
    writer.close()
    with pytest.raises(RuntimeError):
        writer.submit([_record("d")])


def test_concurrent_requests_share_a_commit_and_a_bad_one_fails_alone() -> None:
    store = _FlakyStore(delay=0.05)
    writer = ScoreWriter(store).start()
    errors: dict[str, Exception] = {}

    def request(name: str) -> None:
        try:
            writer.submit([_record(name)])
        except Exception as exc:
            errors[name] = exc

    first = threading.Thread(target=request, args=("first",))
    first.start()
    time.sleep(0.01)  # the first commit is under way: the others gather behind it
    others = [threading.Thread(target=request, args=(n,)) for n in ("a", "bad", "b", "c")]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join()
    assert sorted(store.saved) == ["a", "b", "c", "first"]
    assert list(errors) == ["bad"] and isinstance(errors["bad"], ValueError)
    # the first alone, the four together, then each of the four on its own
    assert store.calls == 1 + 1 + 4
    assert writer.failed == 1
    writer.close()


def test_a_store_outage_fails_the_requests_and_the_writer_recovers() -> None:
    store = _FlakyStore()
    writer = ScoreWriter(store).start()
    store.down = True
    with pytest.raises(StoreUnavailableError):
        writer.submit([_record("a")])
    assert store.saved == [] and writer.pending == 0
    store.down = False
    writer.submit([_record("b")])
    assert store.saved == ["b"]
    writer.close()


def test_a_coroutine_awaits_the_commit_and_gets_the_error() -> None:
    store = _FlakyStore(delay=0.05)
    writer = ScoreWriter(store).start()

    async def requests() -> list[BaseException | None]:
        await writer.flushed()  # nothing pending: returns at once
        written = asyncio.gather(
            writer.write([_record("a")]), writer.write([_record("bad")]), return_exceptions=True
        )
        await asyncio.sleep(0.01)  # both handed over
        await writer.flushed()  # both handed over before: both settled now
        assert store.saved == ["a"] and not writer.is_pending("a")
        return await written

    results = asyncio.run(requests())
    assert results[0] is None and isinstance(results[1], ValueError)
    writer.close()
    with pytest.raises(RuntimeError):
        asyncio.run(writer.write([_record("d")]))
