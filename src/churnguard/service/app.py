"""The churnguard service: ``create_app(settings)`` builds the FastAPI application.

At start-up (the lifespan) it opens the score store, starts the score writer and loads the
champion model once; then it freezes the garbage collector's view of everything loaded so far,
which keeps collection pauses, and the latency tail, short. Without a model, or with the store's
database down, it still starts: ``/health/ready`` answers 503 with the reason, and loading the
model and making the store's tables are retried in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from churnguard.config import Settings
from churnguard.service import web
from churnguard.service.auth import KeyChecker
from churnguard.service.limits import BodySizeLimit, InFlightLimit
from churnguard.service.metrics import RequestMetrics, ServiceMetrics
from churnguard.service.openapi import document_statuses
from churnguard.service.routes import clients, health, model, score
from churnguard.service.state import ServiceState
from churnguard.service.web.routes import page_not_found
from churnguard.service.writer import ScoreWriter
from churnguard.store.database import StoreUnavailableError
from churnguard.store.scores import ScoreStore

logger = logging.getLogger(__name__)

_MAX_ERRORS = 50  # field errors listed in one 422 answer
_UNPARSED = (UnicodeDecodeError, RecursionError)  # what json.loads raises besides a decode error
_SCORING = {("POST", "/api/v1/score")}  # the work bounded by settings.max_scoring_in_flight
_STORE_RETRY_SECONDS = 1.0  # while the store's database is down, try it this often

DESCRIPTION = """
Churn risk for a service business's clients: probability of churning within the model's
horizon, revenue at risk, the drivers behind it in plain words, and recommended actions.

**Authentication**: every `/api/v1` call takes an API key, as `Authorization: Bearer <key>` or
`X-API-Key: <key>` (create one with `churnguard keys create`). Roles: `crm` scores clients,
`manager` sees and acts on their own clients only, `admin` does everything. A revoked key stops
working within `key_cache_seconds` (10 s by default). `/health/*` and `/metrics` need no key.
"""


def create_app(settings: Settings) -> FastAPI:
    """The API application for these settings."""
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _serving(settings, metrics) as state:
            app.state.service = state
            yield

    app = FastAPI(
        title="churnguard",
        summary="Churn-risk prediction for service businesses",
        description=DESCRIPTION,
        version=_package_version(),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from the dashboard's router, without a CDN
        redoc_url=None,
    )
    routers = (score.router, clients.router, model.router, health.router, web.router)
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(StoreUnavailableError, _store_unavailable)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(InFlightLimit, most=settings.max_scoring_in_flight, routes=_SCORING)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: counts 413s too
    document_statuses(app, routers, shed=_SCORING)
    return app


@contextlib.asynccontextmanager
async def _serving(settings: Settings, metrics: ServiceMetrics) -> AsyncIterator[ServiceState]:
    """Store, writer and model for the life of the app; written and closed at the end."""
    store = ScoreStore(settings.score_store_url)
    writer = ScoreWriter(store).start()
    metrics.watch_writer(writer)
    checker = KeyChecker(store, settings.key_cache_seconds)
    state = ServiceState(settings, store, writer, metrics, checker)
    metrics.set_model(None)
    await anyio.to_thread.run_sync(state.make_store)  # a database that is down: made later
    await anyio.to_thread.run_sync(state.try_load_model)  # also freezes the GC once loaded
    retries = [
        asyncio.create_task(_keep_trying(state, settings.model_retry_seconds)),
        asyncio.create_task(_keep_making_store(state, _STORE_RETRY_SECONDS)),
    ]
    try:
        yield state
    finally:
        for retry in retries:
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retry
        await anyio.to_thread.run_sync(writer.close)
        store.close()


async def _keep_trying(state: ServiceState, every: float) -> None:
    """While no model is loaded, try again every ``every`` seconds (0: never)."""
    while every > 0 and state.scorer is None:
        await asyncio.sleep(every)
        await anyio.to_thread.run_sync(state.try_load_model)


async def _keep_making_store(state: ServiceState, every: float) -> None:
    """Until the store's tables are made (its database was down at start), try every ``every`` s."""
    while not state.store_made:
        await asyncio.sleep(every)
        await anyio.to_thread.run_sync(state.make_store)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 listing each invalid field's path, message and type; input values are not echoed."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    detail: list[dict[str, Any]] = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in errors[:_MAX_ERRORS]
    ]
    if len(errors) > _MAX_ERRORS:
        more = len(errors) - _MAX_ERRORS
        detail.append({"loc": ["body"], "msg": f"and {more} more errors", "type": "too_many"})
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, except a body that is not JSON text at all: 422 naming the body."""
    assert isinstance(exc, HTTPException)
    cause = exc.__cause__
    if exc.status_code == status.HTTP_400_BAD_REQUEST and isinstance(cause, _UNPARSED):
        msg = (
            "the body is nested too deeply"
            if isinstance(cause, RecursionError)
            else "the body is not valid UTF-8, UTF-16 or UTF-32 text"
        )
        detail = [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    if exc.status_code == status.HTTP_404_NOT_FOUND and (page := page_not_found(request)):
        return page  # an unknown dashboard path: the styled page, not JSON
    return await http_exception_handler(request, exc)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After while the score store's database cannot be reached."""
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the score store is unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(StoreUnavailableError.retry_after)},
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """500 without details for the caller; the traceback goes to the log."""
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal server error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR
    )


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("churnguard")
    except PackageNotFoundError:
        return "0+unknown"
