"""Shared fixtures: a small simulated business, its training dataset, and a temporary MLflow store.

The MLflow store is one SQLite file per test session (creating one costs seconds); tests that
must not disturb each other's aliases use their own registered model name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from churnguard.domain.data import load_crm
from churnguard.modeling.calibration import calibrate
from churnguard.modeling.model import ChurnModel, align_inputs
from churnguard.modeling.recipes import fit_estimator
from churnguard.synth.business import SimulatedBusiness, simulate, write_demo_data
from churnguard.training.dataset import Dataset, TrainOptions, build_dataset, split_dates
from tests.factories import ModelFactory

SMALL = {"clients": 300, "months": 30, "seed": 7}  # enough churn for both candidates, quick


@pytest.fixture(scope="session")
def business() -> SimulatedBusiness:
    """A small simulated business (300 clients over 30 months)."""
    return simulate(**SMALL)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same business written as a demo folder (CSV tables plus the truth file)."""
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, **SMALL)
    return out


@pytest.fixture(scope="session")
def dataset(demo_dir: Path) -> Dataset:
    """The demo folder's labelled snapshots and features, as `churnguard train` sees them."""
    data, _ = load_crm(demo_dir)
    return build_dataset(data, TrainOptions())


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary churnguard home with its own MLflow store and models folder, via settings.

    Sets CHURNGUARD_HOME, CHURNGUARD_MODELS_DIR and MLFLOW_TRACKING_URI for the session, so the
    CLI and ``mlflow.pyfunc.load_model`` both use it.
    """
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURNGUARD_HOME", str(home))
        mp.setenv("CHURNGUARD_MODELS_DIR", str(home / "models"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        yield home


@pytest.fixture(scope="session")
def make_model(dataset: Dataset) -> ModelFactory:
    """Fit a calibrated ChurnModel of a kind ("logistic"/"lightgbm") with params on the dataset."""

    def fit(kind: Any, params: dict[str, Any]) -> ChurnModel:
        ds = dataset
        split = split_dates(ds.dates, 90)
        fs = ds.feature_set
        categories = {c: [str(v) for v in ds.features[c].cat.categories] for c in fs.categorical}
        X = align_inputs(ds.features, fs.names, categories)
        y = ds.labels["churned"].to_numpy()
        tr, val = ds.rows(split.train), ds.rows(split.validation)
        est, _ = fit_estimator(kind, params, X[tr], y[tr], X[val], y[val], fs.categorical, 7)
        calibrator = calibrate(est, X[val], y[val])
        return ChurnModel(fs, kind, est, calibrator, 90, fs.names, categories)

    return fit
