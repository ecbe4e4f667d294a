"""The `churnguard` command itself: its parser, its errors, and the jobs no other module tests."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from argparse import SUPPRESS
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from churnguard import cli
from churnguard.cli import parser as cli_parser
from churnguard.config import Settings

COMMANDS = ("demo-data", "validate", "features", "train", "models", "promote", "score", "serve")


def test_every_command_has_help_and_an_entry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in (*COMMANDS, "keys"):
        assert command in out
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: churnguard" in capsys.readouterr().out


def _sub_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every sub-command's path and parser, nested ones (keys create, ...) included."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _sub_commands(sub, (*path, name))


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"churnguard {cli_parser.version()}"
    assert cli_parser.version() == metadata.version("churnguard")


def test_every_sub_command_has_a_summary_defaults_and_an_example() -> None:
    commands = dict(_sub_commands(cli_parser.build_parser()))
    assert {("alerts",), ("export",), ("keys", "create"), ("keys", "revoke")} <= set(commands)
    formatter = cli_parser._HelpFormatter("churnguard")
    for path, parser in commands.items():
        text = parser.format_help()
        summary = str(parser.description).splitlines()[0]
        assert summary.endswith(".") and len(summary) < 80, path
        assert "\nexample" in text and f"churnguard {' '.join(path)}" in text, path
        for action in parser._actions:
            shown = action.option_strings and action.default not in (None, False, SUPPRESS)
            if shown and action.dest != "help":
                assert "default" in (formatter._get_help_string(action) or ""), (path, action.dest)
    serve = commands[("serve",)].format_help()
    assert "(default: 127.0.0.1)" in serve and "(default: 8000)" in serve
    assert "(default: %" not in serve and "default: None" not in serve


def test_help_imports_no_heavy_library() -> None:
    # `churnguard --help` answers at once: the command module loads pandas, MLflow & co. lazily
    code = (
        "import sys, churnguard.cli as c; c.build_parser().format_help(); "
        "print(sorted(m for m in ('pandas', 'numpy', 'mlflow', 'sqlalchemy', 'fastapi', "
        "'sklearn', 'lightgbm') if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def _registered_store(home: Path) -> Settings:
    """A home whose MLflow store (SQLite) has a model with two versions, the second champion."""
    from churnguard.modeling.registry import CHAMPION, Registry

    settings = Settings(home=home, mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    client = Registry.from_settings(settings).client
    run_id = client.create_run(client.create_experiment("cli")).info.run_id
    client.log_metric(run_id, "test_roc_auc", 0.75)
    client.log_param(run_id, "kind", "logistic")
    client.create_registered_model("churnguard")
    for _ in range(2):
        client.create_model_version("churnguard", f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias("churnguard", CHAMPION, "2")
    return settings


def test_models_lists_the_same_with_or_without_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a local store of a known schema is read directly; any other through MLflow's client
    from churnguard.modeling import versions

    settings = _registered_store(tmp_path)
    listings = []
    for known in (versions.KNOWN_REVISIONS, frozenset()):  # direct, then through MLflow
        monkeypatch.setattr(versions, "KNOWN_REVISIONS", known)
        assert cli.models.models(argparse.Namespace(), settings) == 0
        listings.append(capsys.readouterr().out)
    assert listings[0] == listings[1]
    assert "champion" in listings[0] and "0.7500" in listings[0] and "logistic" in listings[0]


def test_models_on_a_local_store_imports_neither_mlflow_nor_spark(tmp_path: Path) -> None:
    # a local store of a known schema is read with sqlite3 alone (MLflow would import pyspark)
    _registered_store(tmp_path)
    code = (
        "import sys; from churnguard import cli; code = cli.main(['models']); "
        "print(code, 'mlflow' in sys.modules, 'pyspark' in sys.modules)"
    )
    env = {**os.environ, "CHURNGUARD_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)  # the home's own store
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert found.stdout.splitlines()[-1] == "0 False False"
    assert "champion" in found.stdout and "0.7500" in found.stdout


def test_a_bad_argument_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["features", "--data", "x", "--as-of", "next tuesday"])
    assert exit_.value.code == 2
    assert "--as-of: not a date" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo-data", "--clients", "0"])
    assert exit_.value.code == 2
    assert "must be a positive whole number" in capsys.readouterr().err


def test_as_of_dates_are_read_as_utc() -> None:
    assert cli_parser._date("2025-03-01") == pd.Timestamp("2025-03-01", tz="UTC")
    assert cli_parser._date("2025-03-01T02:00:00+02:00") == pd.Timestamp("2025-03-01", tz="UTC")


def test_missing_data_is_one_line_on_stderr_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["features", "--data", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_invalid_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHURNGUARD_HORIZON_DAYS", "-3")
    assert cli.main(["models"]) == 1
    err = capsys.readouterr().err
    assert "invalid settings" in err and "horizon_days" in err


def test_demo_data_then_features_writes_one_row_per_active_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    assert cli.main(["demo-data", "--out", str(demo), "--clients", "60", "--months", "14"]) == 0
    out = capsys.readouterr().out
    assert f"Wrote demo CRM data to {demo}" in out and "contracts" in out
    assert cli.main(["validate", "--data", str(demo)]) == 0
    table_file = tmp_path / "features" / "f.parquet"
    assert cli.main(["features", "--data", str(demo), "--out", str(table_file)]) == 0
    table = pd.read_parquet(table_file)
    assert f"Wrote features of {len(table):,} clients" in capsys.readouterr().out
    assert 0 < len(table) <= 60
    assert table["client_id"].is_unique
    assert not list(table_file.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_the_module_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "churnguard.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "Churn-risk prediction" in done.stdout
