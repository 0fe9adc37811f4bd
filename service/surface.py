"""The objective's response surface over (log lr, log weight decay): the fitted surface, its
valley (the best weight decay for each lr), the optimum, bootstrap intervals and a verdict.

Pure numerical code (numpy and scipy, no database, no torch), so it can be tested on planted
data whose answer is known.

The model is a quadratic in (x, y) = (ln η, ln λ),
``f = a + b·x + c·y + d·x² + e·x·y + g·y²``, plus the other swept parameters as additive
terms (linear and quadratic for numbers, one column per level for choices). Why a weighted
quadratic rather than a Gaussian process:

- near its optimum any smooth surface is quadratic, and a quadratic's valley and optimum are
  closed-form: the best ``y`` for a given ``x`` is ``−(c + e·x)/(2g)``, so the valley is a
  line of slope ``−e/(2g)``, which is exactly the quantity a width rule is about;
- it is cheap enough to refit a few hundred times per request, so every derived number gets
  a bootstrap interval that carries the trial noise and the fit's own instability;
- far from the optimum real surfaces are not quadratic (a steep wall at too-high lr), so
  trials count less the further their *fitted* value lies above the fitted best (weights
  ``1/(1 + (excess/h)²)``, ``h`` the median excess, refitted a few times). The weights come
  from the fit, not from the observed values, so noise in one trial's value does not select
  it in or out of the fit (selecting the top quarter by observed value is what biased the
  earlier log–log regression).

The other swept parameters enter additively, so they shift the surface without tilting the
valley; predictions set them to the best trial's values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["valley", "lr_only", "insufficient", "boundary"]

BOOTSTRAP = 400
"""Bootstrap refits per answer."""
LEVEL = 0.90
"""The coverage of every interval."""
ALPHA = 0.05
"""The significance level of the tests of whether lr / weight decay move the objective."""
AGREE = 0.90
"""The share of refits that must agree (a best λ inside the box; the optimum on one edge)."""
MAX_SLOPE_CI_WIDTH = 2.5
"""A valley slope interval wider than this says too little to transfer."""
GRID = 81
"""Grid points per axis when the optimum is searched in the box."""
REWEIGHT_ROUNDS = 3
EXTRA_TRIALS = 5
"""Trials needed beyond the model's coefficient count."""


