"""Dashboard sessions in the store: kept as hashes, bound to an active key, until they expire."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from churnguard.store.keys import create_key, revoke
from churnguard.store.schema import web_sessions
from churnguard.store.scores import ScoreStore
from churnguard.store.sessions import end_session, session_principal, start_session

ROLES = ("manager", "admin")


def test_a_session_stands_for_its_key_until_it_ends(store: ScoreStore) -> None:
    key = create_key(store, "manager", manager="Ana")
    key_id = key.split("_")[1]
    start_session(store, "token-1", key_id, timedelta(hours=1))
    principal = session_principal(store, "token-1", ROLES)
    assert principal is not None
    assert (principal.role, principal.manager, principal.key_id) == ("manager", "Ana", key_id)
    assert session_principal(store, "token-2", ROLES) is None
    end_session(store, "token-1")
    assert session_principal(store, "token-1", ROLES) is None


def test_only_a_hash_of_the_token_is_stored(store: ScoreStore) -> None:
    key_id = create_key(store, "admin").split("_")[1]
    start_session(store, "secret-token", key_id, timedelta(hours=1))
    with store.engine.connect() as conn:
        stored = [str(v) for row in conn.execute(sa.select(web_sessions)) for v in row]
    assert not any("secret-token" in value for value in stored)


def test_an_expired_session_or_a_revoked_key_or_another_role_signs_nobody_in(
    store: ScoreStore,
) -> None:
    admin = create_key(store, "admin").split("_")[1]
    crm = create_key(store, "crm").split("_")[1]
    start_session(store, "short", admin, timedelta(seconds=0.2))
    start_session(store, "long", admin, timedelta(hours=1))
    start_session(store, "crm", crm, timedelta(hours=1))
    assert session_principal(store, "crm", ROLES) is None
    time.sleep(0.3)
    assert session_principal(store, "short", ROLES) is None
    assert session_principal(store, "long", ROLES) is not None
    revoke(store, admin)
    assert session_principal(store, "long", ROLES) is None
