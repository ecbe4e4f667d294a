"""The service over real HTTP: `churnguard serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from churnguard.modeling.model import model_card, save_local_model
from churnguard.service.schemas import SCORE_REQUEST_EXAMPLE
from churnguard.store import keys
from churnguard.store.scores import ScoreStore
from tests.factories import ModelFactory, settings_for

START_SECONDS = 90  # a cold start imports MLflow and creates its store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, make_model: ModelFactory) -> Path:
    """A churnguard home whose only model is a last-known-good local copy (version 3)."""
    home = tmp_path_factory.mktemp("served")
    model = make_model("lightgbm", {"num_leaves": 4})
    save_local_model(model, model_card(model, 3, None), settings_for(home).models_dir)
    return home


@pytest.fixture(scope="module")
def api_key(home: Path) -> str:
    with ScoreStore(settings_for(home).score_store_url) as store:
        return keys.create_key(store.create(), "crm")


@pytest.fixture(scope="module")
def server(home: Path, api_key: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`churnguard serve` on a free port; yields (base URL, process) once it is ready."""
    settings = settings_for(home)
    port = _free_port()
    env = {
        **os.environ,
        "CHURNGUARD_HOME": str(home),
        "CHURNGUARD_MODELS_DIR": str(settings.models_dir),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
    }
    command = [sys.executable, "-m", "churnguard.cli", "serve", "--port", str(port)]
    log = home / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server was not ready within {START_SECONDS} s")


def test_health_over_http(server: tuple[str, Any]) -> None:
    url, _ = server
    assert httpx.get(f"{url}/health/live").json() == {"status": "ok"}
    assert httpx.get(f"{url}/health/ready").json() == {
        "status": "ready",
        "model_version": "local:3",
    }


def test_a_score_request_over_http(server: tuple[str, Any], api_key: str) -> None:
    url, _ = server
    headers = {"Authorization": f"Bearer {api_key}"}
    answer = httpx.post(f"{url}/api/v1/score", json=SCORE_REQUEST_EXAMPLE, headers=headers)
    assert answer.status_code == 200, answer.text
    scored = answer.json()["scores"][0]
    assert scored["client_id"] == "C-1042" and 0 <= scored["probability"] <= 1
    assert scored["model_version"] == "local:3"


def test_auth_and_size_failures_over_http(server: tuple[str, Any], api_key: str) -> None:
    url, _ = server
    answer = httpx.post(f"{url}/api/v1/score", json=SCORE_REQUEST_EXAMPLE)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    answer = httpx.post(
        f"{url}/api/v1/score", json=SCORE_REQUEST_EXAMPLE, headers={"X-API-Key": "cg_x_y"}
    )
    assert answer.status_code == 401 and "cg_x_y" not in answer.text
    big = b"[" + b" " * (3 * 1024 * 1024) + b"]"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    answer = httpx.post(f"{url}/api/v1/score", content=big, headers=headers)
    assert answer.status_code == 413


def test_scores_are_written_before_the_server_stops(
    server: tuple[str, subprocess.Popen[bytes]], api_key: str, home: Path
) -> None:
    url, process = server
    one = {**SCORE_REQUEST_EXAMPLE["clients"][0], "client_id": "C-LAST"}
    headers = {"Authorization": f"Bearer {api_key}"}
    answer = httpx.post(f"{url}/api/v1/score", json={"clients": [one]}, headers=headers)
    assert answer.status_code == 200
    process.send_signal(signal.SIGINT)  # a graceful stop writes what is pending
    assert process.wait(timeout=30) == 0
    with ScoreStore(settings_for(home).score_store_url) as store:
        history = store.client_history("C-LAST")  # an API score is history, never "current"
    assert [s.probability for s in history] == [answer.json()["scores"][0]["probability"]]
