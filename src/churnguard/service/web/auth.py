"""Who is signed in to the dashboard, cookies, CSRF checks, and HTML error pages.

Pages take the viewer from the session cookie (``CurrentViewer``): without a valid session a
page redirects to the sign-in form; a page a role may not see is a 403 page; a client outside
the viewer's book is a 404 page, as if it did not exist; while the score store is down, a 503
page with Retry-After. Every POST carries a CSRF token and, when the browser sends one, an
``Origin`` of this site.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from churnguard.config import Settings
from churnguard.service.web.crm import CRMCache
from churnguard.service.web.sessions import SessionStore, SignInLimiter, Viewer, same_token
from churnguard.service.web.templating import render
from churnguard.store.database import StoreUnavailableError

SIGN_IN_PATH = "/sign-in"


@dataclass
class Dashboard:
    """What the dashboard keeps for the life of the app (on ``app.state.dashboard``)."""

    settings: Settings
    sessions: SessionStore
    crm: CRMCache
    secure_cookies: bool = True
    limiter: SignInLimiter = field(default_factory=SignInLimiter)

    @property
    def session_cookie(self) -> str:
        # __Host-: the browser takes it only from this host, over HTTPS (or localhost), Path=/
        return "__Host-churnguard_session" if self.secure_cookies else "churnguard_session"

    @property
    def sign_in_cookie(self) -> str:
        return "__Host-churnguard_sign_in" if self.secure_cookies else "churnguard_sign_in"

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure_cookies,
            httponly=True,
            samesite="lax" if name == self.session_cookie else "strict",
        )

    def delete_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name, path="/", secure=self.secure_cookies, httponly=True, samesite="lax"
        )


class WebError(Exception):
    """An error shown as an HTML page."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message
        self.viewer: Viewer | None = None


class SignInRequiredError(Exception):
    """No valid session: the page redirects to the sign-in form."""


def not_found(viewer: Viewer | None = None) -> WebError:
    error = WebError(404, "Not found", "There is no such page or client in your view.")
    error.viewer = viewer
    return error


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class DashboardRoute(APIRoute):
    """A page route: its errors, and those of its dependencies, become HTML pages."""

    def get_route_handler(self) -> Endpoint:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequiredError:
                target = quote(_local_path(request), safe="/")
                return RedirectResponse(f"{SIGN_IN_PATH}?next={target}", status_code=303)
            except WebError as error:
                return error_page(request, error)
            except RequestValidationError:
                invalid = WebError(400, "Bad request", "The address or the form is not valid.")
                return error_page(request, invalid)
            except StoreUnavailableError:
                down = WebError(503, "Unavailable", "The scores cannot be read now. Try again.")
                page = error_page(request, down)
                page.headers["Retry-After"] = str(StoreUnavailableError.retry_after)
                return page

        return page


def error_page(request: Request, error: WebError) -> Response:
    context = {"error": error, "viewer": error.viewer}
    return render(request, "error.html", context, status_code=error.status_code)


def _local_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


# ---------------------------------------------------------------------------------- dependencies


def get_dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]


def session_token(request: Request, dashboard: DashboardDep) -> str | None:
    return request.cookies.get(dashboard.session_cookie)


def get_viewer(request: Request, dashboard: DashboardDep) -> Viewer:
    """The signed-in viewer; without a valid session, a redirect to the sign-in form."""
    token = session_token(request, dashboard)
    viewer = dashboard.sessions.viewer(token) if token else None
    if viewer is None:
        raise SignInRequiredError
    return viewer


CurrentViewer = Annotated[Viewer, Depends(get_viewer)]


def get_admin(viewer: CurrentViewer) -> Viewer:
    """The viewer if an admin; a manager gets a 403 page."""
    if not viewer.is_admin:
        error = WebError(403, "Not allowed", "This page is for administrators only.")
        error.viewer = viewer
        raise error
    return viewer


AdminViewer = Annotated[Viewer, Depends(get_admin)]


def check_post(request: Request, submitted: str | None, expected: str | None) -> None:
    """Reject a POST from another site: wrong Origin, or a missing or wrong CSRF token."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise WebError(403, "Not allowed", "This form was sent from another site.")
    if not same_token(submitted, expected):
        raise WebError(
            403,
            "Form expired",
            "This form is out of date or was not sent from this site. Reload the page and "
            "try again.",
        )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/clients"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/clients"
    return target
