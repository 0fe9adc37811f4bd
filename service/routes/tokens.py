"""API tokens: list them and revoke one (the ``admin`` scope)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service import schemas
from service.auth import AdminScope, list_tokens, revoke_token
from service.errors import NotFound
from service.routes import Id

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


@router.get("", response_model=list[schemas.TokenOut])
def tokens(request: Request, _: AdminScope) -> list[schemas.TokenOut]:
    """Every token (never its secret), revoked ones included."""
    return [
        schemas.TokenOut.model_validate(t, from_attributes=True)
        for t in list_tokens(request.app.state.db)
    ]


@router.delete("/{token_id}", response_model=schemas.TokenOut)
def revoke(token_id: Id, request: Request, _: AdminScope) -> schemas.TokenOut:
    """Revoke a token at once: its next request gets a 401, and trials it holds can no longer
    be reported or finished (their leases run out and they are retried). Revoking twice is
    harmless."""
    found = revoke_token(request.app.state.db, token_id)
    if found is None:
        raise NotFound(f"token {token_id} not found")
    return schemas.TokenOut.model_validate(found, from_attributes=True)
