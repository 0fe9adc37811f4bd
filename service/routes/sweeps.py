"""Sweeps and their trials, best configs, scaling rule and importances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Response, status

from service import schemas
from service.auth import ReadScope, SubmitScope
from service.catalog import server_timing, track_answers
from service.routes import ID_MAX, Id, SweepsDep

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])

Offset = Annotated[int, Query(ge=0, le=ID_MAX)]
Limit = Annotated[int, Query(ge=1, le=1000)]
T = TypeVar("T")


def timed(response: Response, answer: Callable[[], T]) -> T:
    """``answer()``, its response saying in ``Server-Timing`` whether each answer it used was
    computed, shared with a request computing it at the same time, or kept from before."""
    noted = track_answers()
    out = answer()
    if noted:
        response.headers["Server-Timing"] = server_timing(noted)
    return out


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.SweepOut,
    responses={200: {"description": "The sweep an earlier request with this Idempotency-Key made"}},
    openapi_extra={
        "requestBody": {
            "content": {"application/yaml": {"schema": {"$ref": "#/components/schemas/SweepSpec"}}}
        }
    },
)
def create_sweep(
    spec: schemas.SweepSpec,
    sweeps: SweepsDep,
    response: Response,
    _: SubmitScope,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> schemas.SweepOut:
    """Submit a sweep (JSON or YAML); an Idempotency-Key makes retries return the first (200)."""
    out, created = sweeps.create(spec, idempotency_key)
    response.headers["Location"] = f"/api/sweeps/{out.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return out


@router.get("", response_model=schemas.SweepPage)
def list_sweeps(
    sweeps: SweepsDep,
    _: ReadScope,
    offset: Offset = 0,
    limit: Limit = 50,
    status: Literal["running", "complete", "cancelled"] | None = None,
) -> schemas.SweepPage:
    """List sweeps, newest first."""
    return sweeps.list(offset, limit, status)


@router.get("/{sweep_id}", response_model=schemas.SweepOut)
def get_sweep(
    sweep_id: Id, sweeps: SweepsDep, response: Response, _: ReadScope
) -> schemas.SweepOut:
    """A sweep's status, counts per trial state, progress and best so far."""
    return timed(response, lambda: sweeps.get(sweep_id))


@router.post("/{sweep_id}/cancel", response_model=schemas.SweepOut)
def cancel_sweep(sweep_id: Id, sweeps: SweepsDep, _: SubmitScope) -> schemas.SweepOut:
    """Stop new claims; running workers are told to stop."""
    return sweeps.cancel(sweep_id)


@router.post("/{sweep_id}/resume", response_model=schemas.SweepOut)
def resume_sweep(sweep_id: Id, sweeps: SweepsDep, _: SubmitScope) -> schemas.SweepOut:
    """Resume a cancelled sweep."""
    return sweeps.resume(sweep_id)


@router.delete("/{sweep_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_sweep(sweep_id: Id, sweeps: SweepsDep, _: SubmitScope) -> Response:
    """Delete a sweep and its Optuna study."""
    sweeps.delete(sweep_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{sweep_id}/trials", response_model=schemas.TrialPage)
def list_trials(
    sweep_id: Id,
    sweeps: SweepsDep,
    _: ReadScope,
    state: Literal["complete", "pruned", "failed", "running", "waiting"] | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> schemas.TrialPage:
    """A sweep's trials by number, optionally of one state."""
    return sweeps.trials(sweep_id, state, offset, limit)


@router.post("/{sweep_id}/trials:import", response_model=schemas.ImportOut)
def import_trials(
    sweep_id: Id,
    req: schemas.TrialImport,
    sweeps: SweepsDep,
    _: SubmitScope,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> schemas.ImportOut:
    """Add finished runs made elsewhere (JSON rows, CSV, JSON lines or a W&B runs export) as
    trials, all or nothing: a bad row is a 422 naming its row and column, and writes nothing.
    An Idempotency-Key makes a retry add nothing and answer with the first import's trials."""
    return sweeps.import_trials(sweep_id, req, idempotency_key)


@router.get("/{sweep_id}/trials/{number}", response_model=schemas.TrialOut)
def get_trial(sweep_id: Id, number: Id, sweeps: SweepsDep, _: ReadScope) -> schemas.TrialOut:
    """One trial: params, intermediate values, state, reason, worker, timings."""
    return sweeps.trial(sweep_id, number)


@router.get("/{sweep_id}/best", response_model=schemas.BestOut)
def best(
    sweep_id: Id,
    sweeps: SweepsDep,
    response: Response,
    _: ReadScope,
    k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> schemas.BestOut:
    """The best trial and the top k, as ready-to-use optimizer kwargs."""
    return timed(response, lambda: sweeps.best(sweep_id, k))


@router.get("/{sweep_id}/arms", response_model=schemas.ArmsOut)
def arms(sweep_id: Id, sweeps: SweepsDep, response: Response, _: ReadScope) -> schemas.ArmsOut:
    """Lion against the AdamW baseline arm: each arm's best with its interval, the difference
    with its 90% interval, a verdict, and each arm's lr and weight decay optimum next to the
    Lion paper's ratios (verdict not_measured without a baseline; 409 with no complete trial)."""
    return timed(response, lambda: sweeps.arms_answer(sweep_id))


@router.get("/{sweep_id}/scaling-rule", response_model=schemas.RuleOut)
def scaling_rule(
    sweep_id: Id,
    sweeps: SweepsDep,
    response: Response,
    _: ReadScope,
    width: Annotated[
        float | None,
        Query(gt=0, allow_inf_nan=False, description="Move the answer to this width."),
    ] = None,
    width_rule: Annotated[
        Literal["sqrt", "mup", "mup_sqrt"],
        Query(
            description="sqrt: lr ∝ w^-½, λ ∝ w^½; mup: lr ∝ 1/w, λ ∝ w; "
            "mup_sqrt: lr ∝ 1/w, λ ∝ w^½"
        ),
    ] = "sqrt",
    from_width: Annotated[
        float | None,
        Query(
            gt=0, allow_inf_nan=False, description="The sweep's width, if its task declares none."
        ),
    ] = None,
) -> schemas.RuleOut:
    """The lr × weight-decay surface of the sweep: verdict, valley, optimum, 90% intervals
    (409 when it has no complete Lion trial); with ``width``, the answer moved there."""
    return timed(response, lambda: sweeps.scaling_rule(sweep_id, width, width_rule, from_width))


@router.get("/{sweep_id}/importances", response_model=schemas.ImportancesOut)
def importances(
    sweep_id: Id, sweeps: SweepsDep, response: Response, _: ReadScope
) -> schemas.ImportancesOut:
    """Parameter importances (409 when too few complete trials)."""
    return timed(response, lambda: sweeps.importances(sweep_id))
