"""Tests for score-run coverage: the default as_of and the clients scored and skipped."""

from __future__ import annotations

import pandas as pd

from churnguard.domain.contract import CRMData, from_frames
from churnguard.domain.coverage import default_as_of, scoring_coverage

TS = "datetime64[s, UTC]"


def _data(contracts: list[tuple[str, str, str | None]], last_event: str) -> CRMData:
    """Clients A-E; contracts (client, start, end); one event on last_event."""
    frame = pd.DataFrame(contracts, columns=["client_id", "start_date", "end_date"])
    frame = frame.assign(
        contract_id=[f"k{i}" for i in range(len(frame))],
        start_date=pd.to_datetime(frame["start_date"], utc=True).astype(TS),
        end_date=pd.to_datetime(frame["end_date"], utc=True).astype(TS),
        monthly_value=100.0,
    )
    events = pd.DataFrame(
        {
            "client_id": ["A"],
            "occurred_at": pd.Series(pd.to_datetime([last_event], utc=True)).astype(TS),
            "event_type": pd.Categorical(["login"]),
        }
    )
    clients = pd.DataFrame({"client_id": list("ABCDE")})
    return from_frames({"clients": clients, "contracts": frame, "events": events})


MONTHLY_TERMS = [  # an export whose contracts stop on 2024-06-01 (renewals later not exported)
    ("A", "2024-05-01", "2024-06-20"),
    ("B", "2024-05-15", "2024-07-01"),
    ("C", "2024-01-01", "2024-03-01"),
    ("C", "2024-09-01", None),  # signed ahead: starts after the end of the contract data
    ("D", "2024-01-01", "2024-02-01"),
]


def test_as_of_is_the_end_of_the_contracts_when_activity_runs_well_past_them() -> None:
    data = _data(MONTHLY_TERMS[:3] + MONTHLY_TERMS[4:], last_event="2024-07-10")
    chosen = default_as_of(data)
    assert chosen.as_of == pd.Timestamp("2024-05-16", tz="UTC")  # after the last start
    assert "the contracts end on 2024-05-16, 56 days before the other tables" in chosen.note
    assert "only 0 of the 2 clients" in chosen.note


def test_as_of_is_the_end_of_the_data_when_the_contracts_keep_up() -> None:
    data = _data(MONTHLY_TERMS[:3] + MONTHLY_TERMS[4:], last_event="2024-05-20")
    chosen = default_as_of(data)
    assert chosen.as_of == pd.Timestamp("2024-05-21", tz="UTC") and chosen.note == ""


def test_coverage_counts_the_clients_scored_and_why_the_others_are_skipped() -> None:
    data = _data(MONTHLY_TERMS, last_event="2024-07-10")
    cov = scoring_coverage(data, pd.Timestamp("2024-05-16", tz="UTC"))
    assert (cov.clients, cov.active) == (5, 2)
    assert cov.skipped == {"no_contract": 1, "not_started": 0, "between": 1, "ended": 1}
    assert cov.format() == (
        "Scored 2 of 5 clients (active at 2024-05-16); skipped 3: 1 no contract at all; "
        "1 between contracts at as_of (the next one starts later); "
        "1 every contract stopped on or before as_of (churned)"
    )
    later = scoring_coverage(data, pd.Timestamp("2024-07-10", tz="UTC"))
    assert later.active == 0 and later.skipped["ended"] == 3
