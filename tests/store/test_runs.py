"""Tests for store/runs.py: each scoring run's coverage stored and listed, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from churnguard.domain.coverage import Coverage
from churnguard.store.runs import ScoringRun, data_source, latest_runs, record_run
from churnguard.store.scores import ScoreStore

T0 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


def _run(as_of: str, started: datetime, n_scored: int = 506) -> ScoringRun:
    coverage = Coverage(
        pd.Timestamp(as_of, tz="UTC"), 520, 506, {"ended": 12, "not_started": 2, "between": 0}
    )
    run = ScoringRun.of(
        coverage,
        model_version="7",
        n_scored=n_scored,
        source="postgresql+psycopg://crm:secret@db/crm",
        started_at=started,
        note="as_of 2025-05-01: the contracts end ...",
    )
    return run


def test_a_run_is_stored_and_read_back_newest_first(store: ScoreStore) -> None:
    first = _run("2025-05-01", T0)
    record_run(store, first)
    record_run(store, _run("2025-06-01", T0 + timedelta(days=31), n_scored=500))
    newest, oldest = latest_runs(store)
    assert oldest.as_of == datetime(2025, 5, 1, tzinfo=UTC)
    assert oldest.skipped == {
        "ended": 12,
        "not_started": 2,
    }  # reasons that skipped nobody: left out
    assert (oldest.n_clients, oldest.n_active, oldest.n_scored) == (520, 506, 506)
    assert oldest.source == "postgresql+psycopg://crm:***@db/crm"  # no password stored
    assert oldest.note == first.note and oldest.complete and not newest.complete
    assert newest.started_at == T0 + timedelta(days=31) <= newest.finished_at
    assert [r.as_of.month for r in latest_runs(store, limit=1)] == [6]


def test_a_run_says_what_it_scored_and_skipped(store: ScoreStore) -> None:
    record_run(store, _run("2025-06-01", T0, n_scored=500))
    (line,) = [r.format() for r in latest_runs(store)]
    assert line.startswith("2025-06-01  model 7  scored 500 of 506 active (6 NOT SCORED), 520 ")
    assert "skipped 14 (12 every contract stopped on or before as_of (churned); 2 first " in line


def test_a_folder_is_stored_as_given() -> None:
    assert data_source("exports/crm") == "exports/crm"


def test_a_password_in_a_url_query_is_not_stored() -> None:
    stored = data_source("postgresql://h/crm?password=s3cret&sslmode=require&api_token=t0k")
    assert "s3cret" not in stored and "t0k" not in stored
    assert stored == "postgresql://h/crm?sslmode=require"
