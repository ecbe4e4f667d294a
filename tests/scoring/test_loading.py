"""Tests for scoring.loading: the registry's champion, the local copy, or a clear error."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from churnguard.config import Settings
from churnguard.modeling.model import model_card, save_local_model
from churnguard.modeling.registry import CHAMPION, Registry
from churnguard.scoring.loading import ModelLoadError, NoModelError, load_scorer
from churnguard.training.dataset import TrainOptions
from churnguard.training.table import FlatOptions, parse_label
from churnguard.training.tablefit import fit_table_model
from churnguard.training.train import Dataset
from tests.factories import PARAMS, ModelFactory, client_table


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
    with caplog.at_level(logging.WARNING, logger="churnguard.scoring.loading"):
        scorer = load_scorer(nowhere)
    assert time.perf_counter() - started < 60  # not MLflow's minutes of default retries
    assert scorer.version == "local:3" and scorer.model.kind == "lightgbm"
    assert "127.0.0.1:9" in caplog.text and "local copy" in caplog.text

    empty = _settings(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="churnguard.scoring.loading"):
        assert load_scorer(empty).version == "local:3"
    assert "has no champion" in caplog.text


def test_load_scorer_without_any_model_says_to_train_first(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(NoModelError, match="train a model first: churnguard train --data"):
        load_scorer(settings)


def test_a_flat_table_champion_is_a_clear_error_not_a_crm_scorer(tmp_path: Path) -> None:
    table = client_table()
    y = parse_label(table["churn"], "churn").astype(np.int64)
    options = FlatOptions(train=TrainOptions(lightgbm_min_train_events=10**9), inner_folds=2)
    model = fit_table_model(table.drop(columns=["customer_id", "churn"]), y, options).model
    save_local_model(model, model_card(model, 4, "run"), tmp_path / "models")
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ModelLoadError, match=r"version local:4\) was trained on a flat table") as e:
        load_scorer(settings)
    assert e.value.step == "flat table" and "churnguard train --data" in str(e.value)
