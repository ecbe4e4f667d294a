"""Liveness, readiness and Prometheus metrics: unauthenticated, for the operator's tools."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from churnguard.service.deps import MetricsDep, StateDep
from churnguard.service.metrics import CONTENT_TYPE
from churnguard.service.schemas import ErrorPublic, HealthPublic, ReadyPublic
from churnguard.store.database import StoreUnavailableError

router = APIRouter(tags=["operations"])


@router.get("/health/live")
async def read_live() -> HealthPublic:
    """The process is up and answering."""
    return HealthPublic(status="ok")


@router.get(
    "/health/ready",
    response_model=ReadyPublic,
    responses={
        503: {
            "model": ErrorPublic,
            "description": "No model loaded yet, or the score store unreachable, and why.",
        }
    },
)
async def read_ready(state: StateDep) -> ReadyPublic | JSONResponse:
    """Ready to score: a model is loaded and the score store answers (else 503 and why)."""
    scorer = state.scorer
    if scorer is None:
        return _not_ready(state.unavailable, 30)
    try:
        await run_in_threadpool(state.check_store)
    except StoreUnavailableError:
        return _not_ready(
            "the score store's database does not answer", StoreUnavailableError.retry_after
        )
    return ReadyPublic(status="ready", model_version=scorer.version)


def _not_ready(reason: str, retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"detail": reason},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(retry_after)},
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def read_metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests by route and status, latency, scores by band, the model."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
