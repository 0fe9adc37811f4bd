"""Hashed bearer tokens with scopes, and the FastAPI dependencies that check them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import func, select

from service.db import Database, upgrade
from service.models import Token
from service.settings import Settings

SCOPES = ("submit", "worker", "read")
TOKEN_PREFIX = "lsw_"
_HAS_TOKENS_TTL = 1.0


def hash_token(secret: str) -> str:
    """The stored form of a token: its SHA-256 hex digest."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_scopes(scopes: list[str]) -> list[str]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)} (got {scopes})")
    return sorted(set(scopes))


def add_token(db: Database, secret: str, scopes: list[str], name: str | None) -> None:
    """Store ``secret`` (hashed) with ``scopes`` unless a token with that secret exists."""
    digest = hash_token(secret)
    with db.session() as s:
        if s.scalar(select(Token.id).where(Token.token_hash == digest)) is None:
            s.add(Token(name=name, token_hash=digest, scopes=",".join(_check_scopes(scopes))))


def create_token(settings: Settings, scopes: list[str], name: str | None = None) -> str:
    """Create a token with ``scopes`` (migrating first) and return its plaintext, shown once."""
    _check_scopes(scopes)
    upgrade(settings)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db = Database(settings)
    try:
        add_token(db, secret, scopes, name)
    finally:
        db.dispose()
    return secret


def count_tokens(db: Database) -> int:
    """How many tokens are configured."""
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Token)) or 0


class Authenticator:
    """Looks tokens up by hash and checks scopes; open when no token exists."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._has_tokens: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()

    def has_tokens(self) -> bool:
        """Whether any token exists (cached for a second)."""
        with self._lock:
            at, value = self._has_tokens
        if time.monotonic() - at < _HAS_TOKENS_TTL:
            return value
        value = count_tokens(self.db) > 0
        with self._lock:
            self._has_tokens = (time.monotonic(), value)
        return value

    def scopes_of(self, secret: str) -> set[str] | None:
        """The scopes of a presented token, or None when it is unknown."""
        digest = hash_token(secret)
        with self.db.session() as s:
            row = s.execute(
                select(Token.token_hash, Token.scopes).where(Token.token_hash == digest)
            ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return set(row.scopes.split(","))

    def check(self, request: Request, scope: str) -> None:
        """Raise 401/403 unless the request may use ``scope``."""
        if scope == "read" and not self.settings.require_read_token:
            return
        if not self.has_tokens():
            return
        header = request.headers.get("authorization", "")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scopes = self.scopes_of(secret.strip())
        if scopes is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope == "read":
            return  # any valid token may read
        if scope not in scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks the {scope!r} scope")


def require(scope: str) -> Callable[[Request], None]:
    """A FastAPI dependency that enforces ``scope``."""

    def dependency(request: Request) -> None:
        request.app.state.auth.check(request, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


SubmitScope = Annotated[None, Depends(require("submit"))]
WorkerScope = Annotated[None, Depends(require("worker"))]
ReadScope = Annotated[None, Depends(require("read"))]
