"""Tests for validation: raw tables typed per the contract, every problem collected."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnguard.domain.contract import ORDERED_COLUMNS, TABLES, Kind, dtype_of
from churnguard.domain.mapping import parse_mapping
from churnguard.domain.problems import DataContractError
from churnguard.domain.rawtable import map_table
from churnguard.domain.timeaxis import EARLIEST_TIME, LATEST_TIME
from churnguard.domain.validation import validate
from churnguard.features.arrays import crm_arrays
from tests.factories import CONTRACTS, csv_table, tables

FIXTURES = Path(__file__).parents[1] / "data" / "crm"


def errors(**texts: str | None) -> list[str]:
    """The errors validation reports for these tables, as the user reads them."""
    with pytest.raises(DataContractError) as info:
        validate(tables(**texts))
    return [str(p) for p in info.value.report.errors]


# Tables and columns -----------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["clients", "contracts"])
def test_missing_required_table_is_an_error(table: str) -> None:
    assert errors(**{table: None}) == [f"{table}: required table {table} is missing"]


def test_missing_required_column_lists_the_columns_the_file_has() -> None:
    text = "contract_id,client,start,monthly_value\nK1,C1,2024-01-01,100\n"
    assert errors(contracts=text) == [
        "contracts.csv: missing required columns client_id, start_date; "
        "the file has columns: contract_id, client, start, monthly_value"
    ]


def test_unknown_columns_are_a_warning_and_are_dropped() -> None:
    data, report = validate(tables(clients="client_id,name,vip\nC1,Acme,yes\nC2,Beta,no\n"))
    assert [str(p) for p in report.problems] == ["clients.csv: unknown column ignored: vip"]
    assert report.ok and "vip" not in data.clients.columns


def test_required_table_with_a_header_but_no_rows_is_an_error() -> None:
    assert errors(contracts="contract_id,client_id,start_date,monthly_value\n") == [
        "contracts.csv: has a header but no rows; contracts is a required table"
    ]


def test_optional_table_with_a_header_but_no_rows_is_fine() -> None:
    data, report = validate(tables(tickets="ticket_id,client_id,opened_at\n"))
    assert report.problems == [] and data.tickets.empty


# Values -----------------------------------------------------------------------------------------


def test_unparseable_dates_show_the_values_and_lines() -> None:
    text = (
        "invoice_id,client_id,issued_at,due_at,amount\n"
        "I1,C1,2024-01-01,2024-13-45,1\n"
        "I2,C1,2024-01-01,2024-01-31,1\n"
        "I3,C2,2024-01-01,31/02/2024,1\n"
        "I4,C2,2024-01-01,2024-02,1\n"
    )
    assert errors(invoices=text) == [
        "invoices.csv, column due_at, lines 2, 4, 5: unparseable date '2024-13-45', '31/02/2024', "
        "'2024-02' (expected YYYY-MM-DD or an ISO 8601 datetime such as 2024-03-01T09:30:00+02:00; "
        "a mapping's date_format reads other formats)"
    ]


def test_unparseable_numbers_show_the_values_and_lines() -> None:
    text = CONTRACTS + "K3,C1,2024-01-01,1.200,50\nK4,C2,2024-01-01,€50\nK5,C2,2024-01-01,abc\n"
    text = text.replace("1.200,50", '"1.200,50"')
    assert errors(contracts=text) == [
        "contracts.csv, column monthly_value, lines 4, 5, 6: unparseable number "
        "'1.200,50', '€50', 'abc' (a comma in a number? export plain numbers, a point for "
        "decimals: 1234.50)"
    ]


def test_numbers_without_a_comma_get_no_comma_hint() -> None:
    text = CONTRACTS + "K4,C2,2024-01-01,€50\nK5,C2,2024-01-01,abc\n"
    assert errors(contracts=text) == [
        "contracts.csv, column monthly_value, lines 4, 5: unparseable number '€50', 'abc'"
    ]


def test_empty_values_in_required_columns_are_errors() -> None:
    text = "contract_id,client_id,start_date,monthly_value\nK1,,2024-01-01,100\nK2,C2,  ,\n"
    assert errors(contracts=text) == [
        "contracts.csv, column client_id, line 2: empty value in a required column",
        "contracts.csv, column start_date, line 3: empty value in a required column",
        "contracts.csv, column monthly_value, line 3: empty value in a required column",
    ]


def test_mixing_naive_and_aware_timestamps_in_a_column_is_an_error() -> None:
    text = (
        "client_id,occurred_at\n"
        "C1,2024-01-01T10:00:00Z\n"
        "C1,2024-01-02 10:00:00\n"
        "C2,2024-01-03T10:00:00+02:00\n"
        "C2,2024-01-04\n"
    )
    assert errors(interactions=text) == [
        "interactions.csv, column occurred_at, line 3: timestamp '2024-01-02 10:00:00' without a "
        "UTC offset while 2 other values have one (e.g. '2024-01-01T10:00:00Z'); a column must "
        "not mix timezone-naive and timezone-aware timestamps"
    ]


def test_timestamps_are_converted_to_utc() -> None:
    text = (
        "client_id,submitted_at,score\n"
        "C1,2024-03-01T10:00:00+02:00,5\n"
        "C1,2024-03-01 10:00:00-05:30,5\n"
        "C2,2024-03-01T10:00:00Z,5\n"
        "C2,2024-03-01,5\n"
    )
    data, _ = validate(tables(feedback=text))
    expected = ["2024-03-01 08:00:00", "2024-03-01 15:30:00", "2024-03-01 10:00:00", "2024-03-01"]
    assert data.feedback["submitted_at"].tolist() == [pd.Timestamp(t, tz="UTC") for t in expected]
    assert data.feedback["submitted_at"].dtype == "datetime64[s, UTC]"


def test_naive_datetimes_are_taken_as_utc() -> None:
    text = "client_id,occurred_at\nC1,2024-03-01 10:00:00\nC2,2024-03-01T23:59:59.9\n"
    data, _ = validate(tables(interactions=text))
    assert data.interactions["occurred_at"].tolist() == [
        pd.Timestamp("2024-03-01 10:00:00", tz="UTC"),
        pd.Timestamp("2024-03-01 23:59:59", tz="UTC"),
    ]


def test_dates_the_feature_engine_cannot_encode_are_errors() -> None:
    text = (
        "contract_id,client_id,start_date,end_date,monthly_value\n"
        "K1,C1,2024-01-01,,100\n"
        "K2,C1,1800-01-01,,100\n"
        "K3,C2,2024-01-01,9999-12-31,50\n"
    )
    assert errors(contracts=text) == [
        "contracts.csv, column start_date, line 3: date '1800-01-01' outside the range churnguard "
        "can use (1833-11-24 17:31:44 to 2106-02-07 06:28:15 UTC)",
        "contracts.csv, column end_date, line 4: date '9999-12-31' outside the range churnguard "
        "can use (1833-11-24 17:31:44 to 2106-02-07 06:28:15 UTC); write an open end or unknown "
        "date as an empty value, not a placeholder",
    ]


def test_typed_dates_the_feature_engine_cannot_encode_are_errors() -> None:
    contracts = pd.DataFrame(
        {
            "contract_id": ["K1", "K2"],
            "client_id": ["C1", "C2"],
            "start_date": pd.to_datetime(["2024-01-01", "2024-01-01"]).as_unit("us"),
            "end_date": pd.to_datetime(["2025-01-01", "2200-01-01"]).as_unit("us"),
            "monthly_value": [100, 50],
        }
    )
    raw = {**tables(), "contracts": map_table("contracts", "db table contracts", contracts)}
    with pytest.raises(DataContractError) as info:
        validate(raw)
    assert [(p.column, p.rows) for p in info.value.report.errors] == [("end_date", (2,))]


def test_dates_at_the_ends_of_the_engine_range_are_accepted_and_encoded() -> None:
    text = (
        "client_id,occurred_at\n"
        "C1,1833-11-24T17:31:44Z\n"
        "C2,2106-02-07T06:28:15Z\n"
        "C2,2106-02-07T06:28:16Z\n"
    )
    with pytest.raises(DataContractError, match="line 4: date '2106-02-07T06:28:16Z' outside"):
        validate(tables(interactions=text))
    data, report = validate(tables(interactions=text.rpartition("C2,")[0]))
    assert report.ok
    times = crm_arrays(data).table("interactions").columns["occurred_at"]
    assert times.tolist() == [EARLIEST_TIME, LATEST_TIME]


def test_negative_amounts_are_errors() -> None:
    text = "invoice_id,client_id,issued_at,due_at,amount\nI1,C1,2024-01-01,2024-01-31,-12.5\n"
    assert errors(invoices=text) == [
        "invoices.csv, column amount, line 2: negative value '-12.5' (amount must be >= 0)"
    ]


def test_scores_outside_their_survey_range_are_errors() -> None:
    text = (
        "client_id,submitted_at,survey,score\n"
        "C1,2024-01-01,nps,11\n"
        "C1,2024-01-01,nps,0\n"
        "C1,2024-01-01,CSAT,0\n"
        "C1,2024-01-01,csat,5\n"
        "C1,2024-01-01,,-1\n"
        "C2,2024-01-01,nps,10\n"
    )
    assert errors(feedback=text) == [
        "feedback.csv, column score, line 2: score '11' outside the nps range (0 to 10)",
        "feedback.csv, column score, line 4: score '0' outside the csat range (1 to 5)",
        "feedback.csv, column score, line 6: score '-1' outside every survey's range (0 to 10)",
    ]


def test_unknown_choice_values_list_the_allowed_ones() -> None:
    text = (
        "client_id,occurred_at,channel\nC1,2024-01-01,Email\nC1,2024-01-02,SMS\nC2,2024-01-03,fax\n"
    )
    assert errors(interactions=text) == [
        "interactions.csv, column channel, lines 3, 4: unknown channel 'sms', 'fax' (allowed: "
        "email, call, meeting, review, other; a mapping file can recode other values)"
    ]


def test_mapping_values_recode_choices_before_validation() -> None:
    mapping = parse_mapping({"values": {"interactions": {"channel": {"sms": "other"}}}})
    text = "client_id,occurred_at,channel\nC1,2024-01-01,Email\nC1,2024-01-02,SMS\n"
    raw = {**tables(), "interactions": csv_table("interactions", text, mapping)}
    data, _ = validate(raw)
    assert data.interactions["channel"].tolist() == ["email", "other"]


def test_booleans_accept_common_spellings_and_reject_others() -> None:
    words = ["true", "FALSE", "Yes", "no", "1", "0", "t", "F", "y", "N", ""]
    rows = "".join(f"K{i},C1,2024-01-01,1,{w}\n" for i, w in enumerate(words))
    data, _ = validate(
        tables(contracts=f"contract_id,client_id,start_date,monthly_value,auto_renew\n{rows}")
    )
    expected = [True, False, True, False, True, False, True, False, True, False, False]
    assert data.contracts["auto_renew"].tolist() == expected
    assert data.contracts["auto_renew"].dtype == bool
    bad = "contract_id,client_id,start_date,monthly_value,auto_renew\nK1,C1,2024-01-01,1,maybe\n"
    assert errors(contracts=bad) == [
        "contracts.csv, column auto_renew, line 2: not a yes/no value 'maybe' "
        "(use true/false, yes/no, t/f, y/n or 1/0)"
    ]


def test_text_longer_than_the_contract_allows_is_an_error_naming_the_limit() -> None:
    name, manager, segment = "n" * 301, "m" * 201, "s" * 101
    text = "client_id,name,account_manager,segment\nC1,Acme,Ann,SMB\n"
    text += f"C2,{name},{manager},{segment}\n"
    assert errors(clients=text) == [
        f"clients.csv, column name, line 3: text longer than 300 characters '{'n' * 30}…' "
        "(the longest has 301; name may be at most 300)",
        f"clients.csv, column account_manager, line 3: text longer than 200 characters "
        f"'{'m' * 30}…' (the longest has 201; account_manager may be at most 200)",
        f"clients.csv, column segment, line 3: text longer than 100 characters '{'s' * 30}…' "
        "(the longest has 101; segment may be at most 100)",
    ]
    at_limit = f"client_id,name\n{'C' * 100},{'n' * 300}\nC2,{'Beta ' * 60}\n"
    contracts = CONTRACTS.replace("C1", "C" * 100)
    data, report = validate(tables(clients=at_limit, contracts=contracts))
    assert report.ok and data.clients["name"].str.len().tolist() == [300, 299]  # stripped


def test_ids_and_other_text_longer_than_the_contract_allows_are_errors() -> None:
    long_id = "C" * 101
    found = errors(
        clients=f"client_id,name\nC1,Acme\nC2,Beta\n{long_id},Gamma\n",
        feedback=f"client_id,submitted_at,score,comment\nC1,2024-01-01,5,{'c' * 2001}\n",
    )
    assert [f.split(": text longer than ")[0] for f in found] == [
        "clients.csv, column client_id, line 4",
        "feedback.csv, column comment, line 2",
    ]
    assert "client_id may be at most 100" in found[0] and "comment may be at most 2000" in found[1]


def test_nul_characters_in_text_are_errors() -> None:
    found = errors(
        clients="client_id,name\nC1,Ac\x00me\nC2,Beta\n",
        interactions="client_id,occurred_at,channel\nC1,2024-01-01,email\n",
        events="client_id,occurred_at,event_type\nC1,2024-01-01,log\x00in\nC2,2024-01-02,login\n",
    )
    assert found == [
        "clients.csv, column name, line 2: NUL character (\\u0000) in 'Ac\\u0000me' "
        "(a database cannot store it)",
        "events.csv, column event_type, line 2: NUL character (\\u0000) in 'log\\u0000in' "
        "(a database cannot store it)",
    ]


# Rows and tables --------------------------------------------------------------------------------


def test_duplicate_ids_name_every_line() -> None:
    assert errors(clients="client_id\nC1\nC2\nC1\nC3\nC1\n") == [
        "clients.csv, column client_id, lines 2, 4, 6: duplicate client_id 'C1' "
        "(each client_id must appear once)"
    ]


def test_rows_of_unknown_clients_are_errors() -> None:
    text = "client_id,occurred_at\nC1,2024-01-01\nC9,2024-01-02\nc1,2024-01-03\n"
    assert errors(interactions=text) == [
        "interactions.csv, column client_id, lines 3, 4: client_id 'C9', 'c1' not in clients"
    ]


ORDER_CASES = [(table, pair) for table, pairs in ORDERED_COLUMNS.items() for pair in pairs]


@pytest.mark.parametrize(
    ("table", "pair"), ORDER_CASES, ids=[f"{t}.{p[1]}" for t, p in ORDER_CASES]
)
def test_end_before_start_is_an_error(table: str, pair: tuple[str, str]) -> None:
    earlier, later = pair
    spec = TABLES[table]
    values = {c.name: _valid_value(c.kind, c.name) for c in spec.columns if c.required}
    good = {**values, earlier: "2024-03-01", later: "2024-03-01T10:00:00"}  # same day is fine
    bad = {**values, earlier: "2024-03-01", later: "2024-02-28"}
    if spec.key:
        bad[spec.key] = "X2"
    text = pd.DataFrame([good, bad]).to_csv(index=False)
    assert errors(**{table: text}) == [
        f"{table}.csv, column {later}, line 3: {later} is before {earlier} "
        "(e.g. 2024-02-28 < 2024-03-01)"
    ]


def _valid_value(kind: Kind, name: str) -> str:
    """A valid value for a required column of the given kind."""
    return {"client_id": "C1"}.get(name) or {
        Kind.ID: "X1",
        Kind.DATETIME: "2024-03-01",
        Kind.NUMBER: "1",
        Kind.CATEGORY: "x",
    }[kind]


def test_dispute_resolved_without_dispute_is_an_error() -> None:
    text = (
        "invoice_id,client_id,issued_at,due_at,amount,disputed_at,dispute_resolved_at\n"
        "I1,C1,2024-01-01,2024-01-31,1,2024-02-01,2024-02-10\n"
        "I2,C1,2024-01-01,2024-01-31,1,,2024-02-10\n"
    )
    assert errors(invoices=text) == [
        "invoices.csv, column dispute_resolved_at, line 3: dispute_resolved_at is set but "
        "disputed_at is empty"
    ]


def test_every_problem_is_collected_not_just_the_first() -> None:
    found = errors(
        clients="client_id\nC1\nC1\n",
        contracts="contract_id,client_id,start_date,monthly_value\nK1,C1,2024-01-01,-1\n",
        interactions="client_id,occurred_at,channel\nC7,yesterday,sms\n",
    )
    assert [f.split(":")[0] for f in found] == [
        "clients.csv, column client_id, lines 2, 3",
        "contracts.csv, column monthly_value, line 2",
        "interactions.csv, column occurred_at, line 2",
        "interactions.csv, column channel, line 2",
        "interactions.csv, column client_id, line 2",
    ]


def test_validated_tables_have_the_contract_dtypes() -> None:
    raw = {p.stem: csv_table(p.stem, p.read_text()) for p in FIXTURES.glob("*.csv")}
    data, report = validate(raw)
    assert report.problems == []
    for name, spec in TABLES.items():
        frame = data.table(name)
        assert list(frame.columns) == list(spec.column_names)
        assert len(frame) == len(raw[name].frame)
        for column in spec.columns:
            expected = dtype_of(column)
            if column.name == "client_id" and name != "clients":
                expected = pd.CategoricalDtype(data.clients["client_id"])
            assert frame[column.name].dtype == expected, (name, column.name)


def test_typed_input_is_accepted_and_converted() -> None:
    since = pd.to_datetime(pd.Series(["2020-01-01", None]))
    clients = pd.DataFrame({"client_id": [1.0, 2.0], "client_since": since})
    contracts = pd.DataFrame(
        {
            "contract_id": ["K1", "K2"],
            "client_id": ["1", "2"],
            "start_date": pd.to_datetime(["2024-01-01 12:00"])
            .tz_localize("Europe/Berlin")
            .repeat(2),
            "monthly_value": [100, 50],
            "auto_renew": [1, 0],
        }
    )
    raw = {"clients": map_table("clients", "db table clients", clients)}
    raw["contracts"] = map_table("contracts", "db table contracts", contracts)
    data, _ = validate(raw)
    assert data.clients["client_id"].tolist() == ["1", "2"]
    assert data.clients["client_since"].isna().tolist() == [False, True]
    assert data.contracts["start_date"].iloc[0] == pd.Timestamp("2024-01-01 11:00", tz="UTC")
    assert data.contracts["monthly_value"].tolist() == [100.0, 50.0]
    assert data.contracts["auto_renew"].tolist() == [True, False]


def test_warnings_alone_do_not_raise_and_nothing_is_dropped() -> None:
    raw = tables(interactions="client_id,occurred_at,note\nC1,2024-01-01,x\nC2,2024-01-02,y\n")
    data, report = validate(raw)
    assert report.ok and len(report.warnings) == 1
    assert len(data.interactions) == 2 and data.n_rows == 6


@pytest.mark.parametrize(
    "values",
    [
        ["2024-03-01T09:30:00+02:00", "2024-03-01T07:30:00Z", "2024-03-01T02:30:00-0500"],  # arrow
        ["2024-03-01T07:30:00", "2024-03-01 07:30:00", "2024-03-01T07:30:00.4"],  # pandas
    ],
)
def test_whole_columns_of_timestamps_parse_alike_whichever_parser_takes_them(
    values: list[str],
) -> None:
    rows = "".join(f"C1,{v}\n" for v in values)
    data, _ = validate(tables(interactions=f"client_id,occurred_at\n{rows}"))
    expected = pd.Timestamp("2024-03-01 07:30", tz="UTC")
    assert data.interactions["occurred_at"].tolist() == [expected] * 3


# Memory -----------------------------------------------------------------------------------------


def test_consuming_the_raw_tables_gives_the_same_data_and_empties_them() -> None:
    texts = {"events": "client_id,occurred_at,event_type,value\nC1,2024-01-01,login,\n"}
    kept, report = validate(tables(**texts))
    raw = tables(**texts)
    consumed, same_report = validate(raw, consume=True)
    for name, frame in kept.tables().items():
        pd.testing.assert_frame_equal(frame, consumed.table(name), obj=name)
    assert same_report.problems == report.problems
    assert list(raw["events"].frame.columns) == []  # each column dropped once typed
    assert len(raw["events"].frame) == 1


def test_client_ids_become_codes_over_the_clients_in_every_other_table() -> None:
    data, _ = validate(tables(events="client_id,occurred_at,event_type\nC2,2024-01-01,login\n"))
    ids = data.events["client_id"]
    assert list(ids.cat.categories) == list(data.clients["client_id"])
    assert ids.astype("str").tolist() == ["C2"]
