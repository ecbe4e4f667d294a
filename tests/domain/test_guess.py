"""Tests for drafting a mapping from samples of someone's export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from churnguard import cli
from churnguard.domain.data import sample_tables
from churnguard.domain.guess import format_draft, guess_mapping
from churnguard.domain.mapping import parse_mapping

ACCOUNTS = pd.DataFrame(
    {"AccountId": ["A1", "A2", "A3"], "Company": ["Acme", "Beta", "Gamma"], "CSM": ["x", "", "y"]}
)
SUBSCRIPTIONS = pd.DataFrame(
    {
        "Account": ["A1", "A1", "A2"],
        "Kind": ["base", "Add-on", "base"],
        "Started": ["2024-01-01", "2024-01-01", "2024-02-01"],
        "MRR_cents": ["10000", "500", "4950"],
    }
)
USAGE = pd.DataFrame(
    {"acct": ["A1", "A3"], "When": ["2024-03-01T10:00:00Z", "2024-03-02"], "type_id": ["7", "31"]}
)
SAMPLES = {"accounts": ACCOUNTS, "subscriptions": SUBSCRIPTIONS, "usage": USAGE, "notes": USAGE}


def test_tables_and_columns_are_matched_by_name_and_content() -> None:
    draft = {g.table: g for g in guess_mapping(SAMPLES).tables}
    assert {t: g.source for t, g in draft.items()} == {
        "clients": "accounts",
        "contracts": "subscriptions",
        "events": "usage",
    }
    assert draft["clients"].columns["client_id"] == "AccountId"
    assert draft["clients"].columns["account_manager"] == "CSM"
    contracts = draft["contracts"].columns
    assert contracts["client_id"] == "Account"  # its values are the accounts' ids
    assert contracts["contract_id"] == {"row_number": "yes"}  # no id: derived
    assert contracts["monthly_value"] == {"column": "MRR_cents", "scale": "0.01"}
    assert draft["events"].columns["client_id"] == "acct"
    assert draft["events"].values["event_type"] == ["7", "31"]


def test_the_draft_is_a_valid_mapping_with_a_comment_on_each_guess() -> None:
    text = format_draft(guess_mapping(SAMPLES), "export/")
    mapping = parse_mapping(yaml.load(text, Loader=yaml.BaseLoader))
    assert mapping.tables["contracts"] == "subscriptions"
    assert "# drop: {Kind: [Add-on]}" in text  # a filter to switch on, not applied
    assert "# not placed (no contract table matched): notes" in text
    assert "contract_id: {row_number: yes}  # no id column found" in text


def test_init_writes_the_draft_and_does_not_overwrite(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for name, frame in SAMPLES.items():
        frame.to_csv(export / f"{name}.csv", index=False)
    frame.head(0).to_csv(export / "empty.csv", index=False)
    assert set(sample_tables(export)) == {*SAMPLES, "empty"}
    out = tmp_path / "mapping.yaml"
    assert cli.main(["init", "--data", str(export), "--out", str(out)]) == 0
    assert "clients: accounts" in out.read_text()
    assert cli.main(["init", "--data", str(export), "--out", str(out)]) == 1
    assert cli.main(["init", "--data", str(export), "--out", str(out), "--force"]) == 0


def test_dates_not_in_iso_get_a_format_and_other_columns_are_offered_as_attributes() -> None:
    accounts = ACCOUNTS.assign(Seats=["12", "3", ""], Billing=["annual", "monthly", "annual"])
    subscriptions = SUBSCRIPTIONS.assign(Started=["31/01/2024", "31/01/2024", "01/02/2024"])
    samples = {"accounts": accounts, "subscriptions": subscriptions}
    text = format_draft(guess_mapping(samples), "export/")
    assert 'start_date: "%d/%m/%Y"  # not ISO 8601' in text
    assert "# seats: {column: Seats, kind: number}  (numbers such as '12', '3')" in text
    assert (
        "# billing: {column: Billing, kind: category}  (2 labels such as 'annual', 'monthly')"
        in text
    )
    mapping = parse_mapping(yaml.load(text, Loader=yaml.BaseLoader))
    assert mapping.date_formats["contracts"] == {"start_date": "%d/%m/%Y"}
    assert mapping.declared == ()  # offered, not declared: the user uncomments what they want
    ambiguous = SUBSCRIPTIONS.assign(Started=["01/02/2024", "03/02/2024", "02/02/2024"])
    text = format_draft(guess_mapping({"accounts": ACCOUNTS, "subscriptions": ambiguous}), "x")
    assert "they read as %m/%d/%Y too: check which" in text
