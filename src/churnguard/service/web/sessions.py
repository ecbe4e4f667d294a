"""Dashboard sessions: a random token in a cookie, kept server-side as a hash, with an expiry.

Signing in with an API key (manager or admin) starts a session bound to that key's id; every
request re-reads the key, so a revoked key (or one whose role changed) ends its sessions at once.
The table and its queries are the store's (``churnguard.store.sessions``); this module makes the
tokens and checks them.

CSRF: a signed-in form carries ``csrf_token(token)``, an HMAC of the session token that only the
holder of the cookie can compute; the sign-in form, before any session exists, carries a random
value that must equal the one in a short-lived pre-session cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from churnguard.store import sessions
from churnguard.store.keys import PREFIX, Principal

DASHBOARD_ROLES = ("manager", "admin")  # a crm key is for machines, not for people
_TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Viewer(Principal):
    """Who is looking at the dashboard: a key's principal (its view: ``may_see``), a CSRF token."""

    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def name(self) -> str:
        return self.manager or f"{self.role} ({self.key_id})"


class SessionStore:
    """Sessions in the score store's database (the SQL is ``churnguard.store.sessions``)."""

    def __init__(self, engine: Engine, lifetime: timedelta) -> None:
        self.engine = engine
        self.lifetime = lifetime

    def start(self, key_id: str) -> str:
        """A new session for a key; returns the token for the cookie (never stored as is)."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        sessions.start_session(self.engine, token, key_id, self.lifetime)
        return token

    def viewer(self, token: str) -> Viewer | None:
        """The viewer of an unexpired session whose key is still active and may sign in."""
        if not token or len(token) > 200:
            return None
        principal = sessions.session_principal(self.engine, token, DASHBOARD_ROLES)
        if principal is None:
            return None
        return Viewer(principal.role, principal.manager, principal.key_id, csrf_token(token))

    def end(self, token: str) -> None:
        """Delete a session (signing out)."""
        sessions.end_session(self.engine, token)


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived from its secret token, so nothing else is stored."""
    return hmac.new(session_token.encode(), b"churnguard-csrf", hashlib.sha256).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    """Whether a submitted token matches, compared in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


class SignInLimiter:
    """At most ``attempts`` failed sign-ins per key id and client address within ``window`` s.

    Failures are counted per (address, key id as written in the attempt), so guessing at one
    key from one address is slowed down, while the other users behind that address (one office,
    one proxy) still sign in with their own keys. Attempts whose text holds no key id share one
    count per address.
    """

    def __init__(self, attempts: int = 10, window: float = 300.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str, key: str = "") -> bool:
        with self._lock:
            return len(self._recent((address, _key_id(key)))) >= self.attempts

    def failed(self, address: str, key: str = "") -> None:
        with self._lock:
            self._recent((address, _key_id(key))).append(time.monotonic())
            if len(self._failures) > _MAX_COUNTED:  # bounded memory: forget the quiet ones ...
                self._failures = {k: q for k, q in self._failures.items() if q}
            if len(self._failures) > _MAX_COUNTED:  # ... then those that failed longest ago
                by_age = sorted(self._failures.items(), key=lambda item: item[1][-1])
                self._failures = dict(by_age[len(by_age) // 2 :])

    def _recent(self, counted: tuple[str, str]) -> deque[float]:
        failures = self._failures.setdefault(counted, deque())
        while failures and failures[0] < time.monotonic() - self.window:
            failures.popleft()
        return failures


_MAX_COUNTED = 10_000  # (address, key id) pairs remembered at once


def _key_id(key: str) -> str:
    """The key id written in an API key's text ("cg_<key id>_<secret>"), else ""."""
    prefix, _, rest = key.strip().partition("_")
    return rest.partition("_")[0][:64] if prefix == PREFIX else ""
