"""Operations: the health check and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from service.auth import ReadScope

log = logging.getLogger("lionsweep.ops")

router = APIRouter()


@router.get("/healthz", tags=["ops"], responses={503: {"description": "The database is down"}})
def healthz(request: Request) -> JSONResponse:
    """Health: the process answers and the database runs a query (503 when it does not)."""
    try:
        with request.app.state.db.session() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:
        log.warning("health check: the database is unavailable: %s", e)
        return JSONResponse(
            {"status": "unavailable", "detail": f"database unavailable ({type(e).__name__})"},
            503,
        )
    return JSONResponse({"status": "ok"})


@router.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
def metrics(request: Request, _: ReadScope) -> PlainTextResponse:
    """Prometheus metrics (a read token when LIONSWEEP_REQUIRE_READ_TOKEN is set)."""
    return PlainTextResponse(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4"
    )
