"""What needs an account manager's attention, read from the scores and actions tables.

Queries over each client's latest score (``current_scores``) joined with the actions logged
about it: how fresh the scores are, and the clients that are newly high-risk, rising, or at risk
with no recent action.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from churnguard.store.database import Database
from churnguard.store.schema import current


def newest_score_date(db: Database) -> datetime | None:
    """The newest ``as_of`` among the clients' latest scores (None before any scoring)."""
    with db.engine.connect() as conn:
        newest: datetime | None = conn.execute(sa.select(sa.func.max(current.c.as_of))).scalar()
    return newest
