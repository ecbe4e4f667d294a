"""Settings: read from CHURNGUARD_* variables, checked, and passed on to what uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from churnguard import cli
from churnguard.config import Settings
from churnguard.modeling.model import model_card, save_local_model
from churnguard.scoring.loading import load_scorer
from tests.factories import PARAMS, ModelFactory


def test_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("CHURNGUARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURNGUARD_MAX_CLIENTS_PER_REQUEST", "7")
    monkeypatch.setenv("CHURNGUARD_KEY_CACHE_SECONDS", "0")
    monkeypatch.setenv("CHURNGUARD_RISK_BANDS", "[0.2, 0.6]")
    settings = Settings()
    assert settings.max_clients_per_request == 7
    assert settings.key_cache_seconds == 0
    assert settings.risk_bands == (0.2, 0.6)
    assert settings.crm_source == tmp_path / "home" / "demo"
    assert Settings(crm_data="sqlite:///crm.db").crm_source == "sqlite:///crm.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("risk_bands", (0.3, 0.1)),
        ("risk_bands", (0.0, 0.5)),
        ("max_clients_per_request", 0),
        ("max_body_bytes", -1),
        ("key_cache_seconds", -1),
    ],
)
def test_impossible_settings_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})


def test_the_command_line_names_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHURNGUARD_RISK_BANDS", "[0.5, 0.2]")
    assert cli.main(["models"]) == 1
    assert "risk_bands" in capsys.readouterr().err


def test_the_scorer_bands_with_the_configured_thresholds(
    make_model: ModelFactory, tmp_path: Path
) -> None:
    model = make_model("logistic", PARAMS["logistic"])
    save_local_model(model, model_card(model, 3, "run"), tmp_path / "models")
    settings = Settings(
        home=tmp_path,
        models_dir=tmp_path / "models",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        risk_bands=(0.2, 0.6),
    )
    scorer = load_scorer(settings)
    assert scorer.thresholds == (0.2, 0.6)


def test_env_example_lists_every_setting() -> None:
    # .env.example is the settings' documentation: a setting missing there is a setting nobody
    # finds. The MLflow URI is read under MLflow's own name.
    text = (Path(__file__).parents[1] / ".env.example").read_text()
    names = {n: f"CHURNGUARD_{n.upper()}" for n in Settings.model_fields}
    names["mlflow_tracking_uri"] = "MLFLOW_TRACKING_URI"
    missing = [variable for variable in names.values() if f"{variable}=" not in text]
    assert not missing, f"not in .env.example: {missing}"
