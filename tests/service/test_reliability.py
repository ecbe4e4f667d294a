"""The service's reliability suite: fuzzing, kill -9, a database outage, and every book.

- schemathesis fuzzes ``churnguard serve`` (uvicorn in a subprocess, over HTTP) on SQLite and on
  PostgreSQL: at least ``FUZZ_REQUESTS`` requests each (cases generated once from the OpenAPI
  document, valid and invalid, each sent with a key of every role and without one), none
  answered with a 5xx or with a status the document does not list for the operation.
- kill -9 of the server under concurrent scoring, then a restart: every score answered 200 is
  in the store.
- the PostgreSQL connection cut under load (a TCP proxy in front of the database, closed then
  reopened): 503 with ``Retry-After`` while it is down, every score answered 200 stored, and
  scoring again afterwards without a restart.
- the cross-book matrix: every manager's key against every other manager's clients on every
  endpoint, API and dashboard, reads and writes: nothing shown, nothing written.

The PostgreSQL cases skip without ``CHURNGUARD_TEST_POSTGRES_URL`` (``bash scripts/postgres.sh``
starts a server and prints one). The whole module runs in a few minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import hypothesis
import pytest
import requests
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from churnguard.modeling.model import model_card, save_local_model
from churnguard.service import create_app
from churnguard.service.schemas import SCORE_REQUEST_EXAMPLE
from churnguard.store import keys
from churnguard.store.scores import ScoreRecord, ScoreStore
from tests.factories import POSTGRES_ENV, ModelFactory, TcpRelay, settings_for

pytestmark = pytest.mark.slow

START_SECONDS = 180  # a cold start imports MLflow and creates its store (on a busy machine)
FUZZ_REQUESTS = 2_000  # fuzzed requests per backend, at least
FUZZ_BUDGET = {  # generated cases per operation and generation mode (valid, invalid)
    ("POST", "/api/v1/score"): 40,
    ("GET", "/api/v1/clients"): 90,
    ("GET", "/api/v1/clients/{client_id}"): 60,
    ("POST", "/api/v1/clients/{client_id}/actions"): 90,
    ("POST", "/api/v1/model/reload"): 1,
}
FUZZ_OTHERS = 10  # per mode, for the operations with few inputs
LOAD_THREADS = 32
AS_OF = "2025-06-30T00:00:00Z"


# ---------------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """``churnguard serve`` in a subprocess, on a free loopback port, for one churnguard home."""

    home: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / f"serve-{self.port}.log"

    def start(self) -> Server:
        settings = settings_for(self.home)
        env = {
            **os.environ,
            "CHURNGUARD_HOME": str(self.home),
            "CHURNGUARD_MODELS_DIR": str(settings.models_dir),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "CHURNGUARD_DATABASE_URL": self.database_url,
            "CHURNGUARD_MODEL_RETRY_SECONDS": "0",
            **self.env,
        }
        command = [sys.executable, "-m", "churnguard.cli", "serve", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def kill(self) -> None:
        """kill -9: no graceful stop, nothing written on the way out."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"not ready within {START_SECONDS} s:\n{self.log.read_text()[-3000:]}")


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def database(backend: str, home: Path) -> Iterator[str]:
    """A score store URL with an empty schema: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{home / 'scores.db'}"
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/postgres.sh starts a server, prints one)")
    schema = f"reliability_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory, make_model: ModelFactory) -> Path:
    """A models folder holding a last-known-good copy (version 3): every server here serves it."""
    home = tmp_path_factory.mktemp("reliable-model")
    model = make_model("lightgbm", {"num_leaves": 4})
    save_local_model(model, model_card(model, 3, None), settings_for(home).models_dir)
    return home


def new_home(tmp_path: Path, model_home: Path) -> Path:
    """A churnguard home of its own whose models folder is the shared local copy."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_home / "models", target_is_directory=True)
    return home


def make_keys(url: str, managers: list[str]) -> dict[str, str]:
    """A key per role, and one per manager (named by the manager)."""
    with ScoreStore(url) as store:
        store.create()
        made = {role: keys.create_key(store, role) for role in ("crm", "admin")}
        made.update({m: keys.create_key(store, "manager", m) for m in managers})
        return made


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------------------- fuzzing


@dataclass(frozen=True)
class FuzzCase:
    """One generated request, and the statuses its operation documents."""

    label: str
    documented: frozenset[str]
    case: Any


