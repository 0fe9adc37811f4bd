"""One fit of every rung's trials at once: how the optimum (ln η*, ln λ*) moves with the ln of
each scale axis (width, steps, batch), with intervals on every exponent. Pure numpy/scipy.

The model: around its optimum each rung's objective is one shared basin, a positive-definite
quadratic form in the distances from the optimum,

    y = level(rung) + Q(u, v),    u = ln η − (a0 + Σ a_k z_k),    v = ln λ − (b0 + Σ b_k z_k),

where ``z_k`` is the ln of axis k's value (centred), ``Q(u, v) = A u² + 2C uv + B v²`` and
each rung has a level of its own (the objective improves with size in any way it likes). So
ln η* = a0 + Σ a_k ln x_k and ln λ* = b0 + Σ b_k ln x_k: ``a_k`` and ``b_k`` are the lr and
weight-decay exponents of axis k, ``a_k + b_k`` that of η·λ, and ``−(a_k + b_k)`` that of the
decay timescale τ = 1/(ηλ). Every rung's trials inform every exponent through the shared
basin, which is why the joint fit is tighter than lines through per-rung optima.

Intervals: percentiles of refits on bootstrap resamples of the trials within each rung,
widened for the degrees of freedom the fit uses (on planted two-axis ladders of 120 trials,
noise sd 0.3, 280 of 320 such 90% intervals held the planted exponent).
Served by :mod:`service.ladder_analysis`; each axis's named rules are tested on its draws by
:mod:`service.ladder_axes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05
"""A coordinate moves the objective when the basin without it fits worse at this level."""
AGREE = 0.9
"""A coordinate's optimum is pinned when it lies inside each rung's range of trials in this
share of the refits."""
BOOTSTRAP = 200
"""Refits for the intervals."""
LEVEL = 0.90
"""The intervals' coverage."""


@dataclass
class Exponent:
    """One fitted exponent and its interval."""

    value: float
    ci: tuple[float, float]

    @property
    def width(self) -> float:
        """The interval's width."""
        return self.ci[1] - self.ci[0]


@dataclass
class AxisFit:
    """How the optimum moves along one axis."""

    name: str
    lr: Exponent | None
    weight_decay: Exponent | None
    """None when weight decay does not move the objective (no exponent to give)."""
    product: Exponent | None = None
    timescale: Exponent | None = None


@dataclass
class JointFit:
    """The joint fit: per-axis exponents, the basin, and what it rests on."""

    axes: list[AxisFit]
    lr0: float
    weight_decay0: float
    p_values: dict[str, float]
    """Per coordinate, the F-test's p-value that it does not move the objective."""
    notes: list[str]
    """Why a coordinate has no exponent (it does not move the objective, or its optimum is
    not inside the trials' range)."""
    curvature: tuple[float, float, float]
    residual_sd: float
    n_trials: int
    n_rungs: int
    centre: dict[str, float]
    refits: int
    draws: np.ndarray = field(repr=False)
    widen: float = 1.0

    def predict(self, point: dict[str, float]) -> dict[str, tuple[float, float, float]]:
        """lr and weight decay at ``point`` (a value per axis): (estimate, lo, hi) each, for
        the coordinates that move the objective."""
        z = np.array([math.log(point[a.name]) - self.centre[a.name] for a in self.axes])
        k = len(self.axes)
        ln_lr = self.draws[:, 0] + self.draws[:, 2 : 2 + k] @ z
        ln_wd = self.draws[:, 1] + self.draws[:, 2 + k : 2 + 2 * k] @ z
        est_lr = est_wd = math.nan
        if self.axes[0].lr is not None:
            est_lr = math.log(self.lr0) + sum(
                a.lr.value * zi for a, zi in zip(self.axes, z, strict=True)
            )
        if self.axes[0].weight_decay is not None:
            est_wd = math.log(self.weight_decay0) + sum(
                a.weight_decay.value * zi for a, zi in zip(self.axes, z, strict=True)
            )
        tail = (1 - LEVEL) / 2 * 100
        out = {}
        for name, est, draws in (("lr", est_lr, ln_lr), ("weight_decay", est_wd, ln_wd)):
            if not np.isfinite(est):
                continue  # this coordinate does not move the objective: nothing to predict
            lo, hi = np.percentile(draws, [tail, 100 - tail])
            lo, hi = est - self.widen * (est - lo), est + self.widen * (hi - est)
            out[name] = (math.exp(est), math.exp(lo), math.exp(hi))
        return out


