"""Tests for flat-table training (`churnguard train --table`) on small generated tables.

Labels, scoring unseen categories, the cross-validated and out-of-time runs, registration and
aliases, the pyfunc, and clear errors.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from churnguard.cli import main
from churnguard.modeling.model import ChurnModel
from churnguard.modeling.registry import CHALLENGER, CHAMPION, Registry
from churnguard.modeling.table import (
    FlatChurnModel,
    TableError,
    TableSchema,
)
from churnguard.training.dataset import NotEnoughDataError, TrainOptions
from churnguard.training.pipeline import TrainResult
from churnguard.training.report import format_summary
from churnguard.training.table import (
    CV_NOTE,
    FlatOptions,
    column_strengths,
    input_example,
    leak_warnings,
    load_table,
    parse_label,
    read_table,
    split_by_time,
)
from churnguard.training.tablefit import fit_table_model, flat_model
from churnguard.training.train import train_table
from tests.factories import client_table

# Small and quick: 2 folds x 1 repeat, 2 inner folds, few bootstrap resamples.
FAST = FlatOptions(
    train=TrainOptions(n_boot=20, experiment="flat-tests"), folds=2, repeats=1, inner_folds=2
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry in its own temporary MLflow store (model name churnguard)."""
    home = tmp_path_factory.mktemp("flat-home")
    previous = mlflow.get_tracking_uri()
    yield Registry(f"sqlite:///{home / 'mlflow.db'}", home / "mlartifacts")
    mlflow.set_tracking_uri(previous)
    mlflow.set_registry_uri(previous)


