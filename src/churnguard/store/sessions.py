"""Dashboard sessions: the ``web_sessions`` table, a token's hash bound to a key until it expires.

The web layer (``service/web/sessions.py``) makes the tokens and cookies; this module keeps only
their SHA-256, so a copy of the table signs nobody in.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from churnguard.store.database import Database, engine_of
from churnguard.store.keys import Principal, active_principals
from churnguard.store.schema import web_sessions


def start_session(db: Database | Engine, token: str, key_id: str, lifetime: timedelta) -> None:
    """Store a new session for a key (and forget the expired ones)."""
    now = datetime.now(UTC)
    row = {
        "token_hash": _hash(token),
        "key_id": key_id,
        "created_at": now,
        "expires_at": now + lifetime,
    }
    with engine_of(db).begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now))
        conn.execute(web_sessions.insert().values(row))


def session_principal(
    db: Database | Engine, token: str, roles: tuple[str, ...]
) -> Principal | None:
    """The key of an unexpired session, if still active and of one of ``roles``."""
    keys = active_principals(roles).subquery()
    query = (
        sa.select(keys.c.key_id, keys.c.role, keys.c.manager)
        .join(web_sessions, web_sessions.c.key_id == keys.c.key_id)
        .where(
            web_sessions.c.token_hash == _hash(token),
            web_sessions.c.expires_at > datetime.now(UTC),
        )
    )
    with engine_of(db).connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else Principal(role=row.role, manager=row.manager, key_id=row.key_id)


def end_session(db: Database | Engine, token: str) -> None:
    """Delete a session (signing out)."""
    with engine_of(db).begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.token_hash == _hash(token)))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
