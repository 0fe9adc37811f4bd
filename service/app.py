"""The FastAPI application: routers, lifespan (migrate, reap stale trials) and ``serve``."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import yaml
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import Authenticator, add_token, count_tokens
from service.db import Database, upgrade
from service.metrics import Metrics
from service.settings import Settings
from service.sweeps import Invalid, ServiceError, Sweeps

log = logging.getLogger("lionsweep.app")

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
ALL_SCOPES = ["submit", "worker", "read"]
YAML_PATHS = ("/api/sweeps",)
"""The only endpoints that accept YAML bodies (a sweep spec)."""


class NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases (``&a`` / ``*a``).

    A sweep spec never needs them, and aliases let a few hundred bytes expand to gigabytes
    once converted to JSON.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose as SafeLoader does, but raise on an anchor or an alias."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(
                "YAML anchors and aliases (& and *) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def yaml_to_json(body: bytes) -> bytes:
    """A YAML document (no anchors/aliases) as JSON bytes; raises yaml.YAMLError or ValueError."""
    return json.dumps(yaml.load(body, Loader=NoAliasLoader) if body else None).encode()


class BodyGate:
    """ASGI middleware: 413 for bodies over the limit; YAML request bodies become JSON."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().decode().lower()
        if ctype in YAML_TYPES and scope["path"].rstrip("/") in YAML_PATHS:
            try:
                body = await anyio.to_thread.run_sync(yaml_to_json, body)
            except (yaml.YAMLError, TypeError, ValueError) as e:
                await self._send_json(
                    send,
                    422,
                    {
                        "detail": [
                            {"type": "yaml_invalid", "loc": ["body"], "msg": f"invalid YAML: {e}"}
                        ]
                    },
                )
                return
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
            new_headers = [
                (k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")
            ]
            new_headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            scope = {**scope, "headers": new_headers}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await self._send_json(send, 413, {"detail": f"request body exceeds {self.max_bytes} bytes"})

    @staticmethod
    async def _send_json(send: Send, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


class Reaper:
    """A background thread that fails stale RUNNING trials every ``interval`` seconds."""

    def __init__(self, sweeps: Sweeps, interval: float) -> None:
        self.sweeps = sweeps
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lionsweep-reaper", daemon=True)

    def start(self) -> None:
        """Start reaping."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                n = self.sweeps.reap()
                if n:
                    log.info("reaper: failed %d stale trial(s)", n)
            except Exception:
                log.exception("reaper pass failed")


def is_loopback(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings) -> FastAPI:
    """The API application for ``settings`` (migrates and starts the reaper in its lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upgrade(settings)
        db = Database(settings)
        if settings.bootstrap_token:
            add_token(db, settings.bootstrap_token, ALL_SCOPES, "bootstrap")
        app.state.db = db
        app.state.sweeps = Sweeps(db, settings)
        app.state.auth = Authenticator(db, settings)
        app.state.metrics = Metrics(db)
        if count_tokens(db) == 0:
            log.warning(
                "no API tokens configured: every request is allowed (local mode, loopback only)"
            )
        reaper = Reaper(app.state.sweeps, settings.reaper_interval_seconds)
        reaper.start()
        try:
            yield
        finally:
            reaper.stop()
            db.dispose()

    app = FastAPI(
        title="lionsweep",
        summary="Hyperparameter sweeps for the Lion optimizer on SQL-backed Optuna studies.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(BodyGate, max_bytes=settings.max_body_bytes)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        if isinstance(exc, Invalid):
            return JSONResponse({"detail": jsonable_encoder(exc.detail)}, status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics."""
        return PlainTextResponse(
            request.app.state.metrics.render(), media_type="text/plain; version=0.0.4"
        )

    from service.routes import scaling, sweeps, trials

    app.include_router(sweeps.router)
    app.include_router(trials.router)
    app.include_router(scaling.router)

    from service.dashboard import mount_dashboard

    mount_dashboard(app, settings)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Migrate, check the bind address against the auth mode, and run uvicorn."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = host or settings.host
    port = settings.port if port is None else port
    upgrade(settings)
    db = Database(settings)
    try:
        n_tokens = count_tokens(db)
    finally:
        db.dispose()
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
        # each builds its app from the environment.
        uvicorn.run(
            "service.app:app_from_env",
            factory=True,
            workers=settings.server_processes,
            host=host,
            port=port,
            log_level="info",
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def app_from_env() -> FastAPI:
    """``create_app`` with settings from the environment (for uvicorn worker processes)."""
    return create_app(Settings())
