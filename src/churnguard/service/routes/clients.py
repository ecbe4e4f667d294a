"""Clients' latest scores, one client's detail, and the actions account managers log.

A manager key sees its own book only, everywhere (``Principal.may_see``): the list is filtered
to it, and another manager's client is "not found" (404), as if it did not exist, not "forbidden".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import StreamingResponse

from churnguard.features.records import STORABLE
from churnguard.service.deps import (
    ActingPrincipal,
    CurrentPrincipal,
    StoreDep,
    WriterDep,
)
from churnguard.service.downloads import csv_download
from churnguard.service.schemas import (
    ActionCreate,
    Band,
    ClientDetail,
    ClientsPublic,
    ErrorPublic,
    LoggedActionPublic,
    Order,
    ScoreHistoryItem,
    ScorePublic,
)
from churnguard.store.attention import attention_conditions
from churnguard.store.export import export_rows
from churnguard.store.keys import Principal
from churnguard.store.schema import TEXT_LIMITS
from churnguard.store.scores import MAX_OFFSET, MAX_PAGE, Score, ScoreStore

router = APIRouter(prefix="/api/v1/clients", tags=["clients"])

Text = Annotated[str, STORABLE]  # no character a database cannot keep (NUL): 422 naming it
ClientId = Annotated[Text, Path(min_length=1, max_length=TEXT_LIMITS["client_id"])]
ManagerQuery = Annotated[
    Text | None,
    Query(
        max_length=TEXT_LIMITS["account_manager"],
        description="Account manager (a manager key: own)",
    ),
]
SearchQuery = Annotated[
    Text | None,
    Query(max_length=TEXT_LIMITS["client_name"], description="Part of the client id or name"),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No such client in the caller's view."}
}


@router.get("")
def read_clients(
    principal: CurrentPrincipal,
    store: StoreDep,
    writer: WriterDep,
    manager: ManagerQuery = None,
    band: Band | None = None,
    search: SearchQuery = None,
    order_by: Order = "revenue_at_risk",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    attention: Annotated[
        Literal["all", "new-high", "rising", "no-action", "unassigned"] | None,
        Query(description="Only the clients needing attention: all, or one kind"),
    ] = None,
) -> ClientsPublic:
    """Each client's latest score, highest revenue at risk first by default, one page."""
    writer.flush()
    rows, total = store.latest_scores(
        manager=principal.scope(manager),
        band=band,
        search=search,
        order_by=order_by,
        limit=limit,
        offset=offset,
        where=attention_conditions(attention, datetime.now(UTC).date()) if attention else (),
    )
    items = [ScorePublic.of(r) for r in rows]
    return ClientsPublic(total=total, limit=limit, offset=offset, items=items)


@router.get(
    ".csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "Every matching client"}},
)
def read_clients_csv(
    principal: CurrentPrincipal,
    store: StoreDep,
    writer: WriterDep,
    manager: ManagerQuery = None,
    band: Band | None = None,
    search: SearchQuery = None,
    order_by: Order = "revenue_at_risk",
) -> StreamingResponse:
    """Every client the list above would page through, as CSV (the dashboard's columns)."""
    writer.flush()
    rows = export_rows(
        store, manager=principal.scope(manager), band=band, search=search, order_by=order_by
    )
    return csv_download(rows, "clients")


@router.get("/{client_id}", responses=_NOT_FOUND)
def read_client(
    client_id: ClientId, principal: CurrentPrincipal, store: StoreDep, writer: WriterDep
) -> ClientDetail:
    """A client's latest score (drivers, actions), its score history and logged actions."""
    writer.flush()
    latest = _visible_score(store, principal, client_id)
    return ClientDetail(
        client_id=client_id,
        latest=ScorePublic.of(latest),
        history=[ScoreHistoryItem.model_validate(s) for s in store.client_history(client_id)],
        logged_actions=[LoggedActionPublic.of(a) for a in store.list_actions(client_id)],
    )


@router.post("/{client_id}/actions", status_code=status.HTTP_201_CREATED, responses=_NOT_FOUND)
def create_action(
    client_id: ClientId,
    action: ActionCreate,
    principal: ActingPrincipal,
    store: StoreDep,
    writer: WriterDep,
) -> LoggedActionPublic:
    """Log what was done about a client (a manager: only on their own clients)."""
    writer.flush()
    _visible_score(store, principal, client_id)
    logged = store.log_action(
        client_id,
        action.type,
        action.note,
        action.date or datetime.now(UTC).date(),
        logged_by=principal.manager or f"{principal.role} key {principal.key_id}",
    )
    return LoggedActionPublic.of(logged)


def _visible_score(store: ScoreStore, principal: Principal, client_id: str) -> Score:
    """The client's latest score if the principal may see the client, else 404."""
    score = store.latest_score(client_id)
    if score is None or not principal.may_see(score.account_manager):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no client with this client_id")
    return score
