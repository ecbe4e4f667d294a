"""Tests for registry.py: runs, the pyfunc model and its signature, versions and aliases."""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException

from churnguard.config import Settings
from churnguard.modeling.model import ChurnModel
from churnguard.modeling.registry import (
    CHALLENGER,
    CHAMPION,
    CUSTOM_MODELS,
    EXPERIMENT_KIND,
    RUN_NOTE,
    Registry,
    RegistryError,
)
from churnguard.training.train import Dataset
from tests.factories import ModelFactory

NAME = "registry-test"  # its own registered model: the aliases of `churnguard` are not touched


@pytest.fixture(scope="module")
def registry(store: Path) -> Registry:
    return Registry(Settings().tracking_uri, store / "mlartifacts", model_name=NAME)


@pytest.fixture(scope="module")
def model(make_model: ModelFactory) -> ChurnModel:
    return make_model("logistic", {"C": 0.1})


@pytest.fixture(scope="module")
def features(dataset: Dataset) -> pd.DataFrame:
    return dataset.features.tail(50).reset_index(drop=True)


@pytest.fixture(scope="module")
def logged(registry: Registry, model: ChurnModel, features: pd.DataFrame) -> tuple[str, int]:
    """A run with params, metrics, a figure, a text and the model; (run_id, version)."""
    figure = Figure()
    figure.add_subplot().plot([0, 1], [0, 1])
    with registry.start_run("registry-tests", "logistic on test data", "**what** it is") as run:
        run.params({"horizon_days": 90, "features": "x" * 7000})
        run.dataset(features.assign(churned=0), "test features", "/data/demo", "churned")
        run.metrics({"test_roc_auc": 0.8, "undefined": float("nan")})
        run.figure(figure, "plots/line.png")
        run.text("# report", "model_report.md")
        version = registry.log_model(run, model, model.inputs(features.head(5)), "trained on x")
    return run.run_id, version


def test_a_run_is_named_described_and_logs_its_dataset(
    registry: Registry, logged: tuple[str, int], features: pd.DataFrame
) -> None:
    run = registry.client.get_run(logged[0])
    assert run.info.run_name == "logistic on test data"
    assert run.data.tags[RUN_NOTE] == "**what** it is"
    (logged_input,) = run.inputs.dataset_inputs
    assert logged_input.dataset.name == "test features"
    assert "/data/demo" in logged_input.dataset.source
    assert f'"num_rows": {len(features)}' in logged_input.dataset.profile
    assert {t.key: t.value for t in logged_input.tags}["mlflow.data.context"] == "training"
    version = registry.client.get_model_version(NAME, str(logged[1]))
    assert version.description == "trained on x"


def test_a_dataset_read_from_a_database_is_logged_with_its_url(
    registry: Registry, features: pd.DataFrame
) -> None:
    url = "postgresql+psycopg://crm@db.example:5432/crm"
    with registry.start_run("registry-tests") as run:
        run.dataset(features, "crm features", url)
    (logged_input,) = registry.client.get_run(run.run_id).inputs.dataset_inputs
    assert logged_input.dataset.source_type == "code" and url in logged_input.dataset.source


def test_the_experiment_opens_on_its_runs_not_on_traces(
    registry: Registry, logged: tuple[str, int]
) -> None:
    experiment_id = registry.experiment_id(logged[0])
    tags = registry.client.get_experiment(experiment_id).tags
    assert tags[EXPERIMENT_KIND] == CUSTOM_MODELS
    registry.client.delete_experiment_tag(experiment_id, EXPERIMENT_KIND)  # an older experiment
    with registry.start_run("registry-tests"):
        pass
    assert registry.client.get_experiment(experiment_id).tags[EXPERIMENT_KIND] == CUSTOM_MODELS


def test_a_run_keeps_params_metrics_and_artifacts(registry: Registry, logged: tuple[str, int]):
    run = registry.client.get_run(logged[0])
    assert run.info.status == "FINISHED"
    assert run.data.params["horizon_days"] == "90"
    assert len(run.data.params["features"]) == 6000  # cut to MLflow's limit, not refused
    assert run.data.metrics == {"test_roc_auc": 0.8}  # NaN (undefined) left out
    paths = {a.path for a in registry.client.list_artifacts(logged[0])}
    assert {"plots", "model_report.md"} <= paths
    experiment = registry.client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.startswith("file://")
    assert experiment.artifact_location.endswith("mlartifacts")


def test_a_failing_run_is_marked_failed(registry: Registry) -> None:
    with pytest.raises(RuntimeError), registry.start_run("registry-tests") as run:
        raise RuntimeError("boom")
    assert registry.client.get_run(run.run_id).info.status == "FAILED"


def test_the_pyfunc_takes_strings_and_returns_the_models_probabilities(
    registry: Registry, logged: tuple[str, int], model: ChurnModel, features: pd.DataFrame
) -> None:
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{logged[1]}")
    inputs = {spec.name: spec.type.name for spec in pyfunc.metadata.get_input_schema().inputs}
    assert list(inputs) == model.feature_names
    assert {inputs[c] for c in model.categories} == {"string"}
    assert inputs["days_since_contact"] == "double"
    as_text = features[model.feature_names].astype({c: object for c in model.categories})
    np.testing.assert_array_equal(pyfunc.predict(as_text), model.predict_proba(features))


def test_load_model_returns_the_churn_model(
    registry: Registry, logged: tuple[str, int], model: ChurnModel, features: pd.DataFrame
) -> None:
    loaded = registry.load_model(logged[1])
    assert isinstance(loaded, ChurnModel)
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))


