"""Hashed bearer tokens with scopes, and the FastAPI dependencies that check them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import func, select, update

from service.db import Database, migrated
from service.models import Token
from service.settings import Settings

SCOPES = ("submit", "worker", "read", "admin")
"""``admin`` lists and revokes tokens over the API; the others are named for what they call."""
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
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with migrated(settings) as db:
        add_token(db, secret, scopes, name)
    return secret


def count_tokens(db: Database) -> int:
    """How many tokens exist, revoked ones included (a server with any token asks for one)."""
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Token)) or 0


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret or hash."""

    id: int
    name: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


def list_tokens(db: Database) -> list[TokenInfo]:
    """Every token, oldest first, revoked ones included."""
    with db.session() as s:
        rows = s.scalars(select(Token).order_by(Token.id)).all()
    return [TokenInfo(r.id, r.name, r.scopes.split(","), r.created_at, r.revoked_at) for r in rows]


def revoke_token(db: Database, token_id: int) -> TokenInfo | None:
    """Revoke a token at once (its next request is refused); None for an unknown id.

    Revoking twice keeps the first time. The row stays, so revoking every token never opens
    the server to unsigned requests.
    """
    with db.session() as s:
        s.execute(
            update(Token)
            .where(Token.id == token_id, Token.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
    with db.session() as s:
        row = s.get(Token, token_id)
    if row is None:
        return None
    return TokenInfo(row.id, row.name, row.scopes.split(","), row.created_at, row.revoked_at)


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

    def token_of(self, secret: str) -> tuple[int, set[str]] | None:
        """The id and scopes of a presented token, or None when it is unknown or revoked."""
        digest = hash_token(secret)
        with self.db.session() as s:
            row = s.execute(
                select(Token.id, Token.token_hash, Token.scopes).where(
                    Token.token_hash == digest, Token.revoked_at.is_(None)
                )
            ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return row.id, set(row.scopes.split(","))

    def check(self, request: Request, scope: str) -> int | None:
        """Raise 401/403 unless the request may use ``scope``; return the token's id (None on
        an open server, or for a read that needs no token)."""
        if scope == "read" and not self.settings.require_read_token:
            return None
        if not self.has_tokens():
            return None
        header = request.headers.get("authorization", "")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = self.token_of(secret.strip())
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid or revoked token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token_id, scopes = found
        if scope != "read" and scope not in scopes:  # any valid token may read
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token lacks the {scope!r} scope")
        return token_id


def require(scope: str) -> Callable[[Request], int | None]:
    """A FastAPI dependency that enforces ``scope`` and gives the caller's token id (None
    when the server is open)."""

    def dependency(request: Request) -> int | None:
        return request.app.state.auth.check(request, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


SubmitScope = Annotated[int | None, Depends(require("submit"))]
WorkerScope = Annotated[int | None, Depends(require("worker"))]
"""The worker's token id: a trial claimed with a token is reported, heartbeated and finished
with that token only."""
ReadScope = Annotated[int | None, Depends(require("read"))]
AdminScope = Annotated[int | None, Depends(require("admin"))]
