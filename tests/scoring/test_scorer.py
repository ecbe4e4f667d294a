"""Tests for scoring.py: the API path and the batch path agree, contributions add up, drivers and
actions read right, batch runs upsert into the store, and the scorer loads the right model."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from churnguard.cli import main
from churnguard.config import Settings
from churnguard.domain.churn import active_clients, observation_end
from churnguard.domain.contract import CRMData
from churnguard.features.records import records_model
from churnguard.modeling.model import ChurnModel, model_card, save_local_model
from churnguard.modeling.registry import CHAMPION, Registry
from churnguard.scoring.playbook import load_playbook
from churnguard.scoring.scorer import ClientScore, NoModelError, Scorer, load_scorer, score_to_store
from churnguard.store.scores import ScoreStore
from churnguard.training.train import Dataset
from tests.factories import PARAMS, ModelFactory, records_body

Records = records_model(max_rows=5000)


@pytest.fixture(scope="module")
def data(dataset: Dataset) -> CRMData:
    return dataset.data


@pytest.fixture(scope="module")
def as_of(data: CRMData) -> pd.Timestamp:
    return observation_end(data)


@pytest.fixture(scope="module", params=["lightgbm", "logistic"])
def scorer(request: pytest.FixtureRequest, make_model: ModelFactory) -> Scorer:
    model = make_model(request.param, PARAMS[request.param])
    return Scorer(model, "1", load_playbook(feature_set=model.feature_set))


@pytest.fixture(scope="module")
def batch(scorer: Scorer, data: CRMData, as_of: pd.Timestamp) -> list[ClientScore]:
    return scorer.score_data(data, as_of)


def _some(scores: list[ClientScore], n: int = 12) -> list[ClientScore]:
    """The riskiest clients (the most drivers and actions) and an even spread of the rest."""
    ranked = sorted(scores, key=lambda s: -s.probability)
    return ranked[: n // 2] + ranked[n // 2 :: max(1, len(ranked) // n)][: n - n // 2]


# --- one client and many agree ------------------------------------------------------------------


def test_the_api_path_gives_the_batch_score(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    for expected in _some(batch):
        records = Records.model_validate(records_body(data, expected.client_id))
        got = scorer.score_records(records, as_of.to_pydatetime())
        assert abs(got.probability - expected.probability) <= 1e-9, expected.client_id
        assert got.features == expected.features
        assert [(d.feature, d.value, d.reason) for d in got.drivers] == [
            (d.feature, d.value, d.reason) for d in expected.drivers
        ]
        np.testing.assert_allclose(
            [d.contribution for d in got.drivers], [d.contribution for d in expected.drivers]
        )
        assert got.actions == expected.actions
        assert (got.band, got.monthly_value, got.as_of) == (
            expected.band,
            expected.monthly_value,
            expected.as_of,
        )
        assert (got.account_manager, got.segment, got.client_name) == (
            expected.account_manager,
            expected.segment,
            expected.client_name,
        )
        assert got.revenue_at_risk == pytest.approx(expected.revenue_at_risk, rel=1e-9)


def test_batch_scores_every_active_client_with_the_models_probability(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    assert [s.client_id for s in batch] == list(active_clients(data.contracts, as_of))
    features = scorer.features_at(data, as_of)
    np.testing.assert_allclose(
        [s.probability for s in batch], scorer.model.predict_proba(features), rtol=0, atol=1e-12
    )
    assert {s.band for s in batch} <= {"low", "medium", "high"} and len({s.band for s in batch}) > 1
    s = max(batch, key=lambda s: s.revenue_at_risk)
    assert s.revenue_at_risk == pytest.approx(s.probability * s.monthly_value * 12)
    assert s.monthly_value > 0 and s.as_of == as_of.to_pydatetime()


# --- contributions -----------------------------------------------------------------------------


def test_contributions_add_up_to_the_models_log_odds(
    scorer: Scorer, data: CRMData, as_of: pd.Timestamp
) -> None:
    model = scorer.model
    features = scorer.features_at(data, as_of)
    c = scorer.contributions(features)
    assert c.shape == (len(features), len(model.feature_names))
    assert (np.abs(c) > 1e-6).any(axis=0).sum() > 5  # several features move the score
    raw = model.raw_proba(features)
    if model.booster is not None:  # SHAP: contributions + the constant bias = the raw logit
        shap = model.booster.predict(scorer.matrix(features.head(1)), pred_contrib=True)
        bias = np.asarray(shap)[0, -1]
        np.testing.assert_allclose(c.sum(axis=1) + bias, np.log(raw / (1 - raw)), atol=1e-9)
    else:  # coefficient x transformed value: the decision function without the intercept
        decision = model.estimator.decision_function(model.inputs(features))
        intercept = model.estimator[-1].intercept_[0]
        np.testing.assert_allclose(c.sum(axis=1), decision - intercept, atol=1e-9)


def test_drivers_are_the_largest_risk_raising_contributions_with_reasons(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    c = scorer.contributions(scorer.features_at(data, as_of))
    column = {name: j for j, name in enumerate(scorer.names)}
    assert sum(len(s.drivers) for s in batch) > len(batch)
    for i, s in enumerate(batch):
        assert len(s.drivers) <= scorer.top_k
        contributions = [d.contribution for d in s.drivers]
        assert all(x > 0 for x in contributions)
        assert contributions == sorted(contributions, reverse=True)
        for d in s.drivers:
            assert d.reason and d.contribution == pytest.approx(c[i, column[d.feature]])
        if len(s.drivers) == scorer.top_k:  # nothing left out raised the risk more
            others = [
                c[i, j]
                for name, j in column.items()
                if name not in {d.feature for d in s.drivers} and s.features[name] is not None
            ]
            assert max(others) <= min(contributions) + 1e-12


def test_actions_come_from_the_playbook_and_answer_the_drivers(
    scorer: Scorer, batch: list[ClientScore], tmp_path: Path, data: CRMData, as_of: pd.Timestamp
) -> None:
    known = {rule.action for rule in scorer.playbook.rules}
    answering = 0
    for s in batch:
        assert {a.action for a in s.actions} <= known and len(s.actions) <= 3
        feature_of = {d.reason: d.feature for d in s.drivers}
        for a, stored in zip(s.actions, s.to_record().actions, strict=True):
            assert (stored["action"], stored["reason"]) == (a.action, a.why)
            assert stored["feature"] == feature_of.get(a.why)
            answering += stored["feature"] is not None
    assert answering > 0  # some actions answer a driver, and the stored action says which
    own = tmp_path / "playbook.yaml"
    own.write_text(
        "rules:\n  - action: Send the quarterly value report\n    priority: 1\n"
        "    when: {monthly_value: {gte: 0}}\n"
    )
    custom = Scorer(scorer.model, "1", load_playbook(own, scorer.model.feature_set))
    scores = custom.score_data(data, as_of)
    assert {a.action for s in scores for a in s.actions} == {"Send the quarterly value report"}


def test_without_drivers_scores_carry_no_explanations_and_the_same_probabilities(
    scorer: Scorer, batch: list[ClientScore], data: CRMData, as_of: pd.Timestamp
) -> None:
    plain = scorer.score_data(data, as_of, drivers=False)
    assert [s.probability for s in plain] == [s.probability for s in batch]
    assert not any(s.drivers or s.actions for s in plain)
    cut = 0.2
    some = scorer.score_data(data, as_of, explain_from=cut)
    for full, part in zip(batch, some, strict=True):
        expected = full.drivers if full.probability >= cut else []
        assert part.drivers == expected


def test_a_model_the_array_path_cannot_reproduce_is_refused(make_model: ModelFactory) -> None:
    model = make_model("lightgbm", PARAMS["lightgbm"])
    shuffled = {name: labels[::-1] for name, labels in model.categories.items()}
    broken = ChurnModel(
        model.feature_set,
        model.kind,
        model.estimator,
        model.calibrator,
        model.horizon_days,
        model.feature_names,
        shuffled,  # the booster still knows the training order: codes would mean other things
    )
    with pytest.raises(TypeError, match="differs from its predict_proba"):
        Scorer(broken, "x", load_playbook(feature_set=model.feature_set))


# --- batch scoring into the store ---------------------------------------------------------------


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


# --- loading the model ------------------------------------------------------------------------


def _settings(tmp_path: Path, uri: str) -> Settings:
    return Settings(home=tmp_path, models_dir=tmp_path / "models", mlflow_tracking_uri=uri)


@pytest.fixture
def mlflow_uri() -> Iterator[None]:
    """Put back MLflow's global tracking URI, which loading a registered model moves."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


