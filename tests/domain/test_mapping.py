"""Tests for the mapping file: reading, checking and applying it to a table as read."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.domain.mapping import load_mapping
from churnguard.domain.problems import DataContractError


def test_load_mapping_reads_tables_columns_and_values(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "tables:\n  clients: accounts\n"
        "columns:\n  clients:\n    client_id: AccountId\n"
        "values:\n  interactions:\n    channel:\n      SMS: other\n      phone: call\n"
    )
    mapping = load_mapping(path)
    assert mapping.tables == {"clients": "accounts"}
    assert mapping.columns == {"clients": {"client_id": "AccountId"}}
    assert mapping.values == {"interactions": {"channel": {"SMS": "other", "phone": "call"}}}


def test_load_mapping_keeps_yes_and_numbers_as_text(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("values:\n  contracts:\n    auto_renew:\n      yes please: yes\n      2: no\n")
    assert load_mapping(path).values["contracts"]["auto_renew"] == {"yes please": "yes", "2": "no"}


@pytest.mark.parametrize(
    ("text", "expected", "line"),
    [
        (
            "tables:\n  client: accounts\n",
            "tables: unknown table 'client' (did you mean 'clients'?",
            2,
        ),
        (
            "columns:\n  clients:\n    clientid: Id\n",
            "columns.clients: unknown column 'clientid'",
            3,
        ),
        ("columns:\n  - clients\n", "columns: expected a mapping of names, got ['clients']", 1),
        ("values:\n  interactions:\n    channel:\n      sms: text\n", "'text' is not one of", 4),
        ("values:\n  contracts:\n    monthly_value:\n      a: b\n", "cannot be recoded", 3),
        ("tabels: {}\n", "unknown section 'tabels'", 1),
        ("tables:\n  clients: x\n  contracts: x\n", "'x' is mapped to both 'clients'", 3),
        ("tables: [unclosed\n", "not a valid YAML file", 2),
        (
            "columns:\n  contracts:\n    contract_id: {row_number: yes, column: a}\n",
            "exactly one",
            3,
        ),
        ("columns:\n  clients:\n    name: {column: a, scale: 2}\n", "scale applies to numbers", 3),
        ("filters:\n  contracts:\n    remove: {kind: addon}\n", "expected drop: or keep:", 3),
    ],
)
def test_load_mapping_names_the_file_the_line_and_the_bad_entry(
    tmp_path: Path, text: str, expected: str, line: int
) -> None:
    path = tmp_path / "crm_mapping.yaml"
    path.write_text(text)
    with pytest.raises(DataContractError) as info:
        load_mapping(path)
    assert str(info.value).startswith(f"error: crm_mapping.yaml, line {line}: ")
    assert expected in str(info.value)


def test_load_mapping_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mapping file not found"):
        load_mapping(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- attributes and date formats


@pytest.mark.parametrize(
    ("entry", "expected", "line"),
    [
        ("attributes:\n  clients:\n    seats: text\n", "kind: expected number or category", 3),
        ("attributes:\n  clients:\n    Seats: number\n", "lower-case letters", 3),
        ("attributes:\n  clients:\n    id: number\n", "the column client_id, which clients", 3),
        ("attributes:\n  contracts:\n    id: category\n", "the column contract_id", 3),
        ("attributes:\n  invoices:\n    x: number\n", "from clients and contracts only", 2),
        (
            "attributes:\n  clients:\n    plan: {kind: category, direction: more_risk}\n",
            "a category is context",
            3,
        ),
        ("attributes:\n  clients:\n    seats: {kind: number, unit: x}\n", "unknown key 'unit'", 3),
        ("attributes:\n  clients:\n    plan: {kind: category, scale: 2}\n", "scale applies", 3),
        ('date_format: "%Q"\n', "expected a date format such as", 1),
        ("date_format:\n  contracts: {monthly_value: '%d'}\n", "unknown date column", 2),
        ("date_format:\n  contracts: [x]\n", "expected a mapping of names", 2),
    ],
)
def test_bad_attribute_and_date_format_entries_name_the_line(
    tmp_path: Path, entry: str, expected: str, line: int
) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(entry)
    with pytest.raises(DataContractError) as info:
        load_mapping(path)
    messages = [str(p) for p in info.value.report.errors]
    assert any(m.startswith(f"mapping.yaml, line {line}: ") and expected in m for m in messages), (
        messages
    )


def test_a_date_format_for_every_table_or_one_column(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text('date_format: "%m/%d/%Y"\n')
    assert load_mapping(path).date_formats["invoices"] == dict.fromkeys(
        ("issued_at", "due_at", "paid_at", "disputed_at", "dispute_resolved_at"), "%m/%d/%Y"
    )
    path.write_text('date_format:\n  events: {occurred_at: "%d.%m.%Y %H:%M"}\n')
    assert load_mapping(path).date_formats == {"events": {"occurred_at": "%d.%m.%Y %H:%M"}}
