"""The dashboard's pages: sign in and out, my clients, one client, the portfolio.

Server-rendered HTML from the same app as the API. A manager sees their own book only; another
manager's client is a 404 page, exactly like a client that does not exist.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from churnguard.features.records import STORABLE
from churnguard.service.deps import StateDep, StoreDep, WriterDep
from churnguard.service.downloads import csv_download
from churnguard.service.state import ServiceState
from churnguard.service.web import apidocs, pages, portfolio_view
from churnguard.service.web.auth import (
    SIGN_IN_PATH,
    AdminViewer,
    CurrentViewer,
    Dashboard,
    DashboardDep,
    DashboardRoute,
    WebError,
    check_post,
    error_page,
    not_found,
    safe_next,
    session_token,
)
from churnguard.service.web.crm import CRMCache
from churnguard.service.web.sessions import DASHBOARD_ROLES, SessionStore, Viewer, new_token
from churnguard.service.web.templating import render
from churnguard.store.actions import action_date_problem
from churnguard.store.attention import ATTENTION, attention_conditions
from churnguard.store.export import export_rows
from churnguard.store.followups import plan_follow_up
from churnguard.store.schema import TEXT_LIMITS
from churnguard.store.scores import Score, ScoreStore

API_PATHS = ("/api/", "/health/", "/metrics", "/openapi.json", "/docs", "/redoc")
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"dashboard.css": "text/css", "favicon.svg": "image/svg+xml"}
SIGN_IN_SECONDS = 30 * 60  # the sign-in form's own token lives this long
MAX_NOTE = 5000


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Sessions on the score store, and the CRM data loading in the background."""
    state: ServiceState = app.state.service
    settings = state.settings
    hours = settings.dashboard_session_hours
    dashboard = Dashboard(
        settings=settings,
        sessions=SessionStore(state.store.engine, timedelta(hours=hours)),
        crm=CRMCache(settings.crm_source, settings.crm_mapping),
        secure_cookies=settings.dashboard_secure_cookies,
    )
    app.state.dashboard = dashboard
    threading.Thread(target=dashboard.crm.get, name="crm-load", daemon=True).start()
    yield


router = APIRouter(route_class=DashboardRoute, include_in_schema=False, lifespan=lifespan)
router.include_router(apidocs.router)  # /docs and /redoc, their assets served from here


def page_not_found(request: Request) -> Response | None:
    """The styled 404 page for an unknown path outside the API (None for the API's paths)."""
    if request.url.path.startswith(API_PATHS):
        return None
    dashboard: Dashboard | None = getattr(request.app.state, "dashboard", None)
    token = session_token(request, dashboard) if dashboard is not None else None
    viewer = dashboard.sessions.viewer(token) if dashboard is not None and token else None
    return error_page(request, not_found(viewer))


Sort = Literal["revenue_at_risk", "probability", "monthly_value", "renewal"]
Band = Literal["high", "medium", "low", ""]
Direction = Literal["asc", "desc", ""]  # "": each sort's usual order
Attention = Literal["", "all", "new-high", "rising", "no-action", "unassigned"]


@dataclass(frozen=True)
class ClientFilters:
    """What "My clients" lists, from the query string (the page and its CSV take the same)."""

    sort: Sort = "revenue_at_risk"
    direction: Direction = ""
    band: Band = ""
    q: Annotated[str, Query(max_length=200), STORABLE] = ""
    manager: Annotated[str, Query(max_length=200), STORABLE] = ""
    attention: Attention = ""

    @property
    def ascending(self) -> bool | None:
        """The order asked for (None: the sort's usual order)."""
        return None if not self.direction else self.direction == "asc"

    @property
    def search(self) -> str | None:
        """The search text, None when blank."""
        return self.q.strip() or None


Filters = Annotated[ClientFilters, Depends()]


@router.get("/")
def read_home() -> RedirectResponse:
    return RedirectResponse("/clients", status_code=303)


@router.get("/static/{name}")
def read_static(name: str) -> Response:
    """The stylesheet and icon, from the package (the pages load nothing else)."""
    if name not in STATIC_FILES:
        raise WebError(404, "Not found", "There is no such file.")
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=headers)


# ---------------------------------------------------------------------------------- signing in


@router.get(SIGN_IN_PATH)
def read_sign_in(
    request: Request, dashboard: DashboardDep, next: str | None = None, signed_out: bool = False
) -> Response:
    """The sign-in form (or straight on, when already signed in)."""
    token = session_token(request, dashboard)
    if token and dashboard.sessions.viewer(token):
        return RedirectResponse(safe_next(next), status_code=303)
    return _sign_in_form(request, dashboard, next, "Signed out." if signed_out else None)


