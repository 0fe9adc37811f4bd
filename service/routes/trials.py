"""The worker protocol: claim, report, heartbeat, finish."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response, status

from service import schemas
from service.auth import WorkerScope
from service.routes import Id, SweepsDep

router = APIRouter(prefix="/api/trials", tags=["worker protocol"])


@router.post(
    "/claim",
    response_model=schemas.Assignment,
    responses={204: {"description": "Nothing is runnable"}},
)
def claim(
    body: schemas.ClaimRequest, sweeps: SweepsDep, request: Request, token: WorkerScope
) -> schemas.Assignment | Response:
    """Claim a runnable trial (200) or learn there is none (204). The trial answers to the
    token it was claimed with alone."""
    t0 = time.perf_counter()
    got = sweeps.claim(body, token)
    request.app.state.metrics.claim_latency.labels("assigned" if got else "empty").observe(
        time.perf_counter() - t0
    )
    if got is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return got


@router.post("/{trial_id}/report", response_model=schemas.ActionOut)
def report(
    trial_id: Id, body: schemas.ReportRequest, sweeps: SweepsDep, token: WorkerScope
) -> schemas.ActionOut:
    """Report an intermediate value; the answer says continue, prune or stop."""
    return sweeps.report(trial_id, body, token)


@router.post("/{trial_id}/heartbeat", response_model=schemas.ActionOut)
def heartbeat(
    trial_id: Id,
    sweeps: SweepsDep,
    token: WorkerScope,
    body: schemas.HeartbeatRequest | None = None,
) -> schemas.ActionOut:
    """Extend the trial's lease."""
    return sweeps.heartbeat(trial_id, body.worker_id if body else None, token)


@router.post("/{trial_id}/finish", response_model=schemas.FinishOut)
def finish(
    trial_id: Id, body: schemas.FinishRequest, sweeps: SweepsDep, token: WorkerScope
) -> schemas.FinishOut:
    """Finish the trial as complete, pruned or failed (failed ones are re-queued)."""
    return sweeps.finish(trial_id, body, token)
