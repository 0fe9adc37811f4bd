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
from service.analysis import Analysis, group_configs, pooled_noise
from service.catalog import Catalog
from service.errors import Conflict, Invalid
from service.ladder_fit import (
    LadderFit,
    OutOfRange,
    exp_in_range,
    fit_ladder,
    log_ratio,
    rung_point,
)
from service.ladder_joint import fit_joint
from service.ladder_spec import Untransferred
from service.ladder_views import LadderViews, width_of
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
    "shared by the rungs, a level per rung, its optimum moving linearly in ln width; 90% "
    "intervals from refits on trials resampled within each rung"
)
_joint_cache: dict[tuple, tuple[list[schemas.LadderAxisOut], str]] = {}
_joint_lock = threading.Lock()

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

    def _fit(
        self, row: Ladder
    ) -> tuple[LadderFit, list[schemas.RungFit], list[Sweep], dict[int, Any]]:
        """The ladder fit over its rungs, the rungs' own estimates, the rung sweeps, and
        each rung's (surface, best config, sign) when it has one."""
        rungs = [s for s in self.ladder_views.sweeps(row.id) if s.ladder_role == "rung"]
        rungs.sort(key=lambda s: width_of(row, s))
        points, fits, fitted = [], [], {}
        for sweep in rungs:
            width = width_of(row, sweep)
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
        row = self.ladder_views.row(ladder_id)
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
            for s in self.ladder_views.sweeps(row.id)
            if s.ladder_role == "confirm"
        ]
        axes, axes_note = self._joint(row, rungs)

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

    def _joint(self, row: Ladder, rungs: list[Sweep]) -> tuple[list[schemas.LadderAxisOut], str]:
        """The joint fit's width axis (kept while the rungs' trials stay the same), or no
        axis and why."""
        parts, stamp = [], []
        for sweep in rungs:
            lr, wd, value = self.analysis.lion_points(sweep.id)
            parts.append((lr, wd, value, np.full(len(lr), width_of(row, sweep))))
            stamp.append((sweep.id, len(lr), float(value.sum())))
        key = (row.id, tuple(stamp))
        with _joint_lock:
            hit = _joint_cache.get(key)
        if hit is not None:
            return hit
        lr, wd, value, width = (np.concatenate(c) for c in zip(*parts, strict=True))
        try:
            fit = fit_joint(lr, wd, value, {row.param: width})
        except (ValueError, np.linalg.LinAlgError) as exc:
            answer: tuple[list[schemas.LadderAxisOut], str] = ([], f"no joint fit: {exc}")
        else:
            [axis] = fit.axes

            def value(e: Any) -> float | None:
                return e.value if e is not None else None

            def ci(e: Any) -> list[float] | None:
                return [e.ci[0], e.ci[1]] if e is not None else None

            out = schemas.LadderAxisOut(
                param=row.param,
                role="width",
                lr_exponent=value(axis.lr),
                lr_exponent_ci=ci(axis.lr),
                wd_exponent=value(axis.weight_decay),
                wd_exponent_ci=ci(axis.weight_decay),
                product_exponent=value(axis.product),
                product_exponent_ci=ci(axis.product),
                timescale_exponent=value(axis.timescale),
                timescale_exponent_ci=ci(axis.timescale),
            )
            note = (
                f"{JOINT_METHOD}; {fit.n_trials} trials in {fit.n_rungs} rungs, residual sd "
                f"{fit.residual_sd:.3g}"
            )
            if fit.notes:
                note += "; " + "; ".join(fit.notes)
            answer = ([out], note)
        with _joint_lock:
            if len(_joint_cache) > 64:
                _joint_cache.clear()
            _joint_cache[key] = answer
        return answer

    def confirmation_arms(
        self, row: Ladder, width: float
    ) -> tuple[schemas.LadderPrediction, Untransferred]:
        """The two arms of a confirmation at ``width``: the prediction there and the widest
        rung's own recommendation; a 422 naming ``width`` when it is beyond the ladder's reach,
        a 409 when the ladder has no rule to confirm."""
        spec = schemas.LadderSpec.model_validate(row.spec)
        rung_widths = [float(w) for w in spec.ladder.widths]
        _check_reach(("body", "width"), width, rung_widths)
        fit, _fits, rungs, fitted = self._fit(row)
        largest = self._largest_best(rungs, fitted)
        try:
            prediction = self._prediction(fit, width, rung_widths, largest)
        except OutOfRange as exc:
            raise _beyond_floats(("body", "width"), width, exc) from None
        if prediction is None or largest is None:
            raise Conflict(f"ladder {row.id} has no rule to confirm: {fit.verdict} — {fit.reason}")
        return prediction, largest

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
        fit: LadderFit,
        rung_widths: list[float],
        largest: Untransferred | None,
    ) -> schemas.ConfirmationOut:
        """Predicted against achieved at a confirmation's width, and the transfer against the
        untransferred config."""
        width = width_of(row, sweep)
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
