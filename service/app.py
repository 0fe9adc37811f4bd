"""The FastAPI application: routers, lifespan (migrate, reap stale trials) and ``serve``."""

from __future__ import annotations

import contextlib
import importlib.resources
import ipaddress
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any
from urllib.parse import urlsplit

import anyio
import yaml
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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.yaml_errors import yaml_problem
from service import schemas
from service.auth import SCOPES, Authenticator, ReadScope, add_token, count_tokens
from service.db import Database, migrated, upgrade
from service.leases import Leases, liveness_interval
from service.metrics import Metrics
from service.read_gate import ReadGate
from service.settings import Settings
from service.sweeps import Invalid, ServiceError, Sweeps

log = logging.getLogger("lionsweep.app")

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPE = "application/json"
YAML_PATHS = ("/api/sweeps", "/api/ladders")
"""The only endpoints that accept YAML bodies (a sweep or ladder spec)."""
YAML_MAX_BYTES = 64 * 1024
"""The largest YAML body (a sweep spec is a few hundred bytes; parsing YAML is slow)."""
BODY_MAX_DEPTH = 32
#: Swagger UI's and ReDoc's files (JS, CSS, icon), as the fastapi-offline package ships them.
API_DOCS_STATIC = str(importlib.resources.files("fastapi_offline") / "static")
"""How deep a request body may nest (fields with free-form data allow less: see schemas)."""
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


