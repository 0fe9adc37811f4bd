"""Errors the service raises; each carries the HTTP status the routes answer with."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error with an HTTP status the routes pass through."""

    status_code = 400

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    """Unknown sweep or trial (404)."""

    status_code = 404


class Forbidden(ServiceError):
    """The caller may not act on this object: e.g. a trial claimed with another token (403)."""

    status_code = 403


class Conflict(ServiceError):
    """The request conflicts with the current state (409)."""

    status_code = 409


class Invalid(ServiceError):
    """Input that passed pydantic but breaks a cross-field rule (422, FastAPI's shape)."""

    status_code = 422


def field_error(loc: tuple[Any, ...], msg: str, value: Any = None) -> dict[str, Any]:
    """One error in the shape FastAPI gives a 422 (body field ``loc`` broke rule ``msg``)."""
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg, "input": value}