def test_aliases_move_and_unknown_versions_are_refused(
    registry: Registry, logged: tuple[str, int]
) -> None:
    version = logged[1]
    assert registry.alias_version(CHAMPION) is None
    registry.set_alias(CHAMPION, version)
    registry.set_alias(CHALLENGER, version)
    assert registry.alias_version(CHAMPION) == version
    info = registry.version_info(version)
    assert info.aliases == (CHALLENGER, CHAMPION)
    assert info.metrics["test_roc_auc"] == 0.8 and info.run_id == logged[0]
    registry.delete_alias(CHALLENGER)
    registry.delete_alias(CHALLENGER)  # deleting a missing alias is fine
    assert registry.alias_version(CHALLENGER) is None
    with pytest.raises(RegistryError, match="no version 42"):
        registry.set_alias(CHAMPION, 42)
    with pytest.raises(RegistryError, match="no version 42"):
        registry.load_model(42)
    assert registry.alias_version(CHAMPION) == version


def test_versions_lists_newest_first(registry: Registry, logged: tuple[str, int]) -> None:
    versions = registry.versions()
    assert [v.version for v in versions] == sorted((v.version for v in versions), reverse=True)
    assert versions[-1].version == 1 and versions[0].version == logged[1]
    assert Registry(registry.tracking_uri, model_name="no-such-model").versions() == []


def test_an_unreachable_registry_is_an_error_not_a_missing_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "No champion" would let training promote without the gate; a failure must say so instead.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    nowhere = Registry("http://127.0.0.1:9", tmp_path / "mlartifacts", model_name=NAME)
    with pytest.raises(MlflowException):  # the discard port: nobody listens
        nowhere.alias_version(CHAMPION)


def test_the_registry_loads_no_model_library_until_a_model_is_read() -> None:
    # `churnguard models` and the alias lookup at start-up need MLflow's client only
    code = (
        "import sys, churnguard.modeling.registry; "
        "print(sorted(m for m in ('matplotlib', 'sklearn', 'lightgbm', 'joblib') "
        "if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def _versions_of_runs(registry: Registry) -> list[str]:
    """Three versions: of a run, of a run then deleted, of a run deleted for good (mlflow gc
    leaves no run behind); their run ids, in version order."""
    client = registry.client
    experiment = client.create_experiment("deleted-runs")
    runs = []
    for auc in (0.7, 0.8):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "test_roc_auc", auc)
        runs.append(run.info.run_id)
    runs.append("0" * 32)  # what a version of a run deleted for good points at
    client.create_registered_model(registry.model_name)
    for run_id in runs:
        client.create_model_version(registry.model_name, f"runs:/{run_id}/model", run_id)
    client.delete_run(runs[1])
    return runs


def test_versions_say_when_their_run_is_deleted(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", model_name="deleted-runs")
    runs = _versions_of_runs(registry)
    by_version = {v.version: v for v in registry.versions()}
    assert [(by_version[k].run_id, by_version[k].run_state) for k in (1, 2, 3)] == [
        (runs[0], "active"),
        (runs[1], "deleted"),
        (runs[2], "gone"),
    ]
    assert by_version[2].metrics == {"test_roc_auc": 0.8}  # a deleted run keeps them
    assert by_version[3].metrics == {}


def test_the_listing_says_which_runs_are_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from churnguard.cli.models import models

    settings = Settings(home=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    _versions_of_runs(Registry.from_settings(settings))
    assert models(argparse.Namespace(), settings) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "ok" in lines["1"] and "deleted" not in lines["1"]
    assert "run deleted" in lines["2"] and "0.8000" in lines["2"]
    assert "run deleted for good: no metrics" in lines["3"]


def _awkward_table(rows: int) -> pd.DataFrame:
    """Columns of every kind a feature matrix or a flat table has, some with missing values."""
    rng = np.random.default_rng(3)
    text = rng.choice(["a", "b", "c"], rows).astype(object)
    gappy = text.copy()
    gappy[rows - 1 :] = None  # missing only past the first 10,000 rows (the last row)
    return pd.DataFrame(
        {
            "number": rng.normal(size=rows),
            "gaps": np.where(rng.random(rows) < 0.1, np.nan, 1.0),
            "count": rng.integers(0, 9, rows),
            "flag": rng.random(rows) < 0.5,
            "text": text,
            "gappy_text": gappy,
            "segment": pd.Categorical(text),
            "region": pd.Categorical(np.where(rng.random(rows) < 0.2, None, text)),
            "as_of": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(rows), "D"),
            "mixed": pd.Series(["x", 1] * (rows // 2) + ["x"] * (rows % 2), dtype=object),
        }
    )


@pytest.mark.parametrize("rows", [0, 1, 50, 10_050])
def test_dataset_schema_and_digest_are_mlflows_own(rows: int) -> None:
    from mlflow.data.digest_utils import compute_pandas_digest
    from mlflow.data.pandas_dataset import PandasDataset

    from churnguard.modeling.registry import pandas_digest, table_schema

    frame = _awkward_table(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for table in (frame, frame.drop(columns="mixed")):  # MLflow gives no schema with it
            own = PandasDataset(table, source=None).schema  # type: ignore[arg-type]
            assert pandas_digest(table) == compute_pandas_digest(table)
            ours = table_schema(table)
            assert (ours is None and own is None) or ours.to_dict() == own.to_dict()
    assert own is not None or rows == 0
