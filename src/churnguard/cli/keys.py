"""`keys create|list|revoke|demo`: API keys for the CRM, managers and admins."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy libraries load once a command runs, so --help answers at once
    from churnguard.config import Settings

logger = logging.getLogger("churnguard")


def keys_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create an API key and print it: the only time the key itself is shown."""
    from churnguard.store.database import Database
    from churnguard.store.keys import create_key

    with Database(settings.score_store_url) as store:
        key = create_key(store.create(), args.role, args.manager, args.label)
    whose = f" for account manager {args.manager.strip()}" if args.manager else ""
    print(f"New {args.role} key{whose}; keep it now, it is not shown again:", file=sys.stderr)
    print(key)
    return 0


def keys_list(args: argparse.Namespace, settings: Settings) -> int:
    """List API keys (ids, roles, managers; never the keys themselves)."""
    import pandas as pd

    from churnguard.store.database import Database
    from churnguard.store.keys import list_keys

    with Database(settings.score_store_url) as store:
        found = list_keys(store.create())
    if not found:
        print("No API keys yet; create one with `churnguard keys create --role ...`")
        return 0
    rows = [
        {
            "key_id": k.key_id,
            "role": k.role,
            "manager": k.manager or "-",
            "label": k.label or "-",
            "created": f"{k.created_at:%Y-%m-%d %H:%M}",
            "revoked": f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        }
        for k in found
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke an API key by its id; it stops working at once."""
    from churnguard.store.database import Database
    from churnguard.store.keys import revoke

    with Database(settings.score_store_url) as store:
        revoked = revoke(store.create(), args.key_id)
    if not revoked:
        print("error: no active key with that id (see `churnguard keys list`)", file=sys.stderr)
        return 1
    print("Revoked; the key no longer works.")
    return 0


DEMO_KEY_LABEL = "demo"


def keys_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Replace the demo keys: an admin, a crm and a manager key per top account manager."""
    from churnguard.store.keys import create_key, list_keys, revoke
    from churnguard.store.scores import ScoreStore

    with ScoreStore(settings.score_store_url) as store:
        by_manager = store.create().revenue_at_risk_by("account_manager")  # largest first
        managers = [m for m, _, _ in by_manager if m is not None][: args.managers]
        if not managers:
            print(
                "error: no scored clients with an account manager yet; run `churnguard score`",
                file=sys.stderr,
            )
            return 1
        for old in list_keys(store):
            if old.label == DEMO_KEY_LABEL and old.active:
                revoke(store, old.key_id)
        made = [("admin", "-", create_key(store, "admin", None, DEMO_KEY_LABEL))]
        made.append(("crm", "-", create_key(store, "crm", None, DEMO_KEY_LABEL)))
        made += [("manager", m, create_key(store, "manager", m, DEMO_KEY_LABEL)) for m in managers]
    print("Demo API keys (earlier demo keys are revoked; these are not shown again):")
    for role, manager, key in made:
        print(f"  {role:<8} {manager:<24} {key}")
    print("Use one as `Authorization: Bearer <key>`, or sign in to the dashboard with it.")
    return 0
