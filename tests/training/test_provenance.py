"""Tests for provenance.py: what a run's name and description say about the data."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd

from churnguard.training.provenance import base_rate, run_name, source_name, windows_text


def _result(params: dict[str, Any], windows: pd.DataFrame | None = None) -> Any:
    """A stand-in for a TrainResult with only what names and descriptions read."""
    windows = pd.DataFrame() if windows is None else windows
    chosen = SimpleNamespace(kind="lightgbm")
    return SimpleNamespace(
        params=params, windows=windows, chosen=chosen, cross_validated=windows.empty
    )


CRM = {
    "source": "/home/me/.churnguard/demo",
    "n_clients": 1000,
    "history_start": "2023-01-01",
    "observed_until": "2025-12-31",
    "horizon_days": 90,
}
WINDOWS = pd.DataFrame(
    {
        "window": ["train", "test"],
        "start": pd.to_datetime(["2023-04-01", "2025-06-01"], utc=True),
        "end": pd.to_datetime(["2025-01-01", "2025-08-01"], utc=True),
        "rows": [3000, 1000],
        "churned": [90, 30],
    }
)


def test_a_crm_run_is_named_for_its_model_data_span_and_horizon() -> None:
    name = run_name(_result(CRM, WINDOWS))
    assert name == "lightgbm on demo (1,000 clients, 2023-01..2025-12), horizon 90d"


def test_a_flat_table_run_names_its_rows_and_cross_validation() -> None:
    params = {"source": "data/telco.csv", "n_rows": 7043, "n_positive": 1869, "horizon_days": 0}
    result = _result(params)
    assert run_name(result) == "lightgbm on telco.csv (7,043 rows), cross-validated"
    assert base_rate(result) == 1869 / 7043


def test_a_database_source_is_named_by_its_database_and_no_source_is_data() -> None:
    assert source_name(_result({"source": "postgresql+psycopg://crm:***@db:5432/sales"})) == "sales"
    assert source_name(_result({"source": "sqlite:///crm.db?mode=ro"})) == "crm.db"
    assert source_name(_result({})) == "data"


def test_windows_and_base_rate_come_from_the_windows_table() -> None:
    result = _result(CRM, WINDOWS)
    assert base_rate(result) == 120 / 4000
    assert windows_text(result) == [
        "train 2023-04-01..2025-01-01: 3,000 rows, 90 churned",
        "test 2025-06-01..2025-08-01: 1,000 rows, 30 churned",
    ]
