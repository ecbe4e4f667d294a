"""Simulated CRM data written the way another vendor's export would be: one shared generator.

Used by the end-to-end test on a foreign export (``tests/test_foreign_export.py``) and by the
event-heavy benchmark (``bench/events_heavy.py``): account numbers instead of client ids,
subscriptions without ids and with add-on rows to leave out, amounts in cents, interactions as
numeric codes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.domain.contract import CRMData

INTERACTION_CODES = {"email": 7, "call": 12, "meeting": 31, "review": 40, "other": 41}
ISO_DAY = "%Y-%m-%d"


def acct(ids: pd.Series) -> pd.Series:
    """Client ids as the vendor's account numbers (C00001 -> AC-00001)."""
    return ids.astype("str").str.replace("C", "AC-", regex=False)


def day(s: pd.Series, fmt: str = ISO_DAY) -> pd.Series:
    """Dates as text in ``fmt``; empty where there is none."""
    return s.dt.strftime(fmt).where(s.notna(), "")


def accounts(data: CRMData, seats: np.ndarray) -> pd.DataFrame:
    """One row per client, with a seats column the contract does not have."""
    c = data.clients
    return pd.DataFrame(
        {
            "AcctNo": acct(c["client_id"]),
            "CompanyName": c["name"],
            "Owner": c["account_manager"].fillna(""),
            "Tier": c["segment"].astype("str"),
            "Opened": day(c["client_since"]),
            "Seats": seats,
        }
    )


def subscriptions(
    data: CRMData, rng: np.random.Generator, date_format: str = ISO_DAY
) -> pd.DataFrame:
    """One row per contract (no id column), plus add-on rows that are not contracts."""
    c = data.contracts
    base = pd.DataFrame(
        {
            "AcctNo": acct(c["client_id"]),
            "Plan": c["service_line"].astype("str"),
            "Kind": "base",
            "Started": day(c["start_date"], date_format),
            "Ends": day(c["end_date"], date_format),
            "CancelledOn": day(c["cancelled_at"], date_format),
            "MRRCents": (c["monthly_value"] * 100).round().astype("int64"),
            "Billing": rng.choice(["monthly", "annual"], len(c)),
        }
    )
    addons = base.sample(frac=0.3, random_state=int(rng.integers(1 << 30))).assign(
        Kind="Add-on",
        Plan="extra seats",
        MRRCents=1_500,
        Ends="",
        CancelledOn="",
        Billing="monthly",
    )  # rolling and never cancelled: read as contracts, nobody would ever churn
    return pd.concat([base, addons]).sort_values("Started", kind="stable")
