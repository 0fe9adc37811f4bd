"""Width ladders: submit, read, the fitted width rule, confirm a prediction, lifecycle."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status

from service import schemas
from service.auth import ReadScope, SubmitScope
from service.routes import ID_MAX, Id, LaddersDep

router = APIRouter(prefix="/api/ladders", tags=["ladders"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.LadderOut,
    responses={200: {"description": "The ladder an earlier request with this key made"}},
    openapi_extra={
        "requestBody": {
            "content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/LadderSpec"}}}
        }
    },
)
def create_ladder(
    spec: schemas.LadderSpec,
    ladders: LaddersDep,
    response: Response,
    _: SubmitScope,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> schemas.LadderOut:
    """Submit a ladder (JSON or YAML): one sweep per rung, a value per scale axis each (or per
    width of the task's width param, with ``param`` + ``widths``)."""
    out, created = ladders.create(spec, idempotency_key)
    response.headers["Location"] = f"/api/ladders/{out.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return out


@router.post(
    "/from-sweeps",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.LadderOut,
    responses={200: {"description": "The ladder an earlier request with this key made"}},
)
def ladder_from_sweeps(
    req: schemas.LadderFromSweeps,
    ladders: LaddersDep,
    response: Response,
    _: SubmitScope,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> schemas.LadderOut:
    """Make a ladder of sweeps that exist (runs imported from elsewhere, or sweeps run
    before): each is a rung at the point its task params (``batch_size``: its fixed batch
    size) give, so the joint fit needs no new run. 422 naming the sweep when one is missing,
    of another task or lacks an axis; 409 when one is in a ladder already."""
    out, created = ladders.adopt(req, idempotency_key)
    response.headers["Location"] = f"/api/ladders/{out.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return out


@router.get("", response_model=schemas.LadderPage)
def list_ladders(
    ladders: LaddersDep,
    _: ReadScope,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.LadderPage:
    """List ladders, newest first."""
    return ladders.list(offset, limit)


@router.get("/{ladder_id}", response_model=schemas.LadderOut)
def get_ladder(ladder_id: Id, ladders: LaddersDep, _: ReadScope) -> schemas.LadderOut:
    """A ladder's rungs and confirmations and where they stand."""
    return ladders.get(ladder_id)


def _axis_query(description: str) -> Any:
    """A positive, finite query number."""
    return Query(gt=0, allow_inf_nan=False, description=description)


@router.get("/{ladder_id}/rule", response_model=schemas.LadderRuleOut)
def ladder_rule(
    ladder_id: Id,
    ladders: LaddersDep,
    _: ReadScope,
    width: Annotated[
        float | None, _axis_query("Predict at this width (the ladder's width axis).")
    ] = None,
    steps: Annotated[
        float | None, _axis_query("Predict at this training length (the steps axis).")
    ] = None,
    batch_size: Annotated[
        float | None, _axis_query("Predict at this batch size (the batch axis).")
    ] = None,
) -> schemas.LadderRuleOut:
    """How the optimum lr and weight decay move along each axis, with 90% intervals, the
    named rules tested, a verdict; with a value for every axis the ladder varies (``width``,
    ``steps``, ``batch_size``), the prediction there, saying which axes it extrapolates and
    how far; the confirmations. A value beyond a factor of 1e6 of the rungs' (or so far that
    the prediction overflows), or for an axis the ladder does not vary, is a 422 naming it."""
    got = {"width": width, "steps": steps, "batch": batch_size}
    target = {k: v for k, v in got.items() if v is not None}
    return ladders.rule(ladder_id, target or None)


@router.post(
    "/{ladder_id}/confirm", status_code=status.HTTP_201_CREATED, response_model=schemas.LadderOut
)
def confirm_ladder(
    ladder_id: Id, req: schemas.ConfirmRequest, ladders: LaddersDep, _: SubmitScope
) -> schemas.LadderOut:
    """Run the prediction at a new width beside the widest rung's own optimum, unmoved (409
    until every rung is complete and the ladder has a rule)."""
    return ladders.confirm(ladder_id, req)


@router.post(
    "/{ladder_id}/rungs", status_code=status.HTTP_201_CREATED, response_model=schemas.LadderOut
)
def extend_ladder(
    ladder_id: Id, req: schemas.ExtendRequest, ladders: LaddersDep, _: SubmitScope
) -> schemas.LadderOut:
    """Add rungs to a ladder: with ``box: fit`` (the default) each searches lr (and weight
    decay, where the data pin it) around the current fit's prediction at its point, so the
    trials concentrate where the optimum is expected; ``box: ladder`` keeps the ladder's box.
    409 while the ladder has no fit to centre on; 422 naming the rung and axis for a bad
    point."""
    return ladders.extend(ladder_id, req)


@router.post("/{ladder_id}/cancel", response_model=schemas.LadderOut)
def cancel_ladder(ladder_id: Id, ladders: LaddersDep, _: SubmitScope) -> schemas.LadderOut:
    """Cancel every rung and confirmation that is not complete."""
    return ladders.cancel(ladder_id)


@router.post("/{ladder_id}/resume", response_model=schemas.LadderOut)
def resume_ladder(ladder_id: Id, ladders: LaddersDep, _: SubmitScope) -> schemas.LadderOut:
    """Resume a cancelled ladder's rungs and confirmations."""
    return ladders.resume(ladder_id)


@router.delete("/{ladder_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_ladder(ladder_id: Id, ladders: LaddersDep, _: SubmitScope) -> Response:
    """Delete a ladder, its sweeps and their Optuna studies."""
    ladders.delete(ladder_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
