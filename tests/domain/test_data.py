"""Tests for loading CRM tables from folders of CSV/Parquet files and from SQL databases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churnguard import cli
from churnguard.domain import data as data_module
from churnguard.domain.contract import CRMData
from churnguard.domain.data import TRUTH_FILE_STEM, load_crm, read_tables
from churnguard.domain.problems import DataContractError, ValidationReport

FIXTURES = Path(__file__).parents[1] / "data" / "crm"


def crm_folder(tmp_path: Path, files: dict[str, str | bytes | None] | None = None) -> Path:
    """A copy of the fixture folder with some files replaced (text or bytes) or removed (None)."""
    folder = tmp_path / "crm"
    shutil.copytree(FIXTURES, folder)
    for name, content in (files or {}).items():
        path = folder / name
        if content is None:
            path.unlink()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


def load_report(folder: Path | str) -> ValidationReport:
    """The report of a load that is expected to fail."""
    with pytest.raises(DataContractError) as info:
        load_crm(folder)
    return info.value.report


def load_errors(folder: Path | str) -> list[str]:
    return [str(p) for p in load_report(folder).errors]


def assert_same_data(left: CRMData, right: CRMData) -> None:
    for name, frame in left.tables().items():
        pd.testing.assert_frame_equal(frame, right.table(name), obj=name)


@pytest.fixture(scope="module")
def fixture_data() -> CRMData:
    data, report = load_crm(FIXTURES)
    assert report.problems == []
    return data


# Happy paths ------------------------------------------------------------------------------------


def test_fixture_folder_loads_with_utc_timestamps(fixture_data: CRMData) -> None:
    feedback = fixture_data.feedback
    assert feedback["submitted_at"].tolist() == [
        pd.Timestamp("2024-01-10 10:00", tz="UTC"),  # +02:00
        pd.Timestamp("2024-01-11 08:00", tz="UTC"),  # Z
        pd.Timestamp("2024-01-12 13:00", tz="UTC"),  # -05:00
    ]
    assert feedback["comment"].iloc[1] == "Slow replies\non tickets"
    channel = fixture_data.interactions["channel"]
    assert channel.iloc[:3].tolist() == ["email", "call", "meeting"] and channel.isna().iloc[3]
    assert fixture_data.clients["account_manager"].isna().tolist() == [False, True, False]


def test_csv_and_parquet_folders_load_identical_data(tmp_path: Path, fixture_data: CRMData) -> None:
    as_text = tmp_path / "text"
    as_text.mkdir()
    for path in FIXTURES.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.to_parquet(as_text / f"{path.stem}.parquet")
    typed = tmp_path / "typed"
    typed.mkdir()
    for name, frame in fixture_data.tables().items():
        frame.to_parquet(typed / f"{name}.pq")
    assert_same_data(load_crm(as_text)[0], fixture_data)
    assert_same_data(load_crm(typed)[0], fixture_data)


def test_sqlite_database_loads_the_same_data_as_the_csv_folder(
    tmp_path: Path, fixture_data: CRMData
) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    for path in FIXTURES.glob("*.csv"):
        if path.stem != "invoices":  # text columns, as a CRM that stores ISO strings
            pd.read_csv(path, dtype=str, keep_default_na=False).to_sql(path.stem, engine)
    invoices = fixture_data.invoices.assign(
        client_id=fixture_data.invoices["client_id"].astype(str)
    )
    invoices.to_sql("invoices", engine, index=False)  # typed columns: DATETIME, FLOAT
    engine.dispose()
    data, report = load_crm(url)
    assert_same_data(data, fixture_data)
    assert [str(p) for p in report.warnings] == [
        f"db table {name}: unknown column ignored: index"
        for name in ("clients", "contracts", "interactions", "feedback", "tickets", "events")
    ]


def test_mapping_renames_tables_columns_and_values(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"clients.csv": None, "interactions.csv": None})
    (folder / "Accounts.csv").write_text("AccountId,Name\nC1,Acme\nC2,Beta\nC3,Gamma\n")
    (folder / "activities.csv").write_text(
        "Account,When,Medium\nC1,2024-01-01,SMS\nC2,2024-01-02,Phone\nC3,2024-01-03,email\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "tables: {clients: Accounts, interactions: activities}\n"
        "columns:\n"
        "  clients: {client_id: AccountId, name: Name}\n"
        "  interactions: {client_id: Account, occurred_at: When, channel: Medium}\n"
        "values:\n"
        "  interactions:\n"
        "    channel: {sms: other, phone: call}\n"
    )
    data, report = load_crm(folder, mapping)
    assert report.problems == []
    assert data.clients["name"].tolist() == ["Acme", "Beta", "Gamma"]
    assert data.interactions["channel"].tolist() == ["other", "call", "email"]
    assert data.interactions["client_id"].tolist() == ["C1", "C2", "C3"]


def test_database_tables_follow_the_mapping(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"id": ["C1"]}).to_sql("accounts", engine, index=False)
    pd.DataFrame(
        {
            "contract_id": ["K1"],
            "client_id": ["C1"],
            "start_date": ["2024-01-01"],
            "monthly_value": [5],
        }
    ).to_sql("contracts", engine, index=False)
    engine.dispose()
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables: {clients: accounts}\ncolumns: {clients: {client_id: id}}\n")
    data, _ = load_crm(url, mapping)
    assert data.clients["client_id"].tolist() == ["C1"]
    assert data.contracts["monthly_value"].tolist() == [5.0]


def test_bom_and_windows_line_ends_are_read(tmp_path: Path) -> None:
    text = (FIXTURES / "clients.csv").read_text().replace("\n", "\r\n")
    folder = crm_folder(tmp_path, {"clients.csv": "\ufeff".encode() + text.encode()})
    data, _ = load_crm(folder)
    assert data.clients["client_id"].tolist() == ["C1", "C2", "C3"]


# Folders and files ------------------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CRM data folder not found: .*nowhere"):
        load_crm(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError, match="got a file"):
        load_crm(FIXTURES / "clients.csv")
    with pytest.raises(FileNotFoundError, match="SQLite database not found"):
        load_crm(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()


def test_missing_required_table_lists_the_files_present(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"contracts.csv": None})
    (folder / "contract.csv").write_text("x\n1\n")
    report = load_report(folder)
    assert [str(p) for p in report.errors] == [
        f"contracts.csv: required table contracts not found in {folder}: expected contracts.csv, "
        "contracts.parquet, contracts.pq (files: contract.csv, events.csv, feedback.csv, "
        "interactions.csv, invoices.csv, tickets.csv)"
    ]


def test_missing_required_database_table_lists_the_tables_present(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"client_id": ["C1"]}).to_sql("clients", engine, index=False)
    engine.dispose()
    assert load_errors(url) == [
        "db table contracts: required table contracts not found (database tables: clients)"
    ]


def test_validate_command_reports_dates_the_feature_engine_cannot_encode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contracts = (
        (FIXTURES / "contracts.csv")
        .read_text()
        .replace("K2,C2,ads,2023-02-01,,", "K2,C2,ads,2023-02-01,9999-12-31,")
    )
    folder = crm_folder(tmp_path, {"contracts.csv": contracts})
    assert cli.main(["validate", "--data", str(folder)]) == 1
    assert capsys.readouterr().out.startswith(
        "error: contracts.csv, column end_date, line 3: date '9999-12-31' outside the range "
        "churnguard can use (1833-11-24 17:31:44 to 2106-02-07 06:28:15 UTC); write an open end "
        "or unknown date as an empty value, not a placeholder\n1 error, 0 warnings; tables read:"
    )


def test_unknown_files_are_warnings_and_the_truth_file_is_ignored(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path)
    (folder / "notes.txt").write_text("hello")
    (folder / f"{TRUTH_FILE_STEM}.csv").write_text("client_id,p\nC1,0.2\n")
    _, problems = read_tables(folder)
    assert [str(p) for p in problems] == [
        "notes.txt: not a contract table, ignored (tables: clients, contracts, interactions, "
        "feedback, invoices, tickets, events; a mapping can rename files)"
    ]


def test_folders_are_read_as_parquet_datasets_or_reported(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"events.csv": None})
    events = pd.read_csv(FIXTURES / "events.csv", dtype=str, keep_default_na=False)
    events.to_parquet(folder / "events.parquet", partition_cols=["event_type"])
    (folder / "archive").mkdir()
    data, report = load_crm(folder)
    assert sorted(data.events["value"].dropna().tolist()) == [3.0, 12.5]
    assert [str(p) for p in report.problems] == [
        "archive: not a contract table, ignored (tables: clients, contracts, interactions, "
        "feedback, invoices, tickets, events; a mapping can rename files)"
    ]


def test_spaces_around_header_names_are_ignored(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"clients.csv": " client_id , name\nC1,Acme\nC2,B\nC3,C\n"})
    data, _ = load_crm(folder)
    assert data.clients["name"].tolist() == ["Acme", "B", "C"]


def test_csv_and_parquet_for_one_table_is_an_error(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path)
    pd.read_csv(folder / "tickets.csv").to_parquet(folder / "tickets.parquet")
    assert load_errors(folder) == [
        "tickets.csv: both tickets.csv and tickets.parquet found; keep one"
    ]


@pytest.mark.parametrize("name", ["clients", "contracts"])
def test_empty_file_of_a_required_table_is_an_error(tmp_path: Path, name: str) -> None:
    folder = crm_folder(tmp_path, {f"{name}.csv": ""})
    assert load_errors(folder) == [f"{name}.csv: file is empty (0 bytes); {name} is required"]


def test_empty_file_of_an_optional_table_is_a_warning(tmp_path: Path) -> None:
    data, report = load_crm(crm_folder(tmp_path, {"tickets.csv": ""}))
    assert [str(p) for p in report.problems] == [
        "tickets.csv: file is empty (0 bytes); read as a table with no rows"
    ]
    assert data.tickets.empty and data.tickets.columns[0] == "ticket_id"


def test_header_without_rows_in_a_required_table_is_an_error(tmp_path: Path) -> None:
    header = (FIXTURES / "contracts.csv").read_text().splitlines()[0]
    folder = crm_folder(tmp_path, {"contracts.csv": header + "\n"})
    assert load_errors(folder) == [
        "contracts.csv: has a header but no rows; contracts is a required table"
    ]


def test_truncated_csv_names_the_cut_off_line(tmp_path: Path) -> None:
    text = (FIXTURES / "invoices.csv").read_text() + "I4,C1,2024-03-01,2024-0"
    folder = crm_folder(tmp_path, {"invoices.csv": text})
    assert load_errors(folder) == [
        "invoices.csv, line 5: the last line is cut off (4 of 9 fields, no line end): "
        "the file looks truncated"
    ]


def test_rows_with_too_few_fields_are_errors(tmp_path: Path) -> None:
    text = "client_id,occurred_at,channel\nC1,2024-01-01,call\nC2,2024-01-02\nC3,2024-01-03,call\n"
    folder = crm_folder(tmp_path, {"interactions.csv": text})
    assert load_errors(folder) == [
        "interactions.csv, line 3: fewer fields than the header's 3 (a missing comma?)"
    ]


def test_unknown_columns_are_reported_by_name_and_their_values_not_read(tmp_path: Path) -> None:
    text = 'event_id,client_id,user,occurred_at,event_type\n1,C1,"u ""x""",2024-01-01,login\n'
    folder = crm_folder(tmp_path, {"events.csv": text})
    raw, _ = read_tables(folder)
    assert list(raw["events"].frame.columns) == [
        "event_id",
        "client_id",
        "user",
        "occurred_at",
        "event_type",
    ]
    assert raw["events"].frame["user"].isna().all()  # a placeholder: nothing reads it
    assert raw["events"].frame["client_id"].tolist() == ["C1"]
    _, report = load_crm(folder)
    assert [str(p) for p in report.warnings] == [
        "events.csv: unknown columns ignored: event_id, user"
    ]


