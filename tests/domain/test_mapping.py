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
