"""The door of the HTTP server: every check a request passes before it reaches a route.

Raw ASGI, so a refused request costs no routing, no dependency and no thread: the ``Host``
header (against DNS rebinding), the ``Origin`` of a mutating request (against cross-site
posts), the body's size and content type, YAML turned into JSON, and JSON held to strict
rules (no repeated keys, no non-finite numbers, bounded nesting).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Hashable
from typing import Any
from urllib.parse import urlsplit

import anyio
import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.yaml_errors import yaml_problem
from protocol.yaml_schema import config_loader
from service import schemas
from service.settings import Settings

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPE = "application/json"
YAML_PATHS = ("/api/sweeps", "/api/ladders")
"""The only endpoints that accept YAML bodies (a sweep or ladder spec)."""
YAML_MAX_BYTES = 64 * 1024
"""The largest YAML body (a sweep spec is a few hundred bytes; parsing YAML is slow)."""
BODY_MAX_DEPTH = 32
"""How deep a request body may nest (fields with free-form data allow less: see schemas)."""
MUTATING = ("POST", "PUT", "PATCH", "DELETE")
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


_SafeLoader: Any = config_loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)


class StrictYamlLoader(_SafeLoader):
    """A safe YAML loader that reads numbers, booleans and dates as YAML 1.2 does
    (:func:`~protocol.yaml_schema.config_loader`) and refuses a key given twice in one
    mapping."""

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
        """Answer a refused request at the door; pass the others on (their body checked)."""
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
