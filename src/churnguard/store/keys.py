"""API keys: random secrets shown once, kept only as hashes, each with a role.

A key reads ``cg_<key id>_<secret>``. The key id is public (it names the key in listings and
finds its row); the secret is 32 random bytes, stored as its SHA-256 and compared in constant
time. A slow salted hash (scrypt, PBKDF2) protects secrets people choose, which can be guessed;
a 256-bit random secret cannot be, so SHA-256 loses nothing and keeps the check cheap on every
request (a deliberately slow hash there would also hand out a denial-of-service lever).

Roles: ``crm`` scores clients, ``manager`` sees one account manager's book (the key names the
manager), ``admin`` sees and does everything. ``Principal.may_see`` is the one definition of
who may see which client, for the API and the dashboard alike. Every query of the ``api_keys``
table is in this module.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from churnguard.store.database import Database, engine_of
from churnguard.store.schema import ROLES, api_keys

PREFIX = "cg"
_ID_BYTES = 6  # 12 hex characters: ids stay short, collisions stay out of reach
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the role, and for a manager key, whose book."""

    role: str
    manager: str | None
    key_id: str

    @property
    def book(self) -> str | None:
        """The account manager whose clients this key may see; None: every client.

        A manager key sees its own book only; admin and crm keys see every client.
        """
        return self.manager if self.role == "manager" else None

    def may_see(self, account_manager: str | None) -> bool:
        """Whether a client of this account manager is in the key's view."""
        book = self.book
        return book is None or account_manager == book

    def scope(self, requested: str | None) -> str | None:
        """The account manager to filter a listing by: a manager key's own, else ``requested``."""
        book = self.book
        return requested if book is None else book


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """A stored key without its secret, for listings."""

    key_id: str
    role: str
    manager: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def create_key(
    store: Database | Engine, role: str, manager: str | None = None, label: str | None = None
) -> str:
    """Store a new key and return it; this is the only time the key itself is seen.

    Raises:
        ValueError: unknown role, a manager key without a manager, or another role with one.
    """
    manager = _check_role(role, manager)
    key_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    row = {
        "key_id": key_id,
        "secret_hash": _hash(secret),
        "role": role,
        "manager": manager,
        "label": label,
        "created_at": datetime.now(UTC),
    }
    with engine_of(store).begin() as conn:
        conn.execute(api_keys.insert().values(row))
    return f"{PREFIX}_{key_id}_{secret}"


def authenticate(store: Database | Engine, key: str) -> Principal | None:
    """The principal a key stands for, or None if it is malformed, unknown or revoked."""
    parts = _parse(key)
    if parts is None:
        return None
    key_id, secret = parts
    query = sa.select(api_keys).where(api_keys.c.key_id == key_id)
    with engine_of(store).connect() as conn:
        row = conn.execute(query).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    return Principal(role=row.role, manager=row.manager, key_id=key_id)


def revoke(store: Database | Engine, key_id: str) -> bool:
    """Revoke a key, given its id (or the whole key); False if no active key has that id."""
    parts = _parse(key_id)
    if parts is not None:
        key_id = parts[0]
    stmt = (
        api_keys.update()
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    with engine_of(store).begin() as conn:
        return conn.execute(stmt).rowcount == 1


def list_keys(store: Database | Engine) -> list[KeyInfo]:
    """Every key, oldest first, without secrets or hashes."""
    columns = [api_keys.c[name] for name in KeyInfo.__dataclass_fields__]
    query = sa.select(*columns).order_by(api_keys.c.created_at, api_keys.c.key_id)
    with engine_of(store).connect() as conn:
        return [KeyInfo(**row._mapping) for row in conn.execute(query)]


def active_principals(roles: tuple[str, ...] = ROLES) -> sa.Select[tuple[str, str, str | None]]:
    """A query of the unrevoked keys of these roles: key id, role, manager (for a join)."""
    return sa.select(api_keys.c.key_id, api_keys.c.role, api_keys.c.manager).where(
        api_keys.c.revoked_at.is_(None), api_keys.c.role.in_(roles)
    )


def _check_role(role: str, manager: str | None) -> str | None:
    """The manager name a key of this role is bound to (None for other roles)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    manager = manager.strip() if manager else None
    if role == "manager" and not manager:
        raise ValueError("a manager key must name its account manager")
    if role != "manager" and manager:
        raise ValueError(
            f"a {role} key cannot be bound to an account manager; only manager keys are"
        )
    return manager or None


def _parse(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    prefix, _, rest = key.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != 2 * _ID_BYTES or not secret:
        return None
    if any(c not in string.hexdigits for c in key_id):
        return None  # ids are hex: anything else (a NUL, say) is no key, and no query
    return key_id, secret


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
