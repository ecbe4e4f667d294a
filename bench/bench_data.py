"""Large CRM data sets for benchmarks, built in memory: about 100 history rows per client."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.domain.contract import CHANNELS, DIRECTIONS, PRIORITIES, CRMData, from_frames

START = pd.Timestamp("2023-01-01", tz="UTC")
DAYS = 3 * 365
ROWS_PER_CLIENT = {  # about 100 rows of history per client
    "interactions": 40,
    "feedback": 4,
    "invoices": 30,
    "tickets": 8,
    "events": 15,
    "contracts": 3,
}


def _times(rng: np.random.Generator, n: int) -> pd.Series:
    """Timestamps over three years, in time order as a CRM export usually lists them."""
    seconds = np.sort(rng.integers(0, DAYS * 86_400, n))
    return pd.Series((START.value // 10**9 + seconds).astype("datetime64[s]")).dt.tz_localize("UTC")


def _later(rng: np.random.Generator, t: pd.Series, max_days: int, empty: float) -> pd.Series:
    delta = pd.to_timedelta(rng.integers(0, max_days * 86_400, len(t)), unit="s")
    later = (t + delta).mask(rng.random(len(t)) < empty)
    return later.dt.as_unit("s")  # seconds, as validated data carries them


def _owners(rng: np.random.Generator, dtype: pd.CategoricalDtype, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(rng.integers(0, len(dtype.categories), n), dtype=dtype)


def _row_ids(n: int, first: int) -> pd.Series:
    return pd.Series(np.arange(first, first + n).astype(str), dtype="str")


def _choice(rng: np.random.Generator, values: tuple[str, ...], n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(rng.integers(0, len(values), n), categories=list(values))


def bench_crm(n_clients: int, seed: int = 0, first: int = 0) -> CRMData:
    """A random CRM data set of n_clients, every contract table filled.

    ``first``: the number of the first client (``C{first:08d}``), and of its first contract,
    invoice and ticket row per client, so blocks built apart (``bench.bench_parquet``) share no id.
    """
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"C{i:08d}" for i in range(first, first + n_clients)], dtype="str")
    dtype = pd.CategoricalDtype(ids)
    n = {name: per * n_clients for name, per in ROWS_PER_CLIENT.items()}
    start = _times(rng, n["contracts"])
    issued = _times(rng, n["invoices"])
    disputed = _later(rng, issued, 60, empty=0.9)
    opened = _times(rng, n["tickets"])
    frames = {
        "clients": pd.DataFrame(
            {
                "client_id": pd.Series(ids, dtype="str"),
                "account_manager": pd.Series(rng.choice(["Ann", "Bo", ""], n_clients), dtype="str"),
                "segment": _choice(rng, ("smb", "mid", "ent"), n_clients),
                "client_since": (_times(rng, n_clients) - pd.Timedelta(days=400)).dt.as_unit("s"),
            }
        ),
        "contracts": pd.DataFrame(
            {
                "contract_id": _row_ids(n["contracts"], first * ROWS_PER_CLIENT["contracts"]),
                "client_id": _owners(rng, dtype, n["contracts"]),
                "service_line": _choice(rng, ("it", "audit", "staffing"), n["contracts"]),
                "start_date": start,
                "end_date": _later(rng, start, 730, empty=0.3),
                "monthly_value": rng.integers(100, 20_000, n["contracts"]).astype(float),
                "auto_renew": rng.random(n["contracts"]) < 0.4,
                "cancelled_at": _later(rng, start, 700, empty=0.8),
            }
        ),
        "interactions": pd.DataFrame(
            {
                "client_id": _owners(rng, dtype, n["interactions"]),
                "occurred_at": _times(rng, n["interactions"]),
                "channel": _choice(rng, CHANNELS, n["interactions"]),
                "direction": _choice(rng, DIRECTIONS, n["interactions"]),
            }
        ),
        "feedback": pd.DataFrame(
            {
                "client_id": _owners(rng, dtype, n["feedback"]),
                "submitted_at": _times(rng, n["feedback"]),
                "survey": _choice(rng, ("nps", "csat"), n["feedback"]),
                "score": rng.integers(0, 6, n["feedback"]).astype(float),
            }
        ),
        "invoices": pd.DataFrame(
            {
                "invoice_id": _row_ids(n["invoices"], first * ROWS_PER_CLIENT["invoices"]),
                "client_id": _owners(rng, dtype, n["invoices"]),
                "issued_at": issued,
                "due_at": (issued + pd.Timedelta(days=30)).dt.as_unit("s"),
                "amount": rng.integers(100, 20_000, n["invoices"]) + 0.5,
                "paid_at": _later(rng, issued, 70, empty=0.1),
                "disputed_at": disputed,
                "dispute_resolved_at": _later(rng, disputed, 90, empty=0.4),
            }
        ),
        "tickets": pd.DataFrame(
            {
                "ticket_id": _row_ids(n["tickets"], first * ROWS_PER_CLIENT["tickets"]),
                "client_id": _owners(rng, dtype, n["tickets"]),
                "opened_at": opened,
                "resolved_at": _later(rng, opened, 30, empty=0.2),
                "priority": _choice(rng, PRIORITIES, n["tickets"]),
            }
        ),
        "events": pd.DataFrame(
            {
                "client_id": _owners(rng, dtype, n["events"]),
                "occurred_at": _times(rng, n["events"]),
                "event_type": _choice(rng, ("billable_hours", "portal_login"), n["events"]),
                "value": rng.random(n["events"]) * 8,
            }
        ),
    }
    return from_frames(frames)
