"""Follow-ups: the next step an account manager plans after an action, and when it is due.

A logged action may carry a next step with a due date (the ``follow_ups`` table, one row per
action). A client's follow-up status is its last action and that action's next step, if any:
logging a new action replaces the plan. The table is declared in ``schema`` with every other;
``Database.create()`` makes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from churnguard.store.database import Database, engine_of
from churnguard.store.schema import actions, follow_ups

_IN_CHUNK = 500  # client ids per IN (...) list


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A client's last action and the next step planned with it (if any)."""

    client_id: str
    last_action: str
    last_action_on: date
    logged_by: str
    next_step: str | None = None
    due_on: date | None = None

    def state(self, today: date) -> str:
        """'overdue', 'due' (today), 'planned' (later) or '' when no next step is planned."""
        if self.due_on is None:
            return ""
        return "overdue" if self.due_on < today else "due" if self.due_on == today else "planned"


def plan_follow_up(db: Database, action_id: int, client_id: str, next_step: str, due: date) -> None:
    """Attach a next step, due on ``due``, to a logged action."""
    if not next_step.strip():
        raise ValueError("a follow-up needs a next step")
    row = {
        "action_id": action_id,
        "client_id": client_id,
        "next_step": next_step.strip(),
        "due_on": due,
    }
    with engine_of(db).begin() as conn:
        conn.execute(follow_ups.insert().values(row))


def current_follow_ups(db: Database, client_ids: Sequence[str]) -> dict[str, FollowUp]:
    """Each given client's last action, with the next step planned with it, by client id."""
    rank = sa.func.row_number().over(
        partition_by=actions.c.client_id,
        order_by=(actions.c.happened_on.desc(), actions.c.id.desc()),
    )
    found: dict[str, FollowUp] = {}
    with engine_of(db).connect() as conn:
        for i in range(0, len(client_ids), _IN_CHUNK):
            for row in conn.execute(_latest(rank, list(client_ids[i : i + _IN_CHUNK]))):
                found[row.client_id] = FollowUp(**row._mapping)
    return found


def _latest(rank: sa.Over[int], chunk: list[str]) -> sa.Select[tuple[object, ...]]:
    """The last action of each client in ``chunk`` joined with its follow-up."""
    ranked = (
        sa.select(
            actions.c.id,
            actions.c.client_id,
            actions.c.action_type.label("last_action"),
            actions.c.happened_on.label("last_action_on"),
            actions.c.logged_by,
            rank.label("rank"),
        )
        .where(actions.c.client_id.in_(chunk))
        .subquery()
    )
    return (
        sa.select(
            ranked.c.client_id,
            ranked.c.last_action,
            ranked.c.last_action_on,
            ranked.c.logged_by,
            follow_ups.c.next_step,
            follow_ups.c.due_on,
        )
        .select_from(ranked.outerjoin(follow_ups, follow_ups.c.action_id == ranked.c.id))
        .where(ranked.c.rank == 1)
    )


def due_follow_ups(db: Database, today: date) -> list[FollowUp]:
    """The current follow-ups whose next step is due today or overdue."""
    query = sa.select(follow_ups.c.client_id).where(follow_ups.c.due_on <= today).distinct()
    with engine_of(db).connect() as conn:
        client_ids = list(conn.execute(query).scalars())
    found = current_follow_ups(db, client_ids).values()
    return [f for f in found if f.due_on is not None and f.due_on <= today]
