"""``POST /api/v1/score``: a CRM sends clients' records and gets risk, drivers and actions back.

The route is thin: it validates the request, asks the scorer for complete scores ("what changed"
included), waits until the writer has committed them and returns them. What it needs (the
caller, the scorer) comes from one dependency (``ScoringDep``).

Where the work runs: a small request (at most ``INLINE_ROWS`` records in all) on a SQLite store
is scored on the event loop, a few milliseconds of CPU that a trip to a worker thread and back
would cost again in hand-offs; a larger one, or any request on a PostgreSQL store (whose "what
changed" read waits on the network), goes to a worker thread in one trip, so the loop keeps
serving other connections and health checks. Either way the commit is awaited, not waited for
in a thread (``ScoreWriter.write``).

The body is parsed and validated in one step by pydantic's JSON parser (``ScoreRoute``), which
is faster than ``json.loads`` followed by validating the Python objects. The bulk tables'
rows (interactions, feedback, invoices, tickets, events) are first read as plain JSON objects
and checked a column at a time (``ScoreRows``, ``records.read_columns``), without a model per
row; a body whose rows do not all pass those checks is validated by the row models
(``ScoreRequest``), which accept every shape they accept and name the field of a bad one. A
body that does not validate that way goes the usual way (Starlette's ``json.loads``, then
FastAPI's validation), so every 4xx answer stays what FastAPI makes of the body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError

from churnguard.domain.timeaxis import EARLIEST, LATEST, utc_datetime
from churnguard.features.records import record_count
from churnguard.scoring.scorer import RecordsError
from churnguard.service.deps import KEY_SECURITY, ScoringDep
from churnguard.service.schemas import (
    ErrorPublic,
    ScorePublic,
    ScoreRequest,
    ScoreRows,
    ScoresPublic,
    ValidationErrorPublic,
)
from churnguard.store.scores import ScoreRecord, ScoreStore

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer

INLINE_ROWS = 1_000  # records in a request scored on the event loop at most (about 10 ms of CPU)


class ScoreRequestBody(Request):
    """A request whose JSON body is read straight into a ``ScoreRequest`` when it is valid.

    FastAPI then finds a ``ScoreRequest`` where it expects the parsed JSON, and its validation
    of the body accepts the instance as it is.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_score_request"):
            body = await self.body()
            request = read_request(body)
            self._score_request = await super().json() if request is None else request
        return self._score_request


def read_request(body: bytes) -> ScoreRequest | None:
    """A valid body as a ``ScoreRequest``, its bulk tables read as columns when their rows pass
    the column checks, else by the row models; None when it does not validate (json.loads and
    FastAPI's validation then say why, as ever)."""
    try:
        fast = ScoreRows.model_validate_json(body).request()
    except ValidationError:
        fast = None
    if fast is not None:
        return fast
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError:
        return None


class ScoreRoute(APIRoute):
    """The route of ``POST /api/v1/score``: hands the endpoint a ``ScoreRequestBody``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_score_request(request: Request) -> Response:
            return await handle(ScoreRequestBody(request.scope, request.receive))

        return handle_score_request


router = APIRouter(prefix="/api/v1", tags=["scores"], route_class=ScoreRoute)


@router.post(
    "/score",
    responses={
        401: {"model": ErrorPublic, "description": "No API key, or not a valid one."},
        403: {"model": ErrorPublic, "description": "The key's role may not score (crm, admin)."},
        413: {"model": ErrorPublic, "description": "The body is over the size limit."},
        422: {"model": ValidationErrorPublic, "description": "Invalid records: field paths."},
        503: {"model": ErrorPublic, "description": "No model is loaded yet."},
    },
    openapi_extra={"security": KEY_SECURITY},
)
async def create_scores(body: ScoreRequest, scoring: ScoringDep) -> ScoresPublic:
    """Score clients from their CRM records; each score is stored with its audit record.

    Each score carries the calibrated churn probability within the model's horizon, the risk
    band, revenue at risk, the top drivers with reasons, recommended actions and what changed
    since the client's previous stored score.
    """
    state, scorer = scoring.state, scoring.scorer
    _check_clients(body, state.settings.max_clients_per_request)
    clients = _dated(body, state.settings.max_clock_skew_seconds)
    if any(state.writer.is_pending(c.client_id) for c in body.clients):
        await state.writer.flushed()  # a client's last score is on its way: compare with it
    if state.store.dialect == "sqlite" and _records(body) <= INLINE_ROWS:
        records = score_clients(clients, scorer, state.store)
    else:
        records = await run_in_threadpool(score_clients, clients, scorer, state.store)
    await state.writer.write(records)
    state.metrics.count_scores(r.band for r in records)
    return ScoresPublic(model_version=scorer.version, scores=[ScorePublic.of(r) for r in records])


def score_clients(
    clients: list[tuple[Any, datetime]], scorer: Scorer, store: ScoreStore
) -> list[ScoreRecord]:
    """Score each client at its as_of, "what changed" included: the records to store."""
    try:
        scores = scorer.score_clients(clients, store)
    except RecordsError as exc:
        raise _invalid(("body", "clients", exc.index), exc.reason, "value_error") from exc
    return [s.to_record() for s in scores]


def _records(body: ScoreRequest) -> int:
    """How many records the request carries."""
    return sum(record_count(client) for client in body.clients)


def _dated(body: ScoreRequest, skew_seconds: float) -> list[tuple[Any, datetime]]:
    """Each client's records with its as_of (see ``_as_of``)."""
    now = datetime.now(UTC).replace(microsecond=0)
    latest = datetime.now(UTC) + timedelta(seconds=skew_seconds)
    return [(client, _as_of(body, i, now, latest)) for i, client in enumerate(body.clients)]


def _check_clients(body: ScoreRequest, most: int) -> None:
    """At most ``most`` clients, each once."""
    if len(body.clients) > most:
        raise _invalid(
            ("body", "clients"),
            f"at most {most} clients per request, got {len(body.clients)}: "
            "send them in several requests",
            "too_long",
        )
    seen: dict[str, int] = {}
    for i, client in enumerate(body.clients):
        first = seen.setdefault(client.client_id, i)
        if first != i:
            raise _invalid(
                ("body", "clients", i, "client_id"),
                f"the same client_id as clients[{first}]: send each client once",
                "duplicate",
            )


def _as_of(body: ScoreRequest, i: int, now: datetime, latest: datetime) -> datetime:
    """Client i's as_of: its own, else the request's, else now; in UTC and in range.

    Not after ``latest`` (now plus the allowed clock skew): a score of the future would stay
    the newest for years.
    """
    own: datetime | None = body.clients[i].as_of
    given = own or body.as_of
    if given is None:
        return now
    loc = ("body", "clients", i, "as_of") if own is not None else ("body", "as_of")
    when = utc_datetime(given)
    if not EARLIEST <= when < LATEST:
        msg = f"as_of must lie in {EARLIEST:%Y-%m-%d} .. {LATEST:%Y-%m-%d} (UTC)"
        raise _invalid(loc, msg, "value_error")
    if when > latest:
        raise _invalid(loc, "as_of lies in the future; score as of now or earlier", "value_error")
    return when


def _invalid(loc: tuple[str | int, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])
