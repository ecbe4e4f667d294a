"""Tests for churnguard.modeling.table: typing a flat table's columns and cleaning its rows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from churnguard.modeling.table import TableSchema, clean_numbers, infer_schema, prepare_rows
from tests.factories import client_table


def test_columns_are_typed_and_unusable_ones_dropped() -> None:
    table = client_table().drop(columns=["customer_id", "churn"])
    table["signed_up"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(table["tenure"], "D")
    table["notes"] = np.nan
    table["active"] = np.where(table["tenure"] > 10, "TRUE", "false")
    schema = infer_schema(table)
    assert schema.kinds == {
        "tenure": "numeric",
        "monthly": "numeric",
        "total": "numeric",  # numbers stored as text, with blanks
        "contract": "categorical",
        "paperless": "flag",
        "support": "flag",
        "active": "flag",
    }
    assert set(schema.dropped) == {"country", "email", "signed_up", "notes"}
    assert "constant" in schema.dropped["country"]
    assert "distinct values" in schema.dropped["email"]
    assert schema.dropped["notes"] == "all missing"


def test_blank_numbers_and_yes_no_words_become_numbers(caplog: pytest.LogCaptureFixture) -> None:
    rows = pd.DataFrame(
        {
            "total": ["12.5", " ", "", "n/a", None],
            "paperless": ["Yes", "no", " YES ", "maybe", None],
            "support": [True, False, True, False, True],
        }
    )
    schema = TableSchema({"total": "numeric", "paperless": "flag", "support": "flag"})
    with caplog.at_level(logging.WARNING, logger="churnguard.modeling.table"):
        prepared = prepare_rows(rows, schema)
    assert prepared["total"].tolist()[0] == 12.5
    assert prepared["total"].isna().tolist() == [False, True, True, True, True]
    assert prepared["paperless"].tolist()[:3] == [1.0, 0.0, 1.0]
    assert prepared["paperless"].isna().tolist()[3:] == [True, True]
    assert prepared["support"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert "'n/a'" in caplog.text and "'maybe'" in caplog.text  # unreadable values are logged


def test_numbers_grouped_in_thousands_are_numbers_and_dates_say_so() -> None:
    n = 40
    rows = pd.DataFrame(
        {
            "balance": [f"{1000 * k + 0.5:,.2f}" for k in range(n)],  # "1,000.50"
            "signed": [f"2024-{1 + k % 12:02d}-{1 + k % 28:02d}" for k in range(n)],
            "code": [f"A{k}" for k in range(n)],
        }
    )
    rows.loc[3, "balance"] = "-12,345,678.9"
    schema = infer_schema(rows)
    assert schema.kinds == {"balance": "numeric"}
    assert schema.dropped["signed"].startswith("dates as text; derive a number")
    assert "distinct values" in schema.dropped["code"]  # not dates: an id
    new = pd.DataFrame({"balance": ["2,500", "1,2,3", "12", None, "-$1,234.5", "\u00a33", "7.5%"]})
    prepared = prepare_rows(new, schema)["balance"]
    assert prepared.tolist()[:3:2] == [2500.0, 12.0]
    assert prepared.tolist()[4:] == [-1234.5, 3.0, 7.5]  # currency and percent signs dropped
    assert prepared.isna().tolist()[:4] == [False, True, False, True]  # "1,2,3" is no number
    assert infer_schema(pd.DataFrame({"share": ["5%", "12.5%", "$3"] * 20})).kinds == {
        "share": "numeric"
    }
    assert prepare_rows(rows, schema)["balance"].tolist()[:4] == [0.5, 1000.5, 2000.5, -12345678.9]


def test_a_few_missing_value_markers_and_infinite_values_count_as_missing() -> None:
    n = 100
    marked = [str(k * 1.5) for k in range(n)]
    marked[3], marked[7], marked[9] = "?", "#DIV/0!", "?"  # 3% of the values, 2 texts
    words = [str(k % 8) for k in range(n)]
    words[:10] = ["many"] * 10  # 10%: a word column, not numbers
    rows = pd.DataFrame(
        {
            "marked": marked,
            "words": words,
            "ratio": np.where(np.arange(n) % 25 == 0, np.inf, np.arange(n, dtype=float)),
        }
    )
    assert infer_schema(rows).kinds == {
        "marked": "numeric",
        "words": "categorical",
        "ratio": "numeric",
    }
    cleaned, notes = clean_numbers(rows)
    assert cleaned["marked"].isna().sum() == 3 and cleaned["marked"].iloc[2] == 3.0
    assert cleaned["ratio"].isna().sum() == 4 and np.isfinite(cleaned["ratio"].dropna()).all()
    assert cleaned["words"].tolist() == words  # not a number column: as it was
    assert notes == [
        "column 'marked': 3 values are not numbers (e.g. '?') and count as missing",
        "column 'ratio': 4 values are infinite and count as missing",
    ]
    plain = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    assert clean_numbers(plain)[0] is plain and clean_numbers(plain)[1] == []
    # at scoring time too: an infinite number is a missing one
    prepared = prepare_rows(rows, TableSchema({"ratio": "numeric"}))["ratio"]
    assert prepared.isna().sum() == 4
