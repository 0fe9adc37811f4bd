"""How the optimum lr and weight decay move with model width, from a ladder's rungs.

Pure numerical code (numpy and scipy, no database), so it can be tested on planted rungs
whose exponents are known.

Each rung is one sweep at width ``w``; its response surface (:mod:`service.surface`) gives
the optimum ``(ln η*, ln λ*)`` with bootstrap refits. Both coordinates carry errors, and
they are correlated (along a valley of constant η·λ the refits trade ln η* against ln λ*),
so each rung enters with the 2×2 covariance of its refits (robust: spreads from the 5–95%
percentile range, the correlation from refits clipped to that range). The width itself is
exact. The model is a pair of lines in ``s = ln(w / w_ref)``::

    ln η* = A + a·s        ln λ* = B + b·s

fitted by generalised least squares over all rungs at once (so the anti-correlation lets
``a + b``, the product's exponent, be known better than ``a`` or ``b``). When the rungs
scatter about the lines by more than their own errors (χ²/dof > 1) the parameter
covariance is scaled by χ²/dof (the Birge ratio) and intervals use Student's t.

A candidate width rule fixes ``(a, b)`` and fits only the intercepts; its χ² against the
same rungs scores it. Every rule has the same number of free parameters, so χ² differences
are log-likelihood ratios: a rule is *identified* when it fits (goodness-of-fit p ≥ 0.05)
and every other rule is at least ``LIKELIHOOD_RATIO`` times less likely; otherwise the data
cannot tell the consistent rules apart, or none fits.

A rung enters the lr line only when its surface pinned the lr down (lr matters by its
F-test and the optimum lr lies inside the box in 90% of refits), and the weight-decay line
likewise for weight decay; a coordinate is fitted only when at least ``MIN_RUNGS`` rungs
give it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from service.lazy import scipy_stats
from service.surface import LEVEL, Interval

MIN_RUNGS = 3
"""Rungs needed for a coordinate's line (two points fit any line exactly)."""
SD_FLOOR = 0.02
"""The smallest error (in ln units) a rung's optimum is given: a surface fitted to nearly
noiseless trials can report a spread far below what rung-to-rung differences in setup give."""
LIKELIHOOD_RATIO = 8.0
"""How many times less likely every other rule must be for the best to be identified."""
CONSISTENT_P = 0.05
"""A rule whose goodness-of-fit p-value is below this does not fit the rungs."""

RULES: dict[str, tuple[float, float]] = {
    "sqrt": (-0.5, 0.5),
    "mup": (-1.0, 1.0),
    "mup_sqrt": (-1.0, 0.5),
}
"""The candidate width rules: lr ∝ width^a and weight decay ∝ width^b, as (a, b).

``sqrt`` is the theory this project builds on (η = α0·σ, λ = α0/(2σ), σ = width^-½);
``mup`` is µP with a constant decay timescale 1/(ηλ); ``mup_sqrt`` is η ∝ 1/width with
λ ∝ width^½.
"""


class OutOfRange(ArithmeticError):
    """A width too far from the rungs for floating point: its ``s = ln(w / w_ref)``, or
    an lr or weight decay predicted there, over- or underflows."""


def log_ratio(width: float, reference: float) -> float:
    """``ln(width / reference)``; :class:`OutOfRange` when the ratio is not a finite
    float > 0 (a subnormal width underflows to 0, a huge one overflows)."""
    ratio = width / reference
    if not 0.0 < ratio < math.inf:
        raise OutOfRange(f"width {width:g} / reference width {reference:g} is {ratio:g}")
    return math.log(ratio)


def exp_in_range(x: float) -> float:
    """``exp(x)``; :class:`OutOfRange` when that is not a finite float > 0."""
    try:
        y = math.exp(x)
    except OverflowError:
        raise OutOfRange(f"exp({x:g}) overflows") from None
    if not 0.0 < y < math.inf:
        raise OutOfRange(f"exp({x:g}) is {y:g}")
    return y


@dataclass
class RungPoint:
    """One rung's optimum in ln units, with its covariance (what the fit uses of it)."""

    width: float
    ln_lr: float | None = None
    ln_wd: float | None = None
    cov: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))
    """Covariance of (ln η*, ln λ*); only the entries of the given coordinates are used."""
    value: float | None = None
    value_sd: float | None = None


