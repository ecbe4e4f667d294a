"""Tests for store/export.py: the CSV columns, defused formulas, every page, the last action."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from churnguard import cli
from churnguard.store.export import COLUMNS, csv_lines, export_rows, score_row
from churnguard.store.scores import MAX_PAGE, ScoreRecord, ScoreStore
from tests.factories import BACKENDS, open_store

WHEN = datetime(2025, 6, 1, tzinfo=UTC)


def record(
    client_id: str, p: float, manager: str | None = "Ana", name: str = "Acme"
) -> ScoreRecord:
    return ScoreRecord(
        client_id=client_id,
        as_of=WHEN,
        model_version="3",
        probability=p,
        band="high" if p >= 0.3 else "medium" if p >= 0.1 else "low",
        revenue_at_risk=p * 12_000,
        monthly_value=1000.0,
        feature_digest="0" * 64,
        change={"direction": "rising", "delta": 0.12},
        account_manager=manager,
        client_name=name,
        segment="smb",
        drivers=[{"feature": "days_since_contact", "reason": "No contact for 74 days"}],
        actions=[{"action": "Schedule a check-in call"}],
    )


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScoreStore]:
    with open_store(request.param, tmp_path) as store:
        yield store


def parse(lines: list[str]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


def test_a_row_has_every_column_in_order_and_numbers_as_numbers(store: ScoreStore) -> None:
    store.save_scores([record("C1", 0.42)])
    store.log_action("C1", "Call", "", date(2025, 6, 3), "Ana")
    store.log_action("C1", "Email", "", date(2025, 6, 2), "Ana")  # older: not the last
    rows = parse(list(csv_lines(export_rows(store))))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0] | {} == {
        "client_id": "C1",
        "client_name": "Acme",
        "account_manager": "Ana",
        "segment": "smb",
        "band": "high",
        "probability": "0.4200",
        "revenue_at_risk": "5040.00",
        "monthly_value": "1000.00",
        "change": "rising",
        "change_points": "+12.0",
        "top_reason": "No contact for 74 days",
        "recommended_action": "Schedule a check-in call",
        "last_action": "Call",
        "last_action_on": "2025-06-03",
        "as_of": "2025-06-01",
        "model_version": "3",
    }


def test_text_a_spreadsheet_would_run_is_defused_and_empty_stays_empty(store: ScoreStore) -> None:
    score = store.save_scores([record("C1", 0.2, None, '=HYPERLINK("http://x","y")')]) and (
        store.latest_score("C1")
    )
    assert score is not None
    cells = dict(zip(COLUMNS, score_row(score), strict=True))
    assert cells["client_name"] == '\'=HYPERLINK("http://x","y")'
    assert cells["account_manager"] == "" and cells["last_action"] == ""
    assert cells["change_points"] == "+12.0"  # a number we wrote is left alone


def test_every_page_is_exported_in_order_with_the_lists_filters(store: ScoreStore) -> None:
    n = MAX_PAGE + 5
    store.save_scores(
        [record(f"C{i:05d}", round(i / n, 4), "Ana" if i % 2 else "Ben") for i in range(n)]
    )
    everyone = [r["client_id"] for r in parse(list(csv_lines(export_rows(store))))]
    assert len(everyone) == n and everyone[0] == f"C{n - 1:05d}"  # highest revenue first
    ben = parse(list(csv_lines(export_rows(store, manager="Ben", band="high"))))
    expected, total = store.latest_scores(manager="Ben", band="high", limit=MAX_PAGE)
    assert [r["client_id"] for r in ben] == [s.client_id for s in expected][:total]
    assert {r["account_manager"] for r in ben} == {"Ben"}


def test_churnguard_export_writes_the_same_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'cli.db'}").create()
    store.save_scores([record("C1", 0.5), record("C2", 0.05, "Ben")])
    monkeypatch.setenv("CHURNGUARD_DATABASE_URL", str(store.engine.url))
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path))
    out = tmp_path / "ana.csv"
    assert cli.main(["export", "--manager", "Ana", "--out", str(out)]) == 0
    written = out.read_bytes().decode("utf-8")
    assert written == "".join(csv_lines(export_rows(store, manager="Ana")))
    assert [r["client_id"] for r in parse([written])] == ["C1"]
