"""Tests for the mapping file: reading, checking and applying it to a table as read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnguard.domain.mapping import load_mapping, map_table, parse_mapping
from churnguard.domain.problems import DataContractError
from churnguard.domain.validation import validate
from tests.factories import CONTRACTS, csv_table, tables


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
    ("text", "expected"),
    [
        (
            "tables:\n  client: accounts\n",
            "tables: unknown table 'client' (did you mean 'clients'?",
        ),
        ("columns:\n  clients:\n    clientid: Id\n", "columns.clients: unknown column 'clientid'"),
        ("columns:\n  - clients\n", "columns: expected a mapping of names, got ['clients']"),
        ("values:\n  interactions:\n    channel:\n      sms: text\n", "'text' is not one of email"),
        ("values:\n  contracts:\n    monthly_value:\n      a: b\n", "cannot be recoded"),
        ("tabels: {}\n", "unknown section 'tabels'"),
        ("columns:\n  clients:\n    name: X\n    region: X\n", "'X' is mapped to both 'name'"),
        ("tables: [unclosed\n", "not a valid YAML file"),
    ],
)
def test_load_mapping_names_the_file_and_the_bad_entry(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "crm_mapping.yaml"
    path.write_text(text)
    with pytest.raises(DataContractError) as info:
        load_mapping(path)
    assert str(info.value).startswith("error: crm_mapping.yaml: ")
    assert expected in str(info.value)


def test_load_mapping_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mapping file not found"):
        load_mapping(tmp_path / "nope.yaml")


def test_map_table_renames_columns_and_recodes_values_case_insensitively() -> None:
    mapping = parse_mapping(
        {
            "columns": {"interactions": {"client_id": "Account", "channel": "Medium"}},
            "values": {"interactions": {"channel": {"SMS": "other", "Phone": "call"}}},
        }
    )
    frame = pd.DataFrame({"Account": ["C1"] * 3, "Medium": ["sms", "PHONE", "Email"]})
    table = map_table("interactions", "activities.csv", frame, mapping=mapping)
    assert list(table.frame.columns) == ["client_id", "channel"]
    assert table.frame["channel"].tolist() == ["other", "call", "Email"]
    assert table.renamed == {"client_id": "Account", "channel": "Medium"}
    assert table.row_numbers.tolist() == [1, 2, 3]


def test_mapped_column_missing_from_the_file_is_named_by_its_source_name() -> None:
    mapping = parse_mapping({"columns": {"clients": {"client_id": "AccountId"}}})
    raw = {"clients": csv_table("clients", "Id,name\nC1,Acme\n", mapping)}
    raw["contracts"] = csv_table("contracts", CONTRACTS.replace("C2", "C1"))
    with pytest.raises(DataContractError) as info:
        validate(raw)
    assert [str(p) for p in info.value.report.errors] == [
        "clients.csv: missing required column client_id (from 'AccountId'); "
        "the file has columns: Id, name"
    ]


def test_problems_in_mapped_columns_name_the_source_column() -> None:
    mapping = parse_mapping({"columns": {"clients": {"client_id": "AccountId"}}})
    raw = tables()
    raw["clients"] = csv_table("clients", "AccountId,client_id\nC1,x\n,y\nC2,z\n", mapping)
    with pytest.raises(DataContractError) as info:
        validate(raw)
    report = info.value.report
    assert [str(p) for p in report.errors] == [
        "clients.csv, column AccountId (client_id), line 3: empty value in a required column"
    ]
    assert "unknown column ignored: client_id" in str(report.warnings[0])


def test_file_column_shadowed_by_a_mapped_column_is_ignored() -> None:
    mapping = parse_mapping({"columns": {"clients": {"client_id": "AccountId"}}})
    raw = tables()
    raw["clients"] = csv_table("clients", "client_id,name\nC1,Acme\nC2,Beta\n", mapping)
    with pytest.raises(DataContractError) as info:
        validate(raw)
    assert info.value.report.format().splitlines()[:2] == [
        "error: clients.csv: missing required column client_id (from 'AccountId'); "
        "the file has columns: name, client_id",
        "warning: clients.csv: unknown column ignored: client_id",
    ]