class BodyError(Exception):
    """A request body refused at the door: (status, detail in FastAPI's shape)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def body_error(loc: tuple[Any, ...], msg: str, kind: str = "json_invalid") -> BodyError:
    """A 422 for the body at ``loc`` (FastAPI's shape)."""
    return BodyError(422, [{"type": kind, "loc": ["body", *loc], "msg": msg, "input": None}])


_SafeLoader: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class StrictYamlLoader(_SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Construct as the safe loader does, after checking the keys are unique."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.MarkedYAMLError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_to_json(body: bytes) -> bytes:
    """A YAML document as JSON bytes; raises BodyError (422) on anything a spec never needs.

    The events are scanned first (a streaming pass with no recursion): anchors and aliases
    (``&a`` / ``*a``, which let a few hundred bytes expand to gigabytes) and nesting deeper
    than BODY_MAX_DEPTH are refused before a document is built. Duplicate keys are refused.
    """
    if not body:
        return b"null"
    depth = 0
    try:
        for event in yaml.parse(body, Loader=StrictYamlLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise body_error((), "invalid YAML: anchors and aliases (& and *) are not allowed")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > BODY_MAX_DEPTH:
                    raise body_error((), f"invalid YAML: nests deeper than {BODY_MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        data = yaml.load(body, Loader=StrictYamlLoader)
        return json.dumps(data).encode()
    except (yaml.YAMLError, TypeError, ValueError, RecursionError) as e:
        raise body_error((), f"invalid YAML: {yaml_problem(e)}", "yaml_invalid") from None


def check_json(body: bytes) -> None:
    """Raise BodyError (422, naming the place) unless ``body`` is strict JSON.

    Strict: it parses, no object repeats a key, every number is finite (no ``NaN`` or
    ``Infinity``, nothing beyond float range such as ``1e309``) and it nests at most
    BODY_MAX_DEPTH deep.
    """
    try:
        data = json.loads(body, object_pairs_hook=schemas.JsonPairs, parse_constant=float)
    except RecursionError:
        raise body_error((), f"JSON nests deeper than {BODY_MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, bad UTF-8, an integer of too many digits
        raise body_error((), f"JSON decode error: {e}") from None
    problem = schemas.json_problem(data, BODY_MAX_DEPTH, text_rules=False)
    if problem is not None:
        raise body_error(problem.path, problem.msg, problem.kind)


def host_name(host: str) -> str:
    """The name of a ``Host`` header: no port, no brackets, lower case, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_ip(name: str) -> bool:
    """True for an IPv4 or IPv6 literal."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostRule:
    """Which ``Host`` headers and ``Origin``s a server answers to (against DNS rebinding and
    cross-site requests).

    Hosts: the loopback names, the bound host and LIONSWEEP_ALLOWED_HOSTS (``*``: any). A
    wildcard bind (0.0.0.0, ::) also serves every IP literal (an address cannot be rebound)
    and, with no allowed hosts configured, any name. An ``Origin`` (sent by browsers) must be
    the request's own host, or one of the allowed hosts.
    """

    def __init__(self, settings: Settings) -> None:
        bound = host_name(settings.host)
        self.extra = frozenset(settings.allowed_host_names)
        self.wildcard = bound in WILDCARD_BINDS
        self.any = "*" in self.extra or (self.wildcard and not self.extra)
        self.names = frozenset({*LOOPBACK_NAMES, *self.extra} | ({bound} - {""}))

    def host_ok(self, host: str | None) -> bool:
        """Whether a request with this ``Host`` header is served (no header: HTTP/1.0)."""
        if host is None or self.any:
            return True
        name = host_name(host)
        return name in self.names or (self.wildcard and is_ip(name))

    def origin_ok(self, origin: str, host: str | None) -> bool:
        """Whether a browser request from ``origin`` to ``host`` is same-site enough."""
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file://) and anything odd
        if host is not None and parts.netloc.lower() == host.strip().lower():
            return True
        return host_name(parts.netloc) in self.extra


class RequestGate:
    """ASGI middleware: every check that happens before a request reaches a route.

    - ``Host`` must be a name the server serves (400), against DNS rebinding;
    - a mutating request (POST, PUT, PATCH, DELETE) from a browser page of another origin
      is refused (403), and its body must be JSON (YAML for a sweep submission; 415 for any
      other type, bodiless requests included), against cross-site form posts;
    - bodies are capped (413; YAML lower), YAML becomes JSON, and JSON must be strict (422).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_bytes = settings.max_body_bytes
        self.rule = HostRule(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope["headers"]}
        host = headers.get("host")
        if not self.rule.host_ok(host):
            await _send_json(
                send,
                400,
                {"detail": f"unknown Host {host!r}: add it to LIONSWEEP_ALLOWED_HOSTS to serve it"},
            )
            return
        if scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        origin = headers.get("origin")
        if origin is not None and not self.rule.origin_ok(origin, host):
            await _send_json(send, 403, {"detail": f"cross-origin request from {origin!r}"})
            return
        body = await self._read(scope, receive, send, headers.get("content-length"))
        if body is None:
            return
        try:
            scope, body = await self._parse(scope, headers, body)
        except BodyError as e:
            await _send_json(send, e.status_code, {"detail": e.detail})
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(
        self, scope: Scope, receive: Receive, send: Send, length: str | None
    ) -> bytes | None:
        """The whole body, or None once a 413 was sent (or the client left)."""
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send, self.max_bytes)
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, self.max_bytes)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _parse(
        self, scope: Scope, headers: dict[str, str], body: bytes
    ) -> tuple[Scope, bytes]:
        """Check the content type and the body; YAML comes back as JSON (raises BodyError)."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        yaml_ok = scope["path"].rstrip("/") in YAML_PATHS
        if ctype in YAML_TYPES and yaml_ok:
            if len(body) > min(YAML_MAX_BYTES, self.max_bytes):
                raise BodyError(
                    413,
                    f"a YAML body may be at most {min(YAML_MAX_BYTES, self.max_bytes)} bytes "
                    "(send larger specs as JSON)",
                )
            body = await anyio.to_thread.run_sync(yaml_to_json, body)
            if len(body) > self.max_bytes:
                raise BodyError(413, f"request body exceeds {self.max_bytes} bytes")
            new_headers = [
                (k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")
            ]
            new_headers += [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            scope = {**scope, "headers": new_headers}
            ctype = JSON_TYPE
        if ctype == JSON_TYPE:
            if body:
                check_json(body)
            return scope, body
        if not ctype and not body:
            return scope, body
        wanted = JSON_TYPE + (" or application/yaml" if yaml_ok else "")
        raise BodyError(
            415, f"Content-Type must be {wanted} (got {headers.get('content-type') or 'none'})"
        )

    @staticmethod
    async def _too_large(send: Send, max_bytes: int) -> None:
        await _send_json(send, 413, {"detail": f"request body exceeds {max_bytes} bytes"})


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
    """A background thread that records every liveness interval that this server is alive
    (giving any downtime back to the leases) and fails stale RUNNING trials every reaper
    interval."""

    def __init__(self, leases: Leases, settings: Settings) -> None:
        self.leases = leases
        self.interval = settings.reaper_interval_seconds
        self.beat = liveness_interval(settings)
        self._unreachable = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lionsweep-reaper", daemon=True)

    def start(self) -> None:
        """Give back the downtime before this server started (before it serves anything),
        then keep going in the background."""
        self._pass(reap=False)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        reap_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, min(self.beat, reap_at - time.monotonic()))):
            due = time.monotonic() >= reap_at
            if due:
                reap_at = time.monotonic() + self.interval
            self._pass(reap=due)

    def _pass(self, reap: bool) -> None:
        """Record liveness (and reap when ``reap``); a database outage is logged once."""
        try:
            n = self.leases.reap() if reap else self.leases.forgive_downtime()
        except (OperationalError, InterfaceError) as e:
            if not self._unreachable:
                log.warning(
                    "reaper: the database is unreachable (%s); no lease is judged until it is "
                    "back, and the time until then is given back to every lease",
                    str(e).splitlines()[0] if str(e) else type(e).__name__,
                )
            self._unreachable = True
            return
        except Exception:
            log.exception("reaper pass failed")
            return
        if self._unreachable:
            log.warning("reaper: the database is reachable again")
            self._unreachable = False
        if reap and n:
            log.info("reaper: failed %d stale trial(s)", n)


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
