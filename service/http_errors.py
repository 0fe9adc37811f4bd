"""How exceptions become HTTP answers: the service's own errors with their status, FastAPI's
422 made safe to encode, a 405 that lists the allowed methods, and a database that cannot be
reached as a 503 with ``Retry-After`` (a bug stays a 500)."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from service.errors import Invalid, ServiceError

log = logging.getLogger("lionsweep.http_errors")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def finite_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as a string ("NaN", "Infinity",
    "-Infinity"), so an error that quotes such an input can still be sent as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_safe(v) for v in value]
    return value


async def service_error(_request: Request, exc: Exception) -> JSONResponse:
    """A :class:`ServiceError` with its own status; an :class:`Invalid` in FastAPI's 422 shape."""
    assert isinstance(exc, ServiceError)
    if isinstance(exc, Invalid):
        return JSONResponse({"detail": finite_safe(jsonable_encoder(exc.detail))}, 422)
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code)


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for invalid input, safe to encode whatever the input quoted."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": finite_safe(jsonable_encoder(exc.errors()))}, 422)


async def http_error(request: Request, exc: Exception) -> Any:
    """Starlette's HTTP errors; a 405 lists in ``Allow`` every method the path takes."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405 and request.scope.get("type") == "http":
        methods = [
            method
            for method in HTTP_METHODS
            if any(
                not isinstance(route, Mount)
                and route.matches({**request.scope, "method": method})[0] == Match.FULL
                for route in request.app.router.routes
            )
        ]
        if methods:
            headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
            exc = StarletteHTTPException(405, exc.detail, headers=headers)
    return await http_exception_handler(request, exc)


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or dropped the connection (as
    opposed to a bug or a constraint): retrying later will do."""
    if isinstance(exc, StorageInternalError):
        return exc.__cause__ is not None and _unavailable(exc.__cause__)
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached (or dropped the connection, or has no connection free)
    is a 503 with Retry-After, so clients retry, rather than a 500; the database's own error is
    logged. Nothing was committed: every change is one transaction."""
    if not _unavailable(exc):
        log.error("storage error", exc_info=exc)
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
    log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return JSONResponse(
        {"detail": "the database is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error above on ``app`` in its HTTP shape."""
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for error in (DBAPIError, PoolTimeout, StorageInternalError):
        app.add_exception_handler(error, database_unavailable)
