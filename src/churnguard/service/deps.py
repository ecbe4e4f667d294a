"""Dependencies of the routes, typed as ``Annotated`` aliases: the state, the caller, the model.

Authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; ``keys.authenticate``
checks the key against its stored hash (``auth.KeyChecker`` remembers accepted keys for a few
seconds). No key or a bad key is 401 (with ``WWW-Authenticate``), a key whose role may not do
what is asked is 403. Which clients a key may see is ``Principal.may_see``.

``ScoringDep`` is the score route's one dependency: the same checks, in the same order (401,
403, then 503 without a model), as ``ScoringPrincipal`` and ``ScorerDep`` together, resolved in
one step instead of six (FastAPI's resolution costs per dependency and per request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from churnguard.service.metrics import ServiceMetrics
from churnguard.service.state import ServiceState
from churnguard.service.writer import ScoreWriter
from churnguard.store.keys import Principal
from churnguard.store.scores import ScoreStore

if TYPE_CHECKING:
    from churnguard.scoring.scorer import Scorer
else:
    Scorer = Any  # resolved by FastAPI at runtime; scoring.py imports MLflow

_bearer = HTTPBearer(
    auto_error=False, description="An API key: `Authorization: Bearer cg_<key id>_<secret>`."
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The same API key in an X-API-Key header."
)
# The OpenAPI security of a route that reads the key itself (``get_scoring``), as the two
# schemes above would document it
KEY_SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
SCORING_ROLES = ("crm", "admin")


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_store(state: StateDep) -> ScoreStore:
    return state.store


async def get_writer(state: StateDep) -> ScoreWriter:
    return state.writer


async def get_metrics(state: StateDep) -> ServiceMetrics:
    return state.metrics


StoreDep = Annotated[ScoreStore, Depends(get_store)]
WriterDep = Annotated[ScoreWriter, Depends(get_writer)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


async def get_scorer(state: StateDep) -> Scorer:
    """The scorer serving now; this request keeps it even if a reload swaps in another."""
    return _serving(state)


def _serving(state: ServiceState) -> Scorer:
    scorer = state.scorer  # read once: the reference this request works with
    if scorer is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, state.unavailable, headers={"Retry-After": "30"}
        )
    return scorer


ScorerDep = Annotated[Scorer, Depends(get_scorer)]


async def get_principal(
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Who calls: the principal of the request's API key (401 without a valid one).

    Runs on the event loop: a key checked in the last seconds is a dictionary look-up, and
    otherwise one indexed read of the score store.
    """
    return _authenticate(state, bearer.credentials if bearer is not None else api_key)


def _authenticate(state: ServiceState, key: str | None) -> Principal:
    if not key:
        raise _unauthorized(
            "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`", None
        )
    principal = state.keys.authenticate(key)
    if principal is None:
        raise _unauthorized("invalid or revoked API key", "invalid_token")
    return principal


def _unauthorized(detail: str, error: str | None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge}
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting only keys of these roles (403 for the others)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        return _admitted(principal, roles)

    return check


def _admitted(principal: Principal, roles: tuple[str, ...]) -> Principal:
    """The principal if its role is one of ``roles``, else 403."""
    if principal.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"a {principal.role} key may not do this; it takes a key of role {' or '.join(roles)}",
        )
    return principal


ScoringPrincipal = Annotated[Principal, Depends(require_role(*SCORING_ROLES))]
ActingPrincipal = Annotated[Principal, Depends(require_role("manager", "admin"))]
AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]


@dataclass(frozen=True, slots=True)
class Scoring:
    """What the score route needs: the service's state, the scorer serving now, the caller."""

    state: ServiceState
    scorer: Scorer
    principal: Principal


async def get_scoring(request: Request) -> Scoring:
    """The caller (401, 403 unless crm or admin), then the scorer (503 without one), in one step.

    Routes using it document ``KEY_SECURITY`` (``openapi_extra``): the key is read here, through
    the same two schemes, rather than by two dependencies of their own.
    """
    state: ServiceState = request.app.state.service
    bearer = await _bearer(request)
    key = bearer.credentials if bearer is not None else await _api_key(request)
    principal = _admitted(_authenticate(state, key), SCORING_ROLES)
    return Scoring(state, _serving(state), principal)


ScoringDep = Annotated[Scoring, Depends(get_scoring)]
