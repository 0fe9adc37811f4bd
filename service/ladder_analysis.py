"""What a width ladder's rungs say: how the optimum lr and weight decay move with width (the
exponents with intervals, the candidate rules scored, a verdict), the prediction at a new
width, and each confirmation's predicted against achieved. The numbers come from
:mod:`service.ladder_fit` (pure); this module reads the rungs and shapes the answers."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from service import schemas
from service.analysis import Analysis, Noise, group_configs, pooled_noise
from service.catalog import Catalog
from service.errors import Conflict, Invalid
from service.ladder_axes import axis_verdict, score_rules
from service.ladder_fit import (
    LadderFit,
    OutOfRange,
    exp_in_range,
    fit_ladder,
    log_ratio,
    rung_point,
)
from service.ladder_joint import JointFit, fit_joint
from service.ladder_spec import Untransferred, axis_with, point_text
from service.ladder_views import LadderViews, order_key, point_of, roles_of, same_point
from service.models import Ladder, Sweep
from service.surface import AGREE, ALPHA, Surface

METHOD = (
    "each rung's optimum (ln lr, ln weight decay) from its response surface, with the "
    "covariance of its 400 bootstrap refits; lines in ln width fitted by generalised least "
    "squares (intervals scaled by χ²/dof when the rungs scatter beyond their errors); each "
    "candidate rule scored by χ² with its intercepts fitted; 90% intervals"
)

JOINT_METHOD = (
    "every rung's complete Lion trials fitted at once: one basin in ln lr × ln weight decay "
    "shared by the rungs, a level per rung, its optimum moving linearly in the ln of each "
    "axis; 90% intervals from refits on trials resampled within each rung; each axis's named "
    "rules by a Wald test on the refits"
)
ARMS_ATTR = "lionsweep_confirm_arms"
"""The confirmation study's user attr naming the source of each arm, in the enqueued order."""
QUERY_NAMES = {"width": "width", "steps": "steps", "batch": "batch_size"}
"""The query (and confirmation body) field of each role."""
_joint_cache: dict[tuple, tuple[JointFit | None, list[schemas.LadderAxisOut], str]] = {}
_joint_lock = threading.Lock()

EXTRAPOLATION = 1e6
"""How far beyond the rungs' widths, as a factor, a ladder predicts and confirms."""


