"""The model being served, and swapping in the current champion without a restart."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, status

from churnguard.service.deps import AdminPrincipal, CurrentPrincipal, ScorerDep, StateDep
from churnguard.service.schemas import ErrorPublic, ModelPublic, ReloadPublic
from churnguard.service.state import ModelUnavailableError, model_source

router = APIRouter(prefix="/api/v1/model", tags=["model"])


@router.get("", responses={503: {"model": ErrorPublic, "description": "No model is loaded."}})
async def read_model(_: CurrentPrincipal, scorer: ScorerDep) -> ModelPublic:
    """The model version served, its kind, horizon, test metrics and where it was loaded from."""
    model = scorer.model
    metrics = model.metadata.get("metrics", {})
    return ModelPublic(
        version=scorer.version,
        kind=model.kind,
        horizon_days=model.horizon_days,
        metrics={k: float(v) for k, v in metrics.items() if math.isfinite(float(v))},
        trained_at=model.metadata.get("trained_at"),
        source=model_source(scorer),
    )


@router.post(
    "/reload",
    responses={503: {"model": ErrorPublic, "description": "The champion could not be loaded."}},
)
def reload_model(_: AdminPrincipal, state: StateDep) -> ReloadPublic:
    """Load the current champion and swap it in; requests in flight finish on the old model."""
    try:
        previous, version = state.load_model()
    except ModelUnavailableError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    return ReloadPublic(previous_version=previous, version=version, changed=previous != version)