@dataclass(frozen=True)
class Box:
    """The searched box: ln lr in ``[x_lo, x_hi]``; the second axis is ln weight decay, or
    ln of the product lr·weight decay when a sweep searches along the valley."""

    x_lo: float
    x_hi: float
    v_lo: float
    v_hi: float
    second: Literal["weight_decay", "lr_wd_product"] = "weight_decay"

    def y_of(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """ln weight decay at box coordinates (x, v)."""
        return v - x if self.second == "lr_wd_product" else v

    def v_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The box's second coordinate at (ln lr, ln weight decay)."""
        return x + y if self.second == "lr_wd_product" else y

    def grid(self, n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
        """Grid points (ln lr, ln weight decay) over the box."""
        x, v = np.meshgrid(
            np.linspace(self.x_lo, self.x_hi, n), np.linspace(self.v_lo, self.v_hi, n)
        )
        return x.ravel(), self.y_of(x.ravel(), v.ravel())

    def y_range(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ln weight decay range inside the box at each ln lr."""
        lo = np.full_like(x, self.v_lo)
        hi = np.full_like(x, self.v_hi)
        return self.y_of(x, lo), self.y_of(x, hi)


@dataclass
class Observations:
    """What the surface is fitted to: per trial ln lr, ln weight decay, the other swept
    parameters as design columns, and the objective (made "lower is better")."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    value: np.ndarray
    z_ref: np.ndarray
    """The other parameters' columns at the reference config (the best trial)."""


@dataclass
class Interval:
    """A point estimate with a bootstrap interval."""

    value: float
    lo: float
    hi: float

    def pair(self) -> list[float]:
        """``[lo, hi]``."""
        return [self.lo, self.hi]


@dataclass
class Surface:
    """The fit and everything derived from it (values in "lower is better" units)."""

    verdict: Verdict
    reason: str
    n: int
    n_coef: int
    slope: Interval | None = None
    product: Interval | None = None
    alpha0: Interval | None = None
    lr: Interval | None = None
    weight_decay: Interval | None = None
    value: Interval | None = None
    on_boundary: bool = False
    boundary_edges: list[str] = field(default_factory=list)
    residual_sd: float | None = None
    n_outliers: int = 0
    p_weight_decay: float | None = None
    p_lr: float | None = None
    valley: list[dict[str, float]] = field(default_factory=list)
    lr_inside: float = 0.0
    """The share of bootstrap refits whose optimum lr lies inside the box (off its lr edges)."""
    weight_decay_inside: float = 0.0
    """The share of refits whose optimum lies off the box's edges of the second axis."""
    draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """The optimum across fits (index 0 the point estimate, then the bootstrap refits):
    ``ln_lr``, ``ln_wd`` and ``value`` (lower is better)."""


class _Scale:
    """Centre and scale of ln lr and ln weight decay (the fit is done in scaled units)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.mx, self.my = float(x.mean()), float(y.mean())
        self.sx = float(x.std()) or 1.0
        self.sy = float(y.std()) or 1.0

    def design(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The six quadratic columns at (x, y)."""
        u, w = (x - self.mx) / self.sx, (y - self.my) / self.sy
        return np.column_stack([np.ones_like(u), u, w, u * u, u * w, w * w])


LR_TERMS = (1, 3, 4)
WD_TERMS = (2, 4, 5)


def _wls(d: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    sw = np.sqrt(w)
    beta, *_ = np.linalg.lstsq(d * sw[:, None], v * sw, rcond=None)
    return beta


OUTLIER_IQRS = 10.0
"""A value more than this many interquartile ranges above the upper quartile is off the
surface (a run that went wrong without diverging, a floor value) and is left out."""


def off_surface(value: np.ndarray) -> np.ndarray:
    """Which values are gross outliers on the bad side (``Q3 + OUTLIER_IQRS·IQR``)."""
    q1, q3 = np.percentile(value, [25, 75])
    iqr = q3 - q1
    if not iqr > 0:
        return np.zeros(len(value), dtype=bool)
    return value > q3 + OUTLIER_IQRS * iqr


def _fit(d: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and final weights of the reweighted quadratic fit."""
    w = np.ones(len(v))
    beta = _wls(d, v, w)
    for _ in range(REWEIGHT_ROUNDS):
        excess = d @ beta
        excess = excess - excess.min()
        h = float(np.median(excess))
        if not h > 0:
            break
        w = 1.0 / (1.0 + (excess / h) ** 2)
        beta = _wls(d, v, w)
    return beta, w


def _partial_f(d: np.ndarray, v: np.ndarray, drop: tuple[int, ...]) -> float:
    """p-value of the F-test that the columns ``drop`` add nothing anywhere in the box.

    Unweighted: whether lr or weight decay matters is a question about the whole box, and
    the fit's locality weights would discount exactly the trials where it shows (weight decay
    that only hurts once it is large lands far up the surface). On planted data where weight
    decay plays no part this rejects 4% of the time at 0.05; a surface that is not quadratic
    only inflates the residuals, which makes the test cautious, never rash.
    """
    n, p = d.shape
    if n - p <= 0:
        return 1.0
    keep = [i for i in range(p) if i not in drop]

    def rss(cols: np.ndarray) -> float:
        beta, *_ = np.linalg.lstsq(cols, v, rcond=None)
        r = v - cols @ beta
        return float(r @ r)

    full = rss(d)
    reduced = rss(d[:, keep])
    df1, df2 = len(drop), n - p
    if full <= 0:
        return 0.0 if reduced > 0 else 1.0
    f = ((reduced - full) / df1) / (full / df2)
    return float(stats.f.sf(max(f, 0.0), df1, df2))


def _percentiles(a: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.nanpercentile(a, [tail, 100 - tail])
    return float(lo), float(hi)


def _edges_at(box: Box, x: float, v: float) -> list[str]:
    """The box edges a point (ln lr, second coordinate) lies on, to half a grid step."""
    tol_x = (box.x_hi - box.x_lo) / (GRID - 1) / 2
    tol_v = (box.v_hi - box.v_lo) / (GRID - 1) / 2
    names = []
    if x <= box.x_lo + tol_x:
        names.append("lr_low")
    if x >= box.x_hi - tol_x:
        names.append("lr_high")
    if v <= box.v_lo + tol_v:
        names.append(f"{box.second}_low")
    if v >= box.v_hi - tol_v:
        names.append(f"{box.second}_high")
    return names


def fit_surface(obs: Observations, box: Box, *, bootstrap: int = BOOTSTRAP) -> Surface:
    """Fit the surface, derive the valley, optimum and intervals, and give a verdict.

    Values must be "lower is better" (negate a maximised objective first). Gross outliers on
    the bad side (:func:`off_surface`) are left out and counted. Deterministic: the
    bootstrap uses a fixed seed.
    """
    outliers = off_surface(obs.value) if len(obs.value) >= 8 else np.zeros(0, dtype=bool)
    if outliers.any():
        keep = ~outliers
        obs = Observations(obs.x[keep], obs.y[keep], obs.z[keep], obs.value[keep], obs.z_ref)
    surface = _fit_surface(obs, box, bootstrap)
    surface.n_outliers = int(outliers.sum())
    return surface


def _fit_surface(obs: Observations, box: Box, bootstrap: int) -> Surface:
    n = len(obs.value)
    scale = _Scale(obs.x, obs.y)
    d = scale.design(obs.x, obs.y)
    if obs.z.size:
        d = np.column_stack([d, obs.z])
    n_coef = d.shape[1]
    if n < n_coef + EXTRA_TRIALS:
        return Surface(
            "insufficient",
            f"{n} trials fitted; the surface has {n_coef} coefficients, so it needs at least "
            f"{n_coef + EXTRA_TRIALS} finished trials",
            n,
            n_coef,
        )
    if np.ptp(obs.x) <= 1e-9 or np.ptp(obs.y) <= 1e-9:
        which = "lr" if np.ptp(obs.x) <= 1e-9 else "weight decay"
        return Surface("insufficient", f"every fitted trial has the same {which}", n, n_coef)

    beta, w = _fit(d, obs.value)
    resid = obs.value - d @ beta
    dof = max(n - n_coef, 1)
    residual_sd = math.sqrt(float((w * resid * resid).sum() / w.sum()) * n / dof)
    p_wd = _partial_f(d, obs.value, WD_TERMS)
    p_lr = _partial_f(d, obs.value, LR_TERMS)

    # Bootstrap: refit on trials drawn with replacement.
    rng = np.random.default_rng(0)
    betas = [beta]
    for _ in range(bootstrap):
        idx = rng.integers(0, n, n)
        if np.ptp(obs.x[idx]) <= 1e-9 or np.ptp(obs.y[idx]) <= 1e-9:
            continue
        betas.append(_fit(d[idx], obs.value[idx])[0])
    coefs = np.array(betas)  # row 0: the point estimate

    # The surface on a grid over the box, for every refit at once.
    gx, gy = box.grid()
    pred = scale.design(gx, gy) @ coefs[:, :6].T  # (grid, fits)
    shift = obs.z_ref @ coefs[:, 6:].T if obs.z.size else np.zeros(len(coefs))
    pred = pred + shift[None, :]
    best = pred.argmin(axis=0)
    opt_x, opt_y = gx[best], gy[best]

    # The valley: the best ln λ for each ln η, where the surface curves up in ln λ.
    c, e, g = coefs[:, 2], coefs[:, 4], coefs[:, 5]
    curved = g > 0
    # Off the grid: from the grid's best point, exact 1-D minimisations of the quadratic in
    # ln λ (at the point's lr) and in ln η (at its λ), each kept only where it stays inside the
    # box, so the optimum and its interval are not quantised to the grid.
    b, d2 = coefs[:, 1], coefs[:, 3]
    curved_x = d2 > 0
    for _ in range(3):
        u = (opt_x - scale.mx) / scale.sx
        exact_y = scale.my + scale.sy * -(c + e * u) / np.where(curved, 2 * g, 1.0)
        y_lo, y_hi = box.y_range(opt_x)
        opt_y = np.where(curved & (exact_y >= y_lo) & (exact_y <= y_hi), exact_y, opt_y)
        w = (opt_y - scale.my) / scale.sy
        exact_x = scale.mx + scale.sx * -(b + e * w) / np.where(curved_x, 2 * d2, 1.0)
        keep_v = box.v_of(exact_x, opt_y)
        in_box = (exact_x >= box.x_lo) & (exact_x <= box.x_hi)
        in_box &= (keep_v >= box.v_lo) & (keep_v <= box.v_hi)
        opt_x = np.where(curved_x & in_box, exact_x, opt_x)
    at_edges = [
        _edges_at(box, float(x), float(box.v_of(x, y))) for x, y in zip(opt_x, opt_y, strict=True)
    ]
    edges0 = at_edges[0]

    def share_on(edges: list[str]) -> float:
        """The share of bootstrap refits whose optimum lies on one of ``edges``."""
        refits = at_edges[1:] or at_edges
        return float(np.mean([bool(set(e) & set(edges)) for e in refits]))

    slope_all = np.where(curved, -e / np.where(curved, 2 * g, 1.0) * scale.sy / scale.sx, np.nan)

    def interval(values: np.ndarray) -> Interval:
        lo, hi = _percentiles(values[1:] if len(values) > 1 else values)
        return Interval(float(values[0]), lo, hi)

    value_draws = (scale.design(opt_x[:1], opt_y[:1]) @ coefs[:, :6].T).ravel() + shift
    surface = Surface(
        "insufficient",
        "",
        n,
        n_coef,
        draws={"ln_lr": opt_x, "ln_wd": opt_y, "value": value_draws},
        lr=interval(np.exp(opt_x)),
        weight_decay=interval(np.exp(opt_y)),
        # The surface's height at the optimum found, across refits (the minimum of each refit
        # would be biased low: a minimum of noisy surfaces).
        value=interval(value_draws),
        on_boundary=bool(edges0),
        boundary_edges=edges0,
        residual_sd=residual_sd,
        p_weight_decay=p_wd,
        p_lr=p_lr,
    )
    share_curved = float(curved[1:].mean()) if len(curved) > 1 else float(curved[0])
    if curved[0] and share_curved >= AGREE:
        surface.slope = interval(slope_all)
        surface.valley = _valley(box, scale, coefs, curved)
    refits = at_edges[1:] or at_edges
    surface.lr_inside = float(np.mean([not {"lr_low", "lr_high"} & set(e) for e in refits]))
    second = {f"{box.second}_low", f"{box.second}_high"}
    surface.weight_decay_inside = float(np.mean([not second & set(e) for e in refits]))
    edge_share = share_on(edges0)
    consistent_edge = bool(edges0) and edge_share >= AGREE
    where = ", ".join(edges0)

    walls = _walls(obs, d, beta, scale) if surface.slope is not None else {}
    flat = [side for side, shown in walls.items() if shown == "flat"]
    few = [side for side, shown in walls.items() if shown == "few"]

    if p_wd < ALPHA:
        s = surface.slope
        if s is not None and few:
            surface.slope = None
            surface.valley = []
            surface.reason = (
                f"weight decay matters (F-test p = {p_wd:.2g}) and the fit curves into a valley, "
                f"but too few trials lie near it and on its {' and '.join(few)}-weight-decay "
                f"side to show the data rise there: more trials, or a box centred on it"
            )
        elif s is not None and flat:
            # The quadratic curves up on both sides by construction; the data must too.
            surface.slope = None
            surface.valley = []
            side = flat[0]
            edge = f"{box.second}_{side}"
            surface.verdict = "boundary"
            surface.on_boundary = True
            surface.boundary_edges = [edge]
            more_or_less = "less" if side == "low" else "more"
            surface.reason = (
                f"weight decay matters (F-test p = {p_wd:.2g}), but the trials show no rise on "
                f"the {side}-weight-decay side of the fitted valley: within the box, "
                f"{more_or_less} weight decay is never worse, so the best weight decay is at or "
                f"past the box's {side} edge — widen the box that way"
            )
        elif s is not None and (s.lo > 0 or s.hi < 0) and s.hi - s.lo <= MAX_SLOPE_CI_WIDTH:
            surface.verdict = "valley"
            surface.product = interval(np.exp(opt_x + opt_y))
            surface.alpha0 = interval(np.sqrt(2 * np.exp(opt_x + opt_y)))
            surface.reason = (
                f"the best weight decay moves with lr along a line of slope {s.value:.2f} "
                f"(90% CI {s.lo:.2f} to {s.hi:.2f}); weight decay matters "
                f"(F-test p = {p_wd:.2g})"
            )
            if edges0:
                surface.reason += (
                    f"; the optimum along the valley sits on the box's edge ({where}), so the "
                    "valley may go on beyond it"
                )
        elif consistent_edge:
            surface.verdict = "boundary"
            surface.reason = (
                f"the optimum sits on the edge of the search box ({where}) in "
                f"{edge_share:.0%} of refits: widen the box past that edge"
            )
        elif s is None:
            surface.reason = (
                f"weight decay matters (F-test p = {p_wd:.2g}) but only {share_curved:.0%} of "
                "refits find a best weight decay inside the box for a given lr"
            )
        elif s.lo <= 0 <= s.hi:
            surface.reason = (
                f"weight decay matters (F-test p = {p_wd:.2g}) but its best value does not "
                f"move detectably with lr: the slope's 90% CI {s.lo:.2f} to {s.hi:.2f} "
                "includes 0"
            )
        else:
            surface.reason = (
                f"the slope's 90% CI {s.lo:.2f} to {s.hi:.2f} is too wide to say how weight "
                "decay trades off with lr: run more trials"
            )
    elif p_lr < ALPHA:
        lr_edges = [x for x in edges0 if x.startswith("lr_")]
        lr_share = share_on(lr_edges)
        if lr_edges and lr_share >= AGREE:
            surface.verdict = "boundary"
            surface.reason = (
                f"the best lr sits on the edge of the search box ({', '.join(lr_edges)}) in "
                f"{lr_share:.0%} of refits: widen the lr range past it"
            )
        else:
            surface.verdict = "lr_only"
            surface.reason = (
                f"within the box, weight decay does not move the objective beyond the noise "
                f"(F-test p = {p_wd:.2g}); lr does (p = {p_lr:.2g})"
            )
    else:
        surface.reason = (
            f"neither lr (F-test p = {p_lr:.2g}) nor weight decay (p = {p_wd:.2g}) moves the "
            "objective beyond the noise: more trials, or a wider box"
        )
    if surface.verdict != "valley":
        surface.valley = []  # a band is drawn only for a valley the data hold
    return surface


WALL_MARGIN = 0.5
"""How far (in ln weight decay) beyond the fitted valley a trial must lie to test a wall."""
MIN_WALL_TRIALS = 7


def _walls(obs: Observations, d: np.ndarray, beta: np.ndarray, scale: _Scale) -> dict[str, str]:
    """Whether the trials themselves rise on each side of the fitted valley.

    A quadratic curves up on both sides of its valley by construction, even where the truth
    is flat on one side (weight decay that only hurts past a threshold). So the data decide,
    locally: on each side, the trials beyond ``WALL_MARGIN`` from the fitted valley get their
    own small fit ``value ~ 1 + x + x² + y`` (and the other swept parameters), and the
    objective must fall towards the valley — the ``y`` coefficient negative below it,
    positive above it (one-sided t-test at ``ALPHA``). Per side: ``shown``, ``flat``, or
    ``few`` (under ``MIN_WALL_TRIALS`` trials there).
    """
    c, e, g = beta[2], beta[4], beta[5]
    u = (obs.x - scale.mx) / scale.sx
    y_star = scale.my + scale.sy * -(c + e * u) / (2 * g)
    offset = obs.y - y_star
    out = {}
    for side, mask, sign in (
        ("low", offset < -WALL_MARGIN, -1.0),
        ("high", offset > WALL_MARGIN, 1.0),
    ):
        cols = [np.ones(mask.sum()), u[mask], u[mask] ** 2, offset[mask]]
        if obs.z.size:
            cols += [obs.z[mask][:, k] for k in range(obs.z.shape[1])]
        local = np.column_stack(cols)
        n, p = local.shape
        if n < max(MIN_WALL_TRIALS, p + 3):
            out[side] = "few"
            continue
        coef, *_ = np.linalg.lstsq(local, obs.value[mask], rcond=None)
        resid = obs.value[mask] - local @ coef
        sigma2 = float(resid @ resid) / (n - p)
        try:
            cov = sigma2 * np.linalg.inv(local.T @ local)
        except np.linalg.LinAlgError:
            out[side] = "few"
            continue
        se = math.sqrt(max(float(cov[3, 3]), 0.0))
        t = sign * coef[3] / se if se > 0 else (math.inf if sign * coef[3] > 0 else 0.0)
        out[side] = "shown" if stats.t.sf(t, n - p) < ALPHA else "flat"
    return out


def _valley(box: Box, scale: _Scale, coefs: np.ndarray, curved: np.ndarray) -> list[dict]:
    """The best ln λ for each ln η across the box, with its 90% band over refits."""
    xs = np.linspace(box.x_lo, box.x_hi, 41)
    u = (xs - scale.mx) / scale.sx
    ok = coefs[curved]
    c, e, g = ok[:, 2], ok[:, 4], ok[:, 5]
    w = -(c[:, None] + e[:, None] * u[None, :]) / (2 * g[:, None])  # (fits, xs)
    ys = scale.my + scale.sy * w
    centre = scale.my + scale.sy * (-(coefs[0, 2] + coefs[0, 4] * u) / (2 * coefs[0, 5]))
    lo, hi = np.nanpercentile(ys[1:] if len(ys) > 1 else ys, [5, 95], axis=0)
    y_lo, y_hi = box.y_range(xs)
    out = []
    for k, x in enumerate(xs):
        if y_lo[k] <= centre[k] <= y_hi[k]:
            out.append(
                {
                    "lr": float(math.exp(x)),
                    "weight_decay": float(math.exp(centre[k])),
                    "weight_decay_lo": float(math.exp(max(lo[k], y_lo[k]))),
                    "weight_decay_hi": float(math.exp(min(hi[k], y_hi[k]))),
                }
            )
    return out
