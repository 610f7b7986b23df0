"""Liveness and readiness probes for load balancers and Kubernetes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from deployments.api._services import Services, get_services

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (no dependency is checked)."""
    return {"status": "ok"}


_CHECKS = {"application/json": {"schema": {
    "type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}},
    "description": "each dependency's state (redis, vad, stt, llm, tts, workers) and `ready`",
}}}


@router.get("/readyz", responses={200: {"content": _CHECKS},
                                  503: {"description": "a dependency is not ready",
                                        "content": _CHECKS}})
async def readyz(services: Annotated[Services, Depends(get_services)]) -> JSONResponse:
    """Ready when Redis answers and every model stage has its engine loaded.

    Answered at once from the replica's latest background check (``checked_ms_ago``
    says how old), with what the replica holds as it is now: admission (in use, limit and
    refusals per kind) and the log's live readers. A draining replica (the server is
    stopping) is not ready."""
    checks: dict[str, Any] = {**await services.readiness_monitor.current(), **services.load()}
    if services.admission.draining:  # stopping: balancers should send nothing new here
        checks["ready"], checks["draining"] = False, True
    return JSONResponse(checks, status_code=200 if checks["ready"] else 503)
