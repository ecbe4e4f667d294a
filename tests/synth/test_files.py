"""Tests for synth/files.py: the cells of the written CSV files and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnguard.domain.contract import TABLES
from churnguard.synth import files
from churnguard.synth.business import write_demo_data


def test_csv_cells_are_iso_dates_datetimes_booleans_and_empty_for_missing(tmp_path: Path) -> None:
    write_demo_data(tmp_path, clients=150, months=14, seed=3)
    contracts = pd.read_csv(tmp_path / "contracts.csv", dtype=str, keep_default_na=False)
    interactions = pd.read_csv(tmp_path / "interactions.csv", dtype=str, keep_default_na=False)
    assert contracts["start_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert set(contracts["auto_renew"]) == {"true", "false"}
    assert (contracts["end_date"] == "").any()  # rolling contracts
    assert (contracts["cancelled_at"] == "").any() and (contracts["cancelled_at"] != "").any()
    assert interactions["occurred_at"].str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z").all()
    header = (tmp_path / "invoices.csv").read_text().splitlines()[0]
    assert header.replace('"', "").split(",") == list(TABLES["invoices"].column_names)


def test_an_interrupted_write_leaves_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_demo_data(tmp_path, clients=100, months=6, seed=1)
    before = (tmp_path / "clients.csv").read_bytes()

    def half_write(table: object, where: str, *args: object, **kwargs: object) -> None:
        Path(where).write_text("client_id,na")  # a torn file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(files.pacsv, "write_csv", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_demo_data(tmp_path, clients=100, months=6, seed=2)
    assert (tmp_path / "clients.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
