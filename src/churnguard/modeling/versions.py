"""Registered model versions as churnguard lists them, and a reader of MLflow's own SQLite tables.

``churnguard models`` on a local store would otherwise import MLflow and its SQLAlchemy store
(~2,000 modules, most of the command's 4 s) to run three queries. ``sqlite_versions`` runs them
with the standard library's ``sqlite3``, read-only, but only on a schema it was tested against:
the store's ``alembic_version`` must be one of ``KNOWN_REVISIONS``; any other store (a server,
PostgreSQL, another MLflow schema, MLflow workspaces switched on) answers ``None`` and the
caller asks MLflow (``Registry.versions``). Both give the same versions (tests compare them).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MODEL_NAME = "churnguard"

# MLflow schema revisions whose registry and run tables were checked against MLflow's client
# (tests/modeling/test_versions.py): 3.17's. A new MLflow release adds its head here once the
# tests pass on it; until then its stores are listed through MLflow.
KNOWN_REVISIONS = frozenset({"dc11669786a5"})
_WORKSPACE = "default"  # MLflow's single-tenant workspace: every row when workspaces are off
_WORKSPACE_SWITCHES = ("MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE", "MLFLOW_WORKSPACE_STORE_URI")
_DELETED_VERSION = "Deleted_Internal"  # MLflow's stage of a deleted version (never listed)


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version with its aliases and its run's metrics."""

    version: int
    aliases: tuple[str, ...]
    run_id: str
    created: pd.Timestamp  # UTC
    metrics: dict[str, float]
    params: dict[str, str]
    # "active"; "deleted": its run is deleted (metrics kept); "gone": the run is deleted for
    # good (``mlflow gc``: no metrics left); "none": registered without a run
    run_state: str = "active"


@dataclass(frozen=True)
class RunRecord:
    """What a version's entry reads of its run."""

    deleted: bool
    metrics: dict[str, float]
    params: dict[str, str]


def version_info(
    version: int,
    run_id: str | None,
    created_ms: int,
    aliases: dict[int, list[str]],
    runs: dict[str, RunRecord],
) -> VersionInfo:
    """One version's entry: a deleted run keeps its metrics and says so; a run not found
    (deleted for good, by ``mlflow gc``) has none and says so."""
    run = runs.get(run_id or "")
    if not run_id:
        state = "none"
    elif run is None:
        state = "gone"
    else:
        state = "deleted" if run.deleted else "active"
    return VersionInfo(
        version=version,
        aliases=tuple(sorted(aliases.get(version, []))),
        run_id=run_id or "",
        created=pd.Timestamp(created_ms, unit="ms", tz="UTC"),
        metrics=dict(run.metrics) if run else {},
        params=dict(run.params) if run else {},
        run_state=state,
    )


def newest_first(infos: Iterable[VersionInfo]) -> list[VersionInfo]:
    return sorted(infos, key=lambda i: i.version, reverse=True)


def sqlite_versions(tracking_uri: str, model_name: str = MODEL_NAME) -> list[VersionInfo] | None:
    """Every version of the registered model, newest first, read from a local SQLite store;
    None when this store is not one this reader knows (then ask MLflow)."""
    path = _sqlite_path(tracking_uri)
    if path is None or any(os.environ.get(name) for name in _WORKSPACE_SWITCHES):
        return None
    if not path.is_file():
        return []  # no store yet: nothing registered (MLflow would create an empty one)
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        if _revision(db) not in KNOWN_REVISIONS:
            return None
        return _versions(db, model_name)


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///<path>`` URI (None: another kind of store, or options)."""
    if not tracking_uri.startswith("sqlite:///") or "?" in tracking_uri:
        return None
    path = tracking_uri.removeprefix("sqlite:///")
    return Path(path) if path and path != ":memory:" else None


def _revision(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:  # not an MLflow store (or not initialised)
        return None
    return str(row[0]) if row else None


def _versions(db: sqlite3.Connection, name: str) -> list[VersionInfo]:
    """The queries MLflow's client makes for ``Registry.versions``, as plain SQL."""
    model = (_WORKSPACE, name)
    if not db.execute(
        "SELECT 1 FROM registered_models WHERE workspace = ? AND name = ?", model
    ).fetchone():
        return []
    aliases: dict[int, list[str]] = {}
    for alias, version in db.execute(
        "SELECT alias, version FROM registered_model_aliases WHERE workspace = ? AND name = ?",
        model,
    ):
        aliases.setdefault(int(version), []).append(alias)
    found = db.execute(
        "SELECT version, run_id, creation_time FROM model_versions "
        "WHERE workspace = ? AND name = ? AND current_stage != ?",
        (*model, _DELETED_VERSION),
    ).fetchall()
    runs = _runs(db, sorted({run_id for _, run_id, _ in found if run_id}))
    return newest_first(
        version_info(int(v), run_id, created, aliases, runs) for v, run_id, created in found
    )


def _runs(db: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, RunRecord]:
    """The runs (deleted ones too) of the store's experiments, by id, with metrics and params."""
    out: dict[str, RunRecord] = {}
    for start in range(0, len(run_ids), 500):  # SQLite's bound-parameter limit is far above
        ids = list(run_ids[start : start + 500])
        marks = ", ".join("?" * len(ids))
        for run_id, stage in db.execute(
            "SELECT r.run_uuid, r.lifecycle_stage FROM runs r "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            f"WHERE e.workspace = ? AND r.run_uuid IN ({marks})",
            (_WORKSPACE, *ids),
        ):
            out[run_id] = RunRecord(stage == "deleted", {}, {})
        for run_id, key, value, is_nan in db.execute(
            f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})",
            ids,
        ):
            if run_id in out:
                out[run_id].metrics[key] = float("nan") if is_nan else float(value)
        for run_id, key, value in db.execute(
            f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", ids
        ):
            if run_id in out:
                out[run_id].params[key] = value
    return out
