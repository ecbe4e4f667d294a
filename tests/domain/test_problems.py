"""Tests for problems and reports: what a user reads when the input is wrong."""

from __future__ import annotations

from churnguard.domain.problems import Problem, ValidationReport


def test_problem_names_file_column_lines_and_reason() -> None:
    problem = Problem("error", "invoices", "invoices.csv", "due_at", (5, 9, 12), "unparseable date")
    assert str(problem) == "invoices.csv, column due_at, lines 5, 9, 12: unparseable date"


def test_problem_shows_ten_rows_and_counts_the_rest() -> None:
    problem = Problem("error", "events", "db table events", "value", tuple(range(1, 14)), "bad")
    assert (
        str(problem)
        == "db table events, column value, rows 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 (+3 more): bad"
    )


def test_problem_shows_the_source_column_when_a_mapping_renamed_it() -> None:
    problem = Problem("error", "clients", "accounts.csv", "client_id", (2,), "empty", "AccountId")
    assert str(problem) == "accounts.csv, column AccountId (client_id), line 2: empty"


def test_report_lists_errors_first_then_a_summary_with_row_counts() -> None:
    warning = Problem("warning", "clients", "clients.csv", None, (), "unknown column ignored: x")
    error = Problem("error", "contracts", "contracts.csv", "client_id", (3,), "empty value")
    report = ValidationReport([warning, error], {"clients": 2, "contracts": 1})
    assert report.format().splitlines() == [
        "error: contracts.csv, column client_id, line 3: empty value",
        "warning: clients.csv: unknown column ignored: x",
        "1 error, 1 warning; tables read: clients 2 rows, contracts 1 row",
    ]
    assert not report.ok and report.errors == [error] and report.warnings == [warning]
