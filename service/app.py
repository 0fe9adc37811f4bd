"""The FastAPI application: ``create_app`` wires the middleware, error handlers and routers
to a lifespan (migrate, open the database, run the reaper); ``serve`` runs it under uvicorn.

The parts live beside it: :mod:`service.http_gate` (checks before routing),
:mod:`service.http_errors` (exceptions as HTTP answers), :mod:`service.leases` (the reaper),
:mod:`service.routes` (the handlers) and :mod:`service.dashboard` (the pages).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.auth import SCOPES, Authenticator, add_token, count_tokens
from service.db import Database, migrated, upgrade
from service.http_errors import add_error_handlers, finite_safe
from service.http_gate import YAML_MAX_BYTES, HostRule, RequestGate
from service.leases import Reaper
from service.metrics import Metrics
from service.read_gate import ReadGate
from service.settings import Settings
from service.sweeps import Sweeps

__all__ = [
    "YAML_MAX_BYTES",
    "HostRule",
    "Reaper",
    "RequestGate",
    "app_from_env",
    "create_app",
    "finite_safe",
    "is_loopback",
    "serve",
]
"""What other modules may import from here: ``YAML_MAX_BYTES``, ``HostRule``, ``RequestGate``,
``Reaper`` and ``finite_safe`` are re-exported from the modules that hold them."""

log = logging.getLogger("lionsweep.app")


def is_loopback(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        reaper = Reaper(app.state.sweeps.leases, settings, app.state.sweeps.ladders.release_due)
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
    add_error_handlers(app)

    from service.routes import api_docs, ladders, ops, scaling, sweeps, tokens, trials

    app.include_router(ops.router)
    api_docs.mount_api_docs(app)
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