@pytest.fixture(scope="module")
def cv_run(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """Cross-validated training on a table without a time column, in a fresh store."""
    models = tmp_path_factory.mktemp("flat-models")
    table = client_table()
    return train_table(
        table, "churn", "customer_id", registry=registry, models_dir=models, options=FAST
    )


# ---------------------------------------------------------------------------------- columns


@pytest.mark.parametrize(
    "values",
    [
        ["Yes", "No", "yes", None],
        ["True", "False", "TRUE", None],
        [1, 0, 1, None],
        ["1", "0", "1", ""],
    ],
)
def test_label_accepts_yes_no_true_false_and_one_zero(values: list[object]) -> None:
    label = parse_label(pd.Series(values), "churn")
    assert label[:3].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(label[3])


def test_label_with_other_values_is_a_clear_error() -> None:
    with pytest.raises(TableError, match=r"label column 'status' .*\['active', 'cancelled'\]"):
        parse_label(pd.Series(["active", "cancelled", "active"]), "status")
    with pytest.raises(TableError, match="name the churned one with --positive"):
        parse_label(pd.Series([" True.", " False."]), "churn")


def test_label_of_two_other_values_reads_with_the_churned_one_named() -> None:
    values = pd.Series(["Attrited Customer", "Existing Customer", None, " attrited customer "])
    label = parse_label(values, "flag", positive="Attrited Customer")
    assert label[[0, 1, 3]].tolist() == [1.0, 0.0, 1.0] and np.isnan(label[2])
    assert parse_label(pd.Series([" True.", " False."]), "churn", "True.").tolist() == [1.0, 0.0]
    with pytest.raises(
        TableError, match=r"no value 'churned' \(--positive\); it holds \['a', 'b'\]"
    ):
        parse_label(pd.Series(["a", "b"]), "flag", positive="Churned")
    with pytest.raises(TableError, match=r"holds 3 values .* must hold two"):
        parse_label(pd.Series(["a", "b", "c"]), "flag", positive="a")


# ---------------------------------------------------------------------------------- reading


def test_csv_separated_by_semicolons_or_tabs_with_a_byte_order_mark_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = client_table(120, seed=5)
    for name, sep in (("semi.csv", ";"), ("tabs.tsv", "\t"), ("comma.csv", ",")):
        path = tmp_path / name
        table.to_csv(path, index=False, sep=sep, encoding="utf-8-sig")
        with caplog.at_level(logging.INFO, logger="churnguard.training.table"):
            read = read_table(path)
        assert list(read.columns) == list(table.columns)  # no mark in the first name
        assert read["customer_id"].tolist() == table["customer_id"].tolist()
        assert (f"read as {sep!r}-separated" in caplog.text) == (sep != ",")


def test_unreadable_tables_are_clear_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("customer_id,name,churn\n1,M\u00fcller,yes\n".encode("latin-1"))
    with pytest.raises(TableError, match=r"latin.csv is not UTF-8 text \(.* at byte 26\)"):
        read_table(latin)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(TableError, match=r"cannot read ragged\.csv as CSV: .*line 3"):
        read_table(ragged)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not parquet")
    with pytest.raises(TableError, match=r"cannot read broken\.parquet as Parquet"):
        read_table(broken)
    empty = tmp_path / "empty.csv"
    empty.write_text("customer_id,churn,tenure\n")
    with pytest.raises(TableError, match="no rows with a 'churn' label"):
        load_table(empty, "churn", "customer_id", None, FAST)
    twice = tmp_path / "twice.csv"
    twice.write_text("customer_id,age,age,churn\n1,2,3,yes\n")
    with caplog.at_level(logging.WARNING, logger="churnguard.training.table"):
        assert list(read_table(twice).columns) == ["customer_id", "age", "age.1", "churn"]
    assert "names ['age'] more than once; the repeats are read as ['age.1']" in caplog.text


# ---------------------------------------------------------------------------------- errors


def _train(
    table: pd.DataFrame | str, registry: Registry, tmp_path: Path, options: FlatOptions = FAST
) -> None:
    train_table(
        table, "churn", "customer_id", registry=registry, models_dir=tmp_path, options=options
    )


def test_one_class_label_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    table = client_table().assign(churn="No")
    with pytest.raises(TableError, match="one class only"):
        _train(table, registry, tmp_path)


def test_missing_column_and_missing_file_are_clear_errors(
    registry: Registry, tmp_path: Path
) -> None:
    table = client_table().drop(columns=["churn"])
    with pytest.raises(TableError, match=r"\['churn'\] not in the table; it has: customer_id"):
        _train(table, registry, tmp_path)
    with pytest.raises(FileNotFoundError, match="no table at"):
        _train(str(tmp_path / "nope.csv"), registry, tmp_path)


def test_too_few_churned_rows_and_repeated_ids_are_errors(
    registry: Registry, tmp_path: Path
) -> None:
    table = client_table()
    few = table.assign(churn=np.where(np.arange(len(table)) < 5, "Yes", "No"))
    with pytest.raises(NotEnoughDataError, match="5 churned"):
        _train(few, registry, tmp_path)
    repeated = pd.concat([table, table.head(3)])
    with pytest.raises(TableError, match="appear more than once"):
        _train(repeated, registry, tmp_path)


# ---------------------------------------------------------------------------------- leakage


def _with_leaks(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The table with columns written at churn: a reason given only for churners (missing for
    the others), the label again as 1/0, and a status word."""
    rng = np.random.default_rng(seed)
    churned = table["churn"] == "Yes"
    reasons = rng.choice(["Price", "Competitor", "Moved", "Service"], len(table))
    return table.assign(
        churn_reason=np.where(churned, reasons, None),
        churn_value=churned.astype(int),
        status=np.where(churned, "Closed", "Active"),
    )


def test_columns_that_alone_separate_churners_are_left_out_and_named() -> None:
    table = _with_leaks(client_table())
    data = load_table(table, "churn", "customer_id", None, FAST)
    assert set(data.leaked) == {"churn_reason", "churn_value", "status"}
    assert all("ROC AUC 1.000" in why and "--keep" in why for why in data.leaked.values())
    assert not set(data.leaked) & set(data.rows.columns)
    # the strong, honest columns (contract type, tenure) stay
    assert {"tenure", "monthly", "contract", "support"} <= set(data.rows.columns)


def test_keep_names_a_column_to_use_anyway_and_unknown_names_are_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = _with_leaks(client_table())
    with caplog.at_level(logging.WARNING, logger="churnguard.training.table"):
        data = load_table(table, "churn", "customer_id", None, replace(FAST, keep=("status",)))
    assert set(data.leaked) == {"churn_reason", "churn_value"} and "status" in data.rows.columns
    assert "'status' kept (--keep)" in caplog.text
    schema = TableSchema({"status": "categorical", "tenure": "numeric"})
    assert leak_warnings(data, schema, FAST) == [  # the run's warnings still name it
        "column 'status' alone ranks churners with ROC AUC 1.000: check that it is known before "
        "a client churns (leakage)"
    ]
    with pytest.raises(TableError, match=r"--keep names \['statuz'\]"):
        load_table(table, "churn", "customer_id", None, replace(FAST, keep=("statuz",)))
    only_leaks = table[["customer_id", "churn", "churn_value", "status"]]
    with pytest.raises(TableError, match="every feature column alone separates churners"):
        load_table(only_leaks, "churn", "customer_id", None, FAST)


def test_column_strengths_do_not_reward_memorised_rare_categories() -> None:
    table = client_table(2000, seed=5)
    y = parse_label(table["churn"], "churn").astype(np.int64)
    rare = pd.Series([f"v{i // 2}" for i in range(len(table))])  # 1,000 values, 2 rows each
    rows = table.drop(columns=["customer_id", "churn", "email"]).assign(rare=rare)
    schema = TableSchema({"rare": "categorical", "contract": "categorical", "tenure": "numeric"})
    strengths = column_strengths(rows, y, schema, seed=7)
    assert strengths["rare"] < 0.6  # 0.515; in-sample rates would rank it at 0.889
    assert 0.6 < strengths["contract"] < 0.9 and 0.6 < strengths["tenure"] < 0.9


def test_a_run_says_which_columns_it_left_out_as_leaks(tmp_path: Path) -> None:
    table = _with_leaks(client_table(150, seed=3))  # < 50 churned: logistic only, quick
    table.loc[:2, "churn"] = None
    table.loc[5, "monthly"] = np.inf
    previous = mlflow.get_tracking_uri()
    own = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    try:  # a registry of its own: the module's holds the CV run's versions
        result = train_table(
            table, "churn", "customer_id", registry=own, models_dir=tmp_path, options=FAST
        )
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)
    summary = format_summary(result)
    assert "left out: churn_reason (alone separates churners" in summary
    assert "  3 rows without a label left out\n" in summary
    assert "column 'monthly': 1 values are infinite and count as missing" in summary
    assert "column 'churn_value' left out: alone separates churners" in summary
    assert "churn_value" not in flat_model(result.model).schema.kinds
    assert "status (alone separates" in result.params["dropped_columns"]
    assert 0.6 < result.metrics["roc_auc"] < 0.99  # the model learnt from the honest columns


# ---------------------------------------------------------------------------------- scoring


def test_unseen_category_and_blank_number_score_like_missing() -> None:
    table = client_table()
    y = parse_label(table["churn"], "churn").astype(np.int64)
    rows = table.drop(columns=["customer_id", "churn"])
    options = FlatOptions(train=TrainOptions(lightgbm_min_train_events=10**9), inner_folds=2)
    model = fit_table_model(rows, y, options).model
    unseen = pd.Series(["Three year", None, "Three year"], dtype=object)
    new = rows.head(3).assign(contract=unseen.to_numpy(), total=[" ", "", np.nan])
    missing = new.assign(contract=np.nan)
    p = model.predict_proba(new)
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(p, model.predict_proba(missing))
    assert not np.allclose(p, model.predict_proba(rows.head(3)))  # the category does matter


# ---------------------------------------------------------------------------------- CV run


def test_cross_validated_run_says_so_and_reports_metrics(
    cv_run: TrainResult, registry: Registry
) -> None:
    summary = format_summary(cv_run)
    assert CV_NOTE in summary
    assert "pooled = on the first repeat's out-of-fold predictions together" in summary
    from churnguard.training.report import REPORTED

    for metric in REPORTED:  # each interval around its own estimate, shown beside it
        low, high = cv_run.test.intervals[metric]
        assert low <= cv_run.test.metrics[metric] <= high, metric
    assert len(cv_run.folds) == FAST.folds * FAST.repeats
    assert cv_run.metrics["roc_auc"] > 0.7  # the generated churn is learnable
    run = registry.client.get_run(cv_run.run_id).data
    assert CV_NOTE in run.tags["evaluation"] and CV_NOTE in run.params["evaluation"]
    assert run.metrics["cv_roc_auc_mean"] == pytest.approx(cv_run.folds["roc_auc"].mean())
    assert {"cv_brier_std", "cv_roc_auc_low", "val_roc_auc"} <= set(run.metrics)
    assert not any(k.startswith("test_") for k in run.metrics)  # nothing passes for out-of-time
    assert run.params["dropped_columns"].startswith("country (constant")
    assert "customer_id" not in cv_run.model.feature_names


def test_cross_validated_run_registers_a_champion_with_a_local_copy(
    cv_run: TrainResult, registry: Registry
) -> None:
    assert cv_run.version is not None
    assert registry.alias_version(CHAMPION) == cv_run.version
    assert cv_run.promotion.reason == "no champion yet"
    assert cv_run.local_copy is not None and cv_run.local_copy.exists()
    loaded = registry.load_model(cv_run.version)
    assert isinstance(loaded, ChurnModel) and isinstance(loaded, FlatChurnModel)


def test_packaged_model_scores_through_the_pyfunc(cv_run: TrainResult, registry: Registry) -> None:
    rows = input_example(cv_run.dataset, cv_run.model)
    rows = rows.assign(contract=["Three year", *rows["contract"][1:]])  # unseen at training
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/churnguard@{CHAMPION}")
    scored = np.asarray(pyfunc.predict(rows), dtype=np.float64)
    np.testing.assert_allclose(scored, cv_run.model.predict_proba(rows))
    assert ((scored > 0) & (scored < 1)).all()


def test_same_data_again_is_compared_on_recorded_cv_metrics(
    cv_run: TrainResult, registry: Registry, tmp_path: Path
) -> None:
    again = train_table(
        client_table(), "churn", "customer_id", registry=registry, models_dir=tmp_path, options=FAST
    )
    assert again.promotion.champion_metrics is not None
    assert again.promotion.champion_metrics["roc_auc"] == pytest.approx(cv_run.metrics["roc_auc"])
    assert "in cross-validation on the same data" in again.promotion.reason
    assert again.promotion.promoted  # same data, same seed: the same model
    other = train_table(
        client_table(seed=1),
        "churn",
        "customer_id",
        registry=registry,
        models_dir=tmp_path,
        options=FAST,
    )
    assert not other.promotion.promoted and "other data" in other.promotion.reason
    assert registry.alias_version(CHALLENGER) == other.version


# ---------------------------------------------------------------------------------- time


def _with_time(n: int = 600) -> pd.DataFrame:
    table = client_table(n, seed=2)
    months = pd.date_range("2023-01-01", periods=12, freq="MS")
    return table.assign(snapshot=np.repeat(months, n // 12)[::-1])  # newest rows first


def test_split_by_time_never_shares_a_time_between_windows() -> None:
    times = pd.Series(np.repeat(pd.date_range("2024-01-01", periods=10, freq="MS"), [7] * 10))
    train, validation, test = split_by_time(times, 0.2, 0.2)
    assert (train.astype(int) + validation + test == 1).all()
    assert times[train].max() < times[validation].min()
    assert times[validation].max() < times[test].min()
    assert test.sum() == 14 and validation.sum() == 14  # 2 whole months each


def test_time_column_gives_an_out_of_time_run(registry: Registry, tmp_path: Path) -> None:
    result = train_table(
        _with_time(),
        "churn",
        "customer_id",
        "snapshot",
        registry=registry,
        models_dir=tmp_path,
        options=FAST,
    )
    w = result.windows.set_index("window")
    assert w.loc["train", "end"] < w.loc["validation", "start"]
    assert w.loc["validation", "end"] < w.loc["test", "start"]
    assert w["rows"].sum() == 600
    assert "snapshot" not in result.model.feature_names
    run = registry.client.get_run(result.run_id).data
    assert "out-of-time" in run.tags["evaluation"]
    assert run.params["test_start"] == str(w.loc["test", "start"])
    assert result.metrics["roc_auc"] == pytest.approx(run.metrics["test_roc_auc"])
    # the champion (a cross-validated model for the same label) was re-scored on the test rows
    assert result.promotion.champion_metrics is not None
    aliases = registry.version_info(result.version or 0).aliases
    assert aliases == ((CHAMPION,) if result.promotion.promoted else (CHALLENGER,))


# ---------------------------------------------------------------------------------- CLI


def test_cli_table_and_data_are_mutually_exclusive(tmp_path: Path) -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["train", "--table", "t.csv", "--data", "x", "--label", "c", "--id", "i"])
    assert code == 2 and "mutually exclusive" in err.getvalue()
    with redirect_stderr(err):
        code = main(["train", "--data", "x", "--label", "c", "--positive", "left"])
    assert code == 2 and "--label, --positive: only with --table" in err.getvalue()
    with redirect_stderr(err):
        code = main(["train", "--data", "x", "--keep", "status"])
    assert code == 2 and "--keep: only with --table" in err.getvalue()
    with redirect_stderr(err):
        assert main(["train", "--table", "t.csv"]) == 2
    assert "--label" in err.getvalue()


def test_cli_trains_on_a_csv_table(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clients.csv"
    client_table(150, seed=3).to_csv(path, index=False)  # < 50 churned: logistic only, quick
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURNGUARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    out = io.StringIO()
    args = ["train", "--table", str(path), "--label", "churn", "--id", "customer_id"]
    with redirect_stdout(out):
        assert (
            main([*args, "--experiment", "flat-cli", "--cv-folds", "2", "--cv-repeats", "1"]) == 0
        )
    printed = out.getvalue()
    assert CV_NOTE in printed and "(2 folds x 1 repeats" in printed
    version = registry.versions()[0].version
    assert f"Registered model churnguard version {version}" in printed
    assert registry.version_info(version).aliases in ((CHAMPION,), (CHALLENGER,))


def test_promote_wants_force_for_a_model_no_better_than_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = client_table(300, seed=4)
    table["churn"] = np.random.default_rng(4).permutation(table["churn"].to_numpy())  # noise
    path = tmp_path / "noise.csv"
    table.to_csv(path, index=False)
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURNGUARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    previous = mlflow.get_tracking_uri()
    try:
        args = ["train", "--table", str(path), "--label", "churn", "--id", "customer_id"]
        assert main([*args, "--cv-folds", "2", "--cv-repeats", "1"]) == 0
        trained = capsys.readouterr().out
        assert "-> challenger: not promoted, no better than chance" in trained
        assert main(["promote", "1"]) == 1
        err = capsys.readouterr().err
        assert "version 1 stays as it is: its training run found it no better than chance" in err
        assert "--force" in err
        assert main(["models"]) == 0
        listing = capsys.readouterr().out
        assert "cross-validation 2x1" in listing and "champion" not in listing
        assert main(["promote", "1", "--force"]) == 0
        assert "champion -> version 1" in capsys.readouterr().out
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)