@dataclass
class FuzzReport:
    """What the fuzzed requests were answered: counts, and a few of each kind of failure."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    undocumented: list[str] = field(default_factory=list)

    def note(self, fuzzed: FuzzCase, status: int, detail: str) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status >= 500 and (status != 503 or "503" not in fuzzed.documented):
            self.server_errors.append(f"{fuzzed.label} -> {status}: {detail[:300]}")
        elif str(status) not in fuzzed.documented:
            documented = sorted(fuzzed.documented)
            self.undocumented.append(f"{fuzzed.label} -> {status} (documented {documented})")


@pytest.fixture(scope="module")
def fuzz_cases(tmp_path_factory: pytest.TempPathFactory) -> list[FuzzCase]:
    """Valid and invalid requests for every operation of the app's OpenAPI document.

    Generated once and sent to every backend's server, each with a key of every role and
    without one: generating (not answering) is what costs here.
    """
    app = create_app(settings_for(tmp_path_factory.mktemp("fuzz-schema")))
    schema = schemathesis.openapi.from_dict(app.openapi())
    cases: list[FuzzCase] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        method = operation.method.upper()
        label = f"{method} {operation.path}"
        documented = frozenset(operation.definition.raw["responses"])
        budget = FUZZ_BUDGET.get((method, operation.path), FUZZ_OTHERS)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            found = _examples(operation.as_strategy(generation_mode=mode), budget)
            cases += [FuzzCase(label, documented, case) for case in found]
    return cases


def _examples(strategy: Any, n: int) -> list[Any]:
    """Up to n examples of the strategy (fewer when it has fewer to give)."""
    found: list[Any] = []

    @hypothesis.settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        found.append(case)

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()
    return found


def fuzz(url: str, cases: list[FuzzCase], keys: list[dict[str, str] | None]) -> FuzzReport:
    """Send every case with each of ``keys`` (None: no key) and note the answers."""
    report = FuzzReport()
    with requests.Session() as session:
        for fuzzed in cases:
            for key in keys:
                answer = fuzzed.case.call(base_url=url, session=session, headers=key, timeout=60)
                report.note(fuzzed, answer.status_code, answer.text)
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fuzzed_requests_get_no_server_error_and_no_undocumented_status(
    backend: str, tmp_path: Path, model_home: Path, fuzz_cases: list[FuzzCase]
) -> None:
    home = new_home(tmp_path, model_home)
    with database(backend, home) as url:
        made = make_keys(url, ["Ann Example"])
        with serving(Server(home, url)) as server:
            crm = bearer(made["crm"])
            example = httpx.post(
                f"{server.url}/api/v1/score", json=SCORE_REQUEST_EXAMPLE, headers=crm
            )
            assert example.status_code == 200, example.text  # a client to find, act on
            roles = [bearer(made["admin"]), crm, bearer(made["Ann Example"]), None]
            report = fuzz(server.url, fuzz_cases, roles)
        log = server.log.read_text()
    statuses = dict(sorted(report.statuses.items()))
    summary = (
        f"{len(fuzz_cases)} cases x {len(roles)} keys = {report.requests} requests, {statuses}"
    )
    assert report.requests >= FUZZ_REQUESTS, summary
    unhandled = log[log.find("unhandled error") :][:4000]
    assert not report.server_errors, (summary, report.server_errors[:10], unhandled)
    assert not report.undocumented, (summary, report.undocumented[:10])
    print(f"fuzzed on {backend}: {summary}")


# ---------------------------------------------------------------------------------- load


@dataclass
class Load:
    """Scorers posting one new client each per request until stopped; what they were answered."""

    url: str
    key: str
    answered: list[tuple[str, float, str]] = field(default_factory=list)  # 200: id, p, version
    refused: list[tuple[float, int, str | None]] = field(default_factory=list)  # t, status, R-A
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, threads: int) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(threads)
        for n in range(threads):
            pool.submit(self._score, n)
        return pool

    def _score(self, n: int) -> None:
        with httpx.Client(base_url=self.url, headers=bearer(self.key), timeout=30) as client:
            for i in range(1_000_000):
                if self.stop.is_set():
                    return
                client_id = f"L{n}-{i}-{uuid.uuid4().hex[:6]}"
                body = {**SCORE_REQUEST_EXAMPLE, "as_of": AS_OF}
                body["clients"] = [{**SCORE_REQUEST_EXAMPLE["clients"][0], "client_id": client_id}]
                try:
                    answer = client.post("/api/v1/score", json=body)
                except httpx.TransportError:  # the server is gone (kill -9): try again
                    time.sleep(0.05)
                    continue
                self._note(client_id, answer)

    def _note(self, client_id: str, answer: httpx.Response) -> None:
        with self._lock:
            if answer.status_code == 200:
                score = answer.json()["scores"][0]
                self.answered.append((client_id, score["probability"], score["model_version"]))
            else:
                retry = answer.headers.get("retry-after")
                self.refused.append((time.monotonic(), answer.status_code, retry))


def unstored(url: str, answered: list[tuple[str, float, str]]) -> list[str]:
    """The answered scores that are not in the store."""
    missing = []
    with ScoreStore(url) as store:
        for client_id, probability, version in answered:
            history = store.client_history(client_id)
            if not any(
                s.model_version == version and abs(s.probability - probability) < 1e-9
                for s in history
            ):
                missing.append(client_id)
    return missing


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_after_kill_9_under_load_every_answered_score_is_stored(
    backend: str, tmp_path: Path, model_home: Path
) -> None:
    home = new_home(tmp_path, model_home)
    with database(backend, home) as url:
        crm = make_keys(url, [])["crm"]
        server = Server(home, url, env={"CHURNGUARD_MAX_SCORING_IN_FLIGHT": "64"}).start()
        try:
            load = Load(server.url, crm)
            pool = load.run(LOAD_THREADS)
            _wait_for(lambda: len(load.answered) >= 100, 60, "100 scores answered")
            server.kill()
            load.stop.set()
            pool.shutdown()
        finally:
            server.stop()
        answered = list(load.answered)
        with serving(Server(home, url)) as again:  # a restart finds the store as it was left
            assert httpx.get(f"{again.url}/health/ready").status_code == 200
        missing = unstored(url, answered)
    assert not missing, f"{len(missing)} of {len(answered)} answered scores lost: {missing[:5]}"


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.02)


def test_past_the_scoring_bound_a_request_is_503_at_once_and_health_is_unaffected(
    tmp_path: Path, model_home: Path
) -> None:
    home = new_home(tmp_path, model_home)
    with database("sqlite", home) as url:
        crm = make_keys(url, [])["crm"]
        env = {"CHURNGUARD_MAX_SCORING_IN_FLIGHT": "4"}
        with serving(Server(home, url, env=env)) as server:
            _, idle = _probe(server.url, crm, 20)  # what a request costs here without load
            load = Load(server.url, crm)
            pool = load.run(16)  # 16 scorers, each retrying at once, against a bound of 4
            _wait_for(lambda: len(load.refused) >= 20, 60, "requests refused")
            shed, live = _probe(server.url, crm, 40)
            load.stop.set()
            pool.shutdown()
    assert {status for _, status, _ in load.refused[:20]} == {503}
    assert all(retry == "1" for _, _, retry in load.refused)
    refused = sorted(seconds for status, seconds in shed if status == 503)
    assert len(refused) >= 10, shed  # the bound was full for most probes
    # How fast is printed for the record, not asserted (shared machines are noisy: bench/ measures
    # it side by side); test_faults shows the 503 comes while the bound's requests are still held.
    p50, p50_live, p50_idle = (sorted(x)[len(x) // 2] for x in (refused, live, idle))
    print(
        f"overload: 503 p50 {1000 * p50:.1f} ms, /health/live p50 {1000 * p50_live:.1f} ms "
        f"(idle /health/live p50 {1000 * p50_idle:.1f} ms)"
    )


def _probe(url: str, key: str, n: int) -> tuple[list[tuple[int, float]], list[float]]:
    """n score requests and n health checks, one at a time: (status, seconds), seconds."""
    shed, live = [], []
    body = {**SCORE_REQUEST_EXAMPLE, "as_of": AS_OF}
    with httpx.Client(base_url=url, headers=bearer(key), timeout=30) as client:
        for _ in range(n):
            start = time.perf_counter()
            status = client.post("/api/v1/score", json=body).status_code
            shed.append((status, time.perf_counter() - start))
            start = time.perf_counter()
            assert client.get("/health/live").status_code == 200
            live.append(time.perf_counter() - start)
    return shed, live


# ---------------------------------------------------------------------------------- outage


def test_a_postgresql_outage_under_load_is_503_loses_nothing_and_recovers(
    tmp_path: Path, model_home: Path
) -> None:
    home = new_home(tmp_path, model_home)
    with database("postgresql", home) as direct:
        crm = make_keys(direct, [])["crm"]
        proxy = TcpRelay(direct)  # cut and restored: an outage without stopping the server
        proxy.start()
        url = proxy.url
        env = {"CHURNGUARD_MAX_SCORING_IN_FLIGHT": "64", "CHURNGUARD_KEY_CACHE_SECONDS": "1"}
        with serving(Server(home, url, env=env)) as server:
            load = Load(server.url, crm)
            pool = load.run(16)
            _wait_for(lambda: len(load.answered) >= 50, 60, "50 scores answered")
            proxy.cut()
            cut_at = time.monotonic()
            time.sleep(3)
            ready_during = httpx.get(f"{server.url}/health/ready", timeout=10)
            time.sleep(3)
            proxy.start()
            restored_at, before = time.monotonic(), len(load.answered)
            _wait_for(lambda: len(load.answered) >= before + 50, 60, "scoring after the outage")
            recovered = time.monotonic() - restored_at
            load.stop.set()
            pool.shutdown()
        during = [(status, retry) for t, status, retry in load.refused if cut_at < t < restored_at]
        missing = unstored(direct, load.answered)
    assert during and {status for status, _ in during} == {503}, Counter(during)
    assert all(retry is not None for _, retry in during)
    assert ready_during.status_code == 503, ready_during.text
    assert not missing, f"{len(missing)} of {len(load.answered)} answered scores lost"
    print(f"outage: {len(during)} answered 503 while cut; scoring again {recovered:.1f} s after")


# ---------------------------------------------------------------------------------- books


MANAGERS = ["Ann Archer", "Bo Baker", "Cy Cole"]
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def _book_record(client_id: str, manager: str) -> ScoreRecord:
    return ScoreRecord(
        client_id=client_id,
        as_of=datetime(2025, 6, 1, tzinfo=UTC),
        model_version="3",
        probability=0.42,
        band="high",
        revenue_at_risk=5040.0,
        monthly_value=1000.0,
        feature_digest="0" * 64,
        change={"direction": "new"},
        account_manager=manager,
        client_name=f"Secret name of {client_id}",
        segment="smb",
    )


@pytest.fixture
def books(tmp_path: Path, model_home: Path) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    """An app whose store holds three managers' books of two clients each, and their keys."""
    home = new_home(tmp_path, model_home)
    settings = settings_for(home).model_copy(update={"key_cache_seconds": 0})
    made = make_keys(settings.score_store_url, MANAGERS)
    with ScoreStore(settings.score_store_url) as store:
        store.save_scores([_book_record(c, m) for m in MANAGERS for c in _clients_of(m)])
    app = create_app(settings)
    base = "https://testserver"  # the dashboard's cookies are Secure
    with TestClient(app, base_url=base, follow_redirects=False) as client:
        yield client, made, home


