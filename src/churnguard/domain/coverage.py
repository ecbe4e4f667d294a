"""Which clients a score run covers: the default as_of, and the clients it scores and skips.

A score run scores the clients active at ``as_of`` (``churn.active_clients``). By default
``as_of`` is the end of the data (``churn.observation_end``), unless the contracts stop well
before the other tables: an export whose activity runs a month past its contracts would make
every contract term ending in that month look like churn, because the renewals are not in it.
Then ``as_of`` is the end of the contract data, and the run says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnguard.domain.churn import active_clients, coverage, observation_end
from churnguard.domain.contract import CRMData
from churnguard.domain.timeaxis import utc_second

STALE_DAYS = 7  # contracts ending this much before the other tables are an older export


@dataclass(frozen=True)
class ScoringDate:
    """The as_of a score run uses by default, and why (empty: the end of the data)."""

    as_of: pd.Timestamp
    note: str = ""


def default_as_of(data: CRMData) -> ScoringDate:
    """The end of the data, or of the contract data when the contracts stop well before it."""
    return choose_as_of(
        observation_end(data),
        contracts_end(data),
        lambda when: len(active_clients(data.contracts, when)),
    )


def choose_as_of(
    end: pd.Timestamp, contracts_end: pd.Timestamp | None, active_at: Callable[[pd.Timestamp], int]
) -> ScoringDate:
    """``default_as_of``'s rule from the ends of the data and of the contracts (``active_at``:
    how many clients are active at a date, asked only when the contracts stop early)."""
    if contracts_end is None or end - contracts_end <= pd.Timedelta(days=STALE_DAYS):
        return ScoringDate(end)
    at_end = active_at(end)
    at_contracts_end = active_at(contracts_end)
    if at_contracts_end <= at_end:
        return ScoringDate(end)
    note = (
        f"as_of {contracts_end:%Y-%m-%d}: the contracts end on {contracts_end:%Y-%m-%d}, "
        f"{(end - contracts_end).days} days before the other tables ({end:%Y-%m-%d}); at "
        f"{end:%Y-%m-%d} only {at_end:,} of the {at_contracts_end:,} clients active at the end "
        "of the contracts would still be active, because renewals after it are not in the "
        "export. Pass --as-of to choose another date."
    )
    return ScoringDate(contracts_end, note)


def contracts_end(data: CRMData) -> pd.Timestamp | None:
    """Midnight after the latest contract start or cancellation (None without contracts)."""
    stamps = [data.contracts[c].max() for c in ("start_date", "cancelled_at")]
    known = [s for s in stamps if pd.notna(s)]
    if not known:
        return None
    return utc_second(max(known)).floor("D") + pd.Timedelta(days=1)


SKIP_REASONS = {
    "no_contract": "no contract at all",
    "not_started": "first contract starts on or after as_of",
    "between": "between contracts at as_of (the next one starts later)",
    "ended": "every contract stopped on or before as_of (churned)",
}


@dataclass(frozen=True)
class Coverage:
    """How many of the clients a run scores (those active at as_of), and why it skips the rest."""

    as_of: pd.Timestamp
    clients: int
    active: int
    skipped: dict[str, int]  # SKIP_REASONS key -> clients

    def format(self) -> str:
        """'Scored 506 of 520 clients (active at 2022-10-01); skipped 14: 12 ..., 2 ...'."""
        head = (
            f"Scored {self.active:,} of {self.clients:,} clients (active at {self.as_of:%Y-%m-%d})"
        )
        reasons = [f"{n:,} {SKIP_REASONS[k]}" for k, n in self.skipped.items() if n]
        return (
            f"{head}; skipped {self.clients - self.active:,}: {'; '.join(reasons)}"
            if reasons
            else head
        )


def scoring_coverage(data: CRMData, as_of: pd.Timestamp) -> Coverage:
    """Which clients a run at as_of scores, and the reasons the others are skipped."""
    ids = pd.Index(data.clients["client_id"].astype("str"))
    active = ids.isin(active_clients(data.contracts, as_of))
    spans = coverage(data.contracts)
    code = ids.get_indexer(pd.Index(spans["client_id"]))
    known = code >= 0  # validated data has no contract of an unknown client
    code, starts_later = code[known], (spans["start"] >= utc_second(as_of)).to_numpy()[known]
    n_contracts = np.bincount(code, minlength=len(ids))
    n_later = np.bincount(code, weights=starts_later, minlength=len(ids))
    skipped = ~active
    counts = {
        "no_contract": skipped & (n_contracts == 0),
        "not_started": skipped & (n_contracts > 0) & (n_later == n_contracts),
        "between": skipped & (n_later > 0) & (n_later < n_contracts),
        "ended": skipped & (n_contracts > 0) & (n_later == 0),
    }
    return Coverage(
        utc_second(as_of), len(ids), int(active.sum()), {k: int(v.sum()) for k, v in counts.items()}
    )
