"""API keys: shown once, stored hashed, bound to a role (and a manager's book)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from churnguard import cli
from churnguard.config import Settings
from churnguard.store.keys import Principal, authenticate, create_key, list_keys, revoke
from churnguard.store.schema import api_keys
from churnguard.store.scores import ScoreRecord, ScoreStore


@pytest.mark.parametrize(
    ("role", "manager"), [("crm", None), ("manager", "Ana Lima"), ("admin", None)]
)
def test_a_new_key_authenticates_as_its_role(
    store: ScoreStore, role: str, manager: str | None
) -> None:
    key = create_key(store, role, manager=manager)
    principal = authenticate(store, key)
    assert principal is not None
    assert (principal.role, principal.manager) == (role, manager)
    assert key.startswith(f"cg_{principal.key_id}_")


def test_keys_authenticate_against_an_engine_too(store: ScoreStore) -> None:
    key = create_key(store.engine, "crm")
    assert authenticate(store.engine, key) == authenticate(store, key)


def test_wrong_keys_are_refused(store: ScoreStore) -> None:
    key = create_key(store, "admin")
    key_id = key.split("_")[1]
    other = create_key(store, "crm")
    assert authenticate(store, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert authenticate(store, f"cg_{key_id}_{other.split('_', 2)[2]}") is None  # other secret
    assert authenticate(store, f"cg_{'0' * 12}_{key.split('_', 2)[2]}") is None  # unknown id
    for malformed in ("", "cg_", "nonsense", key.replace("cg_", "xx_"), f"cg_{key_id}_"):
        assert authenticate(store, malformed) is None


def test_only_a_hash_of_the_secret_is_stored(store: ScoreStore) -> None:
    key = create_key(store, "manager", manager="Ana")
    secret = key.split("_", 2)[2]
    with store.engine.connect() as conn:
        stored = [str(v) for row in conn.execute(sa.select(api_keys)) for v in row]
    assert not any(secret in value for value in stored)
    assert not any(key in value for value in stored)


def test_a_revoked_key_stops_working(store: ScoreStore) -> None:
    key = create_key(store, "crm")
    kept = create_key(store, "crm")
    principal = authenticate(store, key)
    assert principal is not None
    assert revoke(store, principal.key_id) is True
    assert authenticate(store, key) is None
    assert authenticate(store, kept) is not None
    assert revoke(store, principal.key_id) is False  # already revoked
    assert revoke(store, "0" * 12) is False  # no such key


def test_a_key_can_be_revoked_by_the_whole_key(store: ScoreStore) -> None:
    key = create_key(store, "admin")
    assert revoke(store, key) is True
    assert authenticate(store, key) is None


def test_list_keys_shows_roles_and_state_but_no_secrets(store: ScoreStore) -> None:
    crm = create_key(store, "crm", label="HubSpot sync")
    manager = create_key(store, "manager", manager="Ana")
    revoke(store, crm)
    listed = list_keys(store)
    assert [(k.role, k.manager, k.label, k.active) for k in listed] == [
        ("crm", None, "HubSpot sync", False),
        ("manager", "Ana", None, True),
    ]
    assert [k.key_id for k in listed] == [crm.split("_")[1], manager.split("_")[1]]
    text = repr(listed)
    assert crm.split("_", 2)[2] not in text and manager.split("_", 2)[2] not in text
    assert "hash" not in text


def test_keys_are_random(store: ScoreStore) -> None:
    keys = {create_key(store, "crm") for _ in range(5)}
    assert len(keys) == 5
    assert all(len(k.split("_", 2)[2]) >= 43 for k in keys)  # 32 random bytes


def test_a_manager_key_needs_a_manager(store: ScoreStore) -> None:
    for missing in (None, "", "   "):
        with pytest.raises(ValueError, match="must name its account manager"):
            create_key(store, "manager", manager=missing)
    principal = authenticate(store, create_key(store, "manager", manager="  Ana  "))
    assert principal is not None
    assert principal == Principal(role="manager", manager="Ana", key_id=principal.key_id)


@pytest.mark.parametrize("role", ["crm", "admin"])
def test_other_roles_refuse_a_manager(store: ScoreStore, role: str) -> None:
    with pytest.raises(ValueError, match=f"a {role} key cannot be bound"):
        create_key(store, role, manager="Ana")


def test_unknown_roles_are_refused(store: ScoreStore) -> None:
    with pytest.raises(ValueError, match="unknown role 'root'; choose one of crm, manager, admin"):
        create_key(store, "root")
    assert list_keys(store) == []


def test_the_database_itself_refuses_an_unbound_manager_key(store: ScoreStore) -> None:
    row = {"key_id": "a" * 12, "secret_hash": "0" * 64, "role": "manager", "manager": None}
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(api_keys.insert().values(created_at=sa.func.now(), **row))


def _scored(client_id: str, manager: str, revenue_at_risk: float) -> ScoreRecord:
    return ScoreRecord(
        client_id=client_id,
        as_of=datetime(2026, 1, 1, tzinfo=UTC),
        model_version="1",
        probability=0.5,
        band="high",
        revenue_at_risk=revenue_at_risk,
        monthly_value=revenue_at_risk / 6,
        feature_digest="0" * 64,
        change={"kind": "new"},
        account_manager=manager,
    )


def test_demo_keys_replace_the_last_demo_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path))
    assert cli.main(["keys", "demo"]) == 1  # nothing scored yet: no managers to make keys for
    with ScoreStore(Settings().score_store_url) as store:
        at_risk = [("a", "Ana", 100.0), ("b", "Ben", 900.0), ("c", "Ana", 50.0), ("d", "Cy", 300.0)]
        store.create().save_scores([_scored(*row) for row in at_risk])
        kept = create_key(store, "crm", label="the CRM")

    def demo_keys() -> dict[tuple[str, str | None], str]:
        assert cli.main(["keys", "demo"]) == 0
        lines = [line.split() for line in capsys.readouterr().out.splitlines()]
        made = {}
        for words in lines:
            if words and words[0] in ("admin", "crm", "manager"):
                manager = words[1] if words[0] == "manager" else None
                made[words[0], manager] = words[-1]
        return made

    first = demo_keys()
    # The managers with the most revenue at risk: Ben (900), then Cy (300); not Ana (150).
    assert set(first) == {("admin", None), ("crm", None), ("manager", "Ben"), ("manager", "Cy")}
    second = demo_keys()
    with ScoreStore(Settings().score_store_url) as store:
        for who, key in first.items():
            assert authenticate(store, key) is None, who  # revoked by the second run
        for (role, manager), key in second.items():
            principal = authenticate(store, key)
            assert principal is not None and (principal.role, principal.manager) == (role, manager)
        assert authenticate(store, kept) is not None  # keys made by hand stay


# --- who sees which client ----------------------------------------------------------------------


def test_a_manager_key_sees_its_own_book_only() -> None:
    ana = Principal(role="manager", manager="Ana", key_id="k1")
    assert ana.book == "Ana"
    assert ana.may_see("Ana")
    assert not ana.may_see("Ben")
    assert not ana.may_see(None)  # an unassigned client is nobody's book
    assert ana.scope("Ben") == "Ana"  # asking for another book still lists one's own
    assert ana.scope(None) == "Ana"


def test_admin_and_crm_keys_see_every_client() -> None:
    for role in ("admin", "crm"):
        principal = Principal(role=role, manager=None, key_id="k2")
        assert principal.book is None
        assert principal.may_see("Ana") and principal.may_see(None)
        assert principal.scope("Ben") == "Ben"
        assert principal.scope(None) is None
