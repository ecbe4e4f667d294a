"""Tests for the dashboard (churnguard.service.web) over HTTP with TestClient: sessions, CSRF,
roles, escaping, the pages' content; and its parts: SVG charts, renewal dates, the CRM data cache.

The app runs without a model (pages do not need one) on the simulated business's CRM folder,
with scores written straight into its store for the clients of two account managers. The
browser tests (test_web_browser.py) drive the same pages with a real model in Chromium.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import escape, unescape
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from churnguard.config import Settings
from churnguard.domain.churn import contract_stops
from churnguard.domain.contract import from_frames
from churnguard.domain.coverage import Coverage
from churnguard.domain.data import load_crm
from churnguard.modeling.model import model_card, save_local_model
from churnguard.service import create_app
from churnguard.service.web import charts
from churnguard.service.web import pages as pages_module
from churnguard.service.web.crm import (
    CRMCache,
    CRMView,
    client_contracts,
    client_timeline,
    renewal_dates,
)
from churnguard.service.web.pages import (
    PAGE_SIZE,
    client_page,
    manager_filter,
    stale_scores,
)
from churnguard.service.web.portfolio import (
    MonthStats,
    RiskSummary,
    monthly_portfolio,
    period_portfolio,
)
from churnguard.service.web.portfolio_view import (
    model_metrics,
    model_windows,
    portfolio_charts,
    portfolio_page,
    run_url,
    split_closed,
)
from churnguard.service.web.sessions import SessionStore, SignInLimiter, csrf_token
from churnguard.store import keys
from churnguard.store.attention import attention_conditions
from churnguard.store.export import COLUMNS
from churnguard.store.runs import ScoringRun, record_run
from churnguard.store.scores import ScoreRecord, ScoreStore, ScoreSummary, describe_change
from churnguard.synth.business import SimulatedBusiness
from tests.factories import ModelFactory

BASE = "https://testserver"  # the session cookie is Secure: the test client sends it on https
EVIL_NAME = '<script>alert("x")</script> & Sons'
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Settings:
    home = tmp_path_factory.mktemp("web")
    return Settings(
        home=home,
        models_dir=home / "models",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        crm_data=str(demo_dir),
        model_retry_seconds=0,
    )


@pytest.fixture(scope="module")
def book(business: SimulatedBusiness) -> dict[str, list[str]]:
    """Two account managers with their clients: {manager: [client ids]}."""
    clients = business.data.clients
    managed = clients[clients["account_manager"].fillna("") != ""]
    top = managed["account_manager"].value_counts().index[:2].tolist()
    return {m: managed.loc[managed["account_manager"] == m, "client_id"].tolist() for m in top}


@pytest.fixture(scope="module")
def as_of(business: SimulatedBusiness) -> datetime:
    return business.observed_until.to_pydatetime()


@pytest.fixture(scope="module")
def scored(
    settings: Settings, business: SimulatedBusiness, book: dict[str, list[str]], as_of: datetime
) -> dict[str, ScoreRecord]:
    """Two scores a month apart for each client of the two managers, plus one evil name."""
    names = business.data.clients.set_index("client_id")["name"]
    latest: dict[str, ScoreRecord] = {}
    with ScoreStore(settings.score_store_url) as store:
        store.create()
        for step, when in enumerate((as_of - timedelta(days=30), as_of)):
            records = []
            for manager, ids in book.items():
                for i, client_id in enumerate(ids):
                    p = round(((i * 37 + step * 11) % 100) / 100, 2)
                    records.append(_record(client_id, when, p, manager, names[client_id]))
            records.append(_record("X-EVIL", when, 0.5, next(iter(book)), EVIL_NAME))
            before = store.previous_scores(when)
            records = [_with_change(r, before.get(r.client_id)) for r in records]
            store.save_scores(records)
        latest = {r.client_id: r for r in records}
    return latest


def _record(client_id: str, when: datetime, p: float, manager: str, name: str) -> ScoreRecord:
    return ScoreRecord(
        client_id=client_id,
        as_of=when,
        model_version="7",
        probability=p,
        band="low" if p < 0.1 else "medium" if p < 0.3 else "high",
        revenue_at_risk=p * 1000 * 12,
        monthly_value=1000.0,
        feature_digest="0" * 64,
        change={"direction": "new"},
        account_manager=manager,
        client_name=name,
        segment="mid-market",
        drivers=[
            {
                "feature": "days_since_contact",
                "value": 74,
                "contribution": 0.8,
                "reason": "No contact for 74 days",
            }
        ],
        actions=[{"action": "Schedule a check-in call", "reason": "No contact for 74 days"}],
    )


def _with_change(record: ScoreRecord, previous: ScoreSummary | None) -> ScoreRecord:
    """The record with "what changed" since the previous stored score, as batch scoring says."""
    return dataclasses.replace(record, change=describe_change(previous, record.probability))


@pytest.fixture(scope="module")
def app_client(settings: Settings, scored: dict[str, ScoreRecord]) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"key_cache_seconds": 0}))
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client


@pytest.fixture(scope="module")
def api_keys(settings: Settings, app_client: TestClient, book: dict[str, list[str]]) -> dict:
    managers = list(book)
    with ScoreStore(settings.score_store_url) as store:
        return {
            "a": keys.create_key(store, "manager", managers[0]),
            "b": keys.create_key(store, "manager", managers[1]),
            "admin": keys.create_key(store, "admin"),
            "crm": keys.create_key(store, "crm"),
        }


def sign_in(client: TestClient, key: str) -> TestClient:
    """Sign in through the form; the client keeps the session cookie."""
    client.cookies.clear()
    form = client.get("/sign-in")
    token = CSRF_FIELD.search(form.text).group(1)  # type: ignore[union-attr]
    answer = client.post("/sign-in", data={"api_key": key, "csrf": token, "next": "/clients"})
    assert answer.status_code == 303, answer.text
    return client


def page_csrf(html: str) -> str:
    return CSRF_FIELD.search(html).group(1)  # type: ignore[union-attr]


def listed_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-client-id="([^"]+)"', html)


# ---------------------------------------------------------------------------------- sessions


def test_signing_in_sets_a_secure_http_only_same_site_session_cookie(
    app_client: TestClient, api_keys: dict
) -> None:
    app_client.cookies.clear()
    form = app_client.get("/sign-in")
    assert form.status_code == 200
    pre = form.headers["set-cookie"]
    assert pre.startswith("__Host-churnguard_sign_in=")
    assert all(flag in pre for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"))
    answer = app_client.post(
        "/sign-in", data={"api_key": api_keys["a"], "csrf": page_csrf(form.text), "next": "/"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("__Host-churnguard_session="))
    assert all(flag in session for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"))
    assert "Domain" not in session and "Max-Age=43200" in session
    assert api_keys["a"] not in session  # the cookie holds a session token, not the key


def test_pages_redirect_to_sign_in_without_a_session(app_client: TestClient) -> None:
    app_client.cookies.clear()
    for path in ("/clients", "/clients/C000001", "/portfolio", "/clients?band=high"):
        answer = app_client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/sign-in?next=/clients") or answer.headers[
            "location"
        ].startswith("/sign-in?next=/portfolio")
    app_client.cookies.set("__Host-churnguard_session", "forged", domain="testserver")
    assert app_client.get("/clients").status_code == 303


def test_a_bad_key_or_a_crm_key_cannot_sign_in(app_client: TestClient, api_keys: dict) -> None:
    for key, words in (
        ("cg_0123456789ab_nope", "not valid"),
        (api_keys["crm"], "CRM key cannot sign in"),
    ):
        app_client.cookies.clear()
        form = app_client.get("/sign-in")
        answer = app_client.post("/sign-in", data={"api_key": key, "csrf": page_csrf(form.text)})
        assert answer.status_code == 401
        assert words in answer.text
        assert "churnguard_session" not in answer.headers.get("set-cookie", "")
        assert key not in answer.text


def test_sign_in_needs_its_form_token_and_this_sites_origin(
    app_client: TestClient, api_keys: dict
) -> None:
    app_client.cookies.clear()
    form = app_client.get("/sign-in")
    token = page_csrf(form.text)
    data = {"api_key": api_keys["a"], "csrf": token}
    foreign = app_client.post("/sign-in", data=data, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    app_client.cookies.clear()  # a forged form cannot read or set the sign-in cookie
    assert app_client.post("/sign-in", data=data).status_code == 403
    assert "churnguard_session" not in app_client.cookies.keys().__repr__()


def test_signing_out_ends_the_session(app_client: TestClient, api_keys: dict) -> None:
    sign_in(app_client, api_keys["a"])
    page = app_client.get("/clients")
    cookie = app_client.cookies.get("__Host-churnguard_session")
    assert page.status_code == 200 and cookie
    out = app_client.post("/sign-out", data={"csrf": page_csrf(page.text)})
    assert out.status_code == 303 and out.headers["location"].startswith("/sign-in")
    app_client.cookies.set("__Host-churnguard_session", cookie, domain="testserver")
    assert app_client.get("/clients").status_code == 303  # the old token is dead server-side


def test_a_revoked_key_is_signed_out(app_client: TestClient, settings: Settings) -> None:
    with ScoreStore(settings.score_store_url) as store:
        key = keys.create_key(store, "admin")
        sign_in(app_client, key)
        assert app_client.get("/clients").status_code == 200
        keys.revoke(store, key)
    assert app_client.get("/clients").status_code == 303


# ---------------------------------------------------------------------------------- CSRF


def test_a_post_without_the_csrf_token_is_rejected(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]], settings: Settings
) -> None:
    sign_in(app_client, api_keys["a"])
    client_id = book[next(iter(book))][0]
    page = app_client.get(f"/clients/{client_id}")
    token = page_csrf(page.text)
    action = {"type": "Call", "note": "csrf probe", "happened_on": date.today().isoformat()}
    for data in (action, {**action, "csrf": "0" * 64}, {**action, "csrf": csrf_token("other")}):
        answer = app_client.post(f"/clients/{client_id}/actions", data=data)
        assert answer.status_code == 403
        assert "Form expired" in answer.text
    answer = app_client.post(
        f"/clients/{client_id}/actions",
        data={**action, "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert app_client.post("/sign-out", data={}).status_code == 403
    with ScoreStore(settings.score_store_url) as store:
        assert all(a.note != "csrf probe" for a in store.list_actions(client_id))


# ---------------------------------------------------------------------------------- roles


def test_a_manager_sees_their_own_book_only(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    mine, theirs = (set(ids) for ids in book.values())
    sign_in(app_client, api_keys["a"])
    page = app_client.get("/clients", params={"manager": next(iter(reversed(book)))})
    shown = set(listed_ids(page.text))
    assert shown and shown <= mine | {"X-EVIL"} and not shown & theirs
    other = sorted(theirs)[0]
    for answer in (
        app_client.get(f"/clients/{other}"),
        app_client.get("/clients/NO-SUCH-CLIENT"),
    ):
        assert answer.status_code == 404
        assert "text/html" in answer.headers["content-type"]
        assert "Not found" in answer.text
    token = page_csrf(page.text)
    logged = app_client.post(
        f"/clients/{other}/actions", data={"type": "Call", "csrf": token, "happened_on": ""}
    )
    assert logged.status_code == 404
    api = app_client.get(f"/api/v1/clients/{other}", headers={"X-API-Key": api_keys["a"]})
    assert api.status_code == 404 and api.json()["detail"]  # the API keeps its JSON errors


def test_the_portfolio_is_for_admins(app_client: TestClient, api_keys: dict) -> None:
    sign_in(app_client, api_keys["a"])
    answer = app_client.get("/portfolio")
    assert answer.status_code == 403 and "administrators only" in answer.text
    assert 'href="/portfolio"' not in app_client.get("/clients").text
    sign_in(app_client, api_keys["admin"])
    answer = app_client.get("/portfolio")
    assert answer.status_code == 200
    assert "<svg" in answer.text and "No model is loaded" in answer.text


def test_the_portfolio_marks_months_with_pending_ends_as_provisional(
    app_client: TestClient, api_keys: dict, business: SimulatedBusiness
) -> None:
    months = monthly_portfolio(business.data)
    pending = [m for m in months if m.pending_clients]
    assert pending and pending[-1] is months[-1]  # the data's last month is still open
    sign_in(app_client, api_keys["admin"])
    html = app_client.get("/portfolio").text
    shown = re.findall(r'data-testid="pending">([\d,]+)<', html)
    assert shown == [f"{m.pending_clients:,}" for m in reversed(months)]  # newest first
    rows = re.findall(r"<tr( class=\"provisional\")?><td>", html)
    assert [bool(r) for r in rows] == [bool(m.pending_clients) for m in reversed(months)]
    assert 'data-testid="provisional-note"' in html
    last = months[-1]
    tip = f"{last.month:%b %Y}: {charts.percent(last.churn_rate / 100)} (provisional: "
    assert f"Client churn, {tip}{last.pending_clients:,} end" in html  # the point's tooltip


def test_the_portfolio_headline_is_the_last_closed_month_with_provisional_ones_beside_it(
    app_client: TestClient, api_keys: dict, business: SimulatedBusiness
) -> None:
    months = monthly_portfolio(business.data)
    closed, provisional = split_closed(months)
    assert provisional and provisional[-1] is months[-1] and closed  # the demo's last month
    headline = closed[-1]
    sign_in(app_client, api_keys["admin"])
    html = app_client.get("/portfolio").text
    top = html.split('data-testid="headline"')[1].split("</dl>")[0]
    label = f"{headline.month:%b %Y}"
    assert f'Churn ({label})</dt><dd class="big">{headline.churn_rate:.1f}%' in top
    assert f'Retention ({label})</dt><dd class="big">{headline.retention_rate:.1f}%' in top
    assert "provisional" not in top
    shown = html.split('data-testid="provisional-figures"')
    assert len(shown) == len(provisional) + 1
    last = provisional[-1]
    assert f'{last.month:%B %Y} <span class="tag tag-provisional">provisional' in html
    assert f'Churn so far</dt><dd class="big">{last.churn_rate:.1f}%' in shown[-1]


def test_the_trailing_twelve_months_are_one_period_up_to_the_headline_month(
    app_client: TestClient, api_keys: dict, business: SimulatedBusiness
) -> None:
    months = monthly_portfolio(business.data, months=14)
    closed, _ = split_closed(months)
    window = closed[-12:]
    trailing = period_portfolio(business.data, start=window[0].month, end=_next(window[-1]))
    assert trailing.clients_start == window[0].clients_start
    assert trailing.churned_clients == sum(m.churned_clients for m in window)
    assert trailing.new_clients == sum(m.new_clients for m in window)
    assert trailing.clients_end == window[-1].clients_end
    assert trailing.revenue_churned == pytest.approx(sum(m.revenue_churned for m in window))
    sign_in(app_client, api_keys["admin"])
    html = app_client.get("/portfolio").text
    block = html.split('data-testid="trailing"')[1].split("</dl>")[0]
    assert f"{window[0].month:%b %Y} \N{EN DASH} {window[-1].month:%b %Y}" in html
    assert f'Client churn</dt><dd class="big">{trailing.churn_rate:.1f}%' in block
    assert f"{trailing.churned_clients:,} of {trailing.clients_start:,} clients" in block


def _next(month: MonthStats) -> date:
    """The first day of the month after ``month``."""
    return (pd.Timestamp(month.month) + pd.offsets.MonthBegin(1)).date()


def _portfolio_with_crm(settings: Settings, key: str, files: dict[str, str], tmp: Path) -> str:
    """The portfolio page of an app on the same store whose CRM folder holds ``files``."""
    for name, text in files.items():
        (tmp / name).write_text(text)
    app = create_app(settings.model_copy(update={"crm_data": str(tmp), "key_cache_seconds": 0}))
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        answer = sign_in(client, key).get("/portfolio")
    assert answer.status_code == 200, answer.text
    return answer.text


def test_the_portfolio_renders_without_a_whole_month_of_crm_data(
    settings: Settings, api_keys: dict, scored: dict[str, ScoreRecord], tmp_path: Path
) -> None:
    empty = {
        "clients.csv": "client_id,name,account_manager\n",
        "contracts.csv": "contract_id,client_id,start_date,end_date,monthly_value\n",
    }
    short = {
        "clients.csv": "client_id,name,account_manager\nA,Acme,Ana\nB,Bolt,Ben\n",
        "contracts.csv": "contract_id,client_id,start_date,end_date,monthly_value\n"
        "K1,A,2025-03-05,,100\nK2,B,2025-03-10,2026-03-09,200\n",
    }
    for files, words in (
        (empty, "No CRM data: retention by month is not shown"),
        (short, "does not cover a whole calendar month yet"),
    ):
        folder = tmp_path / str(len(files["contracts.csv"]))
        folder.mkdir()
        html = _portfolio_with_crm(settings, api_keys["admin"], files, folder)
        assert words in html
        assert 'data-testid="chart-retention"' not in html and "By month" not in html
        assert f"{len(scored):,}</dd>" in html  # the risk summary is still there
        assert 'data-testid="chart-histogram"' in html and "No model is loaded" in html


def test_portfolio_figures_of_crm_data_without_any_timestamp_are_replaced_by_a_note(
    settings: Settings, scored: dict[str, ScoreRecord]
) -> None:
    data = from_frames({"clients": pd.DataFrame({"client_id": []}), "contracts": pd.DataFrame()})
    with ScoreStore(settings.score_store_url) as store:
        page = portfolio_page(store, CRMView(data, datetime.now(UTC)), None, (0.1, 0.3), 30)
    assert page.months == [] and page.problem and "no timestamps" in page.problem
    assert page.summary.clients == len(scored)


TRAINED_METRICS = {  # what `churnguard train` records (train.py _metadata)
    "test_roc_auc": 0.8123,
    "test_pr_auc": 0.412,
    "test_brier": 0.0712,
    "test_log_loss": 0.251,
    "test_ece": 0.0123,
    "test_top_decile_lift": 3.456,
    "oracle_roc_auc": 0.85,
    "oracle_ratio": float("nan"),
}


def test_the_portfolio_shows_the_served_models_test_metrics_by_name(
    tmp_path: Path, demo_dir: Path, make_model: ModelFactory
) -> None:
    settings = Settings(
        home=tmp_path,
        models_dir=tmp_path / "models",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        crm_data=str(demo_dir),
        key_cache_seconds=0,
        mlflow_ui_url="http://mlflow.example:5000/",
    )
    model = make_model("logistic", {"C": 0.1})
    model = dataclasses.replace(
        model, metadata={**model.metadata, "metrics": TRAINED_METRICS, **TRAINED_RUN}
    )
    save_local_model(model, model_card(model, 3, None), settings.models_dir)
    with ScoreStore(settings.score_store_url) as store:
        admin = keys.create_key(store.create(), "admin")
    with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as client:
        html = sign_in(client, admin).get("/portfolio").text
    assert "Version <strong>local:3</strong> · logistic" in html
    table = re.search(r'data-testid="model-metrics">(.*?)</table>', html, re.S).group(1)  # type: ignore[union-attr]
    rows = re.findall(r'<th scope="row">([^<]+)<.*?<td class="num">([^<]+)</td><td>([^<]+)<', table)
    assert rows == [
        ("ROC AUC", "0.812", "test window"),
        ("PR AUC", "0.412", "test window"),
        ("Brier score", "0.071", "test window"),
        ("Calibration error", "0.012", "test window"),
        ("Top-decile lift", "3.46\N{MULTIPLICATION SIGN}", "test window"),
        ("Log loss", "0.251", "test window"),
        ("Oracle ROC AUC", "0.850", "\N{EN DASH}"),  # the NaN ratio is left out
    ]
    windows = re.search(r'data-testid="model-windows">(.*?)</table>', html, re.S).group(1)  # type: ignore[union-attr]
    assert 'data-testid="model-base-rate">2.5%<' in windows
    cells = re.findall(r'<th scope="row">([^<]+)</th><td>([^<]+)</td><td>([^<]+)</td>', windows)
    assert cells[0] == ("train", "01 Apr 2023", "01 Mar 2025") and len(cells) == 3
    assert '<td class="num">4,000</td><td class="num">2.0%</td>' in windows
    assert '<a href="http://mlflow.example:5000/#/runs/abc123">open in MLflow</a>' in html
    assert "lightgbm on demo (1,000 clients, 2023-01..2025-12), horizon 90d" in html


TRAINED_RUN = {
    "run_id": "abc123",
    "run_name": "lightgbm on demo (1,000 clients, 2023-01..2025-12), horizon 90d",
    "base_rate": 0.025,
    "windows": [
        {
            "window": "train",
            "start": "2023-04-01",
            "end": "2025-03-01",
            "rows": 4000,
            "churned": 80,
        },
        {"window": "validation", "start": "2025-06-01", "end": "2025-08-01", "rows": 900},
        {"window": "test", "start": "2025-11-01", "end": "2026-01-01", "rows": 0, "churned": 0},
    ],
}


def test_model_windows_and_run_links_of_older_and_odd_models() -> None:
    assert (
        model_windows({}) == [] and run_url(None, "abc") is None and run_url("http://x", "") is None
    )
    (row,) = model_windows({"windows": [{"window": "test", "start": 5, "end": 9}]})
    assert (row.start, row.end, row.rows, row.churn_rate) == ("5", "9", None, None)
    assert run_url("http://x/mlflow", "a/b") == "http://x/mlflow/#/runs/a%2Fb"


def test_model_metrics_of_a_flat_table_model_and_odd_values() -> None:
    rows = model_metrics({"cv_roc_auc": 0.7, "cv_brier": None, "note": "x", "my_metric": 2})
    assert [(r.name, r.value, r.measured) for r in rows] == [
        ("ROC AUC", "0.700", "cross-validated"),
        ("My metric", "2.000", ""),
    ]


def test_an_admin_sees_every_book_and_can_filter_by_manager(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    sign_in(app_client, api_keys["admin"])
    first, second = book
    everyone = set(listed_ids(app_client.get("/clients").text))
    assert everyone & set(book[first]) and everyone & set(book[second])
    only = set(listed_ids(app_client.get("/clients", params={"manager": second}).text))
    assert only and only <= set(book[second])


def test_the_admins_manager_filter_is_a_list_that_ignores_case_and_hints_at_near_names(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    sign_in(app_client, api_keys["admin"])
    _, second = book
    exact = listed_ids(app_client.get("/clients", params={"manager": second}).text)
    shouting = app_client.get("/clients", params={"manager": f"  {second.upper()} "}).text
    assert listed_ids(shouting) == exact
    assert f'<option value="{second}" selected>' in shouting  # the list shows the real name
    typo = app_client.get("/clients", params={"manager": second[:-1] + "q"}).text
    hint = re.search(r'data-testid="manager-hint">(.*?)</p>', typo, re.S).group(1)  # type: ignore[union-attr]
    assert f"Did you mean {second}?" in hint and "Show everyone" in hint
    assert listed_ids(typo) == []
    for name in book:
        assert f'<option value="{name}"' in typo
    assert '<option value="Unassigned"' in typo


def test_the_unassigned_filter_lists_clients_without_a_manager(tmp_path: Path) -> None:
    when = datetime(2025, 5, 1, tzinfo=UTC)
    with ScoreStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.create().save_scores(
            [
                _record("A", when, 0.5, "Ana", "Acme"),
                dataclasses.replace(_record("B", when, 0.4, "x", "Bolt"), account_manager=None),
                dataclasses.replace(_record("C", when, 0.3, "x", "Core"), account_manager=""),
            ]
        )
        unassigned, total = store.latest_scores(manager="")
        assert (sorted(s.client_id for s in unassigned), total) == (["B", "C"], 2)
        assert [name for name, _, _ in portfolio_page(store, None, None, (0.1, 0.3), 30)
                .summary.by_manager] == ["Unassigned", "Ana"]  # fmt: skip
        assert manager_filter("unassigned", ["Ana"]).book == ""
        assert manager_filter(" ana ", ["Ana"]).book == "Ana"
        assert manager_filter("", ["Ana"]).book is None


def test_per_manager_bars_link_to_that_managers_clients(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    sign_in(app_client, api_keys["admin"])
    html = app_client.get("/portfolio").text
    chart = html.split('data-testid="chart-managers"')[1].split("</figure>")[0]
    for name in book:
        href = "/clients?" + urlencode({"manager": name})
        assert f'<a class="bar-link" href="{escape(href)}">' in chart
    answer = app_client.get(unescape(re.search(r'bar-link" href="([^"]+)"', chart).group(1)))  # type: ignore[union-attr]
    assert answer.status_code == 200 and listed_ids(answer.text)


def test_old_scores_carry_a_warning(
    app_client: TestClient, api_keys: dict, settings: Settings, as_of: datetime
) -> None:
    sign_in(app_client, api_keys["a"])
    html = app_client.get("/clients").text  # the demo was scored long before today
    warning = re.search(r'data-testid="stale">(.*?)</p>', html, re.S).group(1)  # type: ignore[union-attr]
    assert f"the newest is of {as_of:%d %b %Y}" in warning and "churnguard score" in warning
    with ScoreStore(settings.score_store_url) as store:
        assert stale_scores(store, now=as_of + timedelta(days=20)) is None
        assert "40 days old" in (stale_scores(store, now=as_of + timedelta(days=40)) or "")
        assert "11 months old" in (stale_scores(store, now=as_of + timedelta(days=335)) or "")


def test_a_page_past_the_end_says_so_and_links_to_the_last_page(
    app_client: TestClient, api_keys: dict
) -> None:
    sign_in(app_client, api_keys["a"])
    html = app_client.get("/clients", params={"page": 99}).text
    note = re.search(r'data-testid="past-the-end">(.*?)</p>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "Page 99 is past the end" in note and "page=2" in note and "Go to the last page" in note
    assert "nightly" not in html


def test_sort_headers_show_the_direction_and_reverse_it(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]], settings: Settings
) -> None:
    manager = next(iter(book))
    sign_in(app_client, api_keys["a"])
    with ScoreStore(settings.score_store_url) as store:
        up, _ = store.latest_scores(manager=manager, order_by="probability", ascending=True)
    html = app_client.get("/clients", params={"sort": "probability", "direction": "asc"}).text
    assert listed_ids(html) == [s.client_id for s in up]
    header = re.search(r'<th scope="col" aria-sort="ascending"><a href="\?([^"]+)"', html)
    assert header and "sort=probability" in header.group(1) and "direction=desc" in header.group(1)
    usual = app_client.get("/clients").text  # revenue at risk, highest first
    assert 'aria-sort="descending"><a href="?sort=revenue_at_risk&amp;direction=asc' in usual
    assert "\N{BLACK DOWN-POINTING TRIANGLE}" in usual


def test_money_carries_the_currency(app_client: TestClient, api_keys: dict) -> None:
    sign_in(app_client, api_keys["a"])
    html = app_client.get("/clients/X-EVIL").text
    assert '<dd class="big">$1,000</dd>' in html  # monthly value


def test_an_unknown_page_is_the_styled_404_and_an_unknown_api_path_json(
    app_client: TestClient, api_keys: dict
) -> None:
    sign_in(app_client, api_keys["a"])
    page = app_client.get("/no-such-page")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert 'class="card error-page"' in page.text and 'data-testid="viewer"' in page.text
    api = app_client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


def test_every_page_links_to_the_api_docs(app_client: TestClient, api_keys: dict) -> None:
    sign_in(app_client, api_keys["a"])
    html = app_client.get("/clients").text
    assert '<a href="/docs"' in html and '<a href="/redoc"' in html


def test_the_filtered_list_downloads_as_csv_within_the_viewers_book(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]], settings: Settings
) -> None:
    first, second = book
    sign_in(app_client, api_keys["a"])
    html = app_client.get("/clients", params={"band": "high", "sort": "probability"}).text
    link = unescape(re.search(r'href="(/clients\.csv\?[^"]+)"', html).group(1))  # type: ignore[union-attr]
    assert "band=high" in link and "sort=probability" in link
    answer = app_client.get(link)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="churnguard-')
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    with ScoreStore(settings.score_store_url) as store:
        high, total = store.latest_scores(manager=first, band="high", order_by="probability")
    assert len(rows) == total and [r["client_id"] for r in rows][:50] == [s.client_id for s in high]
    assert list(rows[0]) == list(COLUMNS)
    theirs = app_client.get("/clients.csv", params={"manager": second}).text  # not theirs
    assert {r["account_manager"] for r in csv.DictReader(io.StringIO(theirs))} == {first}
    sign_in(app_client, api_keys["admin"])
    everyone = app_client.get("/clients.csv", params={"manager": second.lower()}).text
    assert {r["account_manager"] for r in csv.DictReader(io.StringIO(everyone))} == {second}


def test_the_api_lists_clients_as_csv_with_the_same_columns_and_scoping(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    first, second = book
    headers = {"Authorization": f"Bearer {api_keys['a']}"}
    answer = app_client.get("/api/v1/clients.csv", params={"manager": second}, headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == list(COLUMNS) and {r["account_manager"] for r in rows} == {first}
    listed = app_client.get("/api/v1/clients", params={"limit": 1000}, headers=headers).json()
    assert [r["client_id"] for r in rows] == [c["client_id"] for c in listed["items"]]
    assert app_client.get("/api/v1/clients.csv").status_code == 401


def test_needs_attention_lists_new_high_rising_and_unhandled_clients_with_counts(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]], settings: Settings
) -> None:
    manager = next(iter(book))
    today = datetime.now(UTC).date()
    sign_in(app_client, api_keys["a"])
    html = app_client.get("/clients").text
    tabs = re.search(r'data-testid="attention">(.*?)</nav>', html, re.S).group(1)  # type: ignore[union-attr]
    assert 'data-kind="unassigned"' not in tabs  # a manager's book has no unassigned clients
    with ScoreStore(settings.score_store_url) as store:
        for kind in ("all", "new-high", "rising", "no-action"):
            expected, total = store.latest_scores(
                manager=manager, where=attention_conditions(kind, today)
            )
            assert total, kind  # the two scorings make some of each
            page = app_client.get("/clients", params={"attention": kind}).text
            assert listed_ids(page) == [s.client_id for s in expected], kind
            assert f"<strong>{total:,}</strong></a>" in tabs, kind
    rising = app_client.get("/clients", params={"attention": "rising"}).text
    assert "first score" not in rising and "rising +11 pts" in rising
    sign_in(app_client, api_keys["admin"])
    admin = app_client.get("/clients").text
    assert 'data-kind="unassigned"' in admin


def test_a_next_step_with_a_due_date_shows_as_the_clients_follow_up(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    sign_in(app_client, api_keys["a"])
    client_id = book[next(iter(book))][3]
    token = page_csrf(app_client.get(f"/clients/{client_id}").text)
    url = f"/clients/{client_id}/actions"
    base = {"type": "Call", "happened_on": "2025-03-04", "csrf": token}
    for extra, words in (
        ({"next_step": "Send the proposal"}, "Give the due date as YYYY-MM-DD"),
        ({"due_on": "2025-03-10"}, "Say what the next step is"),
        ({"next_step": "Send", "due_on": "2025-03-01"}, "cannot be due before the action"),
    ):
        answer = app_client.post(url, data={**base, **extra})
        assert answer.status_code == 422 and words in answer.text
    answer = app_client.post(
        url, data={**base, "next_step": "Send <the> proposal", "due_on": "2025-03-11"}
    )
    assert answer.status_code == 303
    page = app_client.get(answer.headers["location"]).text
    step = re.search(r'data-testid="next-step">(.*?)</p>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "Send &lt;the&gt; proposal" in step and "overdue since 11 Mar 2025" in step
    listing = app_client.get("/clients", params={"q": client_id}).text
    cell = re.search(r'<td class="follow-up"[^>]*>(.*?)</td>', listing, re.S).group(1)  # type: ignore[union-attr]
    assert "Call · 04 Mar 2025" in cell and "state-overdue" in cell


def test_the_api_filters_clients_needing_attention(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    headers = {"Authorization": f"Bearer {api_keys['a']}"}
    answer = app_client.get("/api/v1/clients", params={"attention": "rising"}, headers=headers)
    items = answer.json()["items"]
    assert items and all(i["change"]["direction"] == "rising" for i in items)
    assert {i["account_manager"] for i in items} == {next(iter(book))}
    bad = app_client.get("/api/v1/clients", params={"attention": "all-of-them"}, headers=headers)
    assert bad.status_code == 422


def test_a_single_score_is_said_in_words_not_drawn_as_a_dot(tmp_path: Path) -> None:
    when = datetime(2025, 5, 1, tzinfo=UTC)
    with ScoreStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.create().save_scores([_record("A", when, 0.34, "Ana", "Acme")])
        score = store.latest_score("A")
        assert score is not None
        page = client_page(store, None, score, (0.1, 0.3))
    assert "One score so far: 34% on 01 May 2025" in page.chart and "<svg" not in page.chart


def test_the_histogram_keeps_a_thin_high_tail_visible_and_counted() -> None:
    bins = [(i / 10, (i + 1) / 10, n) for i, n in enumerate([5000, 900, 80, 0, 0, 0, 0, 0, 0, 1])]
    root = _parse(charts.histogram(bins, title="Risk"))
    rects = root.findall(".//{http://www.w3.org/2000/svg}rect")
    heights = [float(r.get("height", "0")) for r in rects]
    assert heights[-1] >= 3 and heights[3] == 0  # one client shows; an empty bin does not
    counts = [
        t.text
        for t in root.iter("{http://www.w3.org/2000/svg}text")
        if "bar-count" in (t.get("class") or "")
    ]
    assert counts == ["5,000", "900", "80", "0", "0", "0", "0", "0", "0", "1"]


def test_a_ticket_resolved_the_next_day_took_1_day() -> None:
    clients = pd.DataFrame({"client_id": ["A"]})
    tickets = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2"],
            "client_id": ["A", "A"],
            "opened_at": pd.to_datetime(["2025-01-01 09:00", "2025-01-05 09:00"], utc=True),
            "resolved_at": pd.to_datetime(["2025-01-02 10:00", "2025-01-08 10:00"], utc=True),
        }
    )
    view = CRMView(
        from_frames({"clients": clients, "contracts": pd.DataFrame(), "tickets": tickets}),
        datetime.now(UTC),
    )
    texts = [i.text for i in client_timeline(view, "A", datetime(2025, 2, 1, tzinfo=UTC))]
    assert texts == ["Ticket T2: resolved in 3 days", "Ticket T1: resolved in 1 day"]


# ---------------------------------------------------------------------------------- pages


def test_my_clients_are_in_revenue_at_risk_order_and_sort_filter_and_page(
    app_client: TestClient,
    api_keys: dict,
    book: dict[str, list[str]],
    scored: dict[str, ScoreRecord],
    settings: Settings,
) -> None:
    manager = next(iter(book))
    sign_in(app_client, api_keys["a"])
    with ScoreStore(settings.score_store_url) as store:
        for order in ("revenue_at_risk", "probability", "monthly_value"):
            expected, _ = store.latest_scores(manager=manager, order_by=order, limit=50)
            page = app_client.get("/clients", params={"sort": order})
            assert listed_ids(page.text) == [s.client_id for s in expected]
        high, total = store.latest_scores(manager=manager, band="high", limit=50)
    page = app_client.get("/clients", params={"band": "high"})
    assert listed_ids(page.text) == [s.client_id for s in high]
    found = app_client.get("/clients", params={"q": "evil"})
    assert listed_ids(found.text) == ["X-EVIL"]
    if total > 50:
        assert "Page 1 of" in page.text
    bad = app_client.get("/clients", params={"sort": "drop table"})
    assert bad.status_code == 400 and "text/html" in bad.headers["content-type"]


def test_my_clients_summarises_the_whole_filtered_book_with_band_links(
    app_client: TestClient,
    api_keys: dict,
    book: dict[str, list[str]],
    scored: dict[str, ScoreRecord],
) -> None:
    manager = next(iter(book))
    mine = [r for r in scored.values() if r.account_manager == manager]
    assert len(mine) > PAGE_SIZE  # the summary covers more than the page shows
    sign_in(app_client, api_keys["a"])
    for params, chosen in (({}, mine), ({"band": "high", "sort": "renewal"}, None)):
        html = app_client.get("/clients", params=params).text
        line = re.search(r'data-testid="book-summary">(.*?)</p>', html, re.S).group(1)  # type: ignore[union-attr]
        picked = chosen or [r for r in mine if r.band == "high"]
        assert f"<strong>{len(picked):,}</strong> clients" in line
        revenue = sum(r.revenue_at_risk for r in picked)
        assert f"<strong>${charts.money(revenue)}</strong> revenue at risk" in line
        for band in ("high", "medium", "low"):
            n = sum(r.band == band for r in mine)  # each band's count, whichever band is chosen
            link = re.search(rf'href="\?([^"]+)"[^>]*>{n:,} {band}</a>', line)
            assert link, band
            assert f"band={band}" in link.group(1) and "page=1" in link.group(1)
            assert ("sort=renewal" in link.group(1)) == bool(params)  # other filters are kept
    found = app_client.get("/clients", params={"q": "evil"}).text
    assert (
        "<strong>1</strong> client<" in found and ">1 high</a>" in found and ">0 low</a>" in found
    )


def test_clients_sort_by_renewal_date_soonest_first(
    app_client: TestClient, api_keys: dict, scored: dict[str, ScoreRecord], demo_dir: Path
) -> None:
    sign_in(app_client, api_keys["a"])
    ids = listed_ids(app_client.get("/clients", params={"sort": "renewal"}).text)
    data, _ = load_crm(demo_dir)
    renewals = renewal_dates(CRMView(data, datetime.now(UTC)), {c: scored[c].as_of for c in ids})
    dated = [renewals[c] for c in ids if renewals.get(c) is not None]
    assert dated and dated == sorted(dated)
    first_undated = next((i for i, c in enumerate(ids) if renewals.get(c) is None), len(ids))
    assert all(renewals.get(c) is None for c in ids[first_undated:])


@pytest.mark.parametrize("direction", ["", "desc"])
def test_renewal_order_pages_through_the_whole_book_by_the_sort_rule(
    app_client: TestClient,
    api_keys: dict,
    scored: dict[str, ScoreRecord],
    book: dict[str, list[str]],
    demo_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    direction: str,
) -> None:
    """Pages of the renewal order (the book sorted once, then only the page's scores read) list
    every client of the book once, in the rule's order: soonest renewal first (latest first
    for "desc"), then revenue at risk; rolling and unknown renewals last."""
    monkeypatch.setattr(pages_module, "PAGE_SIZE", 7)
    sign_in(app_client, api_keys["a"])
    shown: list[str] = []
    for page in range(1, 100):
        params = {"sort": "renewal", "direction": direction, "page": page}
        ids = listed_ids(app_client.get("/clients", params=params).text)
        assert len(ids) <= 7
        if not ids:
            break
        shown += ids
    mine = [*book[next(iter(book))], "X-EVIL"]  # and the client of the evil name
    data, _ = load_crm(demo_dir)
    renewals = renewal_dates(CRMView(data, datetime.now(UTC)), {c: scored[c].as_of for c in mine})
    by_revenue = sorted(mine, key=lambda c: (-scored[c].revenue_at_risk, c))
    expected = sorted(
        by_revenue, key=lambda c: (renewals.get(c) is None, renewals.get(c) or date.max)
    )
    if direction == "desc":
        dated = [c for c in expected if renewals.get(c) is not None]
        expected = dated[::-1] + expected[len(dated) :]
    assert len(mine) > 7 and shown == expected


def test_the_client_page_shows_risk_reasons_actions_history_and_contracts(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]]
) -> None:
    sign_in(app_client, api_keys["a"])
    client_id = book[next(iter(book))][0]
    page = app_client.get(f"/clients/{client_id}")
    assert page.status_code == 200
    html = page.text
    assert html.count("<circle") == 2 * 2  # two scores, two points; drawn wide and narrow
    assert "No contact for 74 days" in html and "Schedule a check-in call" in html
    assert 'data-testid="timeline"' in html and "Contracts" in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"


def test_the_client_page_states_segment_industry_and_region_as_context_never_as_why(
    tmp_path: Path,
) -> None:
    crm = tmp_path / "crm"
    crm.mkdir()
    (crm / "clients.csv").write_text(
        "client_id,name,account_manager,segment,industry,region\nA,Acme,Ana,smb,nonprofit,north\n"
    )
    (crm / "contracts.csv").write_text(
        "contract_id,client_id,start_date,end_date,monthly_value\nK1,A,2025-01-01,,1000\n"
    )
    settings = Settings(
        home=tmp_path,
        models_dir=tmp_path / "models",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        crm_data=str(crm),
        model_retry_seconds=0,
    )
    context = [  # an older score kept context features among its drivers, the largest first
        {"feature": "region", "value": "uk", "contribution": 2.0, "reason": "Region uk"},
        {"feature": "monthly_value", "value": 1000, "contribution": 1.5,
         "reason": "Monthly contract value is 1,000"},
    ]  # fmt: skip
    record = _record("A", datetime(2025, 5, 1, tzinfo=UTC), 0.4, "Ana", "Acme")
    record = dataclasses.replace(record, drivers=context + record.drivers)
    with ScoreStore(settings.score_store_url) as store:
        store.create().save_scores([record])
        key = keys.create_key(store, "manager", "Ana")
    app = create_app(settings.model_copy(update={"key_cache_seconds": 0}))
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        html = sign_in(client, key).get("/clients/A").text
        listing = client.get("/clients").text
    why = re.search(r'data-testid="reasons">(.*?)</ol>', html, re.S).group(1)  # type: ignore[union-attr]
    line = re.search(r'data-testid="context">(.*?)</p>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "No contact for 74 days" in why
    assert not any(w in why for w in ("Region", "Segment", "Industry", "Monthly contract value"))
    # the score's segment, the CRM's industry, the stored driver's region; in words, no log-odds
    assert "Segment mid-market · Industry nonprofit · Region uk" in line
    assert "not reasons" in line and "log-odds" not in html
    assert "Region uk" not in listing and "No contact for 74 days" in listing


def test_logging_an_action_stores_and_lists_it_and_bad_input_is_explained(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]], settings: Settings
) -> None:
    sign_in(app_client, api_keys["a"])
    client_id = book[next(iter(book))][1]
    token = page_csrf(app_client.get(f"/clients/{client_id}").text)
    url = f"/clients/{client_id}/actions"
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    for form, words in (
        ({"type": "Call", "happened_on": tomorrow}, "cannot be in the future"),
        ({"type": "Call", "happened_on": "31/12/2024"}, "YYYY-MM-DD"),
        ({"type": "Bribe", "happened_on": ""}, "Choose what you did"),
    ):
        answer = app_client.post(url, data={**form, "csrf": token, "note": "kept <b>"})
        assert answer.status_code == 422 and words in answer.text
        assert "kept &lt;b&gt;" in answer.text  # the note is kept in the form, escaped
    done = {"type": "Schedule a check-in call", "note": "Booked a review <ok>", "csrf": token}
    answer = app_client.post(url, data={**done, "happened_on": "2025-03-04"})
    assert answer.status_code == 303
    page = app_client.get(answer.headers["location"])
    assert "Action logged." in page.text and "Booked a review &lt;ok&gt;" in page.text
    # the notice shows where the redirect scrolls to (#actions), not at the top of the page
    assert page.text.index('id="actions"') < page.text.index("Action logged.")
    with ScoreStore(settings.score_store_url) as store:
        logged = store.list_actions(client_id)[0]
    assert (logged.action_type, logged.happened_on) == (
        "Schedule a check-in call",
        date(2025, 3, 4),
    )
    assert logged.logged_by == next(iter(book))


def test_templates_escape_a_client_name(app_client: TestClient, api_keys: dict) -> None:
    sign_in(app_client, api_keys["a"])
    for path in ("/clients?q=evil", "/clients/X-EVIL"):
        html = app_client.get(path).text
        assert "<script>" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in html


def test_static_files_are_served_and_nothing_else(app_client: TestClient) -> None:
    css = app_client.get("/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert app_client.get("/static/..%2Fweb%2Froutes.py").status_code == 404
    assert app_client.get("/static/routes.py").status_code == 404


# ---------------------------------------------------------------------------------- charts


SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_a_line_chart_is_valid_svg_with_a_point_and_tooltip_per_value() -> None:
    series = [
        charts.Series("Churn <risk>", [(date(2025, 1, 1), 0.2), (date(2025, 2, 1), 0.35)]),
        charts.Series("Other", [(date(2025, 1, 1), 0.1)]),
    ]
    svg = charts.line_chart(series, title="A & B", thresholds=[charts.Threshold(0.3, "high")])
    root = _parse(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg" and root.get("viewBox") and root.get("width") == "100%"
    assert root.find(f"{ns}title").text == "A & B"  # type: ignore[union-attr]
    points = root.findall(f"{ns}circle")
    assert len(points) == 3
    assert points[0].find(f"{ns}title").text == "Churn <risk>, Jan 2025: 20%"  # type: ignore[union-attr]
    assert len(root.findall(f"{ns}polyline")) == 1  # a single point draws no line
    ys = [float(p.get("cy", 0)) for p in points[:2]]
    assert ys[1] < ys[0]  # higher risk is drawn higher up


def test_provisional_points_are_hollow_dashed_and_say_why_in_their_tooltip() -> None:
    days = [date(2025, m, 1) for m in (1, 2, 3, 4)]
    series = charts.Series("Churn", list(zip(days, [0.1, 0.2, 0.15, 0.0], strict=True)))
    svg = charts.line_chart([series], title="t", provisional={days[3]: "3 ends pending"})
    root = _parse(svg)
    ns = "{http://www.w3.org/2000/svg}"
    points = root.findall(f"{ns}circle")
    assert ["provisional" in p.get("class", "") for p in points] == [False, False, False, True]
    assert points[3].find(f"{ns}title").text == "Churn, Apr 2025: 0% (3 ends pending)"  # type: ignore[union-attr]
    lines = root.findall(f"{ns}polyline")
    assert [
        ("provisional" in p.get("class", ""), len(p.get("points", "").split())) for p in lines
    ] == [
        (False, 3),
        (True, 2),  # only the segment into the provisional month is dashed
    ]
    assert "Apr 2025 0% (3 ends pending)" in root.find(f"{ns}desc").text  # type: ignore[union-attr, operator]


def _month(
    day: date, start: int, new: int, churned: int, revenue: tuple[float, float]
) -> MonthStats:
    """A month's figures as monthly_portfolio derives them from its counts and revenue."""
    end = start + new - churned
    return MonthStats(
        month=day,
        clients_start=start,
        clients_end=end,
        new_clients=new,
        churned_clients=churned,
        retention_rate=100 * (end - new) / start,
        churn_rate=100 * churned / start,
        revenue_start=revenue[0],
        revenue_end=revenue[1],
        revenue_churned=0.0,
        revenue_churn_rate=0.0,
        net_revenue_retention=100 * revenue[1] / revenue[0],
        revenue_new=0.0,
    )


