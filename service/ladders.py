"""Width ladders: one submission becomes one sweep per width (its rungs), the rungs' optima
become width exponents and a prediction (:mod:`service.ladder_fit`), and a confirmation runs
the prediction at a new width beside the widest rung's own optimum, untransferred."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from service import schemas
from service import spec as specs
from service.analysis import Analysis, group_configs, pooled_noise
from service.catalog import Catalog
from service.db import Database, create_idempotently
from service.errors import Conflict, Invalid, NotFound, field_error
from service.ladder_fit import (
    RULES,
    LadderFit,
    OutOfRange,
    exp_in_range,
    fit_ladder,
    log_ratio,
    rung_point,
)
from service.ledger import Ledger
from service.models import Ladder, Sweep
from service.settings import Settings
from service.surface import AGREE, ALPHA, Surface
from service.views import Views, aware

METHOD = (
    "each rung's optimum (ln lr, ln weight decay) from its response surface, with the "
    "covariance of its 400 bootstrap refits; lines in ln width fitted by generalised least "
    "squares (intervals scaled by χ²/dof when the rungs scatter beyond their errors); each "
    "candidate rule scored by χ² with its intercepts fitted; 90% intervals"
)


@dataclass
class Untransferred:
    """The widest rung's own recommendation, used unmoved at a confirmation's width."""

    lr: float
    weight_decay: float
    params: dict[str, Any]
    """Its best config's params (betas, warmup, batch size come from here)."""
    source: str
    wd_source: str


def _scaled(dim: schemas.Dimension | None, f: float) -> schemas.Dimension | None:
    """A dimension with every value multiplied by ``f`` (> 0)."""
    if dim is None or f == 1.0:
        return dim
    if dim.value is not None:
        return dim.model_copy(update={"value": dim.value * f})
    if dim.choices is not None:
        return dim.model_copy(update={"choices": [c * f for c in dim.choices]})
    step = dim.step * f if dim.step is not None else None
    return dim.model_copy(update={"low": dim.low * f, "high": dim.high * f, "step": step})


EXTRAPOLATION = 1e6
"""How far beyond the rungs' widths, as a factor, a ladder predicts and confirms."""


def _check_reach(loc: tuple[str, ...], width: float, rung_widths: list[float]) -> None:
    """:class:`Invalid` (field ``loc``) unless ``width`` is within ``EXTRAPOLATION`` of the
    rungs' widths."""
    lo, hi = min(rung_widths), max(rung_widths)
    if lo / EXTRAPOLATION <= width <= hi * EXTRAPOLATION:
        return
    msg = (
        f"width must be within a factor of {EXTRAPOLATION:g} of the rungs' widths "
        f"({lo:g} to {hi:g}), from {lo / EXTRAPOLATION:g} to {hi * EXTRAPOLATION:g}, "
        f"not {width:g}"
    )
    raise Invalid([{"type": "value_error", "loc": loc, "msg": msg, "input": width}])


def _beyond_floats(loc: tuple[str, ...], width: float, exc: OutOfRange) -> Invalid:
    """The 422 for a width whose prediction floating point cannot hold (wild exponents)."""
    msg = (
        f"width {width:g} is too far from the rungs for the fitted lines: their lr or weight "
        f"decay there is beyond floating point ({exc})"
    )
    return Invalid([{"type": "value_error", "loc": loc, "msg": msg, "input": width}])


def rung_spec(spec: schemas.LadderSpec, width: float) -> schemas.SweepSpec:
    """The sweep spec of the rung at ``width``: the ladder's spec with the width set in the
    task params and, unless the box is shared, lr and weight decay moved by the box's rule
    from the smallest width."""
    lad = spec.ladder
    data = spec.model_dump(exclude={"ladder"}, exclude_none=True)
    data["name"] = f"{spec.name} · {lad.param}={width:g}"
    data["task"]["params"] = {**spec.task.params, lad.param: width}
    out = schemas.SweepSpec.model_validate(data)
    if lad.scale_box == "shared":
        return out
    a, b = RULES[lad.scale_box]
    r = width / min(lad.widths)
    fa, fb = r**a, r**b
    space = out.space.model_copy(
        update={
            "lr": _scaled(out.space.lr, fa),
            "weight_decay": _scaled(out.space.weight_decay, fb),
            "lr_wd_product": _scaled(out.space.lr_wd_product, fa * fb),
        }
    )
    enqueue = []
    for cfg in specs.enqueued_params(out):
        for name, f in (("lr", fa), ("weight_decay", fb), ("lr_wd_product", fa * fb)):
            if name in cfg:
                cfg[name] = cfg[name] * f
        enqueue.append(schemas.EnqueuedConfig.model_validate(cfg))
    return out.model_copy(update={"space": space, "enqueue": enqueue})


