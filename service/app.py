"""The FastAPI application: routers, lifespan (migrate, reap stale trials) and ``serve``."""

from __future__ import annotations

import contextlib
import importlib.resources
import ipaddress
import logging
import math
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from optuna.exceptions import StorageInternalError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from service.auth import SCOPES, Authenticator, ReadScope, add_token, count_tokens
from service.db import Database, migrated, upgrade
from service.http_gate import YAML_MAX_BYTES, HostRule, RequestGate
from service.leases import Reaper
from service.metrics import Metrics
from service.read_gate import ReadGate
from service.settings import Settings
from service.sweeps import Invalid, ServiceError, Sweeps

__all__ = [
    "YAML_MAX_BYTES",
    "HostRule",
    "Reaper",
    "RequestGate",
    "create_app",
    "finite_safe",
    "serve",
]
"""Also importable from here, as before the parts moved to their own modules."""

log = logging.getLogger("lionsweep.app")

#: Swagger UI's and ReDoc's files (JS, CSS, icon), as the fastapi-offline package ships them.
API_DOCS_STATIC = str(importlib.resources.files("fastapi_offline") / "static")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def is_loopback(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def create_app(settings: Settings, migrate: bool = True) -> FastAPI:
    """The API application for ``settings``: its lifespan migrates the database (unless
    ``migrate`` is false: ``serve`` has just done so) and starts the reaper."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            upgrade(settings)
        db = Database(settings)
        if settings.bootstrap_token:
            add_token(db, settings.bootstrap_token, list(SCOPES), "bootstrap")
        app.state.db = db
        app.state.sweeps = Sweeps(db, settings)
        app.state.auth = Authenticator(db, settings)
        app.state.metrics = Metrics(db)
        if count_tokens(db) == 0:
            log.warning(
                "no API tokens configured: every request is allowed (local mode, loopback only)"
            )
        reaper = Reaper(app.state.sweeps.leases, settings)
        reaper.start()
        try:
            yield
        finally:
            reaper.stop()
            app.state.sweeps.close()
            db.dispose()

    app = FastAPI(
        title="lionsweep",
        summary="Hyperparameter sweeps for the Lion optimizer on SQL-backed Optuna studies.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.add_middleware(ReadGate, limit=settings.read_concurrency)
    app.add_middleware(RequestGate, settings=settings)
    if HostRule(settings).any:
        log.warning(
            "any Host header is served (bound to %s): set LIONSWEEP_ALLOWED_HOSTS to the names "
            "clients use to guard against DNS rebinding",
            settings.host,
        )

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        if isinstance(exc, Invalid):
            return JSONResponse({"detail": finite_safe(jsonable_encoder(exc.detail))}, 422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for error in (DBAPIError, PoolTimeout, StorageInternalError):
        app.add_exception_handler(error, database_unavailable)

    @app.get("/healthz", tags=["ops"], responses={503: {"description": "The database is down"}})
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

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics(request: Request, _: ReadScope) -> PlainTextResponse:
        """Prometheus metrics (a read token when LIONSWEEP_REQUIRE_READ_TOKEN is set)."""
        return PlainTextResponse(
            request.app.state.metrics.render(), media_type="text/plain; version=0.0.4"
        )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: ReadScope) -> JSONResponse:
        """The OpenAPI schema (guarded like every read)."""
        return JSONResponse(app.openapi())

    # Swagger UI's and ReDoc's files are served from this server (as the dashboard's plotly
    # is): a GPU node often has no internet, and the pages would be blank without them.
    app.mount("/api-docs-static", StaticFiles(directory=API_DOCS_STATIC), name="api-docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs(_: ReadScope) -> HTMLResponse:
        """Swagger UI."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="lionsweep API",
            swagger_js_url="/api-docs-static/swagger-ui-bundle.js",
            swagger_css_url="/api-docs-static/swagger-ui.css",
            swagger_favicon_url="/api-docs-static/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(_: ReadScope) -> HTMLResponse:
        """ReDoc."""
        from service.dashboard import REDOC_JS_URL

        return get_redoc_html(
            openapi_url="/openapi.json",
            title="lionsweep API",
            redoc_js_url=REDOC_JS_URL,
            redoc_favicon_url="/api-docs-static/favicon.png",
            with_google_fonts=False,
        )

    from service.routes import ladders, scaling, sweeps, tokens, trials

    app.include_router(sweeps.router)
    app.include_router(ladders.router)
    app.include_router(trials.router)
    app.include_router(scaling.router)
    app.include_router(tokens.router)

    from service.dashboard import mount_dashboard

    mount_dashboard(app, settings)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Migrate, check the bind address against the auth mode, and run uvicorn."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = host or settings.host
    port = settings.port if port is None else port
    # The app checks Host headers against the address it is bound to.
    settings = settings.model_copy(update={"host": host, "port": port})
    with migrated(settings) as db:
        n_tokens = count_tokens(db)
    if n_tokens == 0 and not settings.bootstrap_token:
        if not is_loopback(host):
            log.error(
                "refusing to bind %s: no API tokens are configured, so the server would be open "
                "to anyone. Create one with `lionsweep token create --scope submit --scope "
                "worker` (or set LIONSWEEP_BOOTSTRAP_TOKEN), or bind 127.0.0.1.",
                host,
            )
            raise SystemExit(2)
        log.warning("no API tokens configured: serving unauthenticated on %s only", host)
    if settings.server_processes > 1:
        # Several processes share the database (claims stay atomic across processes);
        # each builds its app from the environment, told the address bound here.
        os.environ["LIONSWEEP_HOST"], os.environ["LIONSWEEP_PORT"] = host, str(port)
        uvicorn.run(
            "service.app:app_from_env",
            factory=True,
            workers=settings.server_processes,
            host=host,
            port=port,
            log_level="info",
        )
    else:
        uvicorn.run(create_app(settings, migrate=False), host=host, port=port, log_level="info")


def app_from_env() -> FastAPI:
    """``create_app`` with settings from the environment (for uvicorn worker processes)."""
    return create_app(Settings())
