"""Tests for train.py on CRM histories: `churnguard train` end to end on simulated data, the
logged split, the promotion gate, calibration, reproducibility, small books and too little data."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from churnguard.cli import main
from churnguard.config import Settings
from churnguard.modeling.model import load_local_model, load_model_card
from churnguard.modeling.registry import (
    CHALLENGER,
    CHAMPION,
    CUSTOM_MODELS,
    EXPERIMENT_KIND,
    RUN_NOTE,
    Registry,
)
from churnguard.synth.business import simulate, write_demo_data
from churnguard.training.dataset import (
    Dataset,
    TrainOptions,
    split_dates,
)
from churnguard.training.pipeline import useless_because
from churnguard.training.report import format_summary
from churnguard.training.train import train, train_on

HORIZON = pd.Timedelta(days=90)


def _train_cli(demo_dir: Path) -> str:
    """Run `churnguard train` on the demo folder; returns what it printed."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["train", "--data", str(demo_dir)]) == 0
    return out.getvalue()


def _registry() -> Registry:
    return Registry.from_settings(Settings())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh churnguard home for this module: its version numbers and aliases start clean.

    Overrides the session-wide home, where other test modules register versions too.
    """
    home = tmp_path_factory.mktemp("train-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURNGUARD_HOME", str(home))
        mp.setenv("CHURNGUARD_MODELS_DIR", str(home / "models"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        yield home


@pytest.fixture(scope="module")
def first_run(store: Path, demo_dir: Path) -> tuple[int, str]:
    """The first training in a fresh store: (its version, the printed summary)."""
    printed = _train_cli(demo_dir)
    version = _registry().alias_version(CHAMPION)
    assert version is not None
    return version, printed


@pytest.fixture(scope="module")
def second_run(first_run: tuple[int, str], demo_dir: Path) -> tuple[int, str]:
    """The same training again, on the same data and seed."""
    printed = _train_cli(demo_dir)
    versions = _registry().versions()
    return versions[0].version, printed


def _artifacts(registry: Registry, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in registry.client.list_artifacts(run_id, path):
        found |= _artifacts(registry, run_id, item.path) if item.is_dir else {item.path}
    return found


def _test_features(ds: Dataset) -> pd.DataFrame:
    split = split_dates(ds.dates, 90)
    return ds.features.loc[ds.rows(split.test), ds.feature_set.names]


# --- end to end ---------------------------------------------------------------------------------


def test_train_cli_logs_registers_promotes_and_saves_a_local_copy(
    first_run: tuple[int, str], dataset: Dataset, store: Path
) -> None:
    version, printed = first_run
    registry = _registry()
    info = registry.version_info(version)
    assert CHAMPION in info.aliases
    metrics, params = info.metrics, info.params
    for name in (
        "val_roc_auc",
        "test_roc_auc",
        "test_roc_auc_low",
        "test_roc_auc_high",
        "test_brier",
        "test_ece",
        "test_top_decile_lift",
        "test_raw_brier",
        "backtest_roc_auc_mean",
        "backtest_roc_auc_std",
        "oracle_roc_auc",
        "oracle_ratio",
    ):
        assert name in metrics, name
    assert 0.65 < metrics["test_roc_auc"] <= metrics["oracle_roc_auc"] + 0.05
    assert metrics["test_roc_auc_low"] < metrics["test_roc_auc"] < metrics["test_roc_auc_high"]
    assert params["horizon_days"] == "90" and params["seed"] == "7"
    assert len(params["data_digest"]) == 64
    assert params["features"].split(",") == dataset.feature_set.names
    assert {
        "plots/roc.png",
        "plots/precision_recall.png",
        "plots/calibration.png",
        "plots/gains.png",
        "plots/feature_importance.png",
        "model_report.md",
        "tables/backtest.csv",
    } <= _artifacts(registry, info.run_id)

    settings = Settings()
    card = load_model_card(settings.models_dir)
    assert card["version"] == version and card["data_digest"] == params["data_digest"]
    assert card["features"] == dataset.feature_set.names and card["horizon_days"] == 90
    local = load_local_model(settings.models_dir)

    features = _test_features(dataset)
    as_strings = features.astype({c: object for c in dataset.feature_set.categorical})
    pyfunc = mlflow.pyfunc.load_model(f"models:/churnguard@{CHAMPION}")
    expected = local.predict_proba(features)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(as_strings)), expected)
    np.testing.assert_array_equal(registry.load_model(version).predict_proba(features), expected)

    for text in ("Candidates", "Chosen:", "90% bootstrap intervals", "Oracle AUC", "Backtest over"):
        assert text in printed
    assert f"version {version}" in printed and "-> champion: no champion yet" in printed


def test_the_run_says_what_was_trained_on_what(
    first_run: tuple[int, str], dataset: Dataset, demo_dir: Path
) -> None:
    registry = _registry()
    version, _ = first_run
    run = registry.client.get_run(registry.version_info(version).run_id)
    clients = f"{len(dataset.data.clients):,} clients"
    on = f" on {demo_dir.name} ("
    assert run.info.run_name.startswith((f"lightgbm{on}", f"logistic{on}"))
    assert clients in run.info.run_name and run.info.run_name.endswith("), horizon 90d")
    note = run.data.tags[RUN_NOTE]
    assert "Windows:" in note and "- train " in note and "Base rate" in note
    (data,) = run.inputs.dataset_inputs
    assert data.dataset.name == f"{demo_dir.name} features"
    assert str(demo_dir.resolve()) in data.dataset.source
    assert f'"num_rows": {len(dataset.labels)}' in data.dataset.profile
    assert registry.client.get_experiment(run.info.experiment_id).tags[EXPERIMENT_KIND] == (
        CUSTOM_MODELS
    )
    described = registry.client.get_model_version("churnguard", str(version)).description
    assert run.info.run_name in described and run.info.run_id in described
    meta = load_local_model(Settings().models_dir).metadata
    assert meta["run_id"] == run.info.run_id and meta["run_name"] == run.info.run_name
    assert [w["window"] for w in meta["windows"]] == ["train", "validation", "test"]
    assert 0 < meta["base_rate"] < 0.5


def test_the_logged_split_leaves_one_horizon_between_windows(first_run: tuple[int, str]) -> None:
    params = _registry().version_info(first_run[0]).params
    day = {
        k: pd.Timestamp(v, tz="UTC") for k, v in params.items() if k.endswith(("_start", "_end"))
    }
    assert day["train_start"] <= day["train_end"]
    assert day["train_end"] + HORIZON <= day["validation_start"]
    assert day["validation_end"] + HORIZON <= day["test_start"]
    grace = pd.Timedelta(days=30)
    assert day["test_end"] + HORIZON + grace < pd.Timestamp(params["observed_until"], tz="UTC")


# --- promotion gate -----------------------------------------------------------------------------


def test_a_second_identical_training_is_reproducible_and_promoted(
    first_run: tuple[int, str], second_run: tuple[int, str], dataset: Dataset
) -> None:
    registry = _registry()
    features = _test_features(dataset)
    first, second = (registry.load_model(v) for v in (first_run[0], second_run[0]))
    assert second_run[0] == first_run[0] + 1
    np.testing.assert_array_equal(first.predict_proba(features), second.predict_proba(features))
    assert "-> champion: as good as the champion" in second_run[1]
    assert registry.alias_version(CHAMPION) == second_run[0]


def test_a_model_trained_on_shuffled_labels_is_never_promoted(
    second_run: tuple[int, str], dataset: Dataset, store: Path
) -> None:
    registry = _registry()
    champion = registry.alias_version(CHAMPION)
    split = split_dates(dataset.dates, 90)
    train_rows = dataset.rows(split.train)
    churned = dataset.labels["churned"].to_numpy().copy()
    churned[train_rows] = np.random.default_rng(0).permutation(churned[train_rows])
    shuffled = replace(dataset, labels=dataset.labels.assign(churned=churned))

    models_dir = Settings().models_dir
    result = train_on(shuffled, registry, models_dir, TrainOptions(backtest_cutoffs=1))

    assert not result.promotion.promoted
    assert "AUC" in result.promotion.reason and f"champion v{champion}" in result.promotion.reason
    assert result.test.metrics["roc_auc"] < 0.65
    assert registry.alias_version(CHAMPION) == champion
    assert registry.alias_version(CHALLENGER) == result.version
    assert load_model_card(models_dir)["version"] == champion
    assert "-> challenger: not promoted, no better than chance: test AUC" in format_summary(result)


def test_promote_and_rollback_move_the_champion_and_the_local_copy(
    first_run: tuple[int, str], second_run: tuple[int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _registry()
    models_dir = Settings().models_dir
    current = registry.alias_version(CHAMPION)
    older = first_run[0] if current != first_run[0] else second_run[0]

    assert main(["promote", str(older)]) == 0
    assert registry.alias_version(CHAMPION) == older
    assert load_model_card(models_dir)["version"] == older
    assert f"champion -> version {older} (was version {current})" in capsys.readouterr().out

    assert main(["promote", str(current)]) == 0  # roll back
    assert registry.alias_version(CHAMPION) == current
    assert load_model_card(models_dir)["version"] == current

    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "champion" in listing and " auc " in listing and "test 20" in listing

    assert main(["promote", "999"]) == 1
    err = capsys.readouterr().err
    assert "no version 999" in err and "Traceback" not in err
    assert registry.alias_version(CHAMPION) == current


# --- candidates and calibration -----------------------------------------------------------------


def test_calibration_keeps_or_improves_brier_of_the_trained_model(
    first_run: tuple[int, str],
) -> None:
    metrics = _registry().version_info(first_run[0]).metrics
    # out-of-time Platt scaling fitted on 3 months can only add noise of this order
    assert metrics["test_brier"] <= metrics["test_raw_brier"] + 0.001
    assert metrics["test_ece"] < 0.05


# --- small books and too little data ------------------------------------------------------------


def test_a_small_book_trains_a_logistic_model_and_reports_intervals(store: Path) -> None:
    business = simulate(clients=60, months=36, seed=2)
    registry = Registry(Settings().tracking_uri, store / "mlartifacts", model_name="small-book")
    result = train(business.data, registry, store / "small-book", TrainOptions(), business.truth)

    assert {c.kind for c in result.candidates} == {"logistic"}  # too few events for LightGBM
    assert result.chosen.kind == "logistic"
    low, high = result.test.intervals["roc_auc"]
    assert low <= result.test.metrics["roc_auc"] <= high
    assert high - low > 0.05  # a handful of churners: wide, honest intervals
    assert result.version == 1  # registered whatever the gate says
    useless = useless_because(result.test, "")
    assert result.promotion.promoted == (useless == "")  # promoted only when it beats chance
    summary = format_summary(result)
    assert "90% bootstrap intervals" in summary and f"{low:.4f} - {high:.4f}" in summary


def test_too_little_data_is_a_clear_error_without_a_traceback(
    tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_demo_data(tmp_path / "tiny", clients=20, months=36, seed=7)
    assert main(["train", "--data", str(tmp_path / "tiny")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "churn" in err and ("Export a longer history" in err or "Widen it" in err)


def test_the_registered_model_is_refitted_on_all_labelled_snapshots(
    first_run: tuple[int, str],
) -> None:
    version, printed = first_run
    params = _registry().version_info(version).params
    assert params["labelled_until"] == params["test_end"]  # it learnt from the test window too
    assert "out of time" in params["final_fit"]
    assert "Registered model: refitted on all" in printed