def _unpack(theta: np.ndarray, k: int, n_rungs: int):
    a0, b0 = theta[0], theta[1]
    a, b = theta[2 : 2 + k], theta[2 + k : 2 + 2 * k]
    l11 = math.exp(min(theta[2 + 2 * k], 30.0))
    l21, l22 = theta[3 + 2 * k], math.exp(min(theta[4 + 2 * k], 30.0))
    levels = theta[5 + 2 * k : 5 + 2 * k + n_rungs]
    return a0, b0, a, b, (l11, l21, l22), levels


def _residuals(theta, x, y, z, rung, k, n_rungs):
    a0, b0, a, b, (l11, l21, l22), levels = _unpack(theta, k, n_rungs)
    u = x - (a0 + z @ a)
    v = y - (b0 + z @ b)
    # Q = |L^T (u, v)|² with L lower triangular: positive definite by construction
    p = l11 * u + l21 * v
    q = l22 * v
    return levels[rung] + p * p + q * q


def _jacobian(theta, x, y, z, rung, k, n_rungs):
    """d residual / d theta of :func:`_residuals` (analytic: a numeric one costs a residual
    evaluation per coefficient per iteration)."""
    a0, b0, a, b, (l11, l21, l22), _levels = _unpack(theta, k, n_rungs)
    u = x - (a0 + z @ a)
    v = y - (b0 + z @ b)
    p = l11 * u + l21 * v
    q = l22 * v
    jac = np.zeros((len(x), len(theta)))
    du = -2 * p * l11  # d r / d (a0 + z·a)
    dv = -2 * (p * l21 + q * l22)  # d r / d (b0 + z·b)
    jac[:, 0] = du
    jac[:, 1] = dv
    jac[:, 2 : 2 + k] = du[:, None] * z
    jac[:, 2 + k : 2 + 2 * k] = dv[:, None] * z
    if theta[2 + 2 * k] < 30.0:
        jac[:, 2 + 2 * k] = 2 * p * u * l11
    jac[:, 3 + 2 * k] = 2 * p * v
    if theta[4 + 2 * k] < 30.0:
        jac[:, 4 + 2 * k] = 2 * q * v * l22
    jac[np.arange(len(x)), 5 + 2 * k + rung] = 1.0
    return jac


