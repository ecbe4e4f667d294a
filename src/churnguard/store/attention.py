"""What needs an account manager's attention, read from the scores and actions tables.

Queries over each client's latest score (``current_scores``) joined with the actions logged
about it: how fresh the scores are, and the clients that are newly high-risk, rising, or at risk
with no recent action.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from churnguard.store.database import Database
from churnguard.store.schema import actions, current, scores

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


# --- needs attention ---------------------------------------------------------------------------

ATTENTION = {
    "new-high": "newly high-risk",
    "rising": "rising",
    "no-action": "high-risk with no action in 30 days",
    "unassigned": "unassigned",
}
RECENT_ACTION = timedelta(days=30)  # an action older than this is not "recent"


def attention_conditions(kind: str, today: date) -> list[ColumnElement[bool]]:
    """Conditions on ``scores`` (a client's latest score) for one kind of "needs attention",
    or for any of them (``kind="all"``): pass them to ``latest_scores(where=...)``."""
    if kind == "all":
        return [sa.or_(*(sa.and_(*attention_conditions(k, today)) for k in ATTENTION))]
    direction = scores.c.change["direction"].as_string()
    previous_band = scores.c.change["previous_band"].as_string()
    if kind == "new-high":  # entered the high band since the previous score (not a first score)
        return [scores.c.band == "high", previous_band != "high"]
    if kind == "rising":  # up by more than the "steady" tolerance, and not low
        return [direction == "rising", scores.c.band != "low"]
    if kind == "no-action":
        recent = sa.select(actions.c.id).where(
            actions.c.client_id == scores.c.client_id,
            actions.c.happened_on >= today - RECENT_ACTION,
        )
        return [scores.c.band == "high", ~recent.exists()]
    if kind == "unassigned":  # high or medium risk and nobody's client
        return [sa.func.coalesce(scores.c.account_manager, "") == "", scores.c.band != "low"]
    raise ValueError(f"kind must be 'all' or one of {', '.join(ATTENTION)}, not {kind!r}")
