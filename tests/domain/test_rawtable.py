"""Tests for applying a mapping to a table as read: filters, renames, derived columns, recodes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnguard.domain.contract import CRMData, Kind
from churnguard.domain.mapping import load_mapping, parse_mapping
from churnguard.domain.problems import DataContractError, ValidationReport
from churnguard.domain.rawtable import map_table
from churnguard.domain.validation import validate
from tests.factories import CONTRACTS, csv_table, tables


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


SUBSCRIPTIONS = (
    "account,plan,kind,started,mrr_cents\n"
    "C1,pro,base,2024-01-01,10000\n"
    "C1,seats,addon,2024-01-01,500\n"
    "C2,basic,base,2024-02-01,4950\n"
)


def _subscriptions(tmp_path: Path, entries: str) -> pd.DataFrame:
    """Validated contracts read from SUBSCRIPTIONS through a mapping file with these entries."""
    path = tmp_path / "mapping.yaml"
    path.write_text(entries)
    raw = tables(contracts=None)
    raw["contracts"] = csv_table("contracts", SUBSCRIPTIONS, load_mapping(path))
    data, report = validate(raw)
    assert report.ok, report.format()
    return data.contracts


def test_ids_from_row_numbers_or_joined_columns(tmp_path: Path) -> None:
    base = (
        "columns:\n  contracts:\n    client_id: account\n    start_date: started\n"
        "    monthly_value: mrr_cents\n"
    )
    by_row = _subscriptions(tmp_path, base + "    contract_id: {row_number: yes}\n")
    assert by_row["contract_id"].tolist() == ["1", "2", "3"]
    joined = base + "    contract_id: {concat: [account, plan, started], sep: '/'}\n"
    ids = _subscriptions(tmp_path, joined)["contract_id"].tolist()
    assert ids == ["C1/pro/2024-01-01", "C1/seats/2024-01-01", "C2/basic/2024-02-01"]


def test_constant_scale_and_a_column_used_twice(tmp_path: Path) -> None:
    contracts = _subscriptions(
        tmp_path,
        "columns:\n  contracts:\n    contract_id: {row_number: yes}\n    client_id: account\n"
        "    start_date: started\n    cancelled_at: started\n    service_line: plan\n"
        "    auto_renew: {constant: 'yes'}\n    monthly_value: {column: mrr_cents, scale: 0.01}\n",
    )
    assert contracts["monthly_value"].tolist() == [100.0, 5.0, 49.5]
    assert contracts["auto_renew"].all()
    assert (contracts["cancelled_at"] == contracts["start_date"]).all()
    assert contracts["service_line"].tolist() == ["pro", "seats", "basic"]


def test_filters_drop_rows_and_the_report_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "columns:\n  contracts:\n    contract_id: {row_number: yes}\n    client_id: account\n"
        "    start_date: started\n    monthly_value: mrr_cents\n"
        "filters:\n  contracts:\n    drop: {kind: addon}\n"
    )
    raw = tables(contracts=None)
    bad = SUBSCRIPTIONS.replace("C2,basic,base,2024-02-01,4950", "C2,basic,base,2024-02-01,x")
    raw["contracts"] = csv_table("contracts", bad, load_mapping(path))
    assert raw["contracts"].row_numbers.tolist() == [2, 4]  # file lines, for messages
    assert raw["contracts"].frame["contract_id"].tolist() == ["1", "3"]  # positions in the file
    with pytest.raises(DataContractError) as info:
        validate(raw)
    report = info.value.report
    assert "contracts.csv, column mrr_cents (monthly_value), line 4" in str(report.errors[0])
    assert "contracts 2 rows (1 dropped by the mapping)" in report.format()
    # kind is read by the filter, so not an unknown column; plan is read by nothing
    assert [str(w) for w in report.warnings] == ["contracts.csv: unknown column ignored: plan"]


def test_keep_filter_keeps_only_the_listed_values() -> None:
    mapping = parse_mapping({"filters": {"contracts": {"keep": {"kind": ["base"]}}}})
    frame = pd.read_csv(pd.io.common.StringIO(SUBSCRIPTIONS), dtype=str)
    table = map_table("contracts", "subscriptions.csv", frame, mapping=mapping)
    assert table.frame["plan"].tolist() == ["pro", "basic"] and table.dropped == 1


def test_a_derivation_reading_a_missing_column_names_the_mapping_line(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "columns:\n  contracts:\n    client_id: account\n"
        "    contract_id: {concat: [account, plan_code]}\n"
        "filters:\n  contracts:\n    drop: {type: addon}\n"
    )
    raw = tables(contracts=None)
    raw["contracts"] = csv_table("contracts", SUBSCRIPTIONS, load_mapping(path))
    with pytest.raises(DataContractError) as info:
        validate(raw)
    errors = [str(p) for p in info.value.report.errors]
    assert errors[0].startswith(
        "contracts.csv, column contract_id: mapping.yaml line 4 (columns.contracts.contract_id): "
        "no column 'plan_code' to read (it has: account, plan, kind, started, mrr_cents)"
    )
    assert "mapping.yaml line 7 (filters.contracts.drop.type): no column 'type'" in errors[1]


# ---------------------------------------------------------------- attributes and date formats

ATTR_CLIENTS = "Id,Seats,Plan\nC1,12,basic\nC2,,pro\nC3,3,\n"
ATTR_CONTRACTS = (
    "Account,Started,Value,Discount\nC1,01/02/2024,100,0.1\nC2,15/03/2024,50,\nC3,31/12/2023,9,0\n"
)
ATTR_MAPPING = """\
columns:
  clients: {client_id: Id}
  contracts:
    contract_id: {row_number: yes}
    client_id: Account
    start_date: Started
    monthly_value: Value
