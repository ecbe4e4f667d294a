"""Tests for scoring.batch: batch runs upsert into the store and say what changed; the command."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from churnguard.cli import main
from churnguard.config import Settings
from churnguard.domain.churn import active_clients
from churnguard.domain.contract import CRMData
from churnguard.modeling.model import model_card, save_local_model
from churnguard.scoring.batch import score_to_store
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import Scorer
from churnguard.store.scores import ScoreStore
from tests.factories import BACKENDS, PARAMS, ModelFactory, open_store


def _count(store: ScoreStore, **where: Any) -> int:
    table = sa.table("scores", sa.column("model_version"))
    query = sa.select(sa.func.count()).select_from(table)
    if "model_version" in where:
        query = query.where(table.c.model_version == where["model_version"])
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_batch_runs_upsert_and_say_what_changed(
    make_model: ModelFactory, data: CRMData, as_of: pd.Timestamp, tmp_path: Path
) -> None:
    model = make_model("lightgbm", PARAMS["lightgbm"])
    scorer = Scorer(model, "1", load_playbook(feature_set=model.feature_set))
    store = ScoreStore(f"sqlite:///{tmp_path / 'scores.db'}").create()
    day_before = as_of - pd.Timedelta(days=1)
    score_to_store(data, scorer, store, day_before, progress=False)
    first = score_to_store(data, scorer, store, as_of, progress=False)
    rows, changes = (
        _count(store),
        {s.client_id: s.change for s in store.latest_scores(limit=1000)[0]},
    )
    again = score_to_store(data, scorer, store, as_of, progress=False)
    assert _count(store) == rows  # the same (client, as_of, version): rewritten, not added
    latest, total = store.latest_scores(limit=1000)
    assert total == again.n_scored == first.n_scored == len(active_clients(data.contracts, as_of))
    assert {s.client_id: s.change for s in latest} == changes  # a re-run changes nothing
    previous = {s.change.get("previous_as_of") for s in latest if s.change["direction"] != "new"}
    assert previous == {day_before.isoformat()}  # compared with the score before as_of
    directions = [s.change["direction"] for s in latest]
    assert directions.count("steady") >= 0.9 * len(directions)  # a day later: little moves
    assert sum(again.by_band.values()) == again.n_scored
    assert again.revenue_at_risk == pytest.approx(sum(s.revenue_at_risk for s in latest))
    assert [s.client_id for s in again.top] == [s.client_id for s in latest[:5]]
    stored = max(latest, key=lambda s: len(s.drivers))
    assert stored.drivers and {"feature", "value", "contribution", "reason"} <= set(
        stored.drivers[0]
    )

    newer = Scorer(model, "2", scorer.playbook)
    score_to_store(data, newer, store, as_of, progress=False, drivers=False)
    assert _count(store) == rows + again.n_scored  # a new model version adds its own rows
    assert _count(store, model_version="2") == again.n_scored
    assert {s.model_version for s in store.latest_scores(limit=1000)[0]} == {"2"}


# --- the command --------------------------------------------------------------------------------


def test_score_command_scores_into_the_store_and_prints_a_summary(
    make_model: ModelFactory,
    demo_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("CHURNGUARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["score", "--data", str(demo_dir)]) == 1
    assert "train a model first" in capsys.readouterr().err

    model = make_model("lightgbm", PARAMS["lightgbm"])
    save_local_model(model, model_card(model, 7, "run"), tmp_path / "models")
    assert main(["score", "--data", str(demo_dir), "--as-of", "2025-06-01"]) == 0
    out = capsys.readouterr().out
    store = ScoreStore(Settings().score_store_url)
    latest, total = store.latest_scores(limit=5)
    assert total > 0 and f"{total:,} clients" in out and "local:7" in out
    assert latest[0].client_id in out
    assert latest[0].drivers and latest[0].drivers[0]["reason"] in out  # the top reason
    assert {s.as_of.date().isoformat() for s in latest} == {"2025-06-01"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_command_refuses_text_the_store_cannot_keep_before_writing_anything(
    backend: str,
    make_model: ModelFactory,
    demo_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = shutil.copytree(demo_dir, tmp_path / "crm")
    clients = pd.read_csv(folder / "clients.csv", dtype=str, keep_default_na=False)
    clients.loc[3, "name"] = "N" * 301  # the store's client_name takes 300
    clients.loc[5, "account_manager"] = "Ann\x00Lee"
    clients.to_csv(folder / "clients.csv", index=False)
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("CHURNGUARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = make_model("lightgbm", PARAMS["lightgbm"])
    save_local_model(model, model_card(model, 7, "run"), tmp_path / "models")
    with open_store(backend, tmp_path) as store:
        monkeypatch.setenv("CHURNGUARD_DATABASE_URL", store.url.render_as_string(False))
        assert main(["score", "--data", str(folder), "--as-of", "2025-06-01"]) == 1
        err = capsys.readouterr().err
        assert "error: the data breaks the CRM data contract:" in err
        assert "Traceback" not in err and "the database could not be used" not in err
        assert "clients.csv, column name, line 5: text longer than 300 characters" in err
        assert "clients.csv, column account_manager, line 7: NUL character" in err
        assert store.latest_scores(limit=1)[1] == 0  # nothing half-written