def _clients_of(manager: str) -> list[str]:
    return [f"{manager.split()[0].upper()}-{i}" for i in (1, 2)]


def test_no_manager_sees_or_writes_another_managers_clients_anywhere(
    books: tuple[TestClient, dict[str, str], Path],
) -> None:
    client, made, home = books
    url = settings_for(home).score_store_url
    probes, leaks = 0, []
    for manager in MANAGERS:
        session = _dashboard(client, made[manager])
        _sees_own_book(client, manager, made[manager], session)  # the probes below can fail
        for other in (m for m in MANAGERS if m != manager):
            for client_id in _clients_of(other):
                found = _probes(client, manager, made, session, client_id, other)
                for name, leaked in found:
                    probes += 1
                    if leaked:
                        leaks.append(f"{manager} -> {client_id}: {name}: {leaked}")
    with ScoreStore(url) as store:
        written = [c for m in MANAGERS for c in _clients_of(m) if store.list_actions(c)]
    assert probes == len(MANAGERS) * (len(MANAGERS) - 1) * 2 * 11
    assert not leaks, leaks[:10]
    assert not written, written


def _sees_own_book(client: TestClient, manager: str, key: str, session: dict[str, str]) -> None:
    own = _clients_of(manager)[0]
    assert client.get(f"/api/v1/clients/{own}", headers=bearer(key)).status_code == 200
    listed = client.get("/api/v1/clients", headers=bearer(key)).json()["items"]
    assert {item["client_id"] for item in listed} == set(_clients_of(manager))
    client.cookies.update({k: v for k, v in session.items() if k != "csrf"})
    page = client.get(f"/clients/{own}")
    listing = client.get("/clients")
    client.cookies.clear()
    assert page.status_code == 200 and f"Secret name of {own}" in page.text
    assert f'href="/clients/{own}"' in listing.text or f'data-client-id="{own}"' in listing.text
    assert session["csrf"]


