"""API key checks for the service, with a short memory of keys already checked.

A CRM sends the same key with every request, and checking it reads the score store. The service
remembers each key it accepted for ``ttl`` seconds (by the key's SHA-256, not the key itself),
so a revoked key stops working within ``ttl`` seconds; ``ttl`` 0 checks the store every time.
Rejected keys are never remembered: a wrong or revoked key always goes to the store.

While the store cannot be reached, a key this service accepted within the last
``OUTAGE_GRACE_SECONDS`` keeps working (a revocation in that time cannot be seen anyway); any
other key gets ``StoreUnavailableError`` (503: it cannot be checked), never a 401.
"""

from __future__ import annotations

import hashlib
import time

from churnguard.store import keys
from churnguard.store.database import StoreUnavailableError
from churnguard.store.keys import Principal
from churnguard.store.scores import ScoreStore

_MAX_KEYS = 10_000  # remembered at once; beyond it the memory starts afresh
OUTAGE_GRACE_SECONDS = 3600.0  # during an outage, keys accepted this recently still work


class KeyChecker:
    """``keys.authenticate`` against one store, remembering accepted keys for ``ttl`` seconds."""

    def __init__(self, store: ScoreStore, ttl: float = 10.0) -> None:
        self.store = store
        self.ttl = ttl
        self._accepted: dict[bytes, tuple[Principal, float]] = {}  # principal, when checked

    def authenticate(self, key: str) -> Principal | None:
        """The principal of a valid, unrevoked key, else None.

        Raises:
            StoreUnavailableError: the store cannot be reached and the key was not accepted
                within the last ``OUTAGE_GRACE_SECONDS``.
        """
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        remembered = self._accepted.get(digest)
        if remembered is not None and remembered[1] + self.ttl > now:
            return remembered[0]
        try:
            principal = keys.authenticate(self.store, key)
        except StoreUnavailableError:
            if remembered is not None and remembered[1] + OUTAGE_GRACE_SECONDS > now:
                return remembered[0]
            raise
        if principal is None:
            self._accepted.pop(digest, None)
            return None
        if len(self._accepted) >= _MAX_KEYS:
            self._accepted.clear()
        self._accepted[digest] = (principal, now)
        return principal