def test_unknown_parquet_columns_are_reported_by_name_and_their_values_not_read(
    tmp_path: Path,
) -> None:
    folder = crm_folder(tmp_path, {"events.csv": None})
    frame = pd.DataFrame(
        {
            "event_id": [1, 2],
            "client_id": ["C1", "C2"],
            "user": ["u1", "u2"],
            "occurred_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "event_type": ["login", "login"],
        }
    )
    frame.to_parquet(folder / "events.parquet")
    raw, _ = read_tables(folder)
    assert list(raw["events"].frame.columns) == list(frame.columns)
    assert raw["events"].frame["user"].isna().all()  # a placeholder: nothing reads it
    assert raw["events"].frame["client_id"].tolist() == ["C1", "C2"]
    _, report = load_crm(folder)
    assert [str(p) for p in report.warnings] == [
        "events.parquet: unknown columns ignored: event_id, user"
    ]


def test_rows_with_too_many_fields_are_all_named(tmp_path: Path) -> None:
    text = "client_id,occurred_at\nC1,2024-01-01,x\nC2,2024-01-02\nC3,2024-01-03,x,y\n"
    folder = crm_folder(tmp_path, {"events.csv": None, "interactions.csv": text})
    assert load_errors(folder) == [
        "interactions.csv, lines 2, 4: more fields than the header's 2 (a stray comma?)"
    ]