@pytest.mark.usefixtures("mlflow_uri")
def test_load_scorer_takes_the_registry_champion(
    make_model: ModelFactory, dataset: Dataset, tmp_path: Path
) -> None:
    model = make_model("logistic", PARAMS["logistic"])
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    registry = Registry.from_settings(settings)
    with registry.start_run("scoring-tests") as run:
        version = registry.log_model(run, model, model.inputs(dataset.features.head(5)))
    registry.set_alias(CHAMPION, version)
    scorer = load_scorer(settings)
    assert scorer.version == str(version)
    features = dataset.features.tail(20)
    np.testing.assert_array_equal(scorer.predict(features), model.predict_proba(features))


def test_load_scorer_falls_back_to_the_local_copy(
    make_model: ModelFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    model = make_model("lightgbm", PARAMS["lightgbm"])
    save_local_model(model, model_card(model, 3, "run"), tmp_path / "models")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    nowhere = _settings(tmp_path, "http://127.0.0.1:9")  # the discard port: nobody listens
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="churnguard.scoring.scorer"):
        scorer = load_scorer(nowhere)
    assert time.perf_counter() - started < 60  # not MLflow's minutes of default retries
    assert scorer.version == "local:3" and scorer.model.kind == "lightgbm"
    assert "127.0.0.1:9" in caplog.text and "local copy" in caplog.text

    empty = _settings(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="churnguard.scoring.scorer"):
        assert load_scorer(empty).version == "local:3"
    assert "has no champion" in caplog.text


def test_load_scorer_without_any_model_says_to_train_first(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(NoModelError, match="train a model first: churnguard train --data"):
        load_scorer(settings)


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
