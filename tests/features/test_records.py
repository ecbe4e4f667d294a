"""API records: validation from the contract, and the array path equal to the DataFrame path."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from churnguard.domain.contract import TABLES, CRMData
from churnguard.features.arrays import CRMArrays
from churnguard.features.catalog import feature_set_for
from churnguard.features.engine import compute_features, feature_columns
from churnguard.features.records import client_arrays, read_columns, record_count, records_model
from tests.factories import as_of_dates, random_crm, records_body

Records = records_model(max_rows=5000)


@pytest.fixture(scope="module")
def data() -> CRMData:
    return random_crm(n_clients=12, seed=5)


def test_records_give_the_same_features_as_the_tables(data: CRMData) -> None:
    fs = feature_set_for(data)
    as_of = as_of_dates(4)[2]
    for client_id in data.clients["client_id"][:8]:
        snaps = pd.DataFrame({"client_id": [client_id], "as_of": [as_of]})
        expected = compute_features(data, snaps, fs).iloc[0]
        records = Records.model_validate(records_body(data, client_id))
        got = feature_columns(
            client_arrays(records), np.array([0]), np.array([int(as_of.timestamp())]), fs
        )
        for name in fs.names:
            a, b = got[name][0], expected[name]
            assert (pd.isna(a) and pd.isna(b)) or a == b, (client_id, name, a, b)


def test_every_contract_column_is_accepted_and_unknown_ones_rejected(data: CRMData) -> None:
    body = records_body(data, data.clients["client_id"][0])
    for name in TABLES:
        if name != "clients" and body[name]:
            assert set(body[name][0]) <= set(TABLES[name].column_names)
    body["interactions"] = [{"occurred_at": "2024-01-01", "chanel": "email"}]
    with pytest.raises(ValidationError) as err:
        Records.model_validate(body)
    assert err.value.errors()[0]["loc"] == ("interactions", 0, "chanel")


@pytest.mark.parametrize(
    ("table", "row", "field", "message"),
    [
        (
            "contracts",
            {
                "contract_id": "k",
                "start_date": "2024-05-01",
                "end_date": "2024-01-01",
                "monthly_value": 10,
            },
            None,
            "end_date",
        ),
        (
            "contracts",
            {"contract_id": "k", "start_date": "2024-05-01", "monthly_value": -5},
            "monthly_value",
            "greater than or equal",
        ),
        ("feedback", {"submitted_at": "2024-01-01", "survey": "nps", "score": 11}, None, "0..10"),
        (
            "contracts",
            {"contract_id": "k", "start_date": "2024-05-01", "monthly_value": 1e308},
            "monthly_value",
            "less than or equal",
        ),
        (
            "events",
            {"occurred_at": "2024-05-01", "event_type": "x", "value": "Infinity"},
            "value",
            "finite",
        ),
        ("interactions", {"occurred_at": "2024-01-01", "channel": "fax"}, "channel", "email"),
        ("tickets", {"ticket_id": "t", "opened_at": "not a date"}, "opened_at", "datetime"),
        (
            "tickets",
            {"ticket_id": "t", "opened_at": "1833-11-24T17:31:43"},
            "opened_at",
            "greater than or equal to 1833-11-24T17:31:44Z",
        ),
        (
            "contracts",
            {"contract_id": "k", "start_date": "2024-05-01", "end_date": "2200-01-01"},
            "end_date",
            "less than or equal to 2106-02-07T06:28:15Z",
        ),
        (
            "events",
            {"occurred_at": "2106-02-07T07:28:16+01:00", "event_type": "x"},  # 06:28:16 UTC
            "occurred_at",
            "less than or equal to 2106-02-07T06:28:15Z",
        ),
    ],
)
def test_bad_records_name_the_field_and_the_reason(
    table: str, row: dict[str, Any], field: str | None, message: str
) -> None:
    body: dict[str, Any] = {
        "client_id": "c1",
        "contracts": [{"contract_id": "k0", "start_date": "2024-01-01", "monthly_value": 1}],
    }
    body[table] = [*body.get(table, []), row]
    with pytest.raises(ValidationError) as err:
        Records.model_validate(body)
    problem = err.value.errors()[0]
    assert problem["loc"][:2] == (table, len(body[table]) - 1)
    if field is not None:
        assert problem["loc"][2] == field
    assert message in problem["msg"]


def test_dates_at_the_engines_limits_are_accepted_and_keep_their_order() -> None:
    body: dict[str, Any] = {
        "client_id": "c1",
        "contracts": [{"contract_id": "k0", "start_date": "1900-01-01", "monthly_value": 1}],
        "interactions": [
            {"occurred_at": "1833-11-24T17:31:44Z"},
            {"occurred_at": "1833-11-24T18:31:45+01:00"},  # one second later
            {"occurred_at": "2106-02-07T06:28:15"},
        ],
    }
    arrays = client_arrays(Records.model_validate(body))
    times = arrays.table("interactions")("occurred_at")
    assert times.tolist() == [-(2**32), -(2**32) + 1, 2**32 - 1]
    as_of = np.array([int(pd.Timestamp("2000-01-01", tz="UTC").timestamp())])
    fs = feature_set_for(random_crm(n_clients=2, seed=1))
    got = feature_columns(arrays, np.array([0]), as_of, fs)
    assert got["contacts_365d"][0] == 0
    assert got["days_since_contact"][0] == (as_of[0] - (-(2**32) + 1)) / 86_400


def test_a_client_needs_a_contract() -> None:
    with pytest.raises(ValidationError, match="contracts"):
        Records.model_validate({"client_id": "c1", "contracts": []})


def test_record_errors_name_the_fields_not_the_values() -> None:
    body: dict[str, Any] = {
        "client_id": "c1",
        "contracts": [
            {
                "contract_id": "k0",
                "start_date": "2024-05-06",
                "end_date": "2023-07-09",
                "monthly_value": 1,
            }
        ],
        "feedback": [{"submitted_at": "2024-01-01", "survey": "nps", "score": 17}],
    }
    with pytest.raises(ValidationError) as err:
        Records.model_validate(body)
    messages = [(e["loc"], e["msg"]) for e in err.value.errors()]
    assert messages == [
        (("contracts", 0), "Value error, end_date is before start_date"),
        (("feedback", 0), "Value error, score is outside 0..10, this survey's range"),
    ]


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("start_date", 0, "datetime_type"),
        ("start_date", 1.5e9, "datetime_type"),
        ("start_date", "0", "datetime_type"),
        ("start_date", "20240101", "datetime_type"),  # pydantic: 1970-08-23, as Unix time
        ("start_date", True, "datetime_type"),
        ("auto_renew", 0, "bool_type"),
        ("auto_renew", 1, "bool_type"),
        ("auto_renew", "1", "bool_type"),
    ],
)
def test_numbers_are_not_dates_or_booleans(field: str, value: Any, kind: str) -> None:
    row = {"contract_id": "k0", "start_date": "2024-01-01", "monthly_value": 1, field: value}
    body = {"client_id": "c1", "contracts": [row]}
    for validate, given in (
        (Records.model_validate, body),
        (Records.model_validate_json, json.dumps(body)),
    ):
        with pytest.raises(ValidationError) as err:
            validate(given)
        (problem,) = err.value.errors()
        assert (problem["loc"], problem["type"]) == (("contracts", 0, field), kind)
    assert "not a number" in problem["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start_date", "2024-01-01"),
        ("start_date", "2024-01-01T09:30:00Z"),
        ("start_date", "2024-01-01T09:30:00+02:00"),
        ("auto_renew", True),
        ("auto_renew", False),
        ("auto_renew", "no"),
    ],
)
def test_iso_dates_and_true_false_are_accepted(field: str, value: Any) -> None:
    row = {"contract_id": "k0", "start_date": "2024-01-01", "monthly_value": 1, field: value}
    body = {"client_id": "c1", "contracts": [row]}
    from_json = Records.model_validate_json(json.dumps(body))
    assert from_json == Records.model_validate(body)


# --- the fast path: bulk tables as raw rows, checked a column at a time ----------------------

Rows = records_model(max_rows=5000, raw_rows=True)


def _same_arrays(a: CRMArrays, b: CRMArrays) -> None:
    assert a.tables.keys() == b.tables.keys()
    for name, table in b.tables.items():
        got = a.tables[name]
        assert got.columns.keys() == table.columns.keys(), name
        assert got.categories == table.categories, name
        for column, values in table.columns.items():
            assert got.columns[column].dtype == values.dtype, (name, column)
            assert np.array_equal(got.columns[column], values, equal_nan=True), (name, column)


def test_columns_give_the_row_models_arrays_bit_for_bit(data: CRMData) -> None:
    for client_id in data.clients["client_id"]:
        body = records_body(data, client_id)
        columns = read_columns(Rows.model_validate_json(json.dumps(body)))
        assert columns is not None, client_id
        assert record_count(columns) == record_count(Records.model_validate(body))
        _same_arrays(client_arrays(columns), client_arrays(Records.model_validate(body)))


def _interactions(*times: str | None, **extra: Any) -> dict[str, Any]:
    rows = [{"occurred_at": t, "channel": "email", **extra} for t in times]
    return {
        "client_id": "c1",
        "contracts": [{"contract_id": "k0", "start_date": "2024-01-01", "monthly_value": 1}],
        "interactions": [{k: v for k, v in r.items() if v is not None} for r in rows],
    }


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29",
        "2024-06-02T09:30:00",
        "2024-06-02T09:30:00Z",
        "2024-06-02T09:30:00.5",
        "2024-06-02T09:30:00.123456+05:30",
        "2024-06-02T09:30:00-00:00",
        "2024-06-02T23:59:59+23:59",
        "1969-12-31T23:59:59.5Z",  # before 1970 with a fraction: truncated towards zero
        "1834-01-01T00:00:00",
        "2105-12-31T23:59:59",
    ],
)
def test_times_read_by_columns_are_the_row_models_times(text: str) -> None:
    body = _interactions(text, "2024-01-01")
    columns = read_columns(Rows.model_validate(body))
    assert columns is not None
    _same_arrays(client_arrays(columns), client_arrays(Records.model_validate(body)))


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29",  # no such day
        "2024-06-02T24:00:00",
        "2024-06-02T09:30:60",
        "2024-06-02T09:30:00+01:60",  # fromisoformat reads +02:00; the row models refuse it
        "2024-06-02T09:30:00+24:00",
        "2024-06-02T09:30:00.1234567",  # seven digits: the row models truncate
        "2024-06-02 09:30:00",  # shapes the row models read, not the columns
        "2024-06-02T09:30",
        "20240602",
        "2024-W23-1",
        " 2024-06-02",
        "2024-06-02\x00",
        "\uff12\uff10\uff12\uff14-06-02",  # full-width digits
        "1833-11-25T00:00:00",  # within a day of the engine's range's ends: the models say
        "2106-02-06T12:00:00",
    ],
)
def test_times_of_other_shapes_are_left_to_the_row_models(text: str) -> None:
    assert read_columns(Rows.model_validate(_interactions(text))) is None


_INVOICE = {"invoice_id": "i", "issued_at": "2024-01-01", "due_at": "2024-02-01"}


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("interactions", {"occurred_at": "2024-01-01", "chanel": "email"}),  # unknown column
        ("interactions", {"occurred_at": "2024-01-01", "channel": "fax"}),
        ("interactions", {"occurred_at": "2024-01-01", "channel": " email"}),
        ("interactions", {"channel": "email"}),  # a required time missing
        ("interactions", {"occurred_at": 1717320600}),  # a number as a time
        ("feedback", {"submitted_at": "2024-01-01", "survey": "nps", "score": 11}),
        ("feedback", {"submitted_at": "2024-01-01", "score": "7"}),  # a number as text
        ("feedback", {"submitted_at": "2024-01-01", "score": True}),
        ("feedback", {"submitted_at": "2024-01-01", "score": 1, "comment": "a\x00b"}),
        ("feedback", {"submitted_at": "2024-01-01", "score": 1, "comment": "\ud800"}),
        ("feedback", {"submitted_at": "2024-01-01", "score": 1, "comment": "ok "}),
        ("tickets", {"ticket_id": "t", "opened_at": "2024-02-01", "resolved_at": "2024-01-31"}),
        ("tickets", {"ticket_id": "", "opened_at": "2024-02-01"}),
        ("tickets", {"ticket_id": "t" * 101, "opened_at": "2024-02-01"}),
        ("invoices", {**_INVOICE, "amount": 10**400}),
        ("invoices", {**_INVOICE, "amount": -1}),
        ("events", {"occurred_at": "2024-01-01", "event_type": "x", "value": 1e13}),
    ],
)
def test_rows_the_columns_doubt_are_left_to_the_row_models(table: str, row: dict[str, Any]) -> None:
    body = _interactions("2024-01-01")
    body[table] = [*body.get(table, []), row]
    assert read_columns(Rows.model_validate(body)) is None


def test_empty_and_missing_values_read_as_the_row_models_read_them() -> None:
    body = _interactions("2024-01-01", "2024-03-01T10:00:00+02:00", direction="inbound")
    body["tickets"] = [
        {"ticket_id": "t1", "opened_at": "2024-02-01", "category": ""},
        {"ticket_id": "t2", "opened_at": "2024-02-01", "resolved_at": "2024-02-01T00:00:00.5Z",
         "priority": None, "category": "billing"},
    ]  # fmt: skip
    body["events"] = [{"occurred_at": "2024-01-01", "event_type": "login", "value": None}]
    body["invoices"] = []
    columns = read_columns(Rows.model_validate(body))
    assert columns is not None
    _same_arrays(client_arrays(columns), client_arrays(Records.model_validate(body)))
