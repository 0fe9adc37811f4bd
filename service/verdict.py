"""The lr × weight-decay answer's verdict: one pure function from the fit's statistics to the
verdict, its reason, and which numbers the answer may show.

Every client (the API, the CLI, the dashboard map) shows only what :func:`decide` allows, so
the verdict, the reason and the numbers never contradict each other:

- ``insufficient``: too few trials for the model (fewer than :func:`min_trials`), or neither
  lr nor weight decay moves the objective beyond the noise — no optimum, no slope;
- ``boundary``: an axis that matters has its best value pushed against the edge of the
  trials' region (or against the lr where training diverges) in most refits — the reason
  names the edge and the way to extend; no optimum is shown (it would come from outside);
- ``valley``: both matter, the optimum is inside, and the best weight decay moves with lr
  along a line whose slope is pinned down — everything is shown, the valley band included;
- ``per_axis``: both matter and the optimum is inside, but the trade-off (the slope) is not
  identified (a one-at-a-time design, too few trials for the interaction, or a slope interval
  that includes 0 or is too wide) — the optimum's lr and weight decay, no slope, no valley;
- ``lr_only`` / ``wd_only``: only one axis moves the objective — only that axis's optimum.

The predicted objective at the optimum is shown only when the fit did not refuse it (see
``FitStats.value_refused``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["valley", "per_axis", "lr_only", "wd_only", "boundary", "insufficient"]
VERDICTS: tuple[str, ...] = ("valley", "per_axis", "lr_only", "wd_only", "boundary", "insufficient")
Shown = Literal["lr", "weight_decay", "value", "slope", "valley"]

ALPHA = 0.05
"""The significance level of the tests of whether lr / weight decay move the objective."""
MAX_SLOPE_CI_WIDTH = 2.5
"""A valley slope interval wider than this says too little to transfer."""


def min_trials(n_coef: int) -> int:
    """The fewest usable trials a model with ``n_coef`` coefficients is fitted to: twice its
    coefficients plus two (at least ``n_coef + 2`` residual degrees of freedom)."""
    return 2 * n_coef + 2


@dataclass(frozen=True)
class FitStats:
    """What the verdict is decided from (every field a statistic of the fit)."""

    n: int
    n_coef: int
    design: Literal["surface", "one_at_a_time"] = "surface"
    additive: bool = False
    """The model has no lr × weight-decay interaction (one-at-a-time design, or too few
    trials for it)."""
    p_lr: float | None = None
    p_wd: float | None = None
    lr_edge: str | None = None
    """``lr_low`` / ``lr_high`` / ``lr_stability`` when most refits put the optimum there."""
    wd_edge: str | None = None
    """``weight_decay_low`` / ``…_high`` (or ``lr_wd_product_…``) likewise."""
    edge_share: float = 0.0
    slope: tuple[float, float, float] | None = None
    """The valley slope ``(value, lo, hi)``, when most refits curve up in weight decay."""
    share_curved: float = 0.0
    walls: dict[str, str] = field(default_factory=dict)
    """Per side of the valley (``low``/``high``): ``shown``, ``flat`` or ``few``."""
    lr_stable_max: float | None = None
    lr_diverged_min: float | None = None
    value_refused: str | None = None
    """Why the predicted objective is not shown (None: it may be)."""
    hull_edges: frozenset[str] = frozenset()
    """Of ``lr_edge``/``wd_edge``, those that are a border of the trials' convex hull rather
    than the axis's extreme value tried."""
    edge_contradicted: str | None = None
    """Why the fitted optimum's edge contradicts the trials themselves (the trials near that
    edge are clearly worse than the best config): then the quadratic does not describe them."""
    n_trials: int | None = None
    """Trials fitted, when ``n`` counts distinct configs (repeated seeds add noise
    information, not curvature)."""
    second: str = "weight_decay"