def _spread(draws: np.ndarray) -> float:
    lo, hi = np.nanpercentile(draws, [5, 95])
    z = scipy_stats().norm.ppf(0.95)
    return max(float(hi - lo) / (2 * z), SD_FLOOR)


def rung_point(
    width: float,
    ln_lr: np.ndarray | None,
    ln_wd: np.ndarray | None,
    value: np.ndarray | None,
) -> RungPoint:
    """A rung's point from its surface's refits (index 0: the point estimate, the rest the
    bootstrap refits); pass None for a coordinate the rung does not pin down."""
    point = RungPoint(width=width)
    sds = [0.0, 0.0]
    for k, draws in enumerate((ln_lr, ln_wd)):
        if draws is not None:
            sds[k] = _spread(draws[1:] if len(draws) > 1 else draws)
    rho = 0.0
    if ln_lr is not None and ln_wd is not None and len(ln_lr) > 3:
        a = np.clip(ln_lr[1:], *np.nanpercentile(ln_lr[1:], [5, 95]))
        b = np.clip(ln_wd[1:], *np.nanpercentile(ln_wd[1:], [5, 95]))
        if np.std(a) > 0 and np.std(b) > 0:
            rho = float(np.clip(np.corrcoef(a, b)[0, 1], -0.98, 0.98))
    point.cov = np.array(
        [[sds[0] ** 2, rho * sds[0] * sds[1]], [rho * sds[0] * sds[1], sds[1] ** 2]]
    )
    if ln_lr is not None:
        point.ln_lr = float(ln_lr[0])
    if ln_wd is not None:
        point.ln_wd = float(ln_wd[0])
    if value is not None:
        point.value = float(value[0])
        lo, hi = np.nanpercentile(value[1:] if len(value) > 1 else value, [5, 95])
        point.value_sd = max(float(hi - lo) / (2 * scipy_stats().norm.ppf(0.95)), 1e-12)
    return point


@dataclass
class Score:
    """A candidate rule's fit to the rungs."""

    name: str
    a: float
    b: float
    chi2: float
    dof: int
    p_value: float
    intercept_lr: float
    intercept_wd: float | None
    relative_likelihood: float = 1.0

    @property
    def consistent(self) -> bool:
        """The rule's goodness of fit is acceptable."""
        return self.p_value >= CONSISTENT_P


@dataclass
class LadderFit:
    """Exponents with intervals, the candidate rules' scores and a verdict."""

    verdict: str
    reason: str
    reference_width: float
    n_lr: int = 0
    n_wd: int = 0
    lr_exponent: Interval | None = None
    wd_exponent: Interval | None = None
    product_exponent: Interval | None = None
    lr_intercept: float | None = None
    wd_intercept: float | None = None
    value_slope: Interval | None = None
    scores: list[Score] = field(default_factory=list)
    best_rule: str | None = None
    _coef: np.ndarray | None = None
    _cov: np.ndarray | None = None
    _cols: dict[str, tuple[int, int]] = field(default_factory=dict)
    _quantile: float = 0.0
    _value_line: tuple[np.ndarray, np.ndarray, float] | None = None
    _widest_value: tuple[float, Interval] | None = None
    """The widest rung with a value, and its value with a 90% interval."""

    def predict(self, width: float) -> dict[str, Interval | None]:
        """ln η*, ln λ* and the objective at ``width`` with 90% intervals (None where the
        coordinate was not fitted); :class:`OutOfRange` for a width whose distance from the
        reference width floating point cannot hold."""
        s = log_ratio(width, self.reference_width)
        out: dict[str, Interval | None] = {"ln_lr": None, "ln_wd": None, "value": None}
        if self._coef is None:
            return out
        for name, (i, j) in self._cols.items():
            g = np.zeros(len(self._coef))
            g[i], g[j] = 1.0, s
            y = float(g @ self._coef)
            half = self._quantile * math.sqrt(max(float(g @ self._cov @ g), 0.0))
            out[name] = Interval(y, y - half, y + half)
        if self._value_line is not None:
            coef, cov, q = self._value_line
            g = np.array([1.0, s])
            y = float(g @ coef)
            half = q * math.sqrt(max(float(g @ cov @ g), 0.0))
            lo, hi = y - half, y + half
            if self._widest_value is not None and width > self._widest_value[0]:
                # Beyond the widest rung the objective is bracketed between the rungs' trend
                # (the same change per doubling of width) and no further change (the widest
                # rung's value): a curve that flattens with width, as losses do, lies
                # between the two; the straight line alone would be optimistic.
                flat = self._widest_value[1]
                lo, hi = min(lo, flat.lo), max(hi, flat.hi)
            out["value"] = Interval(y, lo, hi)
        return out