date_format:
  contracts: "%d/%m/%Y"
attributes:
  clients:
    seats: {column: Seats, kind: number, direction: less_risk}
    plan_tier: {column: Plan, kind: category, label: Plan tier}
  contracts:
    discount: {column: Discount, kind: number, scale: 100, label: Discount (%)}
"""


def _load(
    tmp_path: Path, text: str, clients: str = ATTR_CLIENTS, contracts: str = ATTR_CONTRACTS
) -> tuple[CRMData, ValidationReport]:
    """Clients and contracts as read through a mapping file with this text, validated."""
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    mapping = load_mapping(path)
    raw = {
        "clients": csv_table("clients", clients, mapping),
        "contracts": csv_table("contracts", contracts, mapping),
    }
    return validate(raw)


def test_attributes_and_a_date_format_are_read_into_the_typed_tables(tmp_path: Path) -> None:
    data, report = _load(tmp_path, ATTR_MAPPING)
    assert report.ok and not report.warnings  # the attribute columns are not "unknown columns"
    assert [(a.column, a.kind, a.words) for a in data.attributes] == [
        ("client_seats", Kind.NUMBER, "Seats"),
        ("client_plan_tier", Kind.CATEGORY, "Plan tier"),
        ("contract_discount", Kind.NUMBER, "Discount (%)"),
    ]
    assert data.clients["client_seats"].tolist()[::2] == [12.0, 3.0]
    assert pd.isna(data.clients["client_seats"][1])
    assert isinstance(data.clients["client_plan_tier"].dtype, pd.CategoricalDtype)
    assert data.contracts["contract_discount"].tolist()[:1] == [10.0]  # scaled
    assert data.contracts["start_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-02-01",
        "2024-03-15",
        "2023-12-31",
    ]
    assert data.attributes[0].where == "mapping.yaml line 12 (attributes.clients.seats)"
    # a subset keeps its attributes
    assert data.for_clients(["C1"]).attributes == data.attributes


def test_a_date_that_does_not_match_the_format_names_table_column_row_and_line(
    tmp_path: Path,
) -> None:
    contracts = ATTR_CONTRACTS.replace("15/03/2024", "2024-03-15")
    with pytest.raises(DataContractError) as info:
        _load(tmp_path, ATTR_MAPPING, contracts=contracts)
    (error,) = [str(p) for p in info.value.report.errors if "format" in p.message]
    assert error == (
        "contracts.csv, column Started (start_date), line 3: mapping.yaml line 9 "
        "(date_format.contracts.start_date): 1 dates do not match the date format '%d/%m/%Y'"
    )
    assert "2024-03-15" not in error  # the value is not echoed back
    # reported once: not again as an empty value in a required column
    assert [p.rows for p in info.value.report.errors if p.column == "start_date"] == [(3,)]


def test_an_empty_date_beside_one_not_in_the_format_is_still_reported_as_empty(
    tmp_path: Path,
) -> None:
    contracts = ATTR_CONTRACTS.replace("15/03/2024", "2024-03-15").replace("31/12/2023", "")
    with pytest.raises(DataContractError) as info:
        _load(tmp_path, ATTR_MAPPING, contracts=contracts)
    errors = [(p.rows, p.message) for p in info.value.report.errors if p.column == "start_date"]
    assert [rows for rows, _ in errors] == [(3,), (4,)]
    assert errors[1][1] == "empty value in a required column"


def test_a_number_attribute_with_text_names_the_rows_and_the_mapping_line(tmp_path: Path) -> None:
    clients = ATTR_CLIENTS.replace("C3,3,", "C3,three,")
    with pytest.raises(DataContractError) as info:
        _load(tmp_path, ATTR_MAPPING, clients=clients)
    (error,) = [str(p) for p in info.value.report.errors]
    assert error == (
        "clients.csv, column Seats (client_seats), line 4: mapping.yaml line 12 "
        "(attributes.clients.seats): not a number in 1 rows (seats is declared a number)"
    )


def test_an_attribute_reading_a_missing_column_names_the_mapping_line(tmp_path: Path) -> None:
    with pytest.raises(DataContractError) as info:
        _load(tmp_path, ATTR_MAPPING.replace("column: Plan,", "column: Tier,"))
    (error,) = [str(p) for p in info.value.report.errors]
    assert error.startswith(
        "clients.csv: mapping.yaml line 13 (attributes.clients.plan_tier): no column 'Tier' to read"
    )
