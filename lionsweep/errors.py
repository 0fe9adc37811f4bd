"""The errors the Python client raises: one class tree, one-line messages naming the server.

Every error is a :class:`ClientError`; catch that to catch them all. HTTP and transport
errors of the underlying client (``worker.client``) never reach user code untranslated.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from protocol import server_url_problem
from worker import client as http


class ClientError(Exception):
    """Base of every error ``lionsweep``'s client raises."""


class ServerUnreachable(ClientError):
    """The server could not be reached (or kept failing) until retries ran out."""


class AuthError(ClientError):
    """The server refused the token: missing or unknown (401), or lacking a scope (403)."""


class NotFound(ClientError):
    """The sweep or trial does not exist on the server (404)."""


class Refused(ClientError):
    """The server refused a request for another reason (409 conflict, 422 invalid, …)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class NoTrial(ClientError):
    """``current_trial()`` found no trial in the environment (or an unusable one)."""


@contextmanager
def translated(server: str, what: str) -> Iterator[None]:
    """Turn ``worker.client`` errors raised inside into :class:`ClientError` subclasses
    whose one-line message names ``server`` and ``what`` (e.g. ``"sweep 3"``)."""
    try:
        yield
    except http.ServerUnreachable as exc:
        raise ServerUnreachable(
            f"cannot reach the lionsweep server at {server} ({_cause(exc)}); "
            "is `lionsweep serve` running there?"
        ) from None
    except http.ApiError as exc:
        raise from_api_error(exc, server, what) from None


def waiting_message(server: str, exc: http.ServerUnreachable, what: str) -> str:
    """What a client waiting through an outage says: the server answers 503 (and why), or
    nothing answers at ``server``; ``what`` it waits to do."""
    if exc.status is not None:
        why = _one_line(exc.detail) if exc.detail else "no reason given"
        problem = f"answers {exc.status}: {why}"
    else:
        problem = f"cannot be reached ({_cause(exc)})"
    return f"the lionsweep server at {server} {problem}; retrying to {what}"


def from_api_error(exc: http.ApiError, server: str, what: str) -> ClientError:
    """The :class:`ClientError` for an HTTP error answer about ``what``."""
    code, detail = exc.status_code, _one_line(exc.detail)
    if exc.foreign:
        return ServerUnreachable(
            f"no lionsweep server answers at {server}: it answered HTTP {code} ({detail}); "
            "is server= the server's base URL, such as http://127.0.0.1:8000?"
        )
    if code == 401:
        hint = "pass token= or set LIONSWEEP_TOKEN"
        return AuthError(f"the server at {server} refused the token ({detail}, HTTP 401); {hint}")
    if code == 403:
        return AuthError(f"the server at {server} refused {what}: {detail} (HTTP 403)")
    if code == 404:
        return NotFound(f"{what} does not exist on the server at {server} ({detail})")
    return Refused(f"the server at {server} refused {what}: {detail} (HTTP {code})", code)


def check_url(server: str) -> str:
    """``server`` without a trailing slash; :class:`ClientError` unless it is an http(s) URL."""
    problem = server_url_problem(server)
    if problem is not None:
        raise ClientError(f"server {problem}")
    return server.rstrip("/")


def _cause(exc: http.ServerUnreachable) -> str:
    """The transport problem inside ``worker.client``'s message (``"GET url: problem (…)"``)."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    return rest if sep and " " in head else text


def _one_line(detail: object) -> str:
    """A server's error detail (a string, or pydantic's list of problems) on one line."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return " ".join(str(detail).split())