def test_unreadable_parquet_file_is_an_error(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"events.csv": None})
    pd.read_csv(FIXTURES / "events.csv").to_parquet(folder / "events.parquet")
    data = (folder / "events.parquet").read_bytes()
    (folder / "events.parquet").write_bytes(data[: len(data) // 2])
    errors = load_errors(folder)
    assert len(errors) == 1
    assert errors[0].startswith("events.parquet: cannot read the parquet file (truncated or not")


def test_non_utf8_csv_is_an_error(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"clients.csv": "client_id,name\nC1,Café\n".encode("latin-1")})
    assert load_errors(folder)[0].startswith("clients.csv: not UTF-8 text (invalid continuation")


@pytest.mark.parametrize(("separator", "word"), [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_and_tab_separated_files_are_read_as_such(
    tmp_path: Path, fixture_data: CRMData, separator: str, word: str
) -> None:
    """A spreadsheet in a decimal-comma locale exports ';'-separated CSV: read the same data (quoted
    separators, commas and newlines in fields included), with a warning naming the separator."""
    folder = crm_folder(tmp_path)
    for path in folder.glob("*.csv"):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.to_csv(path, sep=separator, index=False)
    assert ";" in (folder / "feedback.csv").read_text() or separator == "\t"
    data, report = load_crm(folder)
    assert_same_data(data, fixture_data)
    assert {str(p) for p in report.problems} == {
        f"{path.name}: the header has no comma: read as {word}-separated"
        for path in folder.glob("*.csv")
    }


def test_semicolon_separated_rows_of_the_wrong_length_name_the_separator(tmp_path: Path) -> None:
    text = "client_id;occurred_at;channel\nC1;2024-01-01;call\nC2;2024-01-02\nC3;2024-01-03;a;b\n"
    folder = crm_folder(tmp_path, {"events.csv": None, "interactions.csv": text})
    errors = load_errors(folder)
    assert errors == [
        "interactions.csv, line 4: more fields than the header's 3 (a stray semicolon?)"
    ]
    text = "client_id;occurred_at;channel\nC1;2024-01-01;call\nC2;2024-01-02\n"
    folder = crm_folder(tmp_path / "short", {"interactions.csv": text})
    assert load_errors(folder) == [
        "interactions.csv, line 3: fewer fields than the header's 3 (a missing semicolon?)"
    ]


def test_a_header_with_a_comma_is_read_comma_separated(tmp_path: Path) -> None:
    """Semicolons in a comma-separated header are part of its names: no guess is made."""
    text = "client_id,occurred_at,channel;kind\nC1,2024-01-01,call\n"
    folder = crm_folder(tmp_path, {"interactions.csv": text})
    data, report = load_crm(folder)
    assert data.interactions["client_id"].tolist() == ["C1"]
    assert all("separated" not in str(p) for p in report.problems)


# Line numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1 << 22])  # bytes scanned at a time
def test_line_numbers_count_quoted_newlines_and_blank_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(data_module, "_BLOCK_BYTES", block)  # quotes and lines across blocks
    text = (
        "client_id,submitted_at,survey,score,comment\n"
        'C1,2024-01-10,nps,9,"two\nlines"\n'  # lines 2-3
        "\n"  # line 4, blank
        'C2,2024-01-11,nps,12,"a ""quoted"", text"\n'  # line 5
        "C3,2024-01-12,csat,6,\n"  # line 6
    )
    folder = crm_folder(tmp_path, {"feedback.csv": text})
    assert load_errors(folder) == [
        "feedback.csv, column score, line 5: score '12' outside the nps range (0 to 10)",
        "feedback.csv, column score, line 6: score '6' outside the csat range (1 to 5)",
    ]


def test_parquet_problems_name_one_based_rows(tmp_path: Path) -> None:
    folder = crm_folder(tmp_path, {"invoices.csv": None})
    frame = pd.read_csv(FIXTURES / "invoices.csv", dtype=str, keep_default_na=False)
    frame.loc[2, "amount"] = "-3"
    frame.to_parquet(folder / "invoices.parquet")
    assert load_errors(folder) == [
        "invoices.parquet, column amount, row 3: negative value '-3' (amount must be >= 0)"
    ]


def test_validate_command_prints_each_warning_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    folder = crm_folder(tmp_path)
    (folder / "notes.csv").write_text("x\n1\n")
    assert cli.main(["validate", "--data", str(folder)]) == 0
    out = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    assert out.count("notes.csv: not a contract table") == 1


def test_validate_command_reports_event_types_that_would_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = "client_id,occurred_at,event_type,value\nC1,2024-01-01,Site Visit,1\n"
    events += "C2,2024-01-02,site-visit,1\n"
    folder = crm_folder(tmp_path, {"events.csv": events})
    assert cli.main(["validate", "--data", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "error: events, column event_type: event types 'Site Visit' and 'site-visit'" in out
    assert "1 error" in out
