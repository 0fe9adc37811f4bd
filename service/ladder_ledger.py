"""The state changes of width ladders, each one transaction: create a ladder with its rungs,
queue a confirmation of its prediction, cancel or resume it, delete it. The sweeps themselves
are written through the sweep ledger (:mod:`service.ledger`)."""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service import schemas
from service import spec as specs
from service.catalog import Catalog
from service.db import Database, create_idempotently
from service.errors import Conflict, Invalid, NotFound, field_error
from service.ladder_analysis import ARMS_ATTR, QUERY_NAMES, LadderAnalysis
from service.ladder_spec import (
    adopted_spec,
    axis_with,
    check_ladder,
    confirm_spec,
    extended_spec,
    fit_box,
    followed_spec,
    point_name,
    point_text,
    rung_spec,
    target_spec,
    width_problem,
)
from service.ladder_views import LadderViews, order_key, point_of, roles_of, same_point
from service.ledger import Ledger
from service.models import Ladder, Sweep
from service.settings import Settings
from service.views import Views


class LadderLedger:
    """Every write to a ladder and its sweeps."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        ledger: Ledger,
        views: Views,
        ladder_views: LadderViews,
        analysis: LadderAnalysis,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.ledger = ledger
        self.views = views
        self.ladder_views = ladder_views
        self.analysis = analysis

    def create(self, spec: schemas.LadderSpec, key: str | None) -> tuple[int, bool]:
        """Create the ladder and one sweep per width, all in one transaction; returns
        (ladder id, created). The same ``key`` with the same spec returns the first."""
        spec, rungs = check_ladder(spec, self.ledger.declared_params(spec.task.name), self.settings)
        spec_json = spec.model_dump(mode="json", exclude_none=True)
        roles = spec.ladder.roles or {}
        axis = axis_with(roles, "width") or spec.ladder.axes()[0]

        def create_once() -> tuple[int, bool]:
            with self.db.transaction() as tx:
                earlier = _keyed(tx, key, spec_json)
                if earlier is not None:
                    return earlier, False
                row = Ladder(
                    name=spec.name,
                    task_name=spec.task.name,
                    param=axis,
                    spec=spec_json,
                    request_spec=spec_json,
                    idempotency_key=key,
                )
                tx.add(row)
                tx.flush()
                for rung in rungs:
                    self.ledger.insert_sweep(
                        tx,
                        rung,
                        rung.model_dump(mode="json", exclude_none=True),
                        ladder_id=row.id,
                        ladder_role="rung",
                    )
                ladder_id = row.id
            self.catalog.changed()
            return ladder_id, True

        return create_idempotently(create_once, key)

    def adopt(self, req: schemas.LadderFromSweeps, key: str | None) -> tuple[int, bool]:
        """Make a ladder of existing sweeps (one transaction: each must exist and be in no
        ladder, under its row lock); returns (ladder id, created). The same ``key`` with the
        same request returns the first."""

        def adopt_once() -> tuple[int, bool]:
            with self.db.transaction() as tx:
                rows = {
                    r.id: r
                    for r in tx.scalars(
                        select(Sweep).where(Sweep.id.in_(req.sweeps)).with_for_update()
                    )
                }
                missing = [i for i, sid in enumerate(req.sweeps) if sid not in rows]
                if missing:
                    raise Invalid(
                        [
                            field_error(
                                ("sweeps", i), f"sweep {req.sweeps[i]} not found", req.sweeps[i]
                            )
                            for i in missing
                        ]
                    )
                spec = adopted_spec(req, [rows[sid].spec for sid in req.sweeps])
                spec_json = spec.model_dump(mode="json", exclude_none=True)
                earlier = _keyed(tx, key, spec_json)
                if earlier is not None:
                    return earlier, False
                taken = [sid for sid in req.sweeps if rows[sid].ladder_id is not None]
                if taken:
                    raise Conflict(
                        "; ".join(
                            f"sweep {sid} is a {rows[sid].ladder_role} of ladder "
                            f"{rows[sid].ladder_id} already"
                            for sid in taken
                        )
                    )
                axis = axis_with(req.axes, "width") or next(iter(req.axes))
                row = Ladder(
                    name=req.name,
                    task_name=spec.task.name,
                    param=axis,
                    spec=spec_json,
                    request_spec=spec_json,
                    idempotency_key=key,
                )
                tx.add(row)
                tx.flush()
                done = tx.execute(
                    update(Sweep)
                    .where(Sweep.id.in_(req.sweeps), Sweep.ladder_id.is_(None))
                    .values(ladder_id=row.id, ladder_role="rung")
                )
                if done.rowcount != len(req.sweeps):
                    raise Conflict("a sweep joined another ladder meanwhile: try again")
                ladder_id = row.id
            self.catalog.changed()
            return ladder_id, True

        return create_idempotently(adopt_once, key)

    def extend(self, ladder_id: int, req: schemas.ExtendRequest) -> None:
        """Add rungs to a ladder (one transaction under its row lock), each box centred on the
        joint fit's prediction there (``box: fit``: a 409 while there is no fit) or the
        ladder's own; a 422 naming the rung and axis for a point that breaks the task's
        declarations, misses an axis, or is a rung (or a pending follow rung) already."""
        row = self.ladder_views.row(ladder_id)
        spec = schemas.LadderSpec.model_validate(row.spec)
        roles = roles_of(spec)
        declared = self.ledger.declared_params(spec.task.name) or {}
        errors, points = [], []
        taken = [p for p in spec.ladder.points()]
        pending = spec.ladder.pending()
        for i, rung in enumerate(req.rungs):
            if set(rung) != set(roles):
                errors.append(
                    field_error(
                        ("rungs", i),
                        f"a rung of this ladder names {', '.join(roles)} (got "
                        f"{', '.join(rung) or 'none'})",
                        rung,
                    )
                )
                continue
            point = {}
            for name in roles:
                value, rule = rung[name], declared.get(name)
                problem = width_problem(value, rule) if isinstance(rule, dict) else None
                is_int = rule.get("type") == "int" if isinstance(rule, dict) else True
                if problem is None and is_int and not float(value).is_integer():
                    problem = "must be a whole number"
                if problem:
                    errors.append(field_error(("rungs", i, name), f"{name} {problem}", value))
                point[name] = int(value) if is_int and float(value).is_integer() else value
            if any(same_point(point, p) for p in taken):
                errors.append(
                    field_error(("rungs", i), f"{point_text(point)} is a rung already", rung)
                )
            elif any(same_point(point, p) for p in pending):
                errors.append(
                    field_error(
                        ("rungs", i),
                        f"{point_text(point)} is a follow rung already (added once the rungs "
                        "are complete)",
                        rung,
                    )
                )
            taken.append(point)
            points.append(point)
        if errors:
            raise Invalid(errors)
        try:
            new_spec = extended_spec(spec, points)
        except ValidationError as exc:
            raise Invalid(
                [field_error(("rungs",), e["msg"], req.rungs) for e in exc.errors()]
            ) from None
        rungs = []
        joint = self.analysis.joint(row) if req.box == "fit" else None
        for point in points:
            rung = rung_spec(new_spec, point, roles)
            if joint is not None:
                prediction = self.analysis.joint_prediction(row, spec, joint[0], point)
                if prediction is None:
                    raise Conflict(
                        f"ladder {ladder_id} has no fit to centre a box on ({joint[2]}): add "
                        "the rungs with box: ladder"
                    )
                rung = fit_box(rung, prediction, req.span)
            errors = specs.check_spec(rung, self.settings)
            errors += specs.check_task_params(rung.task.params, declared)
            if errors:
                raise Invalid(errors)
            rungs.append(rung)
        self._write(ladder_id, row, new_spec, rungs)

    def release(self, ladder_id: int) -> int:
        """Add the ladder's pending follow rungs once every rung is complete (and the ladder is
        not held), as ``extend`` with ``box: fit`` and the follow's span would, or in the
        ladder's own box when there is no fit then (``follow.released`` says why); returns
        how many it added. Safe to repeat and to race: a ladder released meanwhile (by this or
        another server process) is read again and found with nothing pending."""
        for _ in range(5):
            row = self.ladder_views.row(ladder_id)
            spec = schemas.LadderSpec.model_validate(row.spec)
            points = spec.ladder.pending()
            if not points or spec.ladder.follow.held:
                return 0
            sweeps = self.ladder_views.sweeps(ladder_id)
            if any(s.status != "complete" for s in sweeps if s.ladder_role == "rung"):
                return 0
            rungs, released = self._followed(row, spec, points)
            new_spec = followed_spec(spec, points, released)
            try:
                self._write(ladder_id, row, new_spec, rungs)
            except Conflict:  # changed meanwhile (released, held or extended): read it again
                continue
            return len(points)
        raise Conflict(f"ladder {ladder_id} kept changing while its follow rungs were added")

    def _followed(
        self, row: Ladder, spec: schemas.LadderSpec, points: list[dict[str, float]]
    ) -> tuple[list[schemas.SweepSpec], list[schemas.FollowedRung]]:
        """The follow rungs' sweep specs, each box centred on the joint fit's prediction at its
        point (else the ladder's own), and the record of each box and why."""
        roles = roles_of(spec)
        declared = self.ledger.declared_params(spec.task.name) or {}
        new_spec = extended_spec(spec, points)
        joint, _axes, note = self.analysis.joint(row)
        span = spec.ladder.follow.span
        rungs, released = [], []
        for point in points:
            own = rung_spec(new_spec, point, roles)
            prediction = self.analysis.joint_prediction(row, spec, joint, point)
            if prediction is None:
                why = note if joint is None else "the joint fit predicts no lr there"
                released.append(
                    schemas.FollowedRung(
                        point=point, box="ladder", note=f"the ladder's box: no fit ({why})"
                    )
                )
                rungs.append(own)
                continue
            rung = fit_box(own, prediction, span)
            errors = specs.check_spec(rung, self.settings)
            errors += specs.check_task_params(rung.task.params, declared)
            if errors:
                problems = "; ".join(e["msg"] for e in errors)
                released.append(
                    schemas.FollowedRung(
                        point=point,
                        box="ladder",
                        lr=prediction.lr,
                        note=f"the ladder's box: the box around the prediction breaks the "
                        f"spec's rules ({problems})",
                    )
                )
                rungs.append(own)
                continue
            released.append(
                schemas.FollowedRung(
                    point=point,
                    box="fit",
                    lr=prediction.lr,
                    weight_decay=prediction.weight_decay if prediction.weight_decay_moved else None,
                    note=f"centred on the joint fit's prediction (÷/× {span:g}, or its 90% "
                    f"interval where wider): {prediction.note}",
                )
            )
            rungs.append(rung)
        return rungs, released

    def _write(
        self,
        ladder_id: int,
        row: Ladder,
        new_spec: schemas.LadderSpec,
        rungs: list[schemas.SweepSpec],
    ) -> None:
        """Store ``new_spec`` and insert ``rungs`` as the ladder's rungs, in one transaction
        under its row lock; a 409 when its spec is no longer ``row``'s (changed meanwhile)."""
        with self.db.transaction() as tx:
            locked = tx.scalars(
                select(Ladder).where(Ladder.id == ladder_id).with_for_update()
            ).first()
            if locked is None:
                raise NotFound(f"ladder {ladder_id} not found")
            if locked.spec != row.spec:
                raise Conflict(f"ladder {ladder_id} changed meanwhile: try again")
            locked.spec = new_spec.model_dump(mode="json", exclude_none=True)
            for rung in rungs:
                self.ledger.insert_sweep(
                    tx,
                    rung,
                    rung.model_dump(mode="json", exclude_none=True),
                    ladder_id=ladder_id,
                    ladder_role="rung",
                )
        self.catalog.changed()

    def set_status(self, ladder_id: int, status: str) -> None:
        """Cancel (``cancelled``) or resume (``running``) every rung and confirmation that is
        not complete; cancelling holds the pending follow rungs, resuming lets them go (and
        adds them at once if every rung is complete)."""
        self.ladder_views.row(ladder_id)  # 404 for an unknown ladder
        if status == "cancelled":
            self._hold(ladder_id, True)
        for sweep in self.ladder_views.sweeps(ladder_id):
            if sweep.status != "complete":
                with contextlib.suppress(Conflict):  # completed meanwhile
                    self.ledger.set_status(sweep.id, status)
        if status == "running" and self._hold(ladder_id, False):
            self.release(ladder_id)

    def _hold(self, ladder_id: int, held: bool) -> bool:
        """Set the follow's ``held`` (a conditional write under the ladder's lock, read again
        when the spec changed meanwhile); True when the ladder has pending follow rungs."""
        for _ in range(5):
            row = self.ladder_views.row(ladder_id)
            spec = schemas.LadderSpec.model_validate(row.spec)
            follow = spec.ladder.follow
            if not spec.ladder.pending():
                return False
            if follow.held == held:
                return True
            follow = follow.model_copy(update={"held": held})
            lad = spec.ladder.model_copy(update={"follow": follow})
            try:
                self._write(ladder_id, row, spec.model_copy(update={"ladder": lad}), [])
            except Conflict:
                continue
            return True
        raise Conflict(f"ladder {ladder_id} kept changing: try again")

    def delete(self, ladder_id: int) -> None:
        """Delete the ladder, its rungs and confirmations, and their studies (one transaction)."""
        ids = []
        with self.db.transaction() as tx:
            row = tx.get(Ladder, ladder_id)
            if row is None:
                raise NotFound(f"ladder {ladder_id} not found")
            for sweep in tx.scalars(select(Sweep).where(Sweep.ladder_id == ladder_id)):
                ids.append(sweep.id)
                self.ledger.drop_sweep(tx, sweep)
            tx.delete(row)
        for sweep_id in ids:
            self.catalog.forget(sweep_id)
        self.catalog.changed()

    def confirm(self, ladder_id: int, req: schemas.ConfirmRequest) -> None:
        """Queue the prediction at the request's point beside a rung's own optimum, unmoved
        (the widest of a width ladder, else the nearest; both arms with ``req.seeds`` seeds),
        as a confirmation sweep; with ``req.sweep_trials``, also a small sweep of the point's
        own (:func:`target_spec`)."""
        row = self.ladder_views.row(ladder_id)
        spec = schemas.LadderSpec.model_validate(row.spec)
        roles = roles_of(spec)
        point = self.analysis.target_point(spec, req.target(), "body", check=False)
        declared = self.ledger.declared_params(spec.task.name) or {}
        field_of = {a: QUERY_NAMES[r] for a, r in roles.items()}
        for name, value in list(point.items()):
            rule = declared.get(name)
            if isinstance(rule, dict):
                problem = width_problem(value, rule)
                if problem:
                    raise Invalid([field_error((field_of[name],), f"{name} {problem}", value)])
                if rule.get("type") == "int":
                    point[name] = int(value)
            elif not float(value).is_integer():
                raise Invalid(
                    [field_error((field_of[name],), f"{name} must be a whole number", value)]
                )
            else:
                point[name] = int(value)
        where = point_text(point)
        if any(same_point(point, p) for p in spec.ladder.points()):
            raise Invalid(
                [
                    field_error(
                        (next(iter(field_of.values())),),
                        f"{where} is a rung of the ladder already",
                        next(iter(point.values())),
                    )
                ]
            )
        sweeps = self.ladder_views.sweeps(ladder_id)
        _check_new_at(ladder_id, spec, sweeps, point, where, req.sweep_trials)
        for s in sorted(
            (s for s in sweeps if s.ladder_role == "rung"),
            key=lambda s: order_key(point_of(spec, s)),
        ):
            if s.status != "complete":
                view = self.views.sweep(s)
                raise Conflict(
                    f"rung {point_name(point_of(spec, s))} (sweep {s.id}) is "
                    f"{s.status} ({view.finished}/{view.n_trials} finished): a confirmation "
                    "needs every rung complete, so each has its rule"
                )
        point, prediction, untransferred = self.analysis.confirmation_arms(row, req.target())
        point = {k: int(v) if float(v).is_integer() else v for k, v in point.items()}
        for name in point:
            rule = declared.get(name)
            if isinstance(rule, dict) and rule.get("type") == "float":
                point[name] = float(point[name])
        extra = self.analysis.extra_arms(row, point, prediction, req.rules)
        confirm = confirm_spec(
            spec, point, req.seeds, prediction, untransferred, [(lr, wd) for lr, wd, _ in extra]
        )
        sources = [
            f"the ladder's prediction at {where}",
            untransferred.source,
            *(source for _, _, source in extra),
        ]
        errors = specs.check_spec(confirm, self.settings)
        target = None
        if req.sweep_trials is not None:
            target = target_spec(spec, point, prediction, req.sweep_trials, req.seeds)
            errors += specs.check_spec(target, self.settings)
        if errors:
            raise Invalid(errors)
        with self.db.transaction() as tx:
            # Under the ladder's lock (PostgreSQL: its row; SQLite: the write lock), so two
            # confirmations at one point cannot both pass the check.
            locked = tx.execute(
                select(Ladder.id).where(Ladder.id == ladder_id).with_for_update()
            ).first()
            if locked is None:
                raise NotFound(f"ladder {ladder_id} not found")
            here = select(Sweep).where(
                Sweep.ladder_id == ladder_id, Sweep.ladder_role.in_(("confirm", "target"))
            )
            confirmed = _check_new_at(
                ladder_id, spec, list(tx.scalars(here)), point, where, req.sweep_trials
            )
            if not confirmed:
                self.ledger.insert_sweep(
                    tx,
                    confirm,
                    confirm.model_dump(mode="json", exclude_none=True),
                    ladder_id=ladder_id,
                    ladder_role="confirm",
                    attrs={ARMS_ATTR: sources},
                )
            if target is not None:
                self.ledger.insert_sweep(
                    tx,
                    target,
                    target.model_dump(mode="json", exclude_none=True),
                    ladder_id=ladder_id,
                    ladder_role="target",
                )
        self.catalog.changed()


def _check_new_at(
    ladder_id: int,
    spec: schemas.LadderSpec,
    sweeps: list[Sweep],
    point: dict[str, Any],
    where: str,
    sweep_trials: int | None,
) -> bool:
    """Whether the ladder is confirmed at ``point`` already; a 409 unless this request adds
    what it lacks: a point's own sweep (``sweep_trials``) to a confirmation made without."""
    at = {s.ladder_role: s for s in sweeps if same_point(point_of(spec, s), point)}
    confirm, target = at.get("confirm"), at.get("target")
    if confirm is None:
        return False
    if target is not None:
        raise Conflict(
            f"ladder {ladder_id} is already confirmed at {where} (sweep {confirm.id}, the "
            f"point's own sweep {target.id})"
        )
    if sweep_trials is None:
        raise Conflict(
            f"ladder {ladder_id} is already confirmed at {where} (sweep {confirm.id}); give "
            "sweep_trials to add a sweep of the point's own"
        )
    return True


def _keyed(tx: Session, key: str | None, spec_json: dict) -> int | None:
    """The ladder an earlier request with idempotency ``key`` made, or None; a 409 when that
    request's spec differs (from the spec as created, whatever rungs were added since)."""
    if not key:
        return None
    existing = tx.scalars(select(Ladder).where(Ladder.idempotency_key == key)).first()
    if existing is None:
        return None
    first = existing.request_spec if existing.request_spec is not None else existing.spec
    if first != spec_json:
        raise Conflict("Idempotency-Key was already used with a different ladder spec")
    return existing.id