@router.post(SIGN_IN_PATH)
def sign_in(
    request: Request,
    dashboard: DashboardDep,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=500), STORABLE] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """Check the key; a manager or admin key starts a session."""
    check_post(request, csrf, request.cookies.get(dashboard.sign_in_cookie))
    address = request.client.host if request.client else "unknown"
    if dashboard.limiter.blocked(address, api_key):
        raise WebError(429, "Too many attempts", "Too many failed sign-ins; wait a few minutes.")
    principal = state.keys.authenticate(api_key.strip()) if api_key.strip() else None
    if principal is None or principal.role not in DASHBOARD_ROLES:
        dashboard.limiter.failed(address, api_key)
        message = (
            "This API key is valid, but a CRM key cannot sign in to the dashboard: use a "
            "manager or admin key."
            if principal is not None
            else "That key is not valid (or has been revoked)."
        )
        return _sign_in_form(request, dashboard, next, error=message, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    token = dashboard.sessions.start(principal.key_id)
    max_age = int(dashboard.sessions.lifetime.total_seconds())
    dashboard.set_cookie(response, dashboard.session_cookie, token, max_age)
    dashboard.delete_cookie(response, dashboard.sign_in_cookie)
    return response


@router.post("/sign-out")
def sign_out(
    request: Request, dashboard: DashboardDep, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """End the session and forget the cookie."""
    token = session_token(request, dashboard)
    viewer = dashboard.sessions.viewer(token) if token else None
    if token and viewer is not None:
        check_post(request, csrf, viewer.csrf)
        dashboard.sessions.end(token)
    response = RedirectResponse(f"{SIGN_IN_PATH}?signed_out=true", status_code=303)
    dashboard.delete_cookie(response, dashboard.session_cookie)
    return response


def _sign_in_form(
    request: Request,
    dashboard: Dashboard,
    next: str | None,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    token = new_token()
    context = {"csrf": token, "next": safe_next(next), "notice": notice, "error": error}
    response = render(request, "sign_in.html", context, status_code)
    dashboard.set_cookie(response, dashboard.sign_in_cookie, token, SIGN_IN_SECONDS)
    return response


# ---------------------------------------------------------------------------------- my clients


@router.get("/clients")
def read_clients(
    request: Request,
    viewer: CurrentViewer,
    dashboard: DashboardDep,
    store: StoreDep,
    writer: WriterDep,
    filters: Filters,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The viewer's clients, highest revenue at risk first by default."""
    writer.flush()
    crm, problem = dashboard.crm.get()
    managers = pages.known_managers(store) if viewer.is_admin else []
    chosen, book = _book(viewer, filters.manager, managers)
    listing = pages.clients_page(
        store,
        crm,
        manager=book,
        band=filters.band or None,
        search=filters.search,
        sort=filters.sort,
        page=page,
        ascending=filters.ascending,
        attention=filters.attention,
    )
    context = {
        "viewer": viewer,
        "listing": listing,
        "filters": {**asdict(filters), "manager": chosen.shown if chosen else ""},
        "sorts": pages.SORTS,
        "bands": pages.BANDS,
        "managers": managers,
        "unassigned": pages.UNASSIGNED,
        "attention_kinds": ATTENTION,
        "today": datetime.now(UTC).date(),
        "manager_hint": chosen.hint if chosen else None,
        "stale": pages.stale_scores(store),
        "crm_problem": problem,
    }
    return render(request, "clients.html", context)


def _book(
    viewer: Viewer, manager: str, managers: list[str]
) -> tuple[pages.ManagerFilter | None, str | None]:
    """The admin's manager filter as understood, and the book to list (a manager: their own)."""
    chosen = pages.manager_filter(manager, managers) if viewer.is_admin else None
    return chosen, viewer.scope(chosen.book if chosen else None)


@router.get("/clients.csv")
def read_clients_csv(
    viewer: CurrentViewer,
    store: StoreDep,
    writer: WriterDep,
    filters: Filters,
) -> StreamingResponse:
    """The list "My clients" shows, every page of it, as CSV (renewal order: by revenue)."""
    writer.flush()
    attention = filters.attention
    managers = pages.known_managers(store) if viewer.is_admin and filters.manager else []
    _, book = _book(viewer, filters.manager, managers)
    rows = export_rows(
        store,
        manager=book,
        band=filters.band or None,
        search=filters.search,
        order_by="revenue_at_risk" if filters.sort == "renewal" else filters.sort,
        ascending=filters.ascending,
        where=attention_conditions(attention, datetime.now(UTC).date()) if attention else (),
    )
    return csv_download(rows, "clients")


# ---------------------------------------------------------------------------------- one client


@router.get("/clients/{client_id}")
def read_client(
    request: Request,
    client_id: str,
    viewer: CurrentViewer,
    dashboard: DashboardDep,
    state: StateDep,
    writer: WriterDep,
    logged: bool = False,
) -> Response:
    """A client's risk, reasons, recommended actions, history, and the action form."""
    writer.flush()
    score = _visible_score(state.store, viewer, client_id)
    return _client_page(request, dashboard, state, viewer, score, notice=logged)


@router.post("/clients/{client_id}/actions")
def create_action(
    request: Request,
    client_id: str,
    viewer: CurrentViewer,
    dashboard: DashboardDep,
    state: StateDep,
    csrf: Annotated[str, Form(max_length=200)] = "",
    type: Annotated[str, Form(max_length=200), STORABLE] = "",
    note: Annotated[str, Form(max_length=20_000), STORABLE] = "",
    happened_on: Annotated[str, Form(max_length=40)] = "",
    next_step: Annotated[str, Form(max_length=2000), STORABLE] = "",
    due_on: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Log what was done about a client, and optionally the next step and when it is due; a
    bad form comes back with its errors."""
    check_post(request, csrf, viewer.csrf)
    score = _visible_score(state.store, viewer, client_id)
    form = {
        "type": type.strip(),
        "note": note.strip(),
        "happened_on": happened_on.strip(),
        "next_step": next_step.strip(),
        "due_on": due_on.strip(),
    }
    errors, when = _check_action(form, pages.action_types(score))
    due = _check_follow_up(form, when, errors)
    if errors:
        return _client_page(
            request, dashboard, state, viewer, score, form=form, errors=errors, status_code=422
        )
    logged_by = viewer.manager or f"{viewer.role} key {viewer.key_id}"
    logged = state.store.log_action(
        client_id, form["type"], form["note"], when, logged_by=logged_by
    )
    if due is not None:
        plan_follow_up(state.store, logged.id, client_id, form["next_step"], due)
    return RedirectResponse(f"/clients/{client_id}?logged=true#actions", status_code=303)


def _check_follow_up(form: dict[str, str], when: date, errors: dict[str, str]) -> date | None:
    """The next step's due date (None without a next step); its problems go into ``errors``."""
    if not form["next_step"] and not form["due_on"]:
        return None
    if not form["next_step"]:
        errors["next_step"] = "Say what the next step is, or leave the due date empty."
    try:
        due = date.fromisoformat(form["due_on"])
    except ValueError:
        errors["due_on"] = "Give the due date as YYYY-MM-DD."
        return None
    if due < when:
        errors["due_on"] = "The next step cannot be due before the action happened."
    elif due.year > when.year + 5:
        errors["due_on"] = "The due date is too far ahead."
    return due


def _check_action(form: dict[str, str], types: list[str]) -> tuple[dict[str, str], date]:
    """Field errors of the action form, and its date."""
    errors: dict[str, str] = {}
    today = datetime.now(UTC).date()
    when = today
    if form["type"] not in types:
        errors["type"] = "Choose what you did from the list."
    if len(form["note"]) > MAX_NOTE:
        errors["note"] = f"Keep the note under {MAX_NOTE:,} characters."
    try:
        when = date.fromisoformat(form["happened_on"]) if form["happened_on"] else today
    except ValueError:
        errors["happened_on"] = "Give the date as YYYY-MM-DD."
    else:
        if problem := action_date_problem(when, today):
            errors["happened_on"] = problem
    return errors, when


def _client_page(
    request: Request,
    dashboard: Dashboard,
    state: ServiceState,
    viewer: Viewer,
    score: Score,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: bool = False,
    status_code: int = 200,
) -> Response:
    crm, problem = dashboard.crm.get()
    scorer = state.scorer
    thresholds = scorer.thresholds if scorer is not None else state.settings.risk_bands
    detail = pages.client_page(state.store, crm, score, thresholds)
    today = datetime.now(UTC).date()
    context = {
        "viewer": viewer,
        "client": detail,
        "form": form
        or {
            "type": "",
            "note": "",
            "happened_on": today.isoformat(),
            "next_step": "",
            "due_on": "",
        },
        "errors": errors or {},
        "today": today.isoformat(),
        "today_date": today,
        "notice": "Action logged." if notice else None,
        "stale": pages.stale_scores(state.store),
        "crm_problem": problem,
    }
    return render(request, "client.html", context, status_code)


def _visible_score(store: ScoreStore, viewer: Viewer, client_id: str) -> Score:
    """The client's latest score if the viewer may see the client, else a 404 page."""
    storable = len(client_id) <= TEXT_LIMITS["client_id"] and "\x00" not in client_id
    score = store.latest_score(client_id) if storable else None
    if score is None or not viewer.may_see(score.account_manager):
        raise not_found(viewer)
    return score


# ---------------------------------------------------------------------------------- portfolio


@router.get("/portfolio")
def read_portfolio(
    request: Request, viewer: AdminViewer, dashboard: DashboardDep, state: StateDep
) -> Response:
    """Retention and churn by month, risk across the book, the model serving (admins only)."""
    state.writer.flush()
    crm, problem = dashboard.crm.get()
    settings = state.settings
    scorer = state.scorer
    thresholds = scorer.thresholds if scorer is not None else settings.risk_bands
    portfolio = portfolio_view.portfolio_page(
        state.store,
        crm,
        scorer,
        thresholds,
        settings.grace_days,
        settings.currency,
        settings.mlflow_ui_url,
    )
    context = {"viewer": viewer, "portfolio": portfolio, "crm_problem": problem}
    return render(request, "portfolio.html", context)