@dataclass(frozen=True)
class Decision:
    """A verdict, its one-paragraph reason, and the numbers the answer may show."""

    verdict: Verdict
    reason: str
    show: frozenset[str] = frozenset()


def _edge_text(edge: str, s: FitStats) -> str:
    if edge == "lr_stability":
        return (
            f"the best lr is just below where training diverges: lr ≤ {s.lr_stable_max:.3g} "
            f"(runs diverged from lr {s.lr_diverged_min:.3g} up); trials between the two would "
            "tell how close to that edge to go"
        )
    axis, side = edge.rsplit("_", 1)
    name = {"lr": "lr", "weight_decay": "weight decay", "lr_wd_product": "lr·weight decay"}[axis]
    way = "higher" if side == "high" else "lower"
    if edge in s.hull_edges:
        return (
            f"the optimum lies on the border of the region the trials cover, on its {side}-"
            f"{name} side ({edge}), though not at the {'highest' if side == 'high' else 'lowest'} "
            f"{name} tried: add trials beyond that border (towards {way} {name} around the best "
            "configs)"
        )
    return (
        f"the best {name} lies at the {side} edge of the trials run ({edge}): extend the "
        f"search to {way} {name}"
    )


def decide(s: FitStats) -> Decision:
    """The verdict, reason and shown numbers for a fit's statistics (pure; see the module)."""
    need = min_trials(s.n_coef)
    if s.n < need:
        runs = f" ({s.n_trials} trials)" if s.n_trials is not None and s.n_trials != s.n else ""
        return Decision(
            "insufficient",
            f"{s.n} distinct configs fitted{runs}; the model has {s.n_coef} coefficients, so it "
            f"needs at least {need} distinct configs (twice its coefficients plus two; repeated "
            "seeds of one config measure the noise, not the surface's shape)",
        )
    lr_m = s.p_lr is not None and s.p_lr < ALPHA
    wd_m = s.p_wd is not None and s.p_wd < ALPHA
    p_lr = "n/a" if s.p_lr is None else f"{s.p_lr:.2g}"
    p_wd = "n/a" if s.p_wd is None else f"{s.p_wd:.2g}"
    if not lr_m and not wd_m:
        return Decision(
            "insufficient",
            f"neither lr (F-test p = {p_lr}) nor weight decay (p = {p_wd}) moves the objective "
            "beyond the noise: more trials, or a wider box",
        )
    valley = _valley(s, wd_m, p_lr, p_wd)
    if valley is not None and (valley.verdict == "boundary" or not s.value_refused):
        return valley
    if valley is not None:
        return Decision(
            "valley",
            valley.reason + f"; no predicted objective is shown: {s.value_refused}",
            valley.show - {"value"},
        )
    edges = [s.lr_edge] if lr_m and s.lr_edge else []
    edges += [s.wd_edge] if wd_m and s.wd_edge else []
    if edges and s.edge_contradicted:
        return Decision(
            "insufficient",
            f"the fitted surface puts the optimum at the edge of the trials ({', '.join(edges)}), "
            f"but {s.edge_contradicted}: the quadratic does not describe these trials, so no "
            "optimum is given — more trials around the best config would show its shape",
        )
    if edges:
        return Decision(
            "boundary",
            "; ".join(_edge_text(e, s) for e in edges)
            + f" (in {s.edge_share:.0%} of refits); no optimum is given from outside the trials",
        )
    decision = _interior(s, lr_m, wd_m, p_lr, p_wd)
    if s.value_refused and "value" in decision.show:
        return Decision(
            decision.verdict,
            decision.reason + f"; no predicted objective is shown: {s.value_refused}",
            decision.show - {"value"},
        )
    return decision


