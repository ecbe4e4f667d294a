"""Tests for the data contract: the tables' declarations and the typed container."""

from __future__ import annotations

import pandas as pd

from churnguard.domain.contract import TABLES, dtype_of, empty_table, from_frames


def test_missing_optional_tables_become_typed_empty_tables() -> None:
    clients = pd.DataFrame({"client_id": ["C1", "C2"]})
    data = from_frames({"clients": clients, "contracts": empty_table("contracts")})
    assert data.tickets.empty
    assert list(data.tickets.columns) == list(TABLES["tickets"].column_names)
    assert data.tickets["opened_at"].dtype == dtype_of(TABLES["tickets"].column("opened_at"))


def test_client_id_outside_clients_is_categorical_over_the_clients() -> None:
    clients = pd.DataFrame({"client_id": ["C1", "C2"]})
    events = pd.DataFrame({"client_id": ["C2", "C2"], "event_type": ["login", "login"]})
    data = from_frames({"clients": clients, "events": events})
    assert list(data.events["client_id"].cat.categories) == ["C1", "C2"]
    assert data.events["client_id"].cat.codes.tolist() == [1, 1]
    assert data.for_clients(["C2"]).clients["client_id"].tolist() == ["C2"]