def pinned(surface: Surface) -> tuple[bool, bool]:
    """Whether a rung's surface pins down its optimum lr, and its weight decay too.

    A coordinate is pinned when it matters (its F-test, p < 0.05) and the optimum lies
    inside the box along it in 90% of refits; weight decay counts only with the lr. The
    surface's verdict asks more (a valley's slope, walls on both sides), which the width fit
    does not need.
    """
    lr_ok = (
        surface.lr is not None
        and surface.p_lr is not None
        and surface.p_lr < ALPHA
        and surface.lr_inside >= AGREE
    )
    wd_ok = (
        lr_ok
        and surface.p_weight_decay is not None
        and surface.p_weight_decay < ALPHA
        and surface.weight_decay_inside >= AGREE
    )
    return lr_ok, wd_ok


def _width_problem(value: Any, rule: dict[str, Any]) -> str | None:
    """Why ``value`` breaks the declared width param's type or bounds, or None (a float
    width that is a whole number counts as the int it names)."""
    if rule.get("type") == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    return specs.param_problem(value, rule)


class Ladders:
    """Width ladders over the sweep service's parts."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        catalog: Catalog,
        ledger: Ledger,
        views: Views,
        analysis: Analysis,
    ) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self.ledger = ledger
        self.views = views
        self.analysis = analysis

    # ---- create ----

    def _check(self, spec: schemas.LadderSpec) -> list[schemas.SweepSpec]:
        """Every rung's spec, or a 422 naming the field and the rule."""
        lad = spec.ladder
        declared = self.ledger.declared_params(spec.task.name)
        if declared is None:
            raise Invalid(
                [
                    field_error(
                        ("ladder", "param"),
                        f"no worker has announced task {spec.task.name!r}, so which param is "
                        "its width is unknown: start a worker that runs it, then submit",
                        lad.param,
                    )
                ]
            )
        widths = [n for n, r in declared.items() if isinstance(r, dict) and r.get("width")]
        rule = declared.get(lad.param)
        if not isinstance(rule, dict) or not rule.get("width"):
            known = f"its width param is {widths[0]!r}" if widths else "it declares none"
            raise Invalid(
                [
                    field_error(
                        ("ladder", "param"),
                        f"task {spec.task.name!r} does not declare {lad.param!r} as its width "
                        f"({known})",
                        lad.param,
                    )
                ]
            )
        errors = []
        if lad.param in spec.task.params:
            errors.append(
                field_error(
                    ("task", "params", lad.param),
                    f"{lad.param} is set per rung by ladder.widths: leave it out of task.params",
                )
            )
        for i, w in enumerate(lad.widths):
            problem = _width_problem(w, rule)
            if problem:
                errors.append(field_error(("ladder", "widths", i), f"{lad.param} {problem}", w))
        if errors:
            raise Invalid(errors)
        rungs = [rung_spec(spec, w) for w in lad.widths]
        for rung in rungs:
            errors = specs.check_spec(rung, self.settings)
            errors += specs.check_task_params(rung.task.params, declared)
            if errors:
                raise Invalid(errors)
        return rungs

    def create(self, spec: schemas.LadderSpec, key: str | None) -> tuple[int, bool]:
        """Create the ladder and one sweep per width, all in one transaction; returns
        (ladder id, created). The same ``key`` with the same spec returns the first."""
        rungs = self._check(spec)
        spec_json = spec.model_dump(mode="json", exclude_none=True)

        def create_once() -> tuple[int, bool]:
            with self.db.transaction() as tx:
                if key:
                    existing = tx.scalars(
                        select(Ladder).where(Ladder.idempotency_key == key)
                    ).first()
                    if existing is not None:
                        if existing.spec != spec_json:
                            raise Conflict(
                                "Idempotency-Key was already used with a different ladder spec"
                            )
                        return existing.id, False
                row = Ladder(
                    name=spec.name,
                    task_name=spec.task.name,
                    param=spec.ladder.param,
                    spec=spec_json,
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

    # ---- reads ----

    def _row(self, ladder_id: int) -> Ladder:
        with self.db.session() as s:
            row = s.get(Ladder, ladder_id)
        if row is None:
            raise NotFound(f"ladder {ladder_id} not found")
        return row

    def _sweeps(self, ladder_id: int) -> list[Sweep]:
        with self.db.session() as s:
            return list(
                s.scalars(select(Sweep).where(Sweep.ladder_id == ladder_id).order_by(Sweep.id))
            )

    def _width_of(self, ladder: Ladder, sweep: Sweep) -> float:
        return float(sweep.spec["task"]["params"][ladder.param])

    def get(self, ladder_id: int) -> schemas.LadderOut:
        """One ladder with its rungs and confirmations."""
        return self._out(self._row(ladder_id))

    def _out(self, row: Ladder, announced: set[str] | None = None) -> schemas.LadderOut:
        spec = schemas.LadderSpec.model_validate(row.spec)
        if announced is None:
            announced = self.views.announced_tasks()
        rungs, confirms = [], []
        for sweep in self._sweeps(row.id):
            view = self.views.sweep(sweep, announced)
            out = schemas.RungOut(
                width=self._width_of(row, sweep),
                sweep_id=sweep.id,
                role=sweep.ladder_role,
                status=view.status,
                n_trials=view.n_trials,
                finished=view.finished,
                progress=view.progress,
            )
            (rungs if sweep.ladder_role == "rung" else confirms).append(out)
        rungs.sort(key=lambda r: r.width)
        every = rungs + confirms
        statuses = {r.status for r in every}
        if "running" in statuses:
            status = "running"
        elif statuses == {"complete"}:
            status = "complete"
        else:
            status = "cancelled"
        return schemas.LadderOut(
            id=row.id,
            name=row.name,
            status=status,
            task=spec.task,
            param=row.param,
            widths=[float(w) for w in spec.ladder.widths],
            scale_box=spec.ladder.scale_box,
            rungs=rungs,
            confirmations=confirms,
            progress=sum(r.progress for r in rungs) / len(rungs) if rungs else 0.0,
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

    # ---- lifecycle ----

    def set_status(self, ladder_id: int, status: str) -> schemas.LadderOut:
        """Cancel (``cancelled``) or resume (``running``) every rung and confirmation that is
        not complete."""
        row = self._row(ladder_id)
        for sweep in self._sweeps(ladder_id):
            if sweep.status != "complete":
                with contextlib.suppress(Conflict):  # completed meanwhile
                    self.ledger.set_status(sweep.id, status)
        return self.get(row.id)

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

    # ---- the rule ----

    def _fit(
        self, row: Ladder
    ) -> tuple[LadderFit, list[schemas.RungFit], list[Sweep], dict[int, Any]]:
        """The ladder fit over its rungs, the rungs' own estimates, the rung sweeps, and
        each rung's (surface, best config, sign) when it has one."""
        rungs = [s for s in self._sweeps(row.id) if s.ladder_role == "rung"]
        rungs.sort(key=lambda s: self._width_of(row, s))
        points, fits, fitted = [], [], {}
        for sweep in rungs:
            width = self._width_of(row, sweep)
            got = self.analysis.fitted(sweep.id)
            fitted[sweep.id] = got
            if got is None:
                fits.append(
                    schemas.RungFit(
                        width=width,
                        sweep_id=sweep.id,
                        status=sweep.status,
                        verdict=None,
                        reason="no complete Lion trial yet",
                        n=0,
                        used=[],
                    )
                )
                continue
            surface, _best, sign = got
            lr_ok, wd_ok = pinned(surface)
            d = surface.draws
            value = sign * d["value"] if lr_ok else None
            points.append(
                rung_point(
                    width,
                    d["ln_lr"] if lr_ok else None,
                    d["ln_wd"] if lr_ok and wd_ok else None,
                    value,
                )
            )
            used = (["lr"] if lr_ok else []) + (["weight_decay"] if lr_ok and wd_ok else [])
            used += ["value"] if lr_ok else []
            opt = surface.lr is not None
            fits.append(
                schemas.RungFit(
                    width=width,
                    sweep_id=sweep.id,
                    status=sweep.status,
                    verdict=surface.verdict,
                    reason=surface.reason,
                    n=surface.n,
                    lr=surface.lr.value if opt else None,
                    lr_ci=surface.lr.pair() if opt else None,
                    weight_decay=surface.weight_decay.value if opt else None,
                    weight_decay_ci=surface.weight_decay.pair() if opt else None,
                    product=surface.product.value if surface.product else None,
                    product_ci=surface.product.pair() if surface.product else None,
                    value=sign * surface.value.value if opt else None,
                    value_ci=sorted(sign * v for v in surface.value.pair()) if opt else None,
                    used=used,
                    lr_inside=surface.lr_inside,
                    weight_decay_inside=surface.weight_decay_inside,
                )
            )
        spec = schemas.LadderSpec.model_validate(row.spec)
        reference = math.exp(sum(math.log(w) for w in spec.ladder.widths) / len(spec.ladder.widths))
        return fit_ladder(points, reference), fits, rungs, fitted

    def rule(self, ladder_id: int, width: float | None = None) -> schemas.LadderRuleOut:
        """How η* and λ* move with width: exponents with 90% intervals, the candidate rules
        scored, a verdict, and with ``width`` the prediction there; plus confirmations."""
        row = self._row(ladder_id)
        spec = schemas.LadderSpec.model_validate(row.spec)
        rung_widths = [float(w) for w in spec.ladder.widths]
        if width is not None:
            _check_reach(("query", "width"), width, rung_widths)
        fit, fits, rungs, fitted = self._fit(row)
        largest = self._largest_best(rungs, fitted)
        try:
            rules = self._rule_scores(fit, width)
            prediction = (
                self._prediction(fit, width, rung_widths, largest) if width is not None else None
            )
        except OutOfRange as exc:
            raise _beyond_floats(("query", "width"), width, exc) from None
        confirmations = [
            self._confirmation(row, s, fit, rung_widths, largest)
            for s in self._sweeps(row.id)
            if s.ladder_role == "confirm"
        ]

        def pair(e: Any) -> list[float] | None:
            return e.pair() if e is not None else None

        return schemas.LadderRuleOut(
            ladder_id=row.id,
            param=row.param,
            verdict=fit.verdict,
            reason=fit.reason,
            complete=all(s.status == "complete" for s in rungs),
            method=METHOD,
            rungs=fits,
            reference_width=fit.reference_width,
            lr_exponent=fit.lr_exponent.value if fit.lr_exponent else None,
            lr_exponent_ci=pair(fit.lr_exponent),
            lr_at_reference=math.exp(fit.lr_intercept) if fit.lr_intercept is not None else None,
            wd_exponent=fit.wd_exponent.value if fit.wd_exponent else None,
            wd_exponent_ci=pair(fit.wd_exponent),
            wd_at_reference=math.exp(fit.wd_intercept) if fit.wd_intercept is not None else None,
            product_exponent=fit.product_exponent.value if fit.product_exponent else None,
            product_exponent_ci=pair(fit.product_exponent),
            value_slope=fit.value_slope.value if fit.value_slope else None,
            rules=rules,
            best_rule=fit.best_rule,
            prediction=prediction,
            confirmations=confirmations,
        )

    def _rule_scores(self, fit: LadderFit, width: float | None) -> list[schemas.RuleScore]:
        """The candidate rules scored, each with its lr and weight decay at ``width``;
        :class:`OutOfRange` when one of those is beyond floating point."""
        rules = []
        for sc in fit.scores:
            at = None
            if width is not None:
                s = log_ratio(width, fit.reference_width)
                at = (
                    exp_in_range(sc.intercept_lr + sc.a * s),
                    exp_in_range(sc.intercept_wd + sc.b * s)
                    if sc.intercept_wd is not None
                    else None,
                )
            rules.append(
                schemas.RuleScore(
                    name=sc.name,
                    lr_exponent=sc.a,
                    wd_exponent=sc.b,
                    chi2=sc.chi2,
                    dof=sc.dof,
                    p_value=sc.p_value,
                    relative_likelihood=sc.relative_likelihood,
                    consistent=sc.consistent,
                    lr_at_reference=math.exp(sc.intercept_lr),
                    weight_decay_at_reference=(
                        math.exp(sc.intercept_wd) if sc.intercept_wd is not None else None
                    ),
                    lr=at[0] if at else None,
                    weight_decay=at[1] if at else None,
                )
            )
        return rules

    def _largest_best(self, rungs: list[Sweep], fitted: dict[int, Any]) -> Untransferred | None:
        """What the widest rung that has trials recommends at its own width: its fitted
        optimum's lr (and weight decay, for a valley), else its best config's; the other
        hyperparameters are its best config's."""
        for sweep in reversed(rungs):
            got = fitted.get(sweep.id)
            if got is None:
                continue
            surface, best, _sign = got
            lr, wd = best.params["lr"], best.params["weight_decay"]
            source = wd_source = f"the best config of rung sweep {sweep.id}"
            lr_ok, wd_ok = pinned(surface)
            if lr_ok:
                lr = surface.lr.value
                source = f"the fitted optimum lr of rung sweep {sweep.id}"
                if wd_ok:
                    wd = surface.weight_decay.value
                    source = wd_source = f"the fitted optimum of rung sweep {sweep.id}"
            return Untransferred(lr, wd, best.params, source, wd_source)
        return None

    def _prediction(
        self,
        fit: LadderFit,
        width: float,
        rung_widths: list[float],
        largest: Untransferred | None,
    ) -> schemas.LadderPrediction | None:
        """The fitted lines' lr, weight decay and objective at ``width``;
        :class:`OutOfRange` when a number of it is beyond floating point."""
        at = fit.predict(width)
        if at["ln_lr"] is None:
            return None
        lr = at["ln_lr"]
        notes = []
        lo, hi = min(rung_widths), max(rung_widths)
        if width > hi or width < lo:
            far = width / hi if width > hi else lo / width
            notes.append(
                f"extrapolated ×{far:.3g} beyond the rungs' widths ({lo:g} to {hi:g}): the "
                "lines are assumed to hold there"
            )
        if at["ln_wd"] is not None:
            wd = at["ln_wd"]
            weight_decay, moved = exp_in_range(wd.value), True
            wd_ci = [exp_in_range(wd.lo), exp_in_range(wd.hi)]
        else:
            weight_decay = largest.weight_decay if largest else math.nan
            wd_ci, moved = None, False
            source = largest.wd_source if largest else "the widest rung"
            notes.append(
                f"the weight decay is that of {source}, unmoved: too few rungs pin its optimum "
                "down to fit how it moves with width"
            )
        value = at["value"]
        if value is not None and width > hi:
            notes.append(
                "the objective's interval spans the rungs' trend per doubling of width and no "
                "further change from the widest rung"
            )
        return schemas.LadderPrediction(
            width=width,
            lr=exp_in_range(lr.value),
            lr_ci=[exp_in_range(lr.lo), exp_in_range(lr.hi)],
            weight_decay=weight_decay,
            weight_decay_ci=wd_ci,
            weight_decay_moved=moved,
            value=value.value if value else None,
            value_ci=value.pair() if value else None,
            note="; ".join(notes) if notes else "interpolated between the rungs",
        )

    # ---- confirmation ----

    def confirm(self, ladder_id: int, req: schemas.ConfirmRequest) -> schemas.LadderOut:
        """Queue the prediction at ``req.width`` beside the widest rung's own optimum, unmoved
        (both with ``req.seeds`` seeds), as a confirmation sweep."""
        row = self._row(ladder_id)
        spec = schemas.LadderSpec.model_validate(row.spec)
        width = req.width
        if any(math.isclose(width, w) for w in spec.ladder.widths):
            raise Invalid(
                [field_error(("width",), f"width {width:g} is a rung of the ladder already")]
            )
        declared = self.ledger.declared_params(spec.task.name) or {}
        rule = declared.get(row.param)
        if isinstance(rule, dict):
            problem = _width_problem(width, rule)
            if problem:
                raise Invalid([field_error(("width",), f"{row.param} {problem}", width)])
            if rule.get("type") == "int":
                width = int(width)
        sweeps = self._sweeps(ladder_id)
        for s in sweeps:
            if s.ladder_role == "confirm" and math.isclose(self._width_of(row, s), width):
                raise Conflict(
                    f"ladder {ladder_id} is already confirmed at width {width:g} (sweep {s.id})"
                )
        for s in sorted(
            (s for s in sweeps if s.ladder_role == "rung"), key=lambda s: self._width_of(row, s)
        ):
            if s.status != "complete":
                view = self.views.sweep(s)
                raise Conflict(
                    f"rung {row.param}={self._width_of(row, s):g} (sweep {s.id}) is "
                    f"{s.status} ({view.finished}/{view.n_trials} finished): a confirmation "
                    "needs every rung complete, so each has its rule"
                )
        rung_widths = [float(w) for w in spec.ladder.widths]
        _check_reach(("body", "width"), width, rung_widths)
        fit, _fits, rungs, fitted = self._fit(row)
        largest = self._largest_best(rungs, fitted)
        try:
            prediction = self._prediction(fit, width, rung_widths, largest)
        except OutOfRange as exc:
            raise _beyond_floats(("body", "width"), width, exc) from None
        if prediction is None or largest is None:
            raise Conflict(
                f"ladder {ladder_id} has no rule to confirm: {fit.verdict} — {fit.reason}"
            )
        confirm = self._confirm_spec(spec, row.param, width, req.seeds, prediction, largest)
        errors = specs.check_spec(confirm, self.settings)
        if errors:
            raise Invalid(errors)
        with self.db.transaction() as tx:
            # Under the ladder's lock (PostgreSQL: its row; SQLite: the write lock), so two
            # confirmations at one width cannot both pass the check.
            locked = tx.execute(
                select(Ladder.id).where(Ladder.id == ladder_id).with_for_update()
            ).first()
            if locked is None:
                raise NotFound(f"ladder {ladder_id} not found")
            for other in tx.scalars(
                select(Sweep).where(Sweep.ladder_id == ladder_id, Sweep.ladder_role == "confirm")
            ):
                if math.isclose(self._width_of(row, other), width):
                    raise Conflict(
                        f"ladder {ladder_id} is already confirmed at width {width:g} "
                        f"(sweep {other.id})"
                    )
            self.ledger.insert_sweep(
                tx,
                confirm,
                confirm.model_dump(mode="json", exclude_none=True),
                ladder_id=ladder_id,
                ladder_role="confirm",
            )
        self.catalog.changed()
        return self.get(ladder_id)

    def _confirm_spec(
        self,
        spec: schemas.LadderSpec,
        param: str,
        width: float,
        seeds: int,
        prediction: schemas.LadderPrediction,
        largest: Untransferred,
    ) -> schemas.SweepSpec:
        """Two arms at ``width``, ``seeds`` runs each: the predicted lr and weight decay, and
        the widest rung's own optimum as it is; every other hyperparameter is that rung's
        best config's."""
        base = largest.params
        arms = [
            {"lr": prediction.lr, "weight_decay": prediction.weight_decay},
            {"lr": largest.lr, "weight_decay": largest.weight_decay},
        ]
        space: dict[str, Any] = {}
        for name in ("lr", "weight_decay"):
            values = sorted({a[name] for a in arms})
            space[name] = values[0] if len(values) == 1 else {"choices": values}
        for name in ("beta1", "beta2", "warmup_steps", "batch_size"):
            if base.get(name) is not None:
                space[name] = base[name]
        data = spec.model_dump(exclude={"ladder"}, exclude_none=True)
        data.update(
            name=f"{spec.name} · confirm {param}={width:g}",
            space=space,
            sampler={"name": "random", "seed": 0},
            pruner={"name": "none"},
            n_trials=2 * seeds,
            enqueue=[arms[k % 2] for k in range(2 * seeds)],
            reevaluate="off",
            baseline=None,
        )
        data["task"]["params"] = {**spec.task.params, param: width}
        return schemas.SweepSpec.model_validate(data)

    def _confirmation(
        self,
        row: Ladder,
        sweep: Sweep,
        fit: LadderFit,
        rung_widths: list[float],
        largest: Untransferred | None,
    ) -> schemas.ConfirmationOut:
        """Predicted against achieved at a confirmation's width, and the transfer against the
        untransferred config."""
        width = self._width_of(row, sweep)
        info = self.catalog.info(sweep.id)
        arms_cfg = info.spec.enqueue[:2]
        done = self.analysis.complete_trials(info)
        groups = group_configs(info, done)
        noise = pooled_noise(groups)
        sign = info.sign

        def arm(cfg: schemas.EnqueuedConfig, source: str) -> schemas.ArmOut:
            g = next(
                (
                    g
                    for g in groups
                    if math.isclose(g.params["lr"], cfg.lr)
                    and math.isclose(g.params["weight_decay"], cfg.weight_decay)
                ),
                None,
            )
            values = g.values if g else []
            mean = sum(values) / len(values) if values else None
            ci = None
            if mean is not None and noise.sd is not None:
                half = noise.t() * noise.sd / math.sqrt(len(values))
                ci = [mean - half, mean + half]
            return schemas.ArmOut(
                lr=cfg.lr,
                weight_decay=cfg.weight_decay,
                n=len(values),
                mean=mean,
                ci=ci,
                values=values,
                source=source,
            )

        t_arm = arm(arms_cfg[0], f"the ladder's prediction at width {width:g}")
        u_arm = arm(arms_cfg[1], largest.source if largest else "the widest rung, unmoved")
        try:
            predicted = self._prediction(fit, width, rung_widths, largest)
        except OutOfRange:  # the rungs were refitted since: no prediction there now
            predicted = None
        diff = diff_ci = within = None
        verdict, note = "pending", f"sweep {sweep.id} is {sweep.status}"
        if t_arm.mean is not None and u_arm.mean is not None:
            diff = t_arm.mean - u_arm.mean
            if noise.sd is not None:
                half = noise.t() * noise.sd * math.sqrt(1 / t_arm.n + 1 / u_arm.n)
                diff_ci = [diff - half, diff + half]
        if predicted is not None and predicted.value_ci is not None and t_arm.mean is not None:
            within = predicted.value_ci[0] <= t_arm.mean <= predicted.value_ci[1]
        if sweep.status == "complete" or (sweep.status != "running" and diff is not None):
            if diff_ci is None:
                verdict = "unmeasured"
                note = "each arm needs 2+ finished seeds to measure the noise"
            elif diff_ci[0] <= 0 <= diff_ci[1]:
                verdict = "no_difference"
                note = (
                    f"the transferred and untransferred configs cannot be told apart at width "
                    f"{width:g} (difference {diff:.4g}, 90% CI {diff_ci[0]:.4g} to "
                    f"{diff_ci[1]:.4g})"
                )
            else:
                better = sign * diff < 0
                verdict = "transfer_better" if better else "untransferred_better"
                note = (
                    f"the transferred config is {'better' if better else 'worse'} than the "
                    f"widest rung's optimum, unmoved, at width {width:g} (difference "
                    f"{diff:.4g}, 90% CI {diff_ci[0]:.4g} to {diff_ci[1]:.4g})"
                )
            if within is not None:
                note += (
                    "; the achieved objective is inside the predicted interval"
                    if within
                    else "; the achieved objective is outside the predicted interval"
                )
        return schemas.ConfirmationOut(
            width=width,
            sweep_id=sweep.id,
            status=sweep.status,
            predicted=predicted,
            transferred=t_arm,
            untransferred=u_arm,
            difference=diff,
            difference_ci=diff_ci,
            within_prediction=within,
            verdict=verdict,
            note=note,
        )