def _dashboard(client: TestClient, key: str) -> dict[str, str]:
    """Sign in; returns the session cookies and the CSRF token of the signed-in pages."""
    client.cookies.clear()
    token = CSRF_FIELD.search(client.get("/sign-in").text).group(1)  # type: ignore[union-attr]
    answer = client.post("/sign-in", data={"api_key": key, "csrf": token, "next": "/clients"})
    assert answer.status_code == 303, answer.text
    cookies = dict(client.cookies)
    page = client.get("/clients")
    csrf = CSRF_FIELD.search(page.text)
    client.cookies.clear()
    return {**cookies, "csrf": csrf.group(1) if csrf else ""}


def _probes(
    client: TestClient,
    manager: str,
    made: dict[str, str],
    session: dict[str, str],
    client_id: str,
    owner: str,
) -> Iterator[tuple[str, str | None]]:
    """(endpoint, what leaked or None) for one manager's probes of another's client."""
    api = bearer(made[manager])
    action = {"type": "Call", "note": "probe", "date": "2025-06-02"}
    answers = {
        "api detail": client.get(f"/api/v1/clients/{client_id}", headers=api),
        "api action": client.post(f"/api/v1/clients/{client_id}/actions", json=action, headers=api),
        "api search": client.get("/api/v1/clients", params={"search": client_id}, headers=api),
        "api manager filter": client.get("/api/v1/clients", params={"manager": owner}, headers=api),
        "api list": client.get("/api/v1/clients", params={"limit": 500}, headers=api),
        "api score": client.post("/api/v1/score", json=_claim(client_id, manager), headers=api),
    }
    client.post("/api/v1/score", json=_claim(client_id, manager), headers=bearer(made["crm"]))
    answers["api detail after a crm claim"] = client.get(
        f"/api/v1/clients/{client_id}", headers=api
    )
    form = {"csrf": session["csrf"], "type": "Call", "note": "probe", "happened_on": "2025-06-02"}
    client.cookies.update({k: v for k, v in session.items() if k != "csrf"})
    answers["page"] = client.get(f"/clients/{client_id}")
    answers["page action"] = client.post(f"/clients/{client_id}/actions", data=form)
    answers["page search"] = client.get("/clients", params={"q": client_id})
    answers["page manager filter"] = client.get("/clients", params={"manager": owner})
    client.cookies.clear()
    for name, answer in answers.items():
        yield name, _leak(name, answer, client_id)


def _claim(client_id: str, manager: str) -> dict[str, Any]:
    """A score request for another's client that says it is this manager's."""
    records = {**SCORE_REQUEST_EXAMPLE["clients"][0], "client_id": client_id}
    records["client"] = {**records.get("client", {}), "account_manager": manager}
    return {**SCORE_REQUEST_EXAMPLE, "as_of": AS_OF, "clients": [records]}


def _leak(name: str, answer: Any, client_id: str) -> str | None:
    """What an answer gives away about another manager's client, or None."""
    if answer.status_code >= 500:
        return f"{answer.status_code}"
    if "action" in name and answer.status_code < 400:
        return f"{answer.status_code}: an action was accepted"
    if f"Secret name of {client_id}" in answer.text:
        return f"{answer.status_code}: the client's name"
    shown = (f'data-client-id="{client_id}"', f'href="/clients/{client_id}"')
    if answer.status_code == 200 and any(s in answer.text for s in shown):
        return "the client listed"
    if answer.status_code == 200 and "json" in answer.headers.get("content-type", ""):
        ids = [item.get("client_id") for item in answer.json().get("items", [])]
        if client_id in ids or answer.json().get("client_id") == client_id:
            return "the client listed"
    return None