def test_portfolio_charts_fit_rates_below_zero_and_above_a_hundred_percent() -> None:
    months = [
        _month(date(2025, 1, 1), 10, 0, 1, (1000.0, 1800.0)),  # NRR 180%
        _month(date(2025, 2, 1), 2, 6, 5, (1000.0, 1000.0)),  # churn 250%, retention -150%
        _month(date(2025, 3, 1), 3, 0, 0, (1000.0, 990.0)),
    ]
    drawn = portfolio_charts(months, RiskSummary(0, 0.0, {}, [], [], []), (0.1, 0.3))
    for name, lowest, highest in (("retention", -1.5, 1.8), ("churn", 0.0, 2.5)):
        root = _parse(re.search(r"<svg.*?</svg>", drawn[name]).group(0))  # type: ignore[union-attr]
        ticks = [float(t.rstrip("%")) / 100 for t in _y_ticks(root)]
        assert min(ticks) <= lowest and max(ticks) >= highest, name  # the axis covers the data
        assert len(set(ticks)) == len(ticks), name
        ys = [float(c.get("cy", 0)) for c in root.iter(f"{SVG}circle")]
        grid = [float(g.get("y1", 0)) for g in root.iter(f"{SVG}line") if g.get("class") == "grid"]
        assert len(ys) == 6 and min(grid) <= min(ys) and max(ys) <= max(grid), name  # no clipping


