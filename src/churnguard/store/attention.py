"""What needs an account manager's attention, read from the scores and actions tables.

Queries over each client's latest score (``current_scores``) joined with the actions logged
about it: how fresh the scores are, and the clients that are newly high-risk, rising, or at risk
with no recent action.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa

from churnguard.store.database import Database
from churnguard.store.schema import actions, current

_IN_CHUNK = 500  # client ids per IN (...) list


def newest_score_date(db: Database) -> datetime | None:
    """The newest ``as_of`` among the clients' latest scores (None before any scoring)."""
    with db.engine.connect() as conn:
        newest: datetime | None = conn.execute(sa.select(sa.func.max(current.c.as_of))).scalar()
    return newest


def last_actions(db: Database, client_ids: Sequence[str]) -> dict[str, tuple[str, date]]:
    """Each given client's most recent logged action: (its type, the day it happened)."""
    rank = sa.func.row_number().over(
        partition_by=actions.c.client_id,
        order_by=(actions.c.happened_on.desc(), actions.c.id.desc()),
    )
    found: dict[str, tuple[str, date]] = {}
    with db.engine.connect() as conn:
        for i in range(0, len(client_ids), _IN_CHUNK):
            chunk = list(client_ids[i : i + _IN_CHUNK])
            ranked = (
                sa.select(actions.c.client_id, actions.c.action_type, actions.c.happened_on)
                .add_columns(rank.label("rank"))
                .where(actions.c.client_id.in_(chunk))
                .subquery()
            )
            query = sa.select(ranked.c.client_id, ranked.c.action_type, ranked.c.happened_on)
            for client_id, kind, day in conn.execute(query.where(ranked.c.rank == 1)):
                found[client_id] = (kind, day)
    return found
