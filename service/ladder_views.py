"""Read views of width ladders: a ladder with its rungs and confirmations, and pages of them,
in the shapes the API answers with."""

from __future__ import annotations

import math

from sqlalchemy import func, select

from service import schemas
from service.db import Database
from service.errors import NotFound
from service.ladder_spec import axis_with
from service.models import Ladder, Sweep
from service.views import Views, aware


def roles_of(spec: schemas.LadderSpec) -> dict[str, str]:
    """Each axis's role (a ladder stored before roles were recorded has one: the width)."""
    return dict(spec.ladder.roles or {spec.ladder.axes()[0]: "width"})


def point_of(spec: schemas.LadderSpec, sweep: Sweep) -> dict[str, float]:
    """Where a sweep of the ladder (a rung or a confirmation) runs: a value per axis."""
    params = sweep.spec["task"].get("params") or {}
    point = {}
    for name in spec.ladder.axes():
        if name in params:
            point[name] = float(params[name])
        else:  # the harness's batch size, fixed in the space
            point[name] = float(sweep.spec["space"][name]["value"])
    return point


def same_point(a: dict[str, float], b: dict[str, float]) -> bool:
    """Two points equal on every axis (to float rounding)."""
    return all(math.isclose(float(a[k]), float(b[k])) for k in a)


def order_key(point: dict[str, float]) -> tuple[float, ...]:
    """Rungs in order: by the sum of their axes' logs (small to large), then axis by axis."""
    logs = [math.log(v) for v in point.values()]
    return (sum(logs), *logs)


class LadderViews:
    """Ladders as the API shows them, over the sweep views."""

    def __init__(self, db: Database, views: Views) -> None:
        self.db = db
        self.views = views

    def row(self, ladder_id: int) -> Ladder:
        """The ladder's row (404 when there is none)."""
        with self.db.session() as s:
            row = s.get(Ladder, ladder_id)
        if row is None:
            raise NotFound(f"ladder {ladder_id} not found")
        return row

    def sweeps(self, ladder_id: int) -> list[Sweep]:
        """The ladder's sweeps, rungs and confirmations, in the order they were made."""
        with self.db.session() as s:
            return list(
                s.scalars(select(Sweep).where(Sweep.ladder_id == ladder_id).order_by(Sweep.id))
            )

    def get(self, ladder_id: int) -> schemas.LadderOut:
        """One ladder with its rungs and confirmations."""
        return self._out(self.row(ladder_id))

    def _out(self, row: Ladder, announced: set[str] | None = None) -> schemas.LadderOut:
        """The API view of ladder ``row``; ``announced``: every announced task, when known."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        if announced is None:
            announced = self.views.announced_tasks()
        rungs, confirms = [], []
        roles = roles_of(spec)
        width_axis = axis_with(roles, "width")
        for sweep in self.sweeps(row.id):
            view = self.views.sweep(sweep, announced)
            point = point_of(spec, sweep)
            out = schemas.RungOut(
                width=point[width_axis] if width_axis else None,
                point=point,
                sweep_id=sweep.id,
                role=sweep.ladder_role,
                status=view.status,
                n_trials=view.n_trials,
                finished=view.finished,
                progress=view.progress,
            )
            (rungs if sweep.ladder_role == "rung" else confirms).append(out)
        rungs.sort(key=lambda r: order_key(r.point))
        every = rungs + confirms
        statuses = {r.status for r in every}
        if "running" in statuses:
            status = "running"
        elif statuses == {"complete"}:
            status = "complete"
        else:
            status = "cancelled"
        follow = spec.ladder.follow
        pending = [{k: float(v) for k, v in p.items()} for p in spec.ladder.pending()]
        if pending and status == "complete":
            status = "cancelled" if follow.held else "running"
        return schemas.LadderOut(
            id=row.id,
            name=row.name,
            status=status,
            task=spec.task,
            param=row.param,
            widths=sorted({p[width_axis] for p in (r.point for r in rungs)}) if width_axis else [],
            axes=[schemas.AxisOut(param=a, role=r) for a, r in roles.items()],
            scale_box=spec.ladder.scale_box,
            rungs=rungs,
            confirmations=confirms,
            pending=pending,
            pending_note=_pending_note(pending, follow.held if follow else False, rungs),
            followed=follow.released if follow else [],
            progress=sum(r.progress for r in rungs) / (len(rungs) + len(pending)) if rungs else 0.0,
            created_at=aware(row.created_at),
            spec=row.spec,
        )

    def list(self, offset: int, limit: int) -> schemas.LadderPage:
        """A page of ladders, newest first."""
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(Ladder)) or 0
            rows = list(
                s.scalars(select(Ladder).order_by(Ladder.id.desc()).offset(offset).limit(limit))
            )
        announced = self.views.announced_tasks()
        return schemas.LadderPage(
            items=[self._out(r, announced) for r in rows], total=total, offset=offset, limit=limit
        )


def _pending_note(pending: list[dict[str, float]], held: bool, rungs: list[schemas.RungOut]) -> str:
    """What the pending follow rungs wait for, in a sentence (empty when none wait)."""
    if not pending:
        return ""
    n = len(pending)
    what = f"{n} rung{'s' if n != 1 else ''} wait{'s' if n == 1 else ''} for the fit"
    if held:
        return f"{what}: held while the ladder is cancelled (resume it to let them go)"
    running = sum(r.status != "complete" for r in rungs)
    if running:
        return (
            f"{what}: added once the {running} unfinished rung{'s' if running != 1 else ''} "
            f"{'are' if running != 1 else 'is'} complete, each box centred on the prediction "
            "there"
        )
    return f"{what}: being added now, each box centred on the prediction there"