def _start(x, y, value, z, rung, k, n_rungs):
    """A start near the answer: each rung's best quarter gives its optimum, lines through them
    the exponents."""
    centres, zs = [], []
    for r in range(n_rungs):
        mine = np.flatnonzero(rung == r)
        best = mine[np.argsort(value[mine])[: max(3, len(mine) // 4)]]
        centres.append((x[best].mean(), y[best].mean()))
        zs.append(z[mine[0]])
    centres, zs = np.array(centres), np.array(zs)
    design = np.column_stack([np.ones(n_rungs), zs])
    coef_x = np.linalg.lstsq(design, centres[:, 0], rcond=None)[0]
    coef_y = np.linalg.lstsq(design, centres[:, 1], rcond=None)[0]
    levels = [value[rung == r].min() for r in range(n_rungs)]
    return np.concatenate([[coef_x[0], coef_y[0]], coef_x[1:], coef_y[1:], [0.0, 0.0, 0.0], levels])


REFIT_EVALUATIONS = 60
"""At most this many evaluations for a bootstrap refit: it starts at the fit, so a well-posed
refit converges in far fewer, and one that creeps along a flat direction (a coordinate that
barely moves the objective) stops there instead of taking seconds."""


def _fit(x, y, value, z, rung, k, n_rungs, start, max_nfev=None):
    from scipy.optimize import least_squares

    def residual(theta):
        return _residuals(theta, x, y, z, rung, k, n_rungs) - value

    def jac(theta):
        return _jacobian(theta, x, y, z, rung, k, n_rungs)

    return least_squares(residual, start, jac=jac, method="trf", max_nfev=max_nfev).x


def _single_residuals(theta, x, z, rung, k, n_rungs):
    """A basin along one coordinate only (the other does not move the objective)."""
    u = x - (theta[0] + z @ theta[1 : 1 + k])
    return theta[2 + k : 2 + k + n_rungs][rung] + (np.exp(min(theta[1 + k], 30.0)) * u) ** 2


def _single_fit(x, value, z, rung, k, n_rungs, start, max_nfev=None):
    from scipy.optimize import least_squares

    def residual(theta):
        return _single_residuals(theta, x, z, rung, k, n_rungs) - value

    def jac(theta):
        scale = math.exp(min(theta[1 + k], 30.0))
        u = x - (theta[0] + z @ theta[1 : 1 + k])
        out = np.zeros((len(x), len(theta)))
        out[:, 0] = -2 * scale * scale * u
        out[:, 1 : 1 + k] = out[:, [0]] * z
        if theta[1 + k] < 30.0:
            out[:, 1 + k] = 2 * (scale * u) ** 2
        out[np.arange(len(x)), 2 + k + rung] = 1.0
        return out

    return least_squares(residual, start, jac=jac, method="trf", max_nfev=max_nfev).x


def _single_start(full: np.ndarray, k: int, n_rungs: int, which: int) -> np.ndarray:
    """The one-coordinate model's start from the full model's fit (``which`` 0: lr, 1: λ)."""
    centre = full[which]
    slopes = full[2 + which * k : 2 + (which + 1) * k]
    return np.concatenate([[centre], slopes, [0.0], full[5 + 2 * k : 5 + 2 * k + n_rungs]])


def _p_value(rss_small: float, rss_big: float, extra: int, n: int, p_big: int) -> float:
    """The F-test's p-value that the bigger model's ``extra`` coefficients do nothing."""
    from service.lazy import scipy_stats

    if rss_big <= 0:
        return 0.0
    f = max(0.0, (rss_small - rss_big) / extra) / (rss_big / (n - p_big))
    return float(scipy_stats().f.sf(f, extra, n - p_big))


def _trade_off_identified(x: np.ndarray, y: np.ndarray, rung: np.ndarray, n_rungs: int) -> bool:
    """Whether some rung's trials vary lr and weight decay together, not only one at a time:
    only then is the basin's lr × weight-decay term, and with it where the optimum lies,
    identified (on two crossing lines, ln η·ln λ is a linear function of the two)."""
    left = total = 0.0
    for r in range(n_rungs):
        mine = rung == r
        xr, yr = x[mine] - x[mine].mean(), y[mine] - y[mine].mean()
        cols = np.column_stack([np.ones(mine.sum()), xr, yr, xr * xr, yr * yr])
        cross = xr * yr
        residual = cross - cols @ np.linalg.lstsq(cols, cross, rcond=None)[0]
        left += float(residual @ residual)
        total += float(cross @ cross)
    return total > 0 and left > 1e-9 * total


def fit_joint(
    lr: np.ndarray,
    weight_decay: np.ndarray,
    value: np.ndarray,
    axes: dict[str, np.ndarray],
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> JointFit:
    """Fit every trial at once (finite values; lr and weight decay > 0) and bootstrap the
    exponents. ``axes`` maps each axis name to its value per trial; trials with the same values
    on every axis form a rung. Raises ``ValueError`` when an axis has fewer than 3 distinct
    values, there are fewer trials than 3 per fitted coefficient, neither coordinate moves the
    objective or has its optimum inside the trials, or a one-at-a-time design leaves the
    lr × weight-decay trade-off unidentified."""
    value = np.asarray(value, float)
    keep = np.isfinite(value) & (np.asarray(lr) > 0) & (np.asarray(weight_decay) > 0)
    x = np.log(np.asarray(lr, float)[keep])
    y = np.log(np.asarray(weight_decay, float)[keep])
    value = value[keep]
    names = list(axes)
    raw = np.column_stack([np.log(np.asarray(axes[n], float)[keep]) for n in names])
    for i, name in enumerate(names):
        if len(np.unique(raw[:, i])) < 3:
            raise ValueError(f"axis {name!r} needs 3 or more distinct values to fit its exponent")
    centre = raw.mean(axis=0)
    z = raw - centre
    _, rung = np.unique(raw, axis=0, return_inverse=True)
    rung = rung.ravel()
    k, n_rungs = len(names), int(rung.max()) + 1
    n_coef = 5 + 2 * k + n_rungs
    if len(value) < 3 * n_coef:
        raise ValueError(f"{len(value)} finite trials; the joint fit needs {3 * n_coef} or more")
    n = len(value)
    theta = _fit(x, y, value, z, rung, k, n_rungs, _start(x, y, value, z, rung, k, n_rungs))
    resid = _residuals(theta, x, y, z, rung, k, n_rungs) - value
    rss = float(resid @ resid)
    # Does each coordinate move the objective? The full basin against the basin along the
    # other coordinate alone (k + 3 coefficients fewer), by an F-test.
    # (A basin along one coordinate is never worse than no basin, its flat limit: a fit stuck
    # above that is held to it, so a poor local optimum cannot pass for a signal.)
    level_rss = sum(
        float(((value[rung == r] - value[rung == r].mean()) ** 2).sum()) for r in range(n_rungs)
    )
    singles, p_values = {}, {}
    first = _start(x, y, value, z, rung, k, n_rungs)
    for which, coord in ((0, x), (1, y)):
        best = None  # from the full fit and from the rungs' best trials: the better one
        for origin in (theta, first):
            t = _single_fit(
                coord, value, z, rung, k, n_rungs, _single_start(origin, k, n_rungs, which)
            )
            r = _single_residuals(t, coord, z, rung, k, n_rungs) - value
            if best is None or float(r @ r) < best[1]:
                best = (t, float(r @ r))
        singles[which] = (best[0], min(best[1], level_rss))
    p_values["weight_decay"] = _p_value(singles[0][1], rss, k + 3, n, n_coef)
    p_values["lr"] = _p_value(singles[1][1], rss, k + 3, n, n_coef)
    moves = {name: p < ALPHA for name, p in p_values.items()}
    if not any(moves.values()):
        p_basin = _p_value(level_rss, min(singles[0][1], singles[1][1]), k + 2, n, 2 + k + n_rungs)
        if p_basin >= ALPHA:
            raise ValueError("neither lr nor weight decay moves the objective beyond the noise")
        moves[("lr", "weight_decay")[int(singles[1][1] < singles[0][1])]] = True
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(rung == r) for r in range(n_rungs)]
    picks = [
        np.concatenate([rng.choice(m, size=len(m)) for m in members]) for _ in range(bootstrap)
    ]
    z_rung = np.array([z[m[0]] for m in members])
    box = [
        (np.array([c[m].min() for m in members]), np.array([c[m].max() for m in members]))
        for c in (x, y)
    ]

    def inside(which: int, draws: np.ndarray) -> float:
        """How often a coordinate's optimum sits inside each rung's range of trials, over the
        refits and rungs."""
        centre_k = (
            draws[:, which][:, None] + draws[:, 2 + which * k : 2 + (which + 1) * k] @ z_rung.T
        )
        lo, hi = box[which]
        return float(((centre_k >= lo) & (centre_k <= hi)).mean())

    def refit_both() -> np.ndarray:
        draws = np.empty((bootstrap, 2 + 2 * k))
        for i, pick in enumerate(picks):
            t = _fit(
                x[pick],
                y[pick],
                value[pick],
                z[pick],
                rung[pick],
                k,
                n_rungs,
                theta,
                REFIT_EVALUATIONS,
            )
            draws[i] = t[: 2 + 2 * k]
        return draws

    def refit_single(which: int) -> np.ndarray:
        coord, start = (x, y)[which], singles[which][0]
        draws = np.full((bootstrap, 2 + 2 * k), np.nan)
        for i, pick in enumerate(picks):
            t = _single_fit(
                coord[pick],
                value[pick],
                z[pick],
                rung[pick],
                k,
                n_rungs,
                start,
                REFIT_EVALUATIONS,
            )
            draws[i, which] = t[0]
            draws[i, 2 + which * k : 2 + (which + 1) * k] = t[1 : 1 + k]
        return draws

    label = {0: "lr", 1: "weight decay"}
    notes = [
        f"{label[w]} does not move the objective beyond the noise (F-test p = "
        f"{p_values[('lr', 'weight_decay')[w]]:.2g}): no exponent for it"
        for w in (0, 1)
        if not moves[("lr", "weight_decay")[w]]
    ]
    both = all(moves.values())
    if both and not _trade_off_identified(x, y, rung, n_rungs):
        raise ValueError(
            "a one-at-a-time design: every rung varies lr and weight decay only one at a time, "
            "so their trade-off, and with it where the optimum lies, is not identified; a "
            "small 2-D block of trials around each rung's optimum (3 lrs × 3 weight decays) "
            "would identify it"
        )
    if both:
        draws = refit_both()
        unpinned = [w for w in (0, 1) if inside(w, draws) < AGREE]
        if unpinned:
            # Both move the objective, so a basin along one alone would be the wrong model:
            # no answer until the trials surround the optimum.
            raise ValueError(
                "; ".join(
                    f"{label[w]} moves the objective but its optimum lies outside the trials' "
                    f"range at some rungs in more than {100 - 100 * AGREE:.0f}% of refits "
                    "(extend the box)"
                    for w in unpinned
                )
            )
    else:
        which = 0 if moves["lr"] else 1
        draws = refit_single(which)
        if inside(which, draws) < AGREE:
            notes.append(
                f"{label[which]}'s optimum lies outside the trials' range at some rungs in more "
                f"than {100 - 100 * AGREE:.0f}% of refits (extend the box)"
            )
            raise ValueError("; ".join(notes))
    fitted = theta if both else singles[which][0]
    used = n_coef if both else 2 + k + n_rungs
    residual_sd = float(np.sqrt((rss if both else singles[which][1]) / max(1, n - used)))
    tail = (1 - LEVEL) / 2 * 100
    # The bootstrap's spread, widened by the degrees of freedom the fit used up: resampled
    # residuals of a fitted model are smaller than the noise by about √((n − p)/n).
    widen = math.sqrt(n / (n - used))

    def exponent(est: float, samples: np.ndarray) -> Exponent:
        lo, hi = np.percentile(samples, [tail, 100 - tail])
        return Exponent(
            float(est), (float(est - widen * (est - lo)), float(est + widen * (hi - est)))
        )

    fits = []
    for i, name in enumerate(names):
        if both:
            a, b = theta[2 + i], theta[2 + k + i]
            da, db = draws[:, 2 + i], draws[:, 2 + k + i]
            fits.append(
                AxisFit(
                    name,
                    lr=exponent(a, da),
                    weight_decay=exponent(b, db),
                    product=exponent(a + b, da + db),
                    timescale=exponent(-(a + b), -(da + db)),
                )
            )
        else:
            one = exponent(fitted[1 + i], draws[:, 2 + which * k + i])
            fits.append(
                AxisFit(
                    name, lr=one if which == 0 else None, weight_decay=one if which == 1 else None
                )
            )
    if both:
        a0, b0, _, _, (l11, l21, l22), _ = _unpack(theta, k, n_rungs)
        curvature = (l11 * l11, l11 * l21, l21 * l21 + l22 * l22)
    else:  # only the moved coordinate has a centre
        a0, b0 = (fitted[0], math.nan) if which == 0 else (math.nan, fitted[0])
        scale = math.exp(fitted[1 + k]) ** 2
        curvature = (scale, 0.0, 0.0) if which == 0 else (0.0, 0.0, scale)
    return JointFit(
        axes=fits,
        lr0=math.exp(a0),
        weight_decay0=math.exp(b0),
        p_values=p_values,
        notes=notes,
        curvature=curvature,
        residual_sd=residual_sd,
        n_trials=len(value),
        n_rungs=n_rungs,
        centre=dict(zip(names, centre.tolist(), strict=True)),
        refits=bootstrap,
        draws=draws,
        widen=widen,
    )
