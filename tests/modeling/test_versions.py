"""Tests for versions.py: MLflow's SQLite tables read directly give what MLflow's client gives."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from churnguard.modeling import versions
from churnguard.modeling.registry import CHALLENGER, CHAMPION, Registry
from churnguard.modeling.versions import VersionInfo, sqlite_versions

NAME = "versions-test"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A store with every case a listing shows: a run with metrics logged at several steps (one
    NaN) and params, a deleted run, a run deleted for good, a version without a run, a deleted
    version, two aliases on one version, and another registered model."""
    home = tmp_path_factory.mktemp("versions")
    registry = Registry(f"sqlite:///{home / 'mlflow.db'}", model_name=NAME)
    client = registry.client
    experiment = client.create_experiment("versions")
    runs = []
    for auc in (0.7, 0.8):
        run_id = client.create_run(experiment).info.run_id
        for step, value in enumerate((auc - 0.1, auc)):
            client.log_metric(run_id, "test_roc_auc", value, step=step)
        client.log_metric(run_id, "undefined", float("nan"))
        client.log_param(run_id, "kind", "lightgbm")
        runs.append(run_id)
    client.delete_run(runs[1])
    for name in (NAME, "another-model"):
        client.create_registered_model(name)
    for run_id in (*runs, "0" * 32):  # the last: a run deleted for good (mlflow gc)
        client.create_model_version(NAME, f"runs:/{run_id}/model", run_id)
    client.create_model_version(NAME, "file:///nowhere/model")  # registered without a run
    client.create_model_version(NAME, f"runs:/{runs[0]}/model", runs[0])
    client.delete_model_version(NAME, "5")
    client.create_model_version("another-model", f"runs:/{runs[0]}/model", runs[0])
    client.set_registered_model_alias(NAME, CHAMPION, "1")
    client.set_registered_model_alias(NAME, CHALLENGER, "1")
    client.set_registered_model_alias(NAME, "previous", "2")
    return registry


def _comparable(infos: list[VersionInfo] | None) -> list[tuple[object, ...]]:
    """The versions as tuples, NaN metrics spelled out (NaN equals nothing, itself included)."""
    assert infos is not None
    return [
        (
            v.version,
            v.aliases,
            v.run_id,
            v.created,
            {k: "nan" if math.isnan(x) else x for k, x in v.metrics.items()},
            v.params,
            v.run_state,
        )
        for v in infos
    ]


def test_the_tables_read_directly_give_what_mlflow_gives(registry: Registry) -> None:
    direct = sqlite_versions(registry.tracking_uri, NAME)
    assert _comparable(direct) == _comparable(registry.versions())
    assert direct is not None
    assert [(v.version, v.run_state) for v in direct] == [
        (4, "none"),
        (3, "gone"),
        (2, "deleted"),
        (1, "active"),
    ]  # version 5 was deleted
    assert direct[3].aliases == (CHALLENGER, CHAMPION) and direct[2].aliases == ("previous",)
    assert direct[3].metrics["test_roc_auc"] == 0.7  # the latest step's value
    assert direct[2].metrics["test_roc_auc"] == 0.8 and direct[2].params == {"kind": "lightgbm"}


def test_a_schema_it_was_not_tested_on_is_left_to_mlflow(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "KNOWN_REVISIONS", frozenset({"not-this-one"}))
    assert sqlite_versions(registry.tracking_uri, NAME) is None


def test_other_stores_are_left_to_mlflow(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for uri in ("http://localhost:5000", "postgresql://u@h/db", "sqlite:///x.db?mode=ro"):
        assert sqlite_versions(uri, NAME) is None, uri
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a SQLite file that is not an MLflow store
    assert sqlite_versions(f"sqlite:///{empty}", NAME) is None
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")  # rows may belong to other tenants
    assert sqlite_versions(registry.tracking_uri, NAME) is None


def test_no_store_lists_nothing_and_creates_none(registry: Registry, tmp_path: Path) -> None:
    assert sqlite_versions(f"sqlite:///{tmp_path / 'mlflow.db'}", NAME) == []
    assert not (tmp_path / "mlflow.db").exists()
    assert sqlite_versions(registry.tracking_uri, "no-such-model") == []


def test_the_direct_read_imports_no_mlflow(registry: Registry) -> None:
    code = (
        "import sys; from churnguard.modeling.versions import sqlite_versions; "
        f"found = sqlite_versions({registry.tracking_uri!r}, {NAME!r}); "
        "print(len(found), 'mlflow' in sys.modules, 'sqlalchemy' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["4", "False", "False"]
