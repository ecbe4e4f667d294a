"""The service's key checks: remembered for a while, and through a store outage if verified."""

from __future__ import annotations

import pytest

from churnguard.service import auth
from churnguard.service.auth import KeyChecker
from churnguard.store.database import StoreUnavailableError
from churnguard.store.keys import Principal

ADMIN = Principal(role="admin", manager=None, key_id="k1")


class _Store:
    """Stands in for the score store: counts key checks, and can be down."""

    def __init__(self) -> None:
        self.down = False
        self.checks = 0


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> _Store:
    fake = _Store()

    def authenticate(_: object, key: str) -> Principal | None:
        fake.checks += 1
        if fake.down:
            raise StoreUnavailableError("the database is down")
        return ADMIN if key == "good" else None

    monkeypatch.setattr(auth.keys, "authenticate", authenticate)
    return fake


def test_an_accepted_key_is_remembered_for_ttl(store: _Store) -> None:
    checker = KeyChecker(store, ttl=60)  # type: ignore[arg-type]
    assert checker.authenticate("good") == ADMIN
    assert checker.authenticate("good") == ADMIN
    assert checker.authenticate("bad") is None and checker.authenticate("bad") is None
    assert store.checks == 3  # good once, bad every time


def test_during_an_outage_only_keys_verified_before_work(
    store: _Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = KeyChecker(store, ttl=0)  # type: ignore[arg-type]
    assert checker.authenticate("good") == ADMIN
    store.down = True
    assert checker.authenticate("good") == ADMIN  # verified a moment ago
    with pytest.raises(StoreUnavailableError):
        checker.authenticate("bad")  # cannot be checked: 503, not 401
    monkeypatch.setattr(auth, "OUTAGE_GRACE_SECONDS", 0.0)
    with pytest.raises(StoreUnavailableError):
        checker.authenticate("good")  # verified too long ago