def _gls(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Generalised least squares: coefficients, their covariance and χ²."""
    vi = np.linalg.inv(v)
    info = x.T @ vi @ x
    cov = np.linalg.inv(info)
    coef = cov @ x.T @ vi @ y
    r = y - x @ coef
    return coef, cov, float(r @ vi @ r)


def _observations(
    points: list[RungPoint], reference: float, coords: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Stacked observations: s per row, the value, the block-diagonal covariance, and which
    coordinate each row is."""
    rows_s, rows_y, which, blocks = [], [], [], []
    for p in points:
        s = math.log(p.width / reference)
        idx = []
        for k, name in enumerate(("ln_lr", "ln_wd")):
            val = getattr(p, name)
            if name in coords and val is not None:
                rows_s.append(s)
                rows_y.append(val)
                which.append(name)
                idx.append(k)
        if idx:
            blocks.append(p.cov[np.ix_(idx, idx)])
    n = len(rows_y)
    v = np.zeros((n, n))
    at = 0
    for b in blocks:
        m = b.shape[0]
        v[at : at + m, at : at + m] = b
        at += m
    return np.array(rows_s), np.array(rows_y), v, which


def fit_ladder(points: list[RungPoint], reference: float | None = None) -> LadderFit:
    """Fit the exponents of η* and λ* in width, score the candidate rules, give a verdict.

    Widths enter as ``ln(w / reference)`` (default: the geometric mean of the points').
    """
    widths = [p.width for p in points]
    if reference is None:
        reference = float(math.exp(np.mean(np.log(widths)))) if widths else 1.0
    lr_points = [p for p in points if p.ln_lr is not None]
    wd_points = [p for p in points if p.ln_lr is not None and p.ln_wd is not None]
    fit = LadderFit("insufficient", "", reference, n_lr=len(lr_points), n_wd=len(wd_points))
    if len(lr_points) < MIN_RUNGS:
        fit.reason = (
            f"only {len(lr_points)} rung(s) pin down the best lr (it matters and its optimum "
            f"lies inside the box in 90% of refits); a width exponent needs at least {MIN_RUNGS}"
        )
        return fit
    coords = ["ln_lr"] + (["ln_wd"] if len(wd_points) >= MIN_RUNGS else [])
    s, y, v, which = _observations(lr_points, reference, coords)
    cols = {name: (2 * k, 2 * k + 1) for k, name in enumerate(coords)}
    x = np.zeros((len(y), 2 * len(coords)))
    for r, name in enumerate(which):
        i, j = cols[name]
        x[r, i], x[r, j] = 1.0, s[r]
    coef, cov, chi2 = _gls(x, y, v)
    dof = len(y) - x.shape[1]
    birge2 = max(1.0, chi2 / dof) if dof > 0 else 1.0
    q = (
        scipy_stats().t.ppf(0.5 + LEVEL / 2, dof)
        if birge2 > 1.0
        else scipy_stats().norm.ppf(0.5 + LEVEL / 2)
    )
    cov = cov * birge2
    fit._coef, fit._cov, fit._cols, fit._quantile = coef, cov, cols, float(q)

    def est(g: np.ndarray) -> Interval:
        m = float(g @ coef)
        half = float(q) * math.sqrt(max(float(g @ cov @ g), 0.0))
        return Interval(m, m - half, m + half)

    def unit(*idx: int) -> np.ndarray:
        g = np.zeros(len(coef))
        for i in idx:
            g[i] = 1.0
        return g

    fit.lr_exponent = est(unit(cols["ln_lr"][1]))
    fit.lr_intercept = float(coef[cols["ln_lr"][0]])
    if "ln_wd" in cols:
        fit.wd_exponent = est(unit(cols["ln_wd"][1]))
        fit.wd_intercept = float(coef[cols["ln_wd"][0]])
        fit.product_exponent = est(unit(cols["ln_lr"][1], cols["ln_wd"][1]))

    # The objective at each rung's optimum against ln width (for the prediction).
    vp = [p for p in points if p.value is not None and p.value_sd is not None]
    if len(vp) >= MIN_RUNGS:
        sv = np.array([math.log(p.width / reference) for p in vp])
        xv = np.column_stack([np.ones(len(vp)), sv])
        vv = np.diag([p.value_sd**2 for p in vp])
        cv, covv, chi2v = _gls(xv, np.array([p.value for p in vp]), vv)
        dofv = len(vp) - 2
        b2 = max(1.0, chi2v / dofv) if dofv > 0 else 1.0
        qv = (
            scipy_stats().t.ppf(0.5 + LEVEL / 2, dofv)
            if b2 > 1.0
            else scipy_stats().norm.ppf(0.5 + LEVEL / 2)
        )
        covv = covv * b2
        fit._value_line = (cv, covv, float(qv))
        widest = max(vp, key=lambda p: p.width)
        z = scipy_stats().norm.ppf(0.5 + LEVEL / 2)
        fit._widest_value = (
            widest.width,
            Interval(
                widest.value, widest.value - z * widest.value_sd, widest.value + z * widest.value_sd
            ),
        )
        half = float(qv) * math.sqrt(float(covv[1, 1]))
        fit.value_slope = Interval(float(cv[1]), float(cv[1]) - half, float(cv[1]) + half)

    # Each candidate rule: exponents fixed, intercepts fitted, scored by χ².
    for name, (a, b) in RULES.items():
        slope = np.array([a if w == "ln_lr" else b for w in which])
        xr = np.zeros((len(y), len(coords)))
        for r, w in enumerate(which):
            xr[r, coords.index(w)] = 1.0
        cr, _, chi2r = _gls(xr, y - slope * s, v)
        dof_r = len(y) - len(coords)
        fit.scores.append(
            Score(
                name=name,
                a=a,
                b=b,
                chi2=chi2r,
                dof=dof_r,
                p_value=float(scipy_stats().chi2.sf(chi2r, dof_r)),
                intercept_lr=float(cr[0]),
                intercept_wd=float(cr[1]) if len(coords) > 1 else None,
            )
        )
    best_chi2 = min(sc.chi2 for sc in fit.scores)
    for sc in fit.scores:
        sc.relative_likelihood = math.exp(-(sc.chi2 - best_chi2) / 2)
    ranked = sorted(fit.scores, key=lambda sc: sc.chi2)
    best = ranked[0]
    rivals = [sc for sc in ranked[1:] if sc.relative_likelihood > 1 / LIKELIHOOD_RATIO]
    fit.best_rule = best.name
    a_txt = _exp_text("lr", fit.lr_exponent)
    b_txt = _exp_text("weight decay", fit.wd_exponent) if fit.wd_exponent else None
    fitted = a_txt + (f", {b_txt}" if b_txt else "")
    wd_note = (
        ""
        if "ln_wd" in cols
        else f"; weight decay's optimum is pinned down at only {len(wd_points)} rung(s), "
        "so the rules are compared on the lr alone"
    )
    if not best.consistent:
        fit.verdict = "no_rule_fits"
        fit.best_rule = None
        fit.reason = (
            f"no candidate rule fits the rungs (the best, '{best.name}', has "
            f"{_p(best.p_value)}); the fitted exponents are {fitted}{wd_note}"
        )
    elif rivals:
        names = ", ".join(f"'{sc.name}'" for sc in [best, *rivals])
        fit.verdict = "indistinguishable"
        fit.reason = (
            f"the rungs cannot tell {names} apart (each within a likelihood ratio of "
            f"{LIKELIHOOD_RATIO:g} of the best, '{best.name}'); the fitted exponents are "
            f"{fitted}{wd_note}"
        )
    else:
        fit.verdict = "rule_identified"
        fit.reason = (
            f"'{best.name}' fits the rungs ({_p(best.p_value)}) and every other rule is "
            f"over {LIKELIHOOD_RATIO:g}× less likely; the fitted exponents are {fitted}{wd_note}"
        )
    return fit


def _p(p: float) -> str:
    """A p-value as text, ``p = 0.12`` or ``p > 0.99`` (never rounded up to 1)."""
    return "p > 0.99" if p > 0.99 else f"p = {p:.2g}"


def _exp_text(what: str, e: Interval | None) -> str:
    if e is None:
        return f"{what}: not fitted"
    return f"{what} ∝ width^{e.value:.2f} (90% CI {e.lo:.2f} to {e.hi:.2f})"