def _valley(s: FitStats, wd_m: bool, p_lr: str, p_wd: str) -> Decision | None:
    """A ``valley`` (or a one-sided valley: ``boundary``) when the slope is pinned down, the
    trials rise on both sides of it, and weight decay matters; else None. A valley's optimum
    may sit on the region's edge along the valley: the answer stays a valley."""
    if not wd_m or s.slope is None or s.additive or s.design != "surface":
        return None
    v, lo, hi = s.slope
    flat = [side for side, w in s.walls.items() if w == "flat"]
    if flat:
        side = flat[0]
        more_or_less = "less" if side == "low" else "more"
        return Decision(
            "boundary",
            f"weight decay matters (F-test p = {p_wd}), but the trials show no rise on the "
            f"{side}-weight-decay side of the fitted valley: within the trials, {more_or_less} "
            f"weight decay is not detectably worse, so the best weight decay may lie at or past "
            f"their {side} edge ({s.second}_{side}) — extend the search that way",
        )
    if any(w == "few" for w in s.walls.values()) or lo <= 0 <= hi:
        return None
    if hi - lo > MAX_SLOPE_CI_WIDTH:
        return None
    return Decision(
        "valley",
        f"the best weight decay moves with lr along a line of slope {v:.2f} (90% CI "
        f"{lo:.2f} to {hi:.2f}); weight decay matters (F-test p = {p_wd}), lr's F-test "
        f"p = {p_lr}",
        frozenset({"lr", "weight_decay", "value", "slope", "valley"}),
    )


def _interior(s: FitStats, lr_m: bool, wd_m: bool, p_lr: str, p_wd: str) -> Decision:
    """The verdict once the optimum lies inside the trials' region on every axis that matters."""
    why_no_slope = ""
    if wd_m and lr_m and s.design == "one_at_a_time":
        why_no_slope = (
            "this is a one-at-a-time design (each trial changes one parameter of a base "
            "config), so each axis's optimum holds the other at the base config, and the "
            "lr–weight-decay trade-off (the valley's slope) is not identifiable: a small 2-D "
            "block around the optimum (e.g. 3 lrs × 3 weight decays) would identify it"
        )
    elif wd_m and lr_m and s.additive:
        why_no_slope = (
            "too few trials for the lr × weight-decay interaction, so how the best weight "
            "decay moves with lr is not estimated: more trials would pin it down"
        )
    elif wd_m and lr_m and s.slope is None:
        why_no_slope = (
            f"only {s.share_curved:.0%} of refits find a best weight decay inside the trials' "
            "region for a given lr, so the trade-off is not pinned down"
        )
    elif wd_m and lr_m and s.slope is not None:
        v, lo, hi = s.slope
        few = [side for side, w in s.walls.items() if w == "few"]
        if few:
            why_no_slope = (
                f"too few trials lie on the {' and '.join(few)}-weight-decay side of the fitted "
                "valley to show the data rise there, so the trade-off is not pinned down"
            )
        elif lo <= 0 <= hi:
            why_no_slope = (
                f"the best weight decay does not move detectably with lr (slope 90% CI "
                f"{lo:.2f} to {hi:.2f} includes 0)"
            )
        else:
            why_no_slope = (
                f"the slope's 90% CI {lo:.2f} to {hi:.2f} is too wide to say how weight decay "
                "trades off with lr: run more trials"
            )
    if lr_m and wd_m:
        return Decision(
            "per_axis",
            f"lr (F-test p = {p_lr}) and weight decay (p = {p_wd}) both move the objective and "
            f"the optimum lies inside the trials' region; {why_no_slope}",
            frozenset({"lr", "weight_decay", "value"}),
        )
    if lr_m:
        return Decision(
            "lr_only",
            f"within the trials' region, weight decay does not move the objective beyond the "
            f"noise (F-test p = {p_wd}); lr does (p = {p_lr}): only the optimum lr is given",
            frozenset({"lr", "value"}),
        )
    return Decision(
        "wd_only",
        f"within the trials' region, lr does not move the objective beyond the noise (F-test "
        f"p = {p_lr}); weight decay does (p = {p_wd}): only the optimum weight decay is given",
        frozenset({"weight_decay", "value"}),
    )
