"""Alerts sent: the ``alerts_sent`` table, one row per alert item per channel.

An item's ``dedupe_key`` says what it is about (``high:C001:2025-06-01``, ``follow-up:17:due``),
so a re-run finds what was already sent on a channel and sends nothing twice. The table is
declared in ``schema`` with every other; ``Database.create()`` makes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from churnguard.store.database import Database, engine_of
from churnguard.store.schema import alerts_sent, scores


@dataclass(frozen=True, slots=True, kw_only=True)
class SentAlert:
    """One alert item delivered on one channel."""

    dedupe_key: str
    channel: str
    kind: str
    client_id: str
    account_manager: str | None
    recipient: str
    as_of: datetime | None = None


def already_sent(db: Database, keys: Sequence[str], channel: str) -> set[str]:
    """The given dedupe keys already sent on ``channel``."""
    found: set[str] = set()
    with engine_of(db).connect() as conn:
        for i in range(0, len(keys), 500):
            query = sa.select(alerts_sent.c.dedupe_key).where(
                alerts_sent.c.channel == channel,
                alerts_sent.c.dedupe_key.in_(list(keys[i : i + 500])),
            )
            found.update(conn.execute(query).scalars())
    return found


def record_sent(db: Database, sent: Iterable[SentAlert]) -> int:
    """Record delivered alert items (one that is already recorded is left as it was)."""
    now = datetime.now(UTC)
    rows = [
        {f: getattr(s, f) for f in SentAlert.__dataclass_fields__} | {"sent_at": now} for s in sent
    ]
    if not rows:
        return 0
    keys = [r["dedupe_key"] for r in rows]
    with engine_of(db).begin() as conn:
        done = {
            (k, c)
            for k, c in conn.execute(
                sa.select(alerts_sent.c.dedupe_key, alerts_sent.c.channel).where(
                    alerts_sent.c.dedupe_key.in_(keys)
                )
            )
        }
        new = [r for r in rows if (r["dedupe_key"], r["channel"]) not in done]
        if new:
            conn.execute(alerts_sent.insert(), new)
    return len(new)


def last_alerted(db: Database, client_ids: Sequence[str], kind: str) -> dict[str, datetime]:
    """The score date of each client's newest alert of ``kind`` (any channel)."""
    query = (
        sa.select(alerts_sent.c.client_id, sa.func.max(alerts_sent.c.as_of))
        .where(alerts_sent.c.kind == kind, alerts_sent.c.client_id.in_(list(client_ids)))
        .group_by(alerts_sent.c.client_id)
    )
    with engine_of(db).connect() as conn:
        return {c: when for c, when in conn.execute(query) if when is not None}


def lowest_since(db: Database, client_id: str, after: datetime, before: datetime) -> float | None:
    """A client's lowest probability among its scores strictly between two dates."""
    query = sa.select(sa.func.min(scores.c.probability)).where(
        scores.c.client_id == client_id, scores.c.as_of > after, scores.c.as_of < before
    )
    with engine_of(db).connect() as conn:
        value = conn.execute(query).scalar()
    return None if value is None else float(value)