def _check_reach(loc: tuple[str, ...], value: float, rung_values: list[float]) -> None:
    """:class:`Invalid` (field ``loc``, whose last part names the axis) unless ``value`` is
    within ``EXTRAPOLATION`` of the rungs' values on that axis."""
    lo, hi = min(rung_values), max(rung_values)
    if lo / EXTRAPOLATION <= value <= hi * EXTRAPOLATION:
        return
    name = loc[-1]
    plural = "widths" if name == "width" else f"{name} values"
    msg = (
        f"{name} must be within a factor of {EXTRAPOLATION:g} of the rungs' {plural} "
        f"({lo:g} to {hi:g}), from {lo / EXTRAPOLATION:g} to {hi * EXTRAPOLATION:g}, "
        f"not {value:g}"
    )
    raise Invalid([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def _beyond_floats(loc: tuple[str, ...], width: float, exc: OutOfRange) -> Invalid:
    """The 422 for a width whose prediction floating point cannot hold (wild exponents)."""
    msg = (
        f"width {width:g} is too far from the rungs for the fitted lines: their lr or weight "
        f"decay there is beyond floating point ({exc})"
    )
    return Invalid([{"type": "value_error", "loc": loc, "msg": msg, "input": width}])


def reach(
    point: dict[str, float], rung_points: list[dict[str, float]], roles: dict[str, str]
) -> list[schemas.AxisReach]:
    """Per axis, whether ``point`` lies beyond the rungs and by what factor."""
    out = []
    for name, value in point.items():
        lo = min(p[name] for p in rung_points)
        hi = max(p[name] for p in rung_points)
        factor = value / hi if value > hi else lo / value if value < lo else 1.0
        out.append(
            schemas.AxisReach(
                param=name,
                role=roles[name],
                value=value,
                low=lo,
                high=hi,
                extrapolated=factor > 1.0,
                factor=factor,
            )
        )
    return out


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


class LadderAnalysis:
    """The width rule of a ladder and the verdicts of its confirmations."""

    def __init__(self, catalog: Catalog, analysis: Analysis, ladder_views: LadderViews) -> None:
        self.catalog = catalog
        self.analysis = analysis
        self.ladder_views = ladder_views

    def _rungs(self, row: Ladder) -> list[tuple[Sweep, dict[str, float]]]:
        """The ladder's rung sweeps with their points, small to large."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        rungs = [
            (s, point_of(spec, s))
            for s in self.ladder_views.sweeps(row.id)
            if s.ladder_role == "rung"
        ]
        rungs.sort(key=lambda r: order_key(r[1]))
        return rungs

    def _fit(
        self, row: Ladder
    ) -> tuple[LadderFit, list[schemas.RungFit], list[Sweep], dict[int, Any]]:
        """The per-rung lines (in the first axis: the width of a width ladder), the rungs' own
        estimates, the rung sweeps, and each rung's (surface, best config, sign) when it has
        one."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        roles = roles_of(spec)
        width_axis = axis_with(roles, "width")
        first = spec.ladder.axes()[0]
        rungs_points = self._rungs(row)
        points, fits, fitted = [], [], {}
        for sweep, point in rungs_points:
            width = point[width_axis] if width_axis else None
            got = self.analysis.fitted(sweep.id)
            fitted[sweep.id] = got
            if got is None:
                fits.append(
                    schemas.RungFit(
                        width=width,
                        point=point,
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
                    point[first],
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
                    point=point,
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
        xs = [p[first] for p in spec.ladder.points()]
        reference = math.exp(sum(math.log(w) for w in xs) / len(xs))
        rungs = [sw for sw, _ in rungs_points]
        return fit_ladder(points, reference), fits, rungs, fitted

    def target_point(
        self, spec: schemas.LadderSpec, target: dict[str, float], where: str, check: bool = True
    ) -> dict[str, float]:
        """The point (a value per axis) that a target by role names; a 422 (at ``where``:
        query or body) for a role the ladder does not vary, an axis left out, or (``check``) a
        value beyond its reach."""
        roles = roles_of(spec)
        by_role = {r: a for a, r in roles.items()}
        errors = []
        for role, value in target.items():
            if role not in by_role:
                have = ", ".join(QUERY_NAMES[r] for r in by_role)
                errors.append(
                    {
                        "type": "value_error",
                        "loc": (where, QUERY_NAMES[role]),
                        "msg": f"the ladder has no {role} axis (its axes: {have})",
                        "input": value,
                    }
                )
        for role, name in by_role.items():
            if role not in target:
                errors.append(
                    {
                        "type": "missing",
                        "loc": (where, QUERY_NAMES[role]),
                        "msg": f"give {QUERY_NAMES[role]} too: the ladder varies {name} (its "
                        f"{role}), so a prediction needs a value for it",
                        "input": None,
                    }
                )
        if errors:
            raise Invalid(errors)
        point = {by_role[r]: float(v) for r, v in target.items()}
        if not check:
            return point
        rung_points = spec.ladder.points()
        for name, value in point.items():
            values = [float(p[name]) for p in rung_points]
            _check_reach((where, QUERY_NAMES[roles[name]]), value, values)
        return point

    def rule(self, ladder_id: int, target: dict[str, float] | None = None) -> schemas.LadderRuleOut:
        """How η* and λ* move along each axis: exponents with 90% intervals, the named rules
        tested, a verdict; with ``target`` (a value per role), the prediction there; plus the
        confirmations."""
        row = self.ladder_views.row(ladder_id)
        spec = schemas.LadderSpec.model_validate(row.spec)
        roles = roles_of(spec)
        point = self.target_point(spec, target, "query") if target else None
        if list(roles.values()) != ["width"]:
            return self._multi_rule(row, spec, point)
        width = point[spec.ladder.axes()[0]] if point else None
        rung_widths = [float(p[row.param]) for p in spec.ladder.points()]
        fit, fits, rungs, fitted = self._fit(row)
        largest = self._largest_best(rungs, fitted)
        try:
            rules = self._rule_scores(fit, width)
            prediction = (
                self._prediction(fit, width, rung_widths, largest) if width is not None else None
            )
        except OutOfRange as exc:
            raise _beyond_floats(("query", "width"), width, exc) from None
        if prediction is not None:
            prediction.point = {row.param: width}
            prediction.reach = reach(prediction.point, spec.ladder.points(), roles)
        confirmations = [
            self._confirmation(row, s, fit, rung_widths, largest)
            for s in self.ladder_views.sweeps(row.id)
            if s.ladder_role == "confirm"
        ]
        _joint, axes, axes_note = self.joint(row)

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
            axes=axes,
            axes_note=axes_note,
        )

    def _multi_rule(
        self, row: Ladder, spec: schemas.LadderSpec, point: dict[str, float] | None
    ) -> schemas.LadderRuleOut:
        """The answer for a ladder over several axes (or one that is not the width): the
        joint fit's axes with their named rules, the per-rung optima as a check, and the
        prediction at ``point``."""
        _lines, fits, rungs, _fitted = self._fit(row)
        joint, axes, axes_note = self.joint(row)
        verdict, reason = multi_verdict(joint, axes, axes_note)
        prediction = self.joint_prediction(row, spec, joint, point) if point else None
        confirmations = [
            self._confirmation(row, s, None, [], None, joint)
            for s in self.ladder_views.sweeps(row.id)
            if s.ladder_role == "confirm"
        ]
        return schemas.LadderRuleOut(
            ladder_id=row.id,
            param=row.param,
            verdict=verdict,
            reason=reason,
            complete=all(s.status == "complete" for s in rungs),
            method=JOINT_METHOD,
            rungs=fits,
            reference_width=None,
            lr_exponent=None,
            lr_exponent_ci=None,
            lr_at_reference=None,
            wd_exponent=None,
            wd_exponent_ci=None,
            wd_at_reference=None,
            product_exponent=None,
            product_exponent_ci=None,
            value_slope=None,
            rules=[],
            best_rule=None,
            prediction=prediction,
            confirmations=confirmations,
            axes=axes,
            axes_note=axes_note,
        )

    def joint_prediction(
        self,
        row: Ladder,
        spec: schemas.LadderSpec,
        joint: JointFit | None,
        point: dict[str, float],
    ) -> schemas.LadderPrediction | None:
        """The joint fit's lr and weight decay at ``point`` with 90% intervals (None without a
        joint fit or with no lr to predict); a weight decay the data do not pin is the nearest
        rung's, unmoved, and the note says so."""
        if joint is None:
            return None
        roles = roles_of(spec)
        try:
            at = joint.predict(point)
        except (OverflowError, ValueError):
            at = {}
        if "lr" not in at or not all(0 < v < math.inf for v in at["lr"]):
            return None
        lr, lr_lo, lr_hi = at["lr"]
        notes = []
        reaches = reach(point, spec.ladder.points(), roles)
        far = [r for r in reaches if r.extrapolated]
        if far:
            notes.append(
                "extrapolated along "
                + ", ".join(f"{r.param} ×{r.factor:.3g} beyond {r.low:g}–{r.high:g}" for r in far)
                + ": the fitted lines are assumed to hold there"
            )
        if "weight_decay" in at and all(0 < v < math.inf for v in at["weight_decay"]):
            wd, wd_lo, wd_hi = at["weight_decay"]
            wd_ci, moved = [wd_lo, wd_hi], True
        else:
            nearest = self.nearest_best(row, point)
            wd = nearest.weight_decay if nearest else math.nan
            wd_ci, moved = None, False
            source = nearest.wd_source if nearest else "the nearest rung"
            notes.append(
                "the data do not pin the weight decay's optimum (see axes_note): this is "
                f"that of {source}, unmoved"
            )
        width_axis = axis_with(roles, "width")
        return schemas.LadderPrediction(
            width=point.get(width_axis) if width_axis else None,
            point=point,
            reach=reaches,
            lr=lr,
            lr_ci=[lr_lo, lr_hi],
            weight_decay=wd,
            weight_decay_ci=wd_ci,
            weight_decay_moved=moved,
            value=None,
            value_ci=None,
            note="; ".join(notes) if notes else "interpolated between the rungs",
        )

    def nearest_best(self, row: Ladder, point: dict[str, float]) -> Untransferred | None:
        """What the rung nearest ``point`` (in the logs of its axes) recommends at its own
        point: its fitted optimum where its surface pins it, else its best config."""
        ranked = sorted(
            self._rungs(row),
            key=lambda r: sum(math.log(r[1][a] / v) ** 2 for a, v in point.items()),
        )
        sweeps = [sw for sw, _ in reversed(ranked)]
        return self._largest_best(sweeps, {sw.id: self.analysis.fitted(sw.id) for sw in sweeps})

    def joint(self, row: Ladder) -> tuple[JointFit | None, list[schemas.LadderAxisOut], str]:
        """The joint fit of every rung's trials and its axes (kept while the rungs' trials stay
        the same), or no fit, no axes and why."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        roles = roles_of(spec)
        names = spec.ladder.axes()
        parts, stamp = [], []
        for sweep, point in self._rungs(row):
            lr, wd, value = self.analysis.lion_points(sweep.id)
            columns = [np.full(len(lr), point[a]) for a in names]
            parts.append((lr, wd, value, *columns))
            stamp.append((sweep.id, len(lr), float(value.sum())))
        key = (row.id, tuple(stamp))
        with _joint_lock:
            hit = _joint_cache.get(key)
        if hit is not None:
            return hit
        answer: tuple[JointFit | None, list[schemas.LadderAxisOut], str]
        if not parts:
            answer = (None, [], "no joint fit: no rung has trials yet")
        else:
            lr, wd, value, *columns = (np.concatenate(c) for c in zip(*parts, strict=True))
            try:
                fit = fit_joint(lr, wd, value, dict(zip(names, columns, strict=True)))
            except (ValueError, np.linalg.LinAlgError) as exc:
                answer = (None, [], f"no joint fit: {exc}")
            else:
                axes = [
                    _axis_out(
                        fit, i, name, roles[name], sorted({p[name] for p in spec.ladder.points()})
                    )
                    for i, name in enumerate(names)
                ]
                note = (
                    f"{JOINT_METHOD}; {fit.n_trials} trials in {fit.n_rungs} rungs, residual sd "
                    f"{fit.residual_sd:.3g}"
                )
                if fit.notes:
                    note += "; " + "; ".join(fit.notes)
                answer = (fit, axes, note)
        with _joint_lock:
            if len(_joint_cache) > 64:
                _joint_cache.clear()
            _joint_cache[key] = answer
        return answer

    def confirmation_arms(
        self, row: Ladder, target: dict[str, float]
    ) -> tuple[dict[str, float], schemas.LadderPrediction, Untransferred]:
        """A confirmation's point and its two arms: the prediction there, and the widest
        (one-axis) or nearest rung's own recommendation; a 422 naming the field when the point
        is incomplete or beyond the ladder's reach, a 409 when the ladder has no rule to
        confirm."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        point = self.target_point(spec, target, "body")
        if list(roles_of(spec).values()) != ["width"]:
            joint, _axes, note = self.joint(row)
            prediction = self.joint_prediction(row, spec, joint, point)
            nearest = self.nearest_best(row, point)
            if prediction is None or nearest is None:
                raise Conflict(f"ladder {row.id} has no joint fit to confirm: {note}")
            return point, prediction, nearest
        width = point[row.param]
        rung_widths = [float(p[row.param]) for p in spec.ladder.points()]
        fit, _fits, rungs, fitted = self._fit(row)
        largest = self._largest_best(rungs, fitted)
        try:
            prediction = self._prediction(fit, width, rung_widths, largest)
        except OutOfRange as exc:
            raise _beyond_floats(("body", "width"), width, exc) from None
        if prediction is None or largest is None:
            raise Conflict(f"ladder {row.id} has no rule to confirm: {fit.verdict} — {fit.reason}")
        prediction.point = point
        return point, prediction, largest

    def extra_arms(
        self,
        row: Ladder,
        point: dict[str, float],
        prediction: schemas.LadderPrediction,
        rules: bool,
    ) -> list[tuple[float, float, str]]:
        """A confirmation's further arms as (lr, weight decay, source): where the data leave
        the weight decay open, the predicted lr with the smallest and the largest weight decay
        any rung recommends; where they pin it only loosely, the ends of its interval
        (:func:`loose_wd_arms`); with ``rules``, each named rule's prediction at ``point`` (its
        exponents through the fit's centre). Arms within 2% of an earlier one are left out."""
        out: list[tuple[float, float, str]] = []
        if not prediction.weight_decay_moved:
            recs = []
            for sweep, _ in self._rungs(row):
                got = self._largest_best([sweep], {sweep.id: self.analysis.fitted(sweep.id)})
                if got is not None and got.weight_decay > 0:
                    recs.append((got.weight_decay, sweep.id))
            if recs:
                for label, (wd, sid) in (("smallest", min(recs)), ("largest", max(recs))):
                    out.append(
                        (
                            prediction.lr,
                            wd,
                            f"the predicted lr with the {label} weight decay a rung recommends "
                            f"(rung sweep {sid}): the data leave the weight decay open",
                        )
                    )
        else:
            out += loose_wd_arms(prediction)
        if rules:
            out += self._rule_arms(row, point, prediction)
        kept: list[tuple[float, float, str]] = []
        base = [(prediction.lr, prediction.weight_decay)]
        for lr, wd, source in out:
            near = any(
                math.isclose(lr, a, rel_tol=0.02) and math.isclose(wd, b, rel_tol=0.02)
                for a, b in base + [(x, y) for x, y, _ in kept]
            )
            if not near and 0 < lr < math.inf and 0 <= wd < math.inf:
                kept.append((lr, wd, source))
        return kept

    def _rule_arms(
        self, row: Ladder, point: dict[str, float], prediction: schemas.LadderPrediction
    ) -> list[tuple[float, float, str]]:
        """Each named rule's lr and weight decay at ``point``: a width ladder's from the
        rule's own intercepts (per-rung lines); a multi-axis ladder's by moving the joint
        prediction along each axis by the rule's exponents in place of the fitted ones (a
        product-only rule moves the weight decay)."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        roles = roles_of(spec)
        out = []
        if list(roles.values()) == ["width"]:
            fit, _fits, _rungs, _fitted = self._fit(row)
            width = point[row.param]
            for sc in fit.scores:
                s = log_ratio(width, fit.reference_width)
                lr = math.exp(sc.intercept_lr + sc.a * s)
                wd = (
                    math.exp(sc.intercept_wd + sc.b * s)
                    if sc.intercept_wd is not None
                    else prediction.weight_decay
                )
                out.append((lr, wd, f"the {sc.name} rule's prediction at {point_text(point)}"))
            return out
        joint, axes, _note = self.joint(row)
        if joint is None:
            return out
        for i, axis in enumerate(axes):
            z = math.log(point[axis.param]) - joint.centre[axis.param]
            fitted = joint.axes[i]
            for rule in axis.rules:
                a = rule.lr_exponent
                b = rule.wd_exponent
                if rule.product_exponent is not None:
                    a = fitted.lr.value if fitted.lr is not None else 0.0
                    b = rule.product_exponent - a
                ln_lr, ln_wd = (
                    math.log(prediction.lr),
                    math.log(max(prediction.weight_decay, 1e-300)),
                )
                if a is not None and fitted.lr is not None:
                    ln_lr += (a - fitted.lr.value) * z
                if b is not None and fitted.weight_decay is not None:
                    ln_wd += (b - fitted.weight_decay.value) * z
                out.append(
                    (
                        math.exp(ln_lr),
                        math.exp(ln_wd),
                        f"the {rule.name} rule for {axis.param} ({axis.role}) at "
                        f"{point_text(point)}",
                    )
                )
        return out

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

    def _confirmation(
        self,
        row: Ladder,
        sweep: Sweep,
        fit: LadderFit | None,
        rung_widths: list[float],
        largest: Untransferred | None,
        joint: JointFit | None = None,
    ) -> schemas.ConfirmationOut:
        """Predicted against achieved at a confirmation's point, and the transfer against the
        untransferred config (``fit``: a width ladder's lines; else ``joint``, the joint
        fit)."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        point = point_of(spec, sweep)
        width_axis = axis_with(roles_of(spec), "width")
        width = point.get(width_axis) if width_axis else None
        where = point_text(point)
        info = self.catalog.info(sweep.id)
        sources = self.catalog.study(info).user_attrs.get(ARMS_ATTR) or []
        arms_cfg = info.spec.enqueue[: max(2, len(sources))]
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

        t_arm = arm(arms_cfg[0], f"the ladder's prediction at {where}")
        if fit is None:
            nearest = self.nearest_best(row, point)
            u_arm = arm(arms_cfg[1], nearest.source if nearest else "the nearest rung, unmoved")
            predicted = self.joint_prediction(row, spec, joint, point)
        else:
            u_arm = arm(arms_cfg[1], largest.source if largest else "the widest rung, unmoved")
            try:
                predicted = self._prediction(fit, width, rung_widths, largest)
            except OutOfRange:  # the rungs were refitted since: no prediction there now
                predicted = None
            if predicted is not None:
                predicted.point = point
        extra = [arm(cfg, src) for cfg, src in zip(arms_cfg[2:], sources[2:], strict=False)]
        within = None
        verdict, note = "pending", f"sweep {sweep.id} is {sweep.status}"
        diff, diff_ci = arm_difference(t_arm, u_arm, noise)
        if predicted is not None and predicted.value_ci is not None and t_arm.mean is not None:
            within = predicted.value_ci[0] <= t_arm.mean <= predicted.value_ci[1]
        if sweep.status == "complete" or (sweep.status != "running" and diff is not None):
            if diff_ci is None:
                verdict = "unmeasured"
                note = "each arm needs 2+ finished seeds to measure the noise"
            elif diff_ci[0] <= 0 <= diff_ci[1]:
                verdict = "no_difference"
                note = (
                    f"the transferred and untransferred configs cannot be told apart at "
                    f"{where} (difference {diff:.4g}, 90% CI {diff_ci[0]:.4g} to "
                    f"{diff_ci[1]:.4g})"
                )
            else:
                better = sign * diff < 0
                verdict = "transfer_better" if better else "untransferred_better"
                note = (
                    f"the transferred config is {'better' if better else 'worse'} than the "
                    f"{'widest' if fit is not None else 'nearest'} rung's optimum, unmoved, at "
                    f"{where} (difference "
                    f"{diff:.4g}, 90% CI {diff_ci[0]:.4g} to {diff_ci[1]:.4g})"
                )
            if within is not None:
                note += (
                    "; the achieved objective is inside the predicted interval"
                    if within
                    else "; the achieved objective is outside the predicted interval"
                )
        target = next(
            (
                s
                for s in self.ladder_views.sweeps(row.id)
                if s.ladder_role == "target" and same_point(point_of(spec, s), point)
            ),
            None,
        )
        return schemas.ConfirmationOut(
            width=width,
            point=point,
            sweep_id=sweep.id,
            status=sweep.status,
            predicted=predicted,
            transferred=t_arm,
            untransferred=u_arm,
            arms=extra,
            difference=diff,
            difference_ci=diff_ci,
            within_prediction=within,
            verdict=verdict,
            note=note,
            target=(
                self._target(target, sweep, t_arm, noise, predicted, where)
                if target is not None
                else None
            ),
        )

    def _target(
        self,
        target: Sweep,
        confirmation: Sweep,
        prediction_arm: schemas.ArmOut,
        confirm_noise: Noise,
        predicted: schemas.LadderPrediction | None,
        where: str,
    ) -> schemas.TargetSweepOut:
        """The small sweep at a confirmation's point: its best config (valued on fresh seeds)
        and own fitted optimum, and the prediction's arm against that best."""
        info = self.catalog.info(target.id)
        done = self.analysis.complete_trials(info)
        best = noise = None
        if done:
            answer = self.analysis.best(target.id, 1)
            top = answer.best
            noise = Noise(answer.noise_sd, answer.noise_df)
            best = schemas.ArmOut(
                lr=float(top.params["lr"]),
                weight_decay=float(top.params.get("weight_decay") or 0.0),
                n=top.n_seeds,
                mean=top.mean,
                ci=top.ci,
                values=top.values,
                source=f"the best of sweep {target.id}'s {target.n_trials} trials at {where}, "
                + ("valued on fresh seeds" if top.confirmed else "not yet re-run on fresh seeds"),
            )
        lr = lr_ci = wd = wd_ci = inside = None
        got = self.analysis.fitted(target.id) if done else None
        if got is not None:
            surface = got[0]
            lr_ok, wd_ok = pinned(surface)
            if lr_ok and surface.lr is not None:
                lr, lr_ci = surface.lr.value, surface.lr.pair()
                if predicted is not None:
                    inside = lr_ci[0] <= predicted.lr <= lr_ci[1]
                if wd_ok and surface.weight_decay is not None:
                    wd, wd_ci = surface.weight_decay.value, surface.weight_decay.pair()
                    if predicted is not None:
                        inside = inside and wd_ci[0] <= predicted.weight_decay <= wd_ci[1]
        pooled = pool_noise(confirm_noise, noise) if noise is not None else confirm_noise
        diff, diff_ci = arm_difference(prediction_arm, best, pooled) if best else (None, None)
        finished = target.status != "running" and confirmation.status != "running"
        if not finished:
            verdict = "pending"
            note = (
                f"sweep {target.id} (the point's own sweep) is {target.status} and sweep "
                f"{confirmation.id} (the arms) is {confirmation.status}"
            )
        else:
            verdict, note = target_verdict(
                info.sign, diff, diff_ci, pooled.sd, best is not None and best.n >= 2
            )
        if inside is not None:
            if wd is None:
                where_lr = "inside" if inside else "outside"
                note += f"; the predicted lr is {where_lr} the sweep's own 90% interval for it"
            else:
                both = "are both inside" if inside else "are not both inside"
                note += f"; the predicted lr and weight decay {both} the sweep's own 90% intervals"
        return schemas.TargetSweepOut(
            sweep_id=target.id,
            status=target.status,
            n_trials=target.n_trials,
            finished=len(done),
            best=best,
            lr=lr,
            lr_ci=lr_ci,
            weight_decay=wd,
            weight_decay_ci=wd_ci,
            prediction_inside=inside,
            difference=diff,
            difference_ci=diff_ci,
            noise_sd=pooled.sd,
            verdict=verdict,
            note=note,
        )


LOOSE_WD = 10.0
"""A predicted weight decay whose 90% interval spans more than this factor is loosely pinned:
its confirmation runs the interval's ends too."""


def loose_wd_arms(prediction: schemas.LadderPrediction) -> list[tuple[float, float, str]]:
    """The predicted lr with each end of the predicted weight decay's 90% interval, as
    (lr, weight decay, source), when that interval spans more than :data:`LOOSE_WD`; else
    none."""
    ci = prediction.weight_decay_ci
    if not ci or not 0 < ci[0] < ci[1] or ci[1] / ci[0] <= LOOSE_WD:
        return []
    span = f"{ci[0]:.3g}–{ci[1]:.3g}, {ci[1] / ci[0]:.0f}× wide"
    return [
        (
            prediction.lr,
            wd,
            f"the predicted lr with the {end} end of the predicted weight decay's 90% interval "
            f"({span}): the data pin the weight decay only loosely",
        )
        for end, wd in (("lower", ci[0]), ("upper", ci[1]))
    ]


def arm_difference(
    a: schemas.ArmOut, b: schemas.ArmOut, noise: Noise
) -> tuple[float | None, list[float] | None]:
    """``a``'s mean − ``b``'s with its 90% interval from the seed ``noise`` (None for what the
    arms' finished seeds and the noise cannot give)."""
    if a.mean is None or b.mean is None:
        return None, None
    diff = a.mean - b.mean
    if noise.sd is None:
        return diff, None
    half = noise.t() * noise.sd * math.sqrt(1 / a.n + 1 / b.n)
    return diff, [diff - half, diff + half]


def pool_noise(a: Noise, b: Noise) -> Noise:
    """Two sweeps' seed noise pooled (weighted by their degrees of freedom)."""
    parts = [n for n in (a, b) if n.sd is not None and n.df > 0]
    df = sum(n.df for n in parts)
    if not df:
        return Noise(None, 0)
    return Noise(math.sqrt(sum(n.sd**2 * n.df for n in parts) / df), df)


def target_verdict(
    sign: float,
    difference: float | None,
    difference_ci: list[float] | None,
    noise_sd: float | None,
    measured: bool,
) -> tuple[str, str]:
    """Whether the prediction's arm is within the seed noise of the point's own sweep's best:
    ``target_better`` when it is worse (in the objective's direction, ``sign`` 1 when
    minimising) by more than one seed sd with its 90% interval clear of 0, else ``confirmed``
    (worse by at most one seed sd, better, or not to be told apart at these seeds);
    ``unmeasured`` without seeds to measure the noise on."""
    if difference is None or difference_ci is None or noise_sd is None or not measured:
        return "unmeasured", (
            "the prediction's arm and the sweep's best each need 2+ finished seeds (the "
            "sweep's best is re-run on fresh seeds) to measure the noise"
        )
    worse = sign * difference
    low, high = sorted(sign * v for v in difference_ci)
    text = (
        f"the prediction is {abs(worse):.4g} {'worse' if worse > 0 else 'better'} than the "
        f"point's own sweep's best (90% CI {low:.4g} to {high:.4g}; seed sd {noise_sd:.4g})"
    )
    if worse <= noise_sd:
        return "confirmed", text + ": confirmed, within one seed sd of it or better"
    if low <= 0:
        return "confirmed", text + (
            ": confirmed within the seed noise (worse by more than one seed sd, but not to be "
            "told apart from it at these seeds)"
        )
    return "target_better", text + ": the point's own sweep found better, beyond the noise"


def _axis_out(
    fit: JointFit, index: int, name: str, role: str, values: list[float]
) -> schemas.LadderAxisOut:
    """Axis ``index`` of the joint fit in the API's shape, with its role's named rules."""
    axis = fit.axes[index]

    def value(e: Any) -> float | None:
        return e.value if e is not None else None

    def ci(e: Any) -> list[float] | None:
        return [e.ci[0], e.ci[1]] if e is not None else None

    rules = score_rules(fit, index, role)
    best, note = axis_verdict(rules)
    shift = 1.0 if role == "batch" else 0.0  # examples per step ∝ the batch size
    return schemas.LadderAxisOut(
        param=name,
        role=role,
        lr_exponent=value(axis.lr),
        lr_exponent_ci=ci(axis.lr),
        wd_exponent=value(axis.weight_decay),
        wd_exponent_ci=ci(axis.weight_decay),
        product_exponent=value(axis.product),
        product_exponent_ci=ci(axis.product),
        timescale_exponent=value(axis.timescale),
        timescale_exponent_ci=ci(axis.timescale),
        timescale_examples_exponent=value(axis.timescale) + shift if axis.timescale else None,
        timescale_examples_exponent_ci=(
            [c + shift for c in ci(axis.timescale)] if axis.timescale else None
        ),
        values=values,
        rules=[
            schemas.AxisRuleOut(
                name=r.name,
                lr_exponent=r.fixed.get("lr"),
                wd_exponent=r.fixed.get("weight_decay"),
                product_exponent=r.fixed.get("product"),
                tested=r.tested,
                chi2=r.chi2,
                dof=r.dof,
                p_value=r.p_value,
                relative_likelihood=r.relative_likelihood,
                consistent=r.consistent,
            )
            for r in rules
        ],
        best_rule=best,
        rule_note=note,
    )


def multi_verdict(
    joint: JointFit | None, axes: list[schemas.LadderAxisOut], note: str
) -> tuple[str, str]:
    """The verdict of a ladder over several axes: insufficient without a joint fit;
    no_rule_fits when some axis rejects every named rule; rule_identified when every axis
    identifies one on both coordinates; else indistinguishable (a weight decay the data do not
    pin is said first)."""
    if joint is None:
        return "insufficient", note
    open_wd = [a.param for a in axes if a.wd_exponent is None]
    if open_wd:
        note = (
            "the data do not pin the weight decay's optimum, so it has no exponent along "
            f"{', '.join(open_wd)} and predictions keep the nearest rung's (a confirmation "
            "adds an arm per candidate weight decay); "
        )
    else:
        note = ""
    rejected = [a for a in axes if a.rules and not any(r.consistent for r in a.rules)]
    if rejected:
        return "no_rule_fits", note + "; ".join(f"{a.param}: {a.rule_note}" for a in rejected)
    said = "; ".join(f"{a.param} ({a.role}): {a.best_rule or a.rule_note}" for a in axes)
    if axes and all(a.best_rule for a in axes) and not open_wd:
        return "rule_identified", said
    return "indistinguishable", note + said
