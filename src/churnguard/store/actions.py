"""What account managers did about their clients: the ``actions`` table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from churnguard.store.schema import actions

EARLIEST_ACTION = date(2000, 1, 1)  # an action logged as earlier is a typing mistake


def action_date_problem(happened_on: date, today: date | None = None) -> str | None:
    """Why an action cannot have happened on ``happened_on`` (None if it can).

    Not after ``today`` (default: today in UTC) and not before 2000: the rule of the API and of
    the dashboard's form alike.
    """
    if happened_on > (today or datetime.now(UTC).date()):
        return "The date cannot be in the future."
    if happened_on < EARLIEST_ACTION:
        return "The date is too far in the past."
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedAction:
    """Something an account manager did about a client."""

    id: int
    client_id: str
    action_type: str
    note: str
    happened_on: date
    logged_by: str
    created_at: datetime


class ActionLog:
    """Logging and listing actions; a part of ``ScoreStore``, on its engine."""

    engine: Engine

    def log_action(
        self, client_id: str, action_type: str, note: str, happened_on: date, logged_by: str
    ) -> LoggedAction:
        """Record what an account manager did about a client; returns the stored entry."""
        for name, value in (
            ("client_id", client_id),
            ("action_type", action_type),
            ("logged_by", logged_by),
        ):
            if not value or not value.strip():
                raise ValueError(f"an action needs a {name}")
        row = {
            "client_id": client_id,
            "action_type": action_type.strip(),
            "note": note,
            "happened_on": happened_on,
            "logged_by": logged_by,
            "created_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            stored = conn.execute(actions.insert().values(row).returning(*actions.c)).one()
        return LoggedAction(**stored._mapping)

    def list_actions(self, client_id: str) -> list[LoggedAction]:
        """A client's logged actions, most recent first."""
        query = (
            sa.select(actions)
            .where(actions.c.client_id == client_id)
            .order_by(actions.c.happened_on.desc(), actions.c.id.desc())
        )
        with self.engine.connect() as conn:
            return [LoggedAction(**row._mapping) for row in conn.execute(query)]
