"""The objective's response surface over (log lr, weight decay): the fitted surface, its
valley (the best weight decay for each lr), the optimum, bootstrap intervals and a verdict.

Pure numerical code (numpy and scipy, no database, no torch), so it can be tested on planted
data whose answer is known.

The model is a quadratic in (x, y) = (ln η, ln λ),
``f = a + b·x + c·y + d·x² + e·x·y + g·y²``, plus the other swept parameters as additive
terms chosen by the data (:func:`select_terms`). Why a weighted quadratic rather than a
Gaussian process:

- near its optimum any smooth surface is quadratic, and a quadratic's valley and optimum are
  closed-form: the best ``y`` for a given ``x`` is ``−(c + e·x)/(2g)``, so the valley is a
  line of slope ``−e/(2g)``, which is exactly the quantity a width rule is about;
- it is cheap enough to refit a few hundred times per request, so every derived number gets
  a bootstrap interval that carries the trial noise and the fit's own instability;
- far from the optimum real surfaces are not quadratic (a steep wall at too-high lr), so
  trials count less the further their *fitted* value lies above the fitted best (weights
  ``1/(1 + (excess/h)²)``, ``h`` the median excess, refitted a few times). The weights come
  from the fit, not from the observed values, so noise in one trial's value does not select
  it in or out of the fit.

Rules that keep the answer inside what the data can say:

- **Model size.** A model with ``p`` coefficients is fitted only to at least ``2p + 2``
  usable trials (:func:`service.verdict.min_trials`). A random/TPE/grid design too small for
  the full quadratic (6 coefficients) but large enough without the ``x·y`` interaction is
  fitted additively, and then says the trade-off is not estimated.
- **Other swept parameters** enter only when they lower the BIC and pass a Bonferroni-
  corrected partial F-test, one block at a time (forward selection), never pushing the model
  past the size rule; a parameter with 2 levels gets one linear term, with 3 or more a
  linear and a quadratic one.
- **One-at-a-time designs** (each trial changes at most one parameter of a base config) get
  the additive model (no interaction: it is not identifiable from such a design), its
  intervals from a residual bootstrap (resampling trials could drop a whole level), and a
  weight decay searched on a linear scale is fitted on that scale, its 0 included.
- **Weight decay 0** in a log fit is its own level: an indicator column ("no decay") that
  shifts the surface at that lr; the answer compares it with the optimum.
- **Support.** The optimum, the valley band and every predicted value are searched only
  inside the trials' region: the convex hull of the fitted trials in (ln lr, second axis) —
  for a one-at-a-time design the per-axis ranges — and below the lr where training
  diverges (``x_cap``). An optimum pushed against that region's edge is reported as the
  edge (and the verdict says ``boundary``), never as a number from outside.
- **Predicted values.** A predicted objective whose whole 90% interval lies below the best
  observed mean is refused (the quadratic does not fit there); a loss's interval is clipped
  at 0 and a negative predicted loss refused.

The verdict itself is :func:`service.verdict.decide`, a pure function of the fit's
statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from service.lazy import scipy_stats
from service.verdict import ALPHA, FitStats, decide, min_trials

Verdict = Literal["valley", "per_axis", "lr_only", "wd_only", "insufficient", "boundary"]

BOOTSTRAP = 400
"""Bootstrap refits per answer."""
LEVEL = 0.90
"""The coverage of every interval."""
AGREE = 0.90
"""The share of refits that must find a best weight decay inside the region (a valley)."""
EDGE_SHARE = 0.5
"""The share of refits whose optimum must sit on an edge (the point estimate's too) for the
answer to report the edge instead of the optimum."""
GRID = 81
"""Grid points per axis when the optimum is searched in the region."""
REWEIGHT_ROUNDS = 3
BASIN_SHARE = 0.5
"""The basin (the non-diverged values) holds at least this share of the trials."""
GAP_RATIO = 2.0
"""A gap in the sorted values ends the basin when it is this many times the basin's spread."""
DIVERGED_SHARE = 0.5
"""The stability edge is the lowest lr at and above which at least this share diverged."""


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
        """The weight-decay coordinate at box coordinates (x, v)."""
        return v - x if self.second == "lr_wd_product" else v

    def v_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The box's second coordinate at (ln lr, weight-decay coordinate)."""
        return x + y if self.second == "lr_wd_product" else y


@dataclass
class Observations:
    """What the surface is fitted to: per trial ln lr, the weight-decay coordinate (ln λ, or
    λ on a linear scale), candidate columns of the other swept parameters, and the objective
    (made "lower is better")."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    value: np.ndarray
    z_ref: np.ndarray
    """The other parameters' columns at the reference config (the best trial)."""
    z_blocks: list[tuple[str, list[int]]] | None = None
    """Per other parameter its name and its columns of ``z`` (linear first, then quadratic);
    None: every column is its own block."""
    nodecay: np.ndarray | None = None
    """Trials with weight decay 0 on a log scale (their ``y`` is ignored)."""
    design: Literal["surface", "one_at_a_time"] = "surface"
    wd_scale: Literal["log", "linear"] = "log"
    x_cap: float | None = None
    """ln of the highest lr below the stability edge: no answer at a higher lr."""
    lr_diverged_min: float | None = None
    """The stability edge (for the reason's text)."""
    best_mean: float | None = None
    """The best observed config mean (lower is better)."""
    best_half: float = 0.0
    """The half-width of that mean's 90% interval from the seed noise (0 when unmeasured)."""
    nonneg: bool = False
    """The objective is a loss (never negative): intervals are clipped at 0."""
    sign: float = 1.0
    """+1 minimised, −1 maximised (for the text of the reasons)."""


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
    """The fit and everything derived from it (values in "lower is better" units).

    ``lr``, ``weight_decay`` and ``value`` hold the optimum inside the trials' region
    whenever one was fitted; ``shown`` says which of them the verdict lets a client show.
    """

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
    """The share of bootstrap refits whose optimum lr lies off the region's lr edges."""
    weight_decay_inside: float = 0.0
    """The share of refits whose optimum lies off the region's edges of the second axis."""
    draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """The optimum across fits (index 0 the point estimate, then the bootstrap refits):
    ``ln_lr``, ``ln_wd`` and ``value`` (lower is better)."""
    shown: frozenset[str] = frozenset()
    """What the verdict lets a client show: ``lr``, ``weight_decay``, ``value``, ``slope``,
    ``valley``."""
    design: str = "surface"
    additive: bool = False
    n_min: int = 0
    n_configs: int = 0
    """Distinct configs fitted (``n`` counts trials; the model-size rule counts configs)."""
    terms: list[str] = field(default_factory=list)
    """The other swept parameters' terms that entered the model."""
    value_note: str | None = None
    no_decay: dict[str, Any] | None = None
    support: dict[str, list[float]] = field(default_factory=dict)
    wd_scale: str = "log"
    value_scale: str = "linear"
    """``log`` when the objective was fitted on the log scale (:data:`LOG_SPAN`)."""
    scale_note: str | None = None


VALUE_LIMIT = 1e100
"""The largest objective value (in size) a surface is fitted to: a least-squares fit squares the
values, and values near float's limit (1e308) overflow or stop its solver from converging."""


def beyond_basin(value: np.ndarray) -> np.ndarray:
    """Which values lie beyond the basin: above a gap in the sorted values at least
    ``GAP_RATIO`` times as wide as the whole basin below it, the basin holding at least
    ``BASIN_SHARE`` of the trials, and the values above it spread less than that gap
    (diverged runs sit on a plateau, such as the loss of an untrained model; a heavy tail
    keeps spreading). Values are "lower is better"; fewer than 6 trials are never split."""
    v = np.sort(np.asarray(value, dtype=float))
    n = len(v)
    out = np.zeros(n, dtype=bool)
    if n < 6:
        return np.zeros(len(value), dtype=bool)
    for k in range(max(math.ceil(n * BASIN_SHARE) - 1, 1), n - 1):
        gap, basin, above = v[k + 1] - v[k], v[k] - v[0], v[-1] - v[k + 1]
        if gap > 0 and gap > GAP_RATIO * basin and above < gap:
            return np.asarray(value) > v[k]
    return out[: len(value)]


@dataclass
class Stability:
    """Where training diverges along lr."""

    lr_diverged_min: float | None
    lr_stable_max: float | None
    n_diverged: int
    n_isolated: int
    n_stable_above: int
    note: str


def stability_edge(lr_ok: np.ndarray, lr_diverged: np.ndarray) -> Stability | None:
    """The stability edge from the lrs of runs that trained and of runs that diverged: the
    lowest diverged lr at and above which at least ``DIVERGED_SHARE`` of all runs diverged,
    and the highest lr below it at which a run trained. Diverged runs below the edge are
    isolated (counted, not an edge). None when no run diverged."""
    lr_ok, lr_div = np.asarray(lr_ok, float), np.asarray(lr_diverged, float)
    if not len(lr_div):
        return None
    edge = None
    for lr in np.sort(lr_div):
        above = (lr_div >= lr).sum() + (lr_ok >= lr).sum()
        if (lr_div >= lr).sum() >= DIVERGED_SHARE * above:
            edge = float(lr)
            break
    if edge is None:
        return Stability(
            None,
            None,
            len(lr_div),
            len(lr_div),
            0,
            f"{len(lr_div)} run(s) diverged, scattered among runs that trained at higher lr: "
            "no stability edge",
        )
    below = lr_ok[lr_ok < edge]
    stable = float(below.max()) if len(below) else None
    isolated = int((lr_div < edge).sum())
    over = int((lr_ok >= edge).sum())
    note = f"runs diverge from lr {edge:.3g} up"
    note += f"; the highest lr that trained below it is {stable:.3g}" if stable else ""
    note += f"; {isolated} run(s) diverged below it (isolated)" if isolated else ""
    note += f"; {over} run(s) at or above it trained" if over else ""
    note += "; no answer is given at or above it"
    return Stability(edge, stable, len(lr_div), isolated, over, note)


class _Scale:
    """Centre and scale of ln lr and the weight-decay coordinate (the fit is scaled)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.mx, self.my = float(x.mean()), float(y.mean())
        self.sx = float(x.std()) or 1.0
        self.sy = float(y.std()) or 1.0

    def design(
        self, x: np.ndarray, y: np.ndarray, additive: bool, nd: np.ndarray | None
    ) -> tuple[list[str], np.ndarray]:
        """The quadratic columns at (x, y) and their names (``nd``: the no-decay flags)."""
        u = (x - self.mx) / self.sx
        w = (y - self.my) / self.sy
        if nd is not None:
            w = np.where(nd, 0.0, w)
        names = ["1", "u", "w", "uu", "uw", "ww"]
        cols = [np.ones_like(u), u, w, u * u, u * w, w * w]
        if additive:
            del names[4], cols[4]
        if nd is not None:
            names.append("nd")
            cols.append(nd.astype(float))
        return names, np.column_stack(cols)


GRAM_ROWS = 2000
"""From this many trials on, weighted least squares is solved through its small p × p normal
equations: the same coefficients to rounding for these centred and scaled columns, and 20×
faster than a least-squares solve of all the rows at 10,000 trials (each bootstrap refit
solves four)."""


def _wls(d: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    if len(v) >= GRAM_ROWS:
        dw = d * w[:, None]
        beta, *_ = np.linalg.lstsq(dw.T @ d, dw.T @ v, rcond=None)
        return beta
    sw = np.sqrt(w)
    beta, *_ = np.linalg.lstsq(d * sw[:, None], v * sw, rcond=None)
    return beta


def _fit(d: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and final weights of the reweighted fit (the first ``k`` columns are the
    surface; the locality weights use only them)."""
    w = np.ones(len(v))
    beta = _wls(d, v, w)
    for _ in range(REWEIGHT_ROUNDS):
        excess = d[:, :k] @ beta[:k]
        excess = excess - excess.min()
        h = float(np.median(excess))
        if not h > 0:
            break
        w = 1.0 / (1.0 + (excess / h) ** 2)
        beta = _wls(d, v, w)
    return beta, w


BATCH = 100
"""Resamples refitted together in one batch of array operations (from ``GRAM_ROWS`` trials
on): a few arrays of ``BATCH`` × trials floats, 8 MB each at 10,000 trials."""


def _solve(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve a stack of p × p normal equations (least squares where one is singular)."""
    try:
        return np.linalg.solve(g, r[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.array([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(g, r, strict=True)])


def _resampled_fits(
    d: np.ndarray, v: np.ndarray, k: int, picks: list[np.ndarray]
) -> list[np.ndarray]:
    """:func:`_fit` of each resample (rows ``picks`` of ``d`` and ``v``), many at once: a
    resample is the data weighted by how often each row was drawn, so each weighted least
    squares is one row of a product with the rows' outer products, and the reweighting's
    median is taken over the rows drawn, as in :func:`_fit`."""
    n, p = d.shape
    outer = (d[:, :, None] * d[:, None, :]).reshape(n, p * p)
    dv = d * v[:, None]
    out: list[np.ndarray] = []
    for start in range(0, len(picks), BATCH):
        i = np.stack(picks[start : start + BATCH])
        rows = (np.arange(len(i))[:, None] * n + i).ravel()
        drawn = np.bincount(rows, minlength=len(i) * n).reshape(len(i), n).astype(float)

        def wls(w: np.ndarray, drawn: np.ndarray = drawn) -> np.ndarray:
            cw = drawn * w
            return _solve((cw @ outer).reshape(-1, p, p), cw @ dv)

        beta = wls(np.ones(drawn.shape))
        going = np.ones(len(i), dtype=bool)
        for _ in range(REWEIGHT_ROUNDS):
            excess = beta[:, :k] @ d[:, :k].T
            excess = excess - np.where(drawn > 0, excess, np.inf).min(axis=1, keepdims=True)
            h = np.median(np.take_along_axis(excess, i, axis=1), axis=1)
            going &= h > 0
            if not going.any():
                break
            w = 1.0 / (1.0 + (excess / np.where(going, h, 1.0)[:, None]) ** 2)
            beta = np.where(going[:, None], wls(w), beta)
        out += list(beta)
    return out


def _rss(cols: np.ndarray, v: np.ndarray) -> float:
    beta, *_ = np.linalg.lstsq(cols, v, rcond=None)
    r = v - cols @ beta
    return float(r @ r)


def _partial_f(d: np.ndarray, v: np.ndarray, drop: list[int]) -> float:
    """p-value of the F-test that the columns ``drop`` add nothing anywhere in the region.

    Unweighted: whether lr or weight decay matters is a question about the whole region, and
    the fit's locality weights would discount exactly the trials where it shows.
    """
    n, p = d.shape
    if n - p <= 0 or not drop:
        return 1.0
    keep = [i for i in range(p) if i not in drop]
    full = _rss(d, v)
    reduced = _rss(d[:, keep], v)
    df1, df2 = len(drop), n - p
    if full <= 1e-300:
        return 0.0 if reduced > 0 else 1.0
    f = ((reduced - full) / df1) / (full / df2)
    return float(scipy_stats().f.sf(max(f, 0.0), df1, df2))


def _bic(cols: np.ndarray, v: np.ndarray) -> float:
    n, p = cols.shape
    return n * math.log(max(_rss(cols, v), 1e-300) / n) + p * math.log(n)


def select_terms(
    d: np.ndarray, z: np.ndarray, blocks: list[tuple[str, list[int]]], v: np.ndarray
) -> tuple[list[int], list[str]]:
    """Columns of ``z`` to add to the base design ``d``: forward selection by BIC, one
    parameter at a time, its linear term alone or with its quadratic; a candidate enters only
    when it lowers the BIC, its partial F-test has p < ALPHA / (candidates left) (Bonferroni:
    in a one-at-a-time design a parameter's effect rests on one or two trials, where the BIC
    alone lets noise in), and the model still meets :func:`service.verdict.min_trials`."""
    n = len(v)
    chosen: list[int] = []
    names: list[str] = []
    current = d
    left = list(blocks)
    while left:
        base = _bic(current, v)
        best: tuple[float, int, list[int]] | None = None
        for i, (_name, cols) in enumerate(left):
            for k in sorted({1, len(cols)}):
                cand = np.column_stack([current, z[:, cols[:k]]])
                if n < min_trials(cand.shape[1]) or np.linalg.matrix_rank(cand) < cand.shape[1]:
                    continue
                b = _bic(cand, v)
                p = _partial_f(cand, v, list(range(current.shape[1], cand.shape[1])))
                if b < base and p < ALPHA / len(left) and (best is None or b < best[0]):
                    best = (b, i, cols[:k])
        if best is None:
            break
        _, i, cols = best
        name = left.pop(i)[0]
        chosen += cols
        names += [name] if len(cols) == 1 else [name, f"{name}²"]
        current = np.column_stack([current, z[:, cols]])
    return chosen, names


def _percentiles(a: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.nanpercentile(a, [tail, 100 - tail])
    return float(lo), float(hi)


class _Region:
    """Where answers may lie: the fitted trials' convex hull (or per-axis ranges) in
    (ln lr, second coordinate), below the lr cap."""

    def __init__(self, obs: Observations, box: Box, pos: np.ndarray) -> None:
        x, v = obs.x[pos], box.v_of(obs.x[pos], obs.y[pos])
        self.x_lo, self.x_hi = float(obs.x.min()), float(obs.x.max())
        self.capped = obs.x_cap is not None and obs.x_cap <= self.x_hi + 1e-12
        if self.capped:
            self.x_hi = float(obs.x_cap)
        self.v_lo, self.v_hi = float(v.min()), float(v.max())
        self.hull = None
        self.sx = (self.x_hi - self.x_lo) or 1.0
        self.sv = (self.v_hi - self.v_lo) or 1.0
        if obs.design == "surface" and len(x) >= 4:
            pts = np.column_stack([(x - self.x_lo) / self.sx, (v - self.v_lo) / self.sv])
            try:
                from scipy.spatial import Delaunay, QhullError

                self.hull = Delaunay(pts)
            except (QhullError, ValueError):
                self.hull = None

    def inside(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Whether points (ln lr, second coordinate) lie in the region."""
        eps = 1e-9
        ok = (x >= self.x_lo - eps) & (x <= self.x_hi + eps)
        ok &= (v >= self.v_lo - eps) & (v <= self.v_hi + eps)
        if self.hull is not None:
            pts = np.column_stack([(x - self.x_lo) / self.sx, (v - self.v_lo) / self.sv])
            ok &= self.hull.find_simplex(pts, tol=1e-9) >= 0
        return ok

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid points (ln lr, second coordinate) inside the region."""
        gx, gv = np.meshgrid(
            np.linspace(self.x_lo, self.x_hi, GRID), np.linspace(self.v_lo, self.v_hi, GRID)
        )
        gx, gv = gx.ravel(), gv.ravel()
        keep = self.inside(gx, gv)
        return gx[keep], gv[keep]


def _insufficient(
    n: int, n_trials: int, n_coef: int, reason: str | None = None, **extra: Any
) -> Surface:
    d = decide(FitStats(n=n, n_coef=n_coef, n_trials=n_trials))
    return Surface(
        "insufficient",
        reason or d.reason,
        n_trials,
        n_coef,
        n_min=min_trials(n_coef),
        n_configs=n,
        **extra,
    )


def fit_surface(obs: Observations, box: Box, *, bootstrap: int = BOOTSTRAP) -> Surface:
    """Fit the surface, derive the valley, optimum and intervals, and give a verdict
    (``insufficient``, saying why, where the least-squares solver fails on the values).

    Values must be "lower is better" (negate a maximised objective first); diverged runs
    must already be left out. Deterministic: the bootstrap uses a fixed seed.
    """
    try:
        return _fit_surface(obs, box, bootstrap)
    except np.linalg.LinAlgError as e:
        return _insufficient(
            distinct_configs(obs), len(obs.value), 5, f"the fit failed on these values ({e})"
        )


def _fit_surface(obs: Observations, box: Box, bootstrap: int) -> Surface:
    original = obs
    n_trials = len(obs.value)
    n = distinct_configs(obs)
    nd = obs.nodecay if obs.nodecay is not None and obs.nodecay.any() else None
    pos = ~nd if nd is not None else np.ones(n_trials, dtype=bool)
    wd_name = "weight decay" if box.second == "weight_decay" else "lr·weight decay"
    smallest = 5 + (nd is not None)  # the additive model
    if n < min_trials(smallest):
        return _insufficient(n, n_trials, smallest)
    reach = float(np.max(np.abs(obs.value)))
    if not reach <= VALUE_LIMIT:
        return _insufficient(
            n,
            n_trials,
            smallest,
            f"objective values as large as {reach:.3g} cannot be fitted (a least-squares fit "
            f"squares them; at most {VALUE_LIMIT:.0e} in size)",
        )
    if n == 0 or np.ptp(obs.x) <= 1e-9 or pos.sum() == 0 or np.ptp(obs.y[pos]) <= 1e-9:
        which = "lr" if n == 0 or np.ptp(obs.x) <= 1e-9 else wd_name
        return _insufficient(n, n_trials, 6, f"every fitted trial has the same {which}")
    if obs.x_cap is not None and np.ptp(obs.x[obs.x <= obs.x_cap + 1e-12]) <= 1e-9:
        return _insufficient(
            n, n_trials, 6, "every trial below the lr where training diverges has the same lr"
        )
    additive = obs.design == "one_at_a_time"
    n_full = (5 if additive else 6) + (nd is not None)
    if not additive and n < min_trials(n_full) and n >= min_trials(n_full - 1):
        additive = True  # too few trials for the interaction: the additive model
    scale = _Scale(obs.x, obs.y[pos])
    names, d = scale.design(obs.x, obs.y, additive, nd)
    log_scale = obs.nonneg and _log_fits_better(d, obs.value)
    if log_scale:
        best = obs.best_mean
        obs = replace(
            obs,
            value=np.log(obs.value),
            best_mean=math.log(best) if best is not None and best > 0 else None,
            nonneg=False,
        )
    back = np.exp if log_scale else (lambda a: a)
    k = d.shape[1]
    if n < min_trials(k):
        return _insufficient(n, n_trials, k)
    blocks = obs.z_blocks
    if blocks is None:
        blocks = [(f"z{i}", [i]) for i in range(obs.z.shape[1])]
    z_cols, terms = select_terms(d, obs.z, blocks, obs.value) if obs.z.size else ([], [])
    if z_cols:
        d = np.column_stack([d, obs.z[:, z_cols]])
    z_ref = obs.z_ref[z_cols] if z_cols else np.zeros(0)
    n_coef = d.shape[1]
    idx = {name: i for i, name in enumerate(names)}

    beta, w = _fit(d, obs.value, k)
    resid = obs.value - d @ beta
    dof = max(n_trials - n_coef, 1)
    residual_sd = math.sqrt(float((w * resid * resid).sum() / w.sum()) * n_trials / dof)
    lr_cols = [idx[c] for c in ("u", "uu", "uw") if c in idx]
    wd_cols = [idx[c] for c in ("w", "ww", "uw", "nd") if c in idx]
    p_wd = _partial_f(d, obs.value, wd_cols)
    p_lr = _partial_f(d, obs.value, lr_cols)

    # Bootstrap: resample trials (a one-at-a-time design: resample residuals, which keeps
    # every level of every axis in each refit).
    rng = np.random.default_rng(0)
    betas = [beta]
    fitted = d @ beta
    inflate = math.sqrt(n_trials / dof)
    picks: list[np.ndarray] = []
    for _ in range(bootstrap):
        if obs.design == "one_at_a_time":
            v_star = fitted + inflate * resid[rng.integers(0, n_trials, n_trials)]
            betas.append(_fit(d, v_star, k)[0])
            continue
        i = rng.integers(0, n_trials, n_trials)
        if np.ptp(obs.x[i]) <= 1e-9 or np.ptp(obs.y[i][pos[i]]) <= 1e-9:
            continue
        if n_trials >= GRAM_ROWS:  # refitted together below: the same fits, 3× faster
            picks.append(i)
            continue
        betas.append(_fit(d[i], obs.value[i], k)[0])
    betas += _resampled_fits(d, obs.value, k, picks)
    coefs = np.array(betas)  # row 0: the point estimate

    def col(name: str) -> np.ndarray:
        return coefs[:, idx[name]] if name in idx else np.zeros(len(coefs))

    shift = z_ref @ coefs[:, k:].T if z_cols else np.zeros(len(coefs))
    quad = coefs[:, : k - (nd is not None)]

    def predict(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The surface at points (x, y), one column per fit."""
        _, dd = scale.design(x, y, additive, None)
        return dd @ quad.T + shift[None, :]

    def predict_own(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The surface at one point per fit (x[f], y[f]) under fit f."""
        _, dd = scale.design(x, y, additive, None)
        return (dd * quad).sum(axis=1) + shift

    region = _Region(obs, box, pos)
    gx, gv = region.grid()
    if len(gx) == 0:
        return _insufficient(
            n, n_trials, n_coef, "the trials span no region to search an optimum in"
        )
    gy = box.y_of(gx, gv)
    pred = predict(gx, gy)  # (grid, fits)
    best = pred.argmin(axis=0)
    opt_x, opt_y = gx[best], gy[best]

    # Off the grid: where a fit's quadratic has a minimum (positive definite) inside the
    # region, that exact point; elsewhere, from the grid's best point, exact 1-D minimisations
    # in y (at the point's lr) and in x (at its y), each kept only inside the region.
    b, c, d2, e, g = col("u"), col("w"), col("uu"), col("uw"), col("ww")
    curved, curved_x = g > 0, d2 > 0
    det = 4 * d2 * g - e * e
    bowl = curved & curved_x & (det > 0)
    safe = np.where(bowl, det, 1.0)
    u_star = (-2 * g * b + e * c) / safe
    w_star = (-2 * d2 * c + e * b) / safe
    x_star, y_star = scale.mx + scale.sx * u_star, scale.my + scale.sy * w_star
    exact = bowl & region.inside(x_star, box.v_of(x_star, y_star))
    opt_x, opt_y = np.where(exact, x_star, opt_x), np.where(exact, y_star, opt_y)
    for _ in range(10):
        u = (opt_x - scale.mx) / scale.sx
        exact_y = scale.my + scale.sy * -(c + e * u) / np.where(curved, 2 * g, 1.0)
        ok = ~exact & curved & region.inside(opt_x, box.v_of(opt_x, exact_y))
        opt_y = np.where(ok, exact_y, opt_y)
        ww = (opt_y - scale.my) / scale.sy
        exact_x = scale.mx + scale.sx * -(b + e * ww) / np.where(curved_x, 2 * d2, 1.0)
        ok = ~exact & curved_x & region.inside(exact_x, box.v_of(exact_x, opt_y))
        opt_x = np.where(ok, exact_x, opt_x)

    # Which edges of the region each fit's optimum is pushed against: a step outward leaves
    # the region and the fit's surface falls that way.
    opt_v = box.v_of(opt_x, opt_y)
    here = predict_own(opt_x, opt_y)
    hx = 1.5 * (region.x_hi - region.x_lo) / (GRID - 1)
    hv = 1.5 * (region.v_hi - region.v_lo) / (GRID - 1)
    hi_lr = "lr_stability" if region.capped else "lr_high"
    edge_names = [(hi_lr, hx, 0.0), ("lr_low", -hx, 0.0)]
    edge_names += [(f"{box.second}_high", 0.0, hv), (f"{box.second}_low", 0.0, -hv)]
    on_edge: dict[str, np.ndarray] = {}
    for name, dx, dv in edge_names:
        px, pv = opt_x + dx, opt_v + dv
        out = ~region.inside(px, pv)
        on_edge[name] = out & (predict_own(px, box.y_of(px, pv)) < here)
    refits = slice(1, None) if len(coefs) > 1 else slice(None)
    edges0 = [name for name in on_edge if on_edge[name][0]]
    share = {name: float(on_edge[name][refits].mean()) for name in on_edge}
    lr_edges = [x for x in edges0 if x.startswith("lr_") and share[x] >= EDGE_SHARE]
    wd_edges = [x for x in edges0 if x.startswith(box.second) and share[x] >= EDGE_SHARE]
    # An edge of the trials' convex hull that is not the axis's extreme (a diagonal border
    # of a random design): said as such, not as "the highest lr tried".
    extreme = {
        hi_lr: opt_x[0] >= region.x_hi - hx,
        "lr_low": opt_x[0] <= region.x_lo + hx,
        f"{box.second}_high": opt_v[0] >= region.v_hi - hv,
        f"{box.second}_low": opt_v[0] <= region.v_lo + hv,
    }
    hull_edges = frozenset(x for x in lr_edges + wd_edges if not extreme[x])
    lr_any = on_edge[hi_lr] | on_edge["lr_low"]
    wd_any = on_edge[f"{box.second}_high"] | on_edge[f"{box.second}_low"]

    def wd_of(yy: np.ndarray) -> np.ndarray:
        return np.exp(yy) if obs.wd_scale == "log" else yy

    def interval(values: np.ndarray) -> Interval:
        lo, hi = _percentiles(values[1:] if len(values) > 1 else values)
        return Interval(float(values[0]), lo, hi)

    # The surface's height at the optimum found, across refits (the minimum of each refit
    # would be biased low: a minimum of noisy surfaces).
    value_draws = back(predict(opt_x[:1], opt_y[:1]).ravel())
    # The fitted surface's minimum is biased low: it sits where the noise happened to dip.
    # Each refit's minimum at its own optimum shows by how much (the bootstrap's estimate of
    # that optimism), and the value and its interval are moved up by it.
    own_min = back(here)
    if len(own_min) > 1:
        optimism = float(np.mean(own_min[1:]) - own_min[0])
        if optimism < 0:
            value_draws = value_draws - optimism
    vd = value_draws
    value = interval(value_draws)
    value_refused, value_note = _value_check(value, original)
    slope_all = np.where(curved, -e / np.where(curved, 2 * g, 1.0) * scale.sy / scale.sx, np.nan)
    share_curved = float(curved[refits].mean())
    slope = None
    if not additive and obs.wd_scale == "log" and curved[0] and share_curved >= AGREE:
        slope = interval(slope_all)
    walls = _walls(obs, d[:, :k], beta, scale, pos, z_cols) if slope is not None else {}
    stats_in = FitStats(
        n=n,
        n_coef=n_coef,
        design=obs.design,
        additive=additive,
        p_lr=p_lr,
        p_wd=p_wd,
        lr_edge=lr_edges[0] if lr_edges else None,
        wd_edge=wd_edges[0] if wd_edges else None,
        edge_share=max([share[x] for x in lr_edges + wd_edges], default=0.0),
        slope=(slope.value, slope.lo, slope.hi) if slope else None,
        share_curved=share_curved,
        walls=walls,
        lr_stable_max=math.exp(obs.x_cap) if obs.x_cap is not None else None,
        lr_diverged_min=obs.lr_diverged_min,
        value_refused=value_refused,
        hull_edges=hull_edges,
        edge_contradicted=_edge_contradicted(
            obs, region, box, lr_edges + wd_edges, residual_sd, back
        ),
        n_trials=n_trials,
        second=box.second,
    )
    decision = decide(stats_in)
    y_pos = obs.y[pos]
    surface = Surface(
        decision.verdict,
        decision.reason,
        n_trials,
        n_coef,
        n_configs=n,
        draws={"ln_lr": opt_x, "ln_wd": np.log(np.maximum(wd_of(opt_y), 1e-300)), "value": vd},
        lr=interval(np.exp(opt_x)),
        weight_decay=interval(wd_of(opt_y)),
        value=value,
        on_boundary=bool(edges0),
        boundary_edges=edges0,
        residual_sd=residual_sd,
        p_weight_decay=p_wd,
        p_lr=p_lr,
        lr_inside=float(1 - lr_any[refits].mean()),
        weight_decay_inside=float(1 - wd_any[refits].mean()),
        shown=decision.show,
        design=obs.design,
        additive=additive,
        n_min=min_trials(n_coef),
        terms=terms,
        value_note=value_note,
        support={
            "lr": [math.exp(region.x_lo), math.exp(region.x_hi)],
            "weight_decay": [float(v) for v in wd_of(np.array([y_pos.min(), y_pos.max()]))],
        },
        wd_scale=obs.wd_scale,
    )
    if decision.verdict == "boundary":
        surface.on_boundary = True
        surface.boundary_edges = sorted(set(edges0) | set(lr_edges + wd_edges)) or [
            f"{box.second}_{side}" for side, wall in walls.items() if wall == "flat"
        ]
    if "slope" in decision.show and slope is not None:
        surface.slope = slope
        surface.product = interval(np.exp(opt_x + opt_y))
        surface.alpha0 = interval(np.sqrt(2 * np.exp(opt_x + opt_y)))
        if edges0:
            surface.reason += (
                f"; the optimum along the valley sits on the edge of the trials' region "
                f"({', '.join(edges0)}), so the valley may go on beyond it"
            )
    if "valley" in decision.show:
        surface.valley = _valley(region, box, scale, coefs, curved)
    surface.no_decay = _no_decay(obs, nd, scale, col, shift, opt_x, here, predict_own, back)
    if log_scale:
        surface.value_scale = "log"
        span = math.log10(float(original.value.max() / original.value.min()))
        surface.scale_note = (
            f"the objective spans {span:.1f} decades and the model describes its log better "
            "(Box–Cox likelihood), so the surface is fitted to its log (the residual sd is on "
            "that scale); predicted values are back on the objective's own scale"
        )
    return surface


LOG_SPAN = 10.0
"""Only a positive objective whose largest value is at least this many times its smallest
is considered for the log scale."""


def _log_fits_better(d: np.ndarray, value: np.ndarray) -> bool:
    """Whether a positive objective spanning a decade or more (:data:`LOG_SPAN`) is better
    described by the model on its log scale than on its own: Box–Cox's profile likelihood
    at λ = 0 against λ = 1 (least squares on the full design; the log's likelihood carries
    the Jacobian ``−Σ ln y``). A loss that spans decades is rarely a quadratic in its own units
    (its worst trials dominate such a fit), and on the log scale predictions stay positive;
    a surface that is quadratic in its own units keeps them."""
    if not len(value) or not (value > 0).all() or value.max() < LOG_SPAN * value.min():
        return False
    n = len(value)
    logs = np.log(value)
    rss_raw, rss_log = _rss(d, value), _rss(d, logs)
    if not (rss_raw > 0 and rss_log > 0):
        return False
    raw = -n / 2 * math.log(rss_raw / n)
    log = -n / 2 * math.log(rss_log / n) - float(logs.sum())
    return log > raw


def distinct_configs(obs: Observations) -> int:
    """How many distinct configs the observations hold (repeated seeds of one config count
    once: they measure the noise, not the surface's shape)."""
    if len(obs.value) == 0:
        return 0
    cols = [obs.x, obs.y, obs.z.reshape(len(obs.value), -1)]
    if obs.nodecay is not None:
        cols.append(obs.nodecay.astype(float))
    return len(np.unique(np.round(np.column_stack(cols), 9), axis=0))


EDGE_BAND = 1 / 3
"""The share of the trials' range next to an edge that counts as "near" it."""
EDGE_GAP_SDS = 2.0
"""How many residual sds worse than the best config every trial near an edge must be for
the data to contradict an optimum fitted at that edge."""


def _edge_contradicted(
    obs: Observations, region: _Region, box: Box, edges: list[str], sd: float, back: Any
) -> str | None:
    """Whether the trials near an edge the fit pushes the optimum against are all clearly
    worse than the best config (by ``EDGE_GAP_SDS`` residual sds): then the optimum at that
    edge is the quadratic's, not the data's. The divergence edge is never contradicted here
    (its trials are by construction the ones just below it)."""
    if obs.best_mean is None or not sd > 0:
        return None
    v = box.v_of(obs.x, obs.y)
    for edge in edges:
        if edge == "lr_stability":
            continue
        lr_axis = edge.startswith("lr_") and not edge.startswith("lr_wd")
        coord, lo, hi = (
            (obs.x, region.x_lo, region.x_hi) if lr_axis else (v, region.v_lo, region.v_hi)
        )
        band = EDGE_BAND * (hi - lo)
        near = coord <= lo + band if edge.endswith("_low") else coord >= hi - band
        if obs.nodecay is not None and not lr_axis:
            near &= ~obs.nodecay
        if not near.any():
            continue
        closest = float(obs.value[near].min())
        if closest - obs.best_mean > EDGE_GAP_SDS * sd:
            s = obs.sign
            return (
                f"every trial near that edge is worse than the best config (at best "
                f"{s * float(back(closest)):.4g} against {s * float(back(obs.best_mean)):.4g}, "
                f"a gap of more than {EDGE_GAP_SDS:g} residual sds)"
            )
    return None


def _value_check(value: Interval, obs: Observations) -> tuple[str | None, str | None]:
    """Whether the predicted objective must be refused, and a note on its interval (clipping
    a loss's interval at 0 happens here, in place)."""
    note = None
    if obs.nonneg:
        if value.value < 0:
            return "the fitted surface predicts a negative loss there, which is impossible", None
        if value.lo < 0:
            value.lo = 0.0
            note = "the predicted objective's interval is clipped at 0 (a loss is never negative)"
    if obs.best_mean is not None and value.hi < obs.best_mean - obs.best_half:
        s = obs.sign
        return (
            f"the fitted surface predicts {s * value.value:.4g} (90% CI to {s * value.hi:.4g}) "
            f"at its optimum, better than the best observed mean {s * obs.best_mean:.4g} by "
            "more than both intervals allow: the quadratic does not fit there"
        ), note
    return None, note


def _no_decay(
    obs: Observations,
    nd: np.ndarray | None,
    scale: _Scale,
    col: Any,
    shift: np.ndarray,
    opt_x: np.ndarray,
    here: np.ndarray,
    predict: Any,
    back: Any,
) -> dict[str, Any] | None:
    """Weight decay 0 against the optimum: the fitted objective without decay at the
    optimum's lr, and how much worse than the optimum it is (lower is better units)."""
    if obs.wd_scale == "linear":
        zero = obs.y <= 0
        if not zero.any():
            return None
        at_zero = predict(opt_x, np.zeros_like(opt_x))
        how = "as points of the linear weight-decay axis (its 0 included)"
    else:
        if nd is None:
            return None
        zero = nd
        u = (opt_x - scale.mx) / scale.sx
        at_zero = col("1") + col("u") * u + col("uu") * u * u + col("nd") + shift
        how = "as their own 'no decay' level (an indicator term), since ln 0 is not a number"
    at_zero, here = back(at_zero), back(here)
    diff = at_zero - here
    lo, hi = _percentiles(diff[1:] if len(diff) > 1 else diff)
    vlo, vhi = _percentiles(at_zero[1:] if len(at_zero) > 1 else at_zero)
    if lo > 0:
        verdict = "weight decay helps: no decay is worse than the optimum"
    elif hi < 0:
        verdict = "no decay is better than the fitted optimum with decay"
    else:
        verdict = "no decay is not detectably worse than the optimum"
    return {
        "n": int(zero.sum()),
        "mean": float(back(obs.value[zero]).mean()),
        "value": float(at_zero[0]),
        "value_ci": [vlo, vhi],
        "difference": float(diff[0]),
        "difference_ci": [lo, hi],
        "note": f"{int(zero.sum())} trial(s) with weight decay 0 entered the fit {how}; {verdict}",
    }


WALL_MARGIN = 0.5
"""How far (in ln weight decay) beyond the fitted valley a trial must lie to test a wall."""
MIN_WALL_TRIALS = 7


def _walls(
    obs: Observations,
    d: np.ndarray,
    beta: np.ndarray,
    scale: _Scale,
    pos: np.ndarray,
    z_cols: list[int],
) -> dict[str, str]:
    """Whether the trials themselves rise on each side of the fitted valley.

    A quadratic curves up on both sides of its valley by construction, even where the truth
    is flat on one side (weight decay that only hurts past a threshold). So the data decide,
    locally: on each side, the trials beyond ``WALL_MARGIN`` from the fitted valley get their
    own small fit ``value ~ 1 + x + x² + y`` (and the selected other parameters), and the
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
        ("low", pos & (offset < -WALL_MARGIN), -1.0),
        ("high", pos & (offset > WALL_MARGIN), 1.0),
    ):
        cols = [np.ones(mask.sum()), u[mask], u[mask] ** 2, offset[mask]]
        cols += [obs.z[mask][:, j] for j in z_cols]
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
        out[side] = "shown" if scipy_stats().t.sf(t, n - p) < ALPHA else "flat"
    return out


def _valley(
    region: _Region, box: Box, scale: _Scale, coefs: np.ndarray, curved: np.ndarray
) -> list[dict]:
    """The best ln λ for each ln η across the trials' region, with its 90% band over refits
    (only where the centre lies inside the region)."""
    xs = np.linspace(region.x_lo, region.x_hi, 41)
    u = (xs - scale.mx) / scale.sx
    ok = coefs[curved]
    c, e, g = ok[:, 2], ok[:, 4], ok[:, 5]
    w = -(c[:, None] + e[:, None] * u[None, :]) / (2 * g[:, None])  # (fits, xs)
    ys = scale.my + scale.sy * w
    centre = scale.my + scale.sy * (-(coefs[0, 2] + coefs[0, 4] * u) / (2 * coefs[0, 5]))
    lo, hi = np.nanpercentile(ys[1:] if len(ys) > 1 else ys, [5, 95], axis=0)
    inside = region.inside(xs, box.v_of(xs, centre))
    out = []
    for k, x in enumerate(xs):
        if inside[k]:
            y_lo = box.y_of(x, region.v_lo)
            y_hi = box.y_of(x, region.v_hi)
            out.append(
                {
                    "lr": float(math.exp(x)),
                    "weight_decay": float(math.exp(centre[k])),
                    "weight_decay_lo": float(math.exp(max(lo[k], y_lo))),
                    "weight_decay_hi": float(math.exp(min(hi[k], y_hi))),
                }
            )
    return out