def test_close_percent_ticks_get_the_decimals_they_need() -> None:
    days = [date(2025, 1, 1), date(2025, 2, 1)]
    series = charts.Series("r", list(zip(days, [0.992, 1.0], strict=True)))
    root = _parse(charts.line_chart([series], title="t"))
    assert _y_ticks(root) == ["99.2%", "99.4%", "99.6%", "99.8%", "100.0%"]  # not 99%, 99%, ...


def _y_ticks(root: ET.Element) -> list[str]:
    """The labels of a chart's y axis, bottom first."""
    labels = [t for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    left = min(float(t.get("x", 0)) for t in labels)
    return [t.text or "" for t in labels if float(t.get("x", 0)) == left]


def test_charts_escape_text_and_handle_empty_data() -> None:
    evil = "<script>alert(1)</script>"
    for svg in (
        charts.bar_chart([(evil, 10.0), ("b", 0.0)], title=evil),
        charts.line_chart([charts.Series(evil, [(date(2025, 1, 1), 0.5)])], title=evil),
        charts.histogram([(0.0, 0.1, 3), (0.1, 0.2, 0)], title=evil),
    ):
        assert "<script>" not in svg
        _parse(svg)
    for empty in (
        charts.bar_chart([], title="t"),
        charts.line_chart([charts.Series("s", [])], title="t"),
        charts.histogram([(0.0, 0.1, 0)], title="t"),
    ):
        assert "No data yet" in empty
        _parse(empty)


def test_bars_are_as_long_as_their_values() -> None:
    root = _parse(charts.bar_chart([("a", 100.0), ("b", 50.0), ("c", 0.0)], title="t"))
    widths = [float(r.get("width", 0)) for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert widths[1] == pytest.approx(widths[0] / 2) and widths[2] == 0


# ---------------------------------------------------------------------------------- CRM data


def _crm(contracts: list[dict[str, object]]) -> CRMView:
    clients = pd.DataFrame({"client_id": ["A", "B", "C", "D"], "account_manager": ["m"] * 4})
    frame = pd.DataFrame(contracts)
    for column in ("start_date", "end_date", "cancelled_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return CRMView(from_frames({"clients": clients, "contracts": frame}), datetime.now(UTC))


def test_the_renewal_date_is_the_first_end_of_a_contract_in_force() -> None:
    nat = None
    view = _crm(
        [
            {"contract_id": "1", "client_id": "A", "start_date": "2024-01-01",
             "end_date": "2025-12-31", "monthly_value": 1.0, "cancelled_at": nat},
            {"contract_id": "2", "client_id": "A", "start_date": "2024-06-01",
             "end_date": "2025-06-30", "monthly_value": 1.0, "cancelled_at": nat},
            {"contract_id": "3", "client_id": "A", "start_date": "2023-01-01",
             "end_date": "2024-01-31", "monthly_value": 1.0, "cancelled_at": nat},
            {"contract_id": "4", "client_id": "B", "start_date": "2024-01-01",
             "end_date": nat, "monthly_value": 1.0, "cancelled_at": nat},
            {"contract_id": "5", "client_id": "C", "start_date": "2024-01-01",
             "end_date": "2026-01-01", "monthly_value": 1.0, "cancelled_at": "2024-12-01"},
            {"contract_id": "6", "client_id": "D", "start_date": "2024-01-01",
             "end_date": nat, "monthly_value": 1.0, "cancelled_at": "2025-04-01"},
        ]
    )  # fmt: skip
    when = datetime(2025, 3, 1, tzinfo=UTC)
    got = renewal_dates(view, dict.fromkeys(["A", "B", "C", "D", "nobody"], when))
    assert got == {"A": date(2025, 6, 30), "B": None, "D": date(2025, 4, 1)}


def test_renewal_dates_of_many_clients_match_each_client_read_alone(
    business: SimulatedBusiness,
) -> None:
    """The set-based renewal dates equal the rule applied to each client's own contracts."""
    view = CRMView(business.data, datetime.now(UTC))
    ids = [*business.data.clients["client_id"].astype(str), "nobody"]
    start = business.observed_until.to_pydatetime() - timedelta(days=700)
    for step in range(0, 700, 97):
        as_of = {c: start + timedelta(days=step + i % 45, seconds=i) for i, c in enumerate(ids)}
        expected = {c: _renewal_alone(view, c, when) for c, when in as_of.items()}
        assert renewal_dates(view, as_of) == {c: d for c, d in expected.items() if d != "none"}
    assert renewal_dates(view, {}) == {}


def _renewal_alone(view: CRMView, client_id: str, when: datetime) -> date | str | None:
    """One client's renewal date from its own rows ("none": no contract in force)."""
    contracts = view.rows("contracts", client_id)
    t = pd.Timestamp(when)
    stop = contract_stops(contracts)
    in_force = (contracts["start_date"] <= t) & (stop.isna() | (stop > t))
    if not in_force.any():
        return "none"
    ends = stop[in_force].dropna()
    return ends.min().date() if len(ends) else None


def test_contracts_and_their_timeline_are_as_of_the_score_date() -> None:
    nat = None
    view = _crm(
        [
            {"contract_id": "1", "client_id": "A", "start_date": "2024-01-01",
             "end_date": "2025-12-31", "monthly_value": 1.0, "cancelled_at": nat},
            {"contract_id": "2", "client_id": "A", "start_date": "2023-01-01",
             "end_date": "2024-01-31", "monthly_value": 1.0, "cancelled_at": nat},
            {"contract_id": "3", "client_id": "A", "start_date": "2023-06-01",
             "end_date": "2026-01-01", "monthly_value": 1.0, "cancelled_at": "2024-12-01"},
            {"contract_id": "4", "client_id": "A", "start_date": "2024-01-01",
             "end_date": nat, "monthly_value": 1.0, "cancelled_at": "2025-04-01"},
            {"contract_id": "5", "client_id": "A", "start_date": "2025-06-01",
             "end_date": "2026-05-31", "monthly_value": 1.0, "cancelled_at": nat},
        ]
    )  # fmt: skip
    as_of = datetime(2025, 3, 1, tzinfo=UTC)
    states = {c.contract_id: (c.state, c.stop) for c in client_contracts(view, "A", as_of)}
    assert states == {
        "1": ("ends", date(2025, 12, 31)),  # ended by today, but not at the score's date
        "2": ("ended", date(2024, 1, 31)),
        "3": ("cancelled", date(2024, 12, 1)),
        "4": ("ends", date(2025, 4, 1)),
        "5": ("ends", date(2026, 5, 31)),  # starts after as_of: no state to speak of yet
    }
    texts = [i.text for i in client_timeline(view, "A", as_of)]
    assert texts[:2] == [
        "Contract 1 (service) ends on 31 Dec 2025",
        "Contract 4 (service) ends on 01 Apr 2025",
    ]
    assert "Contract 2 (service) ended" in texts and "Contract 3 (service) cancelled" in texts
    assert not any(t.startswith("Contract 5") for t in texts)  # signed after the score
    assert not any(t.endswith("ended") and t.startswith("Contract 1") for t in texts)


def test_the_client_page_shows_contracts_ending_after_the_score_as_ending(
    app_client: TestClient,
    api_keys: dict,
    book: dict[str, list[str]],
    as_of: datetime,
    demo_dir: Path,
) -> None:
    data, _ = load_crm(demo_dir)
    contracts = data.contracts
    later = contracts[
        contracts["client_id"].isin(book[next(iter(book))])
        & (contracts["end_date"] > pd.Timestamp(as_of))
        & (contracts["start_date"] <= pd.Timestamp(as_of))
        & contracts["cancelled_at"].isna()
    ].iloc[0]
    sign_in(app_client, api_keys["a"])
    html = app_client.get(f"/clients/{later.client_id}").text
    day = f"{later.end_date:%d %b %Y}"
    assert f'Recent history <span class="as-of">as of {as_of:%d %b %Y}</span>' in html
    assert f'Contracts <span class="as-of">as of {as_of:%d %b %Y}</span>' in html
    assert f'data-testid="contract-state">ends on {day}</td>' in html
    assert f"Contract {later.contract_id} ({later.service_line}) ends on {day}" in html
    assert f"Contract {later.contract_id} ({later.service_line}) ended" not in html


def test_the_crm_cache_loads_lazily_reloads_on_change_and_survives_missing_data(
    tmp_path: Path, demo_dir: Path
) -> None:
    missing = CRMCache(tmp_path / "nothing")
    view, problem = missing.get()
    assert view is None and problem and "nothing" in problem
    folder = tmp_path / "crm"
    shutil.copytree(demo_dir, folder)
    cache = CRMCache(folder)
    first, problem = cache.get()
    assert first is not None and problem is None
    assert cache.get()[0] is first  # unchanged files: the same data, not read again
    clients = folder / "clients.csv"
    time.sleep(0.01)
    clients.write_text(clients.read_text().replace('"C000001","', '"C000001","Renamed ', 1))
    second, _ = cache.get()
    assert second is not first and second is not None
    assert second.data.clients.loc[0, "name"].startswith("Renamed")
    timeline = client_timeline(second, "C000001", datetime.now(UTC))
    assert timeline and timeline == sorted(timeline, key=lambda i: i.when, reverse=True)


# ---------------------------------------------------------------------------------- sessions


def test_a_session_ends_when_it_expires(settings: Settings, api_keys: dict) -> None:
    with ScoreStore(settings.score_store_url) as store:
        principal = keys.authenticate(store, api_keys["a"])
        assert principal is not None
        sessions = SessionStore(store.engine, timedelta(seconds=0.3))
        token = sessions.start(principal.key_id)
        viewer = sessions.viewer(token)
        assert viewer is not None and viewer.manager == principal.manager
        assert viewer.csrf == csrf_token(token) != csrf_token(token + "x")
        time.sleep(0.4)
        assert sessions.viewer(token) is None
        assert sessions.viewer("") is None and sessions.viewer("x" * 500) is None


def test_repeated_failed_sign_ins_from_one_address_are_refused_for_a_while() -> None:
    limiter = SignInLimiter(attempts=3, window=0.3)
    for _ in range(3):
        assert not limiter.blocked("10.0.0.1")
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") and not limiter.blocked("10.0.0.2")
    time.sleep(0.35)
    assert not limiter.blocked("10.0.0.1")


def test_the_sign_in_page_returns_to_the_page_asked_for(
    app_client: TestClient, api_keys: dict
) -> None:
    app_client.cookies.clear()
    asked = "/clients?band=high&sort=probability"
    answer = app_client.get(asked)
    assert answer.status_code == 303
    form = app_client.get(answer.headers["location"])
    assert 'name="next" value="/clients?band=high&amp;sort=probability"' in form.text
    data = {"api_key": api_keys["a"], "csrf": page_csrf(form.text), "next": asked}
    assert app_client.post("/sign-in", data=data).headers["location"] == asked
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        app_client.cookies.clear()
        form = app_client.get("/sign-in")
        data = {"api_key": api_keys["a"], "csrf": page_csrf(form.text), "next": evil}
        assert app_client.post("/sign-in", data=data).headers["location"] == "/clients"


def test_manager_pages_say_what_a_probability_means_and_show_no_log_odds(
    app_client: TestClient, api_keys: dict, book: dict[str, list[str]], settings: Settings
) -> None:
    sign_in(app_client, api_keys["a"])
    client_id = book[next(iter(book))][0]
    html = app_client.get(f"/clients/{client_id}").text
    days = settings.horizon_days
    assert f"chance this client leaves within {days} days" in html
    assert "chance of leaving × monthly value × 12" in html  # noqa: RUF001
    assert "log-odds" not in html and "<meter" in html and "effect on the risk" in html
    listing = app_client.get("/clients").text
    assert f"the chance a client leaves within {days} days" in listing
    assert "that chance × monthly value × 12" in listing and "log-odds" not in listing  # noqa: RUF001


def test_the_portfolio_says_what_the_last_scoring_run_covered(
    app_client: TestClient, api_keys: dict, settings: Settings, as_of: datetime
) -> None:
    sign_in(app_client, api_keys["admin"])
    assert "No scoring run recorded yet" in app_client.get("/portfolio").text
    coverage = Coverage(pd.Timestamp(as_of), 1_300, 1_210, {"ended": 88, "not_started": 2})
    started = datetime.now(UTC)
    with ScoreStore(settings.score_store_url) as store:
        run = ScoringRun.of(
            coverage, model_version="4", n_scored=1_200, source="crm/", started_at=started
        )
        record_run(store, run)
    html = app_client.get("/portfolio").text
    line = re.search(r'data-testid="last-run">(.*?)</p>', html, re.S)
    assert line, html[-2000:]
    text = re.sub(r"<[^>]+>", "", line[1])
    assert f"as of {as_of:%d %b %Y} (model 4): scored 1,200 of 1,210 active clients" in text
    assert "(10 not scored); 90 not active: 88 every contract stopped" in text
