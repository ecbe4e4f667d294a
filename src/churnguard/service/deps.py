"""Dependencies of the routes, typed as ``Annotated`` aliases: the state, the caller, the model.

Authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; ``keys.authenticate``
checks the key against its stored hash (``auth.KeyChecker`` remembers accepted keys for a few
seconds). No key or a bad key is 401 (with ``WWW-Authenticate``), a key whose role may not do
what is asked is 403. Which clients a key may see is ``Principal.may_see``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
    key = bearer.credentials if bearer is not None else api_key
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
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"a {principal.role} key may not do this; it takes a key of role "
                f"{' or '.join(roles)}",
            )
        return principal

    return check


ScoringPrincipal = Annotated[Principal, Depends(require_role("crm", "admin"))]
ActingPrincipal = Annotated[Principal, Depends(require_role("manager", "admin"))]
AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]
