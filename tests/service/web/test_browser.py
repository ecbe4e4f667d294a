"""The dashboard in a real browser: Playwright drives Debian's Chromium, headless, against a real
server (uvicorn in a thread) with a real model from the registry, a score store filled by batch
scoring of the simulated business three times a month apart, and real API keys.

Chromium comes from ``scripts/chromium.sh`` (Debian's package; never ``playwright install``).
Without it these tests skip, unless CHURNGUARD_TEST_CHROMIUM names one (as CI does): then a
browser that does not start fails them. Each page is saved as a full-page screenshot in
``test-artifacts/screenshots/`` (desktop and phone), to look at.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from churnguard.alerts import digest_html, run_alerts
from churnguard.config import Settings
from churnguard.domain.churn import observation_end
from churnguard.domain.data import load_crm
from churnguard.modeling.registry import CHAMPION, Registry
from churnguard.scoring.batch import score_to_store
from churnguard.scoring.loading import load_scorer
from churnguard.service import create_app
from churnguard.store import keys
from churnguard.store.attention import attention_conditions
from churnguard.store.followups import plan_follow_up
from churnguard.store.scores import ScoreRecord, ScoreStore
from churnguard.training.train import Dataset
from tests.factories import ModelFactory

CHROMIUM_ENV = "CHURNGUARD_TEST_CHROMIUM"
CHROMIUM = os.environ.get(CHROMIUM_ENV) or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
# No network here: without the background-networking flags Chromium waits on refused connections.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}
EVIL_NAME = "<script>alert('owned')</script> Holdings"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no Chromium: run `bash scripts/chromium.sh` (Debian's package) or set {CHROMIUM_ENV}",
)


@dataclass(frozen=True)
class Site:
    url: str
    settings: Settings
    keys: dict[str, str]
    managers: tuple[str, str]
    model_version: str


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    make_model: ModelFactory,
    dataset: Dataset,
    demo_dir: Path,
) -> Iterator[Site]:
    """A served app: registered champion, three batch scorings, keys for two managers."""
    home = tmp_path_factory.mktemp("web-browser")
    settings = Settings(
        home=home,
        models_dir=home / "models",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        crm_data=str(demo_dir),
        model_retry_seconds=0,
    )
    registry = Registry.from_settings(settings)
    model = make_model("logistic", {"C": 0.1})
    with registry.start_run("web-browser-tests") as run:
        version = registry.log_model(run, model, model.inputs(dataset.features.head(5)))
    registry.set_alias(CHAMPION, version)
    with ScoreStore(settings.score_store_url) as store:
        managers = _score_the_book(settings, store.create(), demo_dir)
        api_keys = {
            "a": keys.create_key(store, "manager", managers[0]),
            "b": keys.create_key(store, "manager", managers[1]),
            "admin": keys.create_key(store, "admin"),
            "crm": keys.create_key(store, "crm"),
        }
    with _serve(settings) as url:
        yield Site(url, settings, api_keys, managers, str(version))


def _score_the_book(settings: Settings, store: ScoreStore, demo_dir: Path) -> tuple[str, str]:
    """Batch-score the demo data at three dates; returns the two busiest managers."""
    data, _ = load_crm(demo_dir)
    scorer = load_scorer(settings)
    end = observation_end(data)
    for days in (60, 30, 0):
        when = (end - timedelta(days=days)).to_pydatetime()
        score_to_store(data, scorer, store, when, progress=False)
    latest, _ = store.latest_scores(limit=1000)
    counts: dict[str, int] = {}
    for s in latest:
        if s.account_manager:
            counts[s.account_manager] = counts.get(s.account_manager, 0) + 1
    first, second = sorted(counts, key=lambda m: -counts[m])[:2]
    evil = latest[0]
    store.save_scores(
        [
            ScoreRecord(
                client_id="X-EVIL",
                as_of=evil.as_of,
                model_version=evil.model_version,
                probability=0.02,
                band="low",
                revenue_at_risk=0.0,
                monthly_value=0.0,
                feature_digest="0" * 64,
                change={"direction": "new"},
                account_manager=first,
                client_name=EVIL_NAME,
            )
        ]
    )
    return first, second


@contextlib.contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a background thread, on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; when CHURNGUARD_TEST_CHROMIUM is set it must start."""
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) on the site, failing on any script dialog."""
    ctx = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


def open_page(ctx: BrowserContext) -> Page:
    page = ctx.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: dialogs.append(str(e)))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    return page


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, key: str, path: str = "/clients") -> None:
    page.goto(path)
    assert "/sign-in" in page.url
    page.fill("#api_key", key)
    page.click("form[action='/sign-in'] button[type=submit]")


def listed(page: Page) -> list[str]:
    return page.locator("tr[data-client-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.clientId)"
    )


# ---------------------------------------------------------------------------------- journeys


def test_a_manager_signs_in_works_their_book_and_signs_out(
    context: BrowserContext, site: Site
) -> None:
    page = open_page(context)
    page.goto("/clients")
    assert "/sign-in" in page.url  # a protected page sends you to sign in
    shot(page, "01-sign-in")
    sign_in(page, site.keys["a"])
    page.wait_for_url("**/clients")
    session = next(c for c in context.cookies() if "churnguard_session" in c["name"])
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"

    mine = ScoreStore(site.settings.score_store_url)
    expected, _ = mine.latest_scores(manager=site.managers[0], limit=50)
    assert listed(page) == [s.client_id for s in expected]  # own book, revenue at risk first
    assert page.get_by_test_id("viewer").inner_text() == site.managers[0]
    shot(page, "02-my-clients")
    page.fill("input[name=q]", "x-evil")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**q=x-evil**")
    assert listed(page) == ["X-EVIL"]  # the name shows as text; its script never runs
    assert page.locator("td.client a").inner_text() == EVIL_NAME

    page.fill("input[name=q]", "")
    page.select_option("select[name=sort]", "probability")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**sort=probability**")
    by_risk, _ = mine.latest_scores(manager=site.managers[0], order_by="probability", limit=50)
    assert listed(page) == [s.client_id for s in by_risk]
    page.select_option("select[name=band]", "high")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**band=high**")
    high, _ = mine.latest_scores(
        manager=site.managers[0], band="high", order_by="probability", limit=50
    )
    assert listed(page) == [s.client_id for s in high]

    top = expected[0]
    page.goto("/clients")
    page.click(f"tr[data-client-id='{top.client_id}'] td.client a")
    page.wait_for_url(f"**/clients/{top.client_id}")
    chart = page.locator("[data-testid=risk-chart] svg:visible")
    history = mine.client_history(top.client_id)
    assert chart.locator("circle").count() == len(history) == 3
    assert chart.locator("polyline").count() == 1
    reasons = page.get_by_test_id("reasons").locator(".reason").all_inner_texts()
    assert reasons == [d["reason"] for d in top.drivers] and reasons
    assert page.get_by_test_id("timeline").locator("li").count() > 0
    shot(page, "03-client")

    recommended = top.actions[0]["action"] if top.actions else "Call"
    page.select_option("#type", recommended)
    page.fill("#happened_on", "2025-05-02")
    page.fill("#note", "Booked a service review for June")
    page.click("#log-action button[type=submit]")
    page.wait_for_url("**logged=true**")
    logged = page.get_by_test_id("logged-actions").locator("li").first
    assert recommended in logged.inner_text() and "Booked a service review" in logged.inner_text()
    assert "02 May 2025" in logged.inner_text()
    stored = mine.list_actions(top.client_id)[0]
    assert (stored.action_type, stored.logged_by) == (recommended, site.managers[0])
    shot(page, "04-action-logged")

    page.click("header button:has-text('Sign out')")
    page.wait_for_url("**/sign-in**")
    assert "Signed out." in page.content()
    page.goto(f"/clients/{top.client_id}")
    assert "/sign-in" in page.url  # signed out: the client page needs signing in again
    assert page.dialogs == []  # type: ignore[attr-defined]
    mine.close()


def test_another_managers_client_is_unreachable_by_url(context: BrowserContext, site: Site) -> None:
    theirs, _ = ScoreStore(site.settings.score_store_url).latest_scores(
        manager=site.managers[1], limit=1
    )
    page = open_page(context)
    sign_in(page, site.keys["a"])
    page.wait_for_url("**/clients")
    assert theirs[0].client_id not in listed(page)
    answer = page.goto(f"/clients/{theirs[0].client_id}")
    assert answer is not None and answer.status == 404
    assert "Not found" in page.locator("h1").inner_text()
    assert site.managers[1] not in page.content()
    shot(page, "05-not-found")


def test_a_crm_key_cannot_sign_in(context: BrowserContext, site: Site) -> None:
    page = open_page(context)
    sign_in(page, site.keys["crm"])
    page.wait_for_selector(".form-error")
    assert "/sign-in" in page.url
    assert "CRM key cannot sign in" in page.locator(".form-error").inner_text()
    assert not [c for c in context.cookies() if "churnguard_session" in c["name"]]
    shot(page, "06-crm-key-refused")


def test_the_admin_portfolio_renders_its_charts(context: BrowserContext, site: Site) -> None:
    page = open_page(context)
    sign_in(page, site.keys["admin"], "/portfolio")
    page.wait_for_url("**/portfolio")
    for name in ("retention", "churn"):
        points = page.locator(f"[data-testid=chart-{name}] svg:visible circle")
        assert points.count() == 2 * 12, name  # two lines, a point per month of each
    histogram = page.get_by_test_id("chart-histogram").locator("svg rect")
    assert histogram.count() == 10
    heights = histogram.evaluate_all("bars => bars.map(b => b.height.baseVal.value)")
    assert sum(h > 0 for h in heights) >= 2
    for name in ("bands", "managers", "segments"):
        bars = page.get_by_test_id(f"chart-{name}").locator("svg rect.bar")
        assert bars.count() >= 2, name
    managers = page.get_by_test_id("chart-managers").locator(".bar-label").all_text_contents()
    assert site.managers[0] in managers
    assert f"Version {site.model_version}" in page.get_by_test_id("model-version").inner_text()
    assert "logistic" in page.get_by_test_id("model-version").inner_text()
    shot(page, "07-portfolio")


def test_pages_fit_a_phone(browser: Browser, site: Site) -> None:
    ctx = browser.new_context(base_url=site.url, **PHONE)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    try:
        page = open_page(ctx)
        sign_in(page, site.keys["admin"])
        page.wait_for_url("**/clients")
        first = listed(page)[0]
        # What people type is not always breakable: one long word must not widen the page.
        with ScoreStore(site.settings.score_store_url) as store:
            store.log_action(first, "x" * 100, "y" * 2000, date(2025, 1, 2), "a CRM import")
        for path, name in (
            ("/clients", "08-phone-clients"),
            (f"/clients/{first}", "09-phone-client"),
            ("/portfolio", "10-phone-portfolio"),
        ):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width}px wide on a 390px screen"
            shot(page, name)
    finally:
        ctx.close()


# ------------------------------------------------------------------------- the manager's loop


def test_needs_attention_lists_who_to_call_and_a_next_step_shows_on_the_row(
    context: BrowserContext, site: Site
) -> None:
    manager = site.managers[0]
    page = open_page(context)
    sign_in(page, site.keys["a"])
    page.wait_for_url("**/clients")
    page.get_by_test_id("attention").locator("a.attention-all").click()
    page.wait_for_url("**attention=all**")
    today = datetime.now(UTC).date()
    with ScoreStore(site.settings.score_store_url) as store:
        expected, total = store.latest_scores(
            manager=manager, where=attention_conditions("all", today)
        )
    assert total and listed(page) == [s.client_id for s in expected]
    shot(page, "11-needs-attention")

    first = listed(page)[0]
    page.goto(f"/clients/{first}")
    page.select_option("#type", "Call")
    page.fill("#next_step", "Send the renewal proposal")
    page.fill("#due_on", (today + timedelta(days=7)).isoformat())
    page.click("#log-action button[type=submit]")
    page.wait_for_url("**logged=true**")
    assert page.get_by_test_id("action-notice").is_visible()  # by the list it scrolled to
    assert "Send the renewal proposal" in page.get_by_test_id("next-step").inner_text()
    page.goto(f"/clients?q={first}")
    cell = page.locator(f"tr[data-client-id='{first}'] td.follow-up").inner_text()
    assert "Call" in cell and "Next: Send the renewal proposal" in cell
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_the_filtered_list_downloads_as_csv(context: BrowserContext, site: Site) -> None:
    page = open_page(context)
    sign_in(page, site.keys["a"], "/clients?sort=probability&q=C")
    page.wait_for_url("**sort=probability**")
    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    path = download.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    with ScoreStore(site.settings.score_store_url) as store:
        expected, total = store.latest_scores(
            manager=site.managers[0], search="C", order_by="probability", limit=1000
        )
    assert total and [r["client_id"] for r in rows] == [s.client_id for s in expected]
    assert {r["account_manager"] for r in rows} == {site.managers[0]}
    assert download.value.suggested_filename.startswith("churnguard-clients-")


def test_phone_tables_stack_and_never_break_words(browser: Browser, site: Site) -> None:
    ctx = browser.new_context(base_url=site.url, **PHONE)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    try:
        page = open_page(ctx)
        sign_in(page, site.keys["admin"])
        page.wait_for_url("**/clients")
        first = listed(page)[0]
        for path, table, name in (
            (f"/clients/{first}", "table.contracts", "12-phone-contracts"),
            ("/portfolio", "table.months", "13-phone-months"),
        ):
            page.goto(path)
            cells = page.locator(f"{table} td")
            assert cells.count() > 0, path
            styles = cells.evaluate_all(
                "tds => tds.map(td => [getComputedStyle(td).overflowWrap,"
                " getComputedStyle(td).wordBreak, td.getBoundingClientRect().right])"
            )
            assert all(wrap == "normal" and brk == "normal" for wrap, brk, _ in styles), path
            assert max(right for _, _, right in styles) <= 390, f"{path}: a column is off-screen"
            assert page.locator(f"{table} thead").is_hidden()  # one labelled card per row
            shot(page, name)
    finally:
        ctx.close()


def test_an_unknown_page_is_the_styled_not_found_page(context: BrowserContext, site: Site) -> None:
    page = open_page(context)
    sign_in(page, site.keys["a"])
    page.wait_for_url("**/clients")
    answer = page.goto("/no-such-page")
    assert answer is not None and answer.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert page.get_by_test_id("viewer").inner_text() == site.managers[0]  # still signed in
    shot(page, "14-unknown-page")


def test_alert_links_open_the_clients_page(context: BrowserContext, site: Site) -> None:
    # a low bar for "rising" so that the demo's gentle moves show in the email's screenshot
    settings = site.settings.model_copy(update={"dashboard_url": site.url, "alert_rise": 0.04})
    today = datetime.now(UTC).date()
    with ScoreStore(site.settings.score_store_url) as store:
        mine, _ = store.latest_scores(manager=site.managers[0], limit=1)
        call = store.log_action(mine[0].client_id, "Call", "", today - timedelta(days=9), "a")
        plan_follow_up(store, call.id, mine[0].client_id, "Send the proposal", today)
        run = run_alerts(store, settings, today=today, dry_run=True)
    digest = next(d for d in run.digests if d.manager == site.managers[0])
    page = open_page(context)
    page.set_content(digest_html(digest))
    shot(page, "15-alert-email")
    item = next(i for i in digest.items if i.kind == "follow-up")
    assert "Follow-up due" in item.text and item.client_id == mine[0].client_id
    page.click(f"a[href='{item.link}']")
    page.wait_for_url("**/sign-in**")  # the link asks to sign in, then goes to the client
    page.fill("#api_key", site.keys["a"])
    page.click("form[action='/sign-in'] button[type=submit]")
    page.wait_for_url(f"**/clients/{item.client_id}")
    assert page.get_by_test_id("client-name").inner_text() == item.client_name
    assert "Send the proposal" in page.get_by_test_id("next-step").inner_text()


def test_the_api_docs_work_without_the_internet(context: BrowserContext, site: Site) -> None:
    page = open_page(context)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(site.url) else outside.append(r.url))
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() >= 5
    shot(page, "16-api-docs")
    page.goto("/redoc")
    page.get_by_text("/api/v1/score").first.wait_for()
    shot(page, "17-api-reference")
    # Nothing comes from another site, except ReDoc's own "by Redocly" footer logo, an image
    # whose absence offline leaves the page whole.
    assert [u for u in outside if not u.startswith(("blob:", "data:"))] in (
        [],
        ["https://cdn.redoc.ly/redoc/logo-mini.svg"],
    )
