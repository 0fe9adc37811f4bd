"""Lion against its AdamW baseline arm: each arm's best config by seed mean, their difference
with a 90% interval and a verdict, and each arm's lr and weight-decay optimum (the rule's
surface fitted to that arm's trials alone) compared with the Lion paper's expectation.

How the difference is measured: each arm's best is the config ``/best`` would rank first
among that arm's trials (:func:`service.analysis.ranked_configs`), its mean over the fresh
seeds of a re-evaluation that took no part in ranking it (:data:`service.analysis.BEST_METHOD`).
The interval of Lion's mean − AdamW's mean is a
Welch t interval from each arm's own pooled seed noise (Welch–Satterthwaite degrees of
freedom); when an arm has no repeated config, both arms use the sweep's pooled noise (equal
noise assumed, said in the reason). Picking each arm's best is a selection: a mean over the
runs that picked it is biased towards looking good, which the interval does not cover; the
answer says which arm's mean is over held-out runs and which is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from optuna.trial import FrozenTrial

from service import schemas
from service.analysis import (
    Analysis,
    ConfigRuns,
    Noise,
    config_out,
    group_configs,
    loss_floor,
    pooled_noise,
    ranked_configs,
)
from service.catalog import SweepInfo
from service.errors import Conflict
from service.lazy import scipy_stats
from service.surface import LEVEL, Surface

ARMS = ("lion", "adamw")
NAMES = {"lion": "Lion", "adamw": "AdamW"}
PAPER = (
    "the Lion paper (Chen et al. 2023) finds Lion's best lr 3–10× smaller and its best weight "
    "decay 3–10× larger than AdamW's"
)
LR_EXPECTED = (3.0, 10.0)
"""The paper's range of AdamW's optimum lr / Lion's."""
WD_EXPECTED = (0.1, 1 / 3)
"""The paper's range of AdamW's optimum weight decay / Lion's."""
NO_BASELINE = "the sweep has no AdamW baseline arm: add baseline: adamw to the spec"


@dataclass
class _Arm:
    """One arm's trials, its configs ranked best first, and its fit."""

    optimizer: str
    done: list[FrozenTrial]
    groups: list[ConfigRuns]
    own_noise: Noise
    surface: Surface | None

    @property
    def best(self) -> ConfigRuns | None:
        """The arm's config ranked first (None without a complete trial)."""
        return self.groups[0] if self.groups else None


class Arms:
    """The Lion-versus-AdamW answer of a sweep with a baseline arm."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis

    def answer(self, sweep_id: int) -> schemas.ArmsOut:
        """Each arm's best with its interval, Lion − AdamW with a 90% interval and a verdict,
        and each arm's lr and weight-decay optimum with their AdamW/Lion ratios (409 while the
        sweep has no complete trial)."""
        info = self.analysis.catalog.info(sweep_id)
        return self.analysis.shared(info, "arms", lambda: self._answer(info))

    def _answer(self, info: SweepInfo) -> schemas.ArmsOut:
        sweep_id = info.id
        done = self.analysis.complete_trials(info)
        if not done:
            raise Conflict(f"sweep {sweep_id} has no complete trial yet")
        if info.spec.baseline != "adamw":
            return schemas.ArmsOut(
                baseline=None,
                verdict="not_measured",
                reason=NO_BASELINE,
                lion=None,
                adamw=None,
                difference=None,
                difference_ci=None,
                difference_df=None,
                selection_note="",
                lr_ratio=None,
                weight_decay_ratio=None,
                paper=PAPER,
            )
        arms = {opt: self._arm(info, done, opt) for opt in ARMS}
        shared = pooled_noise(group_configs(info, done))
        if all(a.own_noise.sd is not None for a in arms.values()):
            source = "arm"
            noises = {opt: a.own_noise for opt, a in arms.items()}
        elif shared.sd is not None:
            source = "sweep"
            noises = dict.fromkeys(ARMS, shared)
        else:
            source = "none"
            noises = dict.fromkeys(ARMS, Noise(None, 0))
        outs = {opt: self._arm_out(info, a, noises[opt], source) for opt, a in arms.items()}
        diff, diff_ci, diff_df = _difference(arms, noises, source)
        verdict, reason = _verdict(arms, diff, diff_ci, source, info.sign)
        lion, adamw = outs["lion"], outs["adamw"]
        return schemas.ArmsOut(
            baseline="adamw",
            verdict=verdict,
            reason=reason,
            lion=lion,
            adamw=adamw,
            difference=diff,
            difference_ci=diff_ci,
            difference_df=diff_df,
            selection_note=_selection_note(arms),
            lr_ratio=_ratio(arms, lion, adamw, "lr", "ln_lr", LR_EXPECTED),
            weight_decay_ratio=_ratio(arms, lion, adamw, "weight_decay", "ln_wd", WD_EXPECTED),
            paper=PAPER,
        )

    def _arm(self, info: SweepInfo, done: list[FrozenTrial], optimizer: str) -> _Arm:
        mine = [t for t in done if info.params(t).get("optimizer", "lion") == optimizer]
        groups, noise = ranked_configs(info, mine) if mine else ([], Noise(None, 0))
        fit = self.analysis.fitted(info.id, optimizer) if mine else None
        return _Arm(optimizer, mine, groups, noise, fit[0] if fit is not None else None)

    def _arm_out(
        self, info: SweepInfo, arm: _Arm, noise: Noise, source: str
    ) -> schemas.OptimizerArmOut:
        best = arm.best
        s = arm.surface
        lr = lr_ci = wd = wd_ci = lr_src = wd_src = None
        if s is not None and s.lr is not None and "lr" in s.shown:
            lr, lr_ci, lr_src = s.lr.value, s.lr.pair(), "fit"
        elif best is not None and best.params.get("lr") is not None:
            lr, lr_src = float(best.params["lr"]), "best_config"
        if s is not None and s.weight_decay is not None and "weight_decay" in s.shown:
            wd, wd_ci, wd_src = s.weight_decay.value, s.weight_decay.pair(), "fit"
        elif best is not None and best.params.get("weight_decay") is not None:
            wd, wd_src = float(best.params["weight_decay"]), "best_config"
        return schemas.OptimizerArmOut(
            optimizer=arm.optimizer,
            n_trials=len(arm.done),
            n_configs=len(arm.groups),
            best=config_out(info, best, noise, loss_floor(info, arm.groups))
            if best is not None
            else None,
            noise_sd=noise.sd,
            noise_df=noise.df,
            noise_source=source,
            fit_verdict=s.verdict if s is not None else None,
            fit_reason=s.reason if s is not None else None,
            lr=lr,
            lr_ci=lr_ci,
            lr_source=lr_src,
            weight_decay=wd,
            weight_decay_ci=wd_ci,
            weight_decay_source=wd_src,
        )


def _difference(
    arms: dict[str, _Arm], noises: dict[str, Noise], source: str
) -> tuple[float | None, list[float] | None, float | None]:
    """Lion's best mean − AdamW's, its 90% interval and degrees of freedom."""
    lion, adamw = arms["lion"].best, arms["adamw"].best
    if lion is None or adamw is None:
        return None, None, None
    diff = lion.mean - adamw.mean
    if source == "none":
        return diff, None, None
    nl, na = len(lion.estimated_on), len(adamw.estimated_on)
    if source == "arm":
        vl = noises["lion"].sd ** 2 / nl
        va = noises["adamw"].sd ** 2 / na
        df = (vl + va) ** 2 / (vl**2 / noises["lion"].df + va**2 / noises["adamw"].df)
    else:
        sd = noises["lion"].sd
        vl, va, df = sd**2 / nl, sd**2 / na, float(noises["lion"].df)
    half = float(scipy_stats().t.ppf(0.5 + LEVEL / 2, df)) * math.sqrt(vl + va)
    return diff, [diff - half, diff + half], float(df)


def _verdict(
    arms: dict[str, _Arm],
    diff: float | None,
    ci: list[float] | None,
    source: str,
    sign: float,
) -> tuple[str, str]:
    """The verdict and its one-sentence reason."""
    for opt in ARMS:
        if arms[opt].best is None:
            return "not_measured", f"the {NAMES[opt]} arm has no complete trial yet"
    if ci is None:
        return "not_measured", (
            f"the seed noise is not measured (no config in either arm ran with more than one "
            f"seed), so the difference of the arms' best means ({diff:.4g}) has no interval: "
            "re-evaluate the top configs (spec field reevaluate)"
        )
    assumed = "; both arms' seed noise assumed equal" if source == "sweep" else ""
    span = f"90% CI {ci[0]:.4g} to {ci[1]:.4g}"
    if ci[0] <= 0 <= ci[1]:
        return "tied", (
            f"the arms' best configs cannot be told apart at this noise: Lion − AdamW = "
            f"{diff:.4g} ({span}) includes 0{assumed}"
        )
    adamw_better = sign * diff > 0
    winner, loser = ("AdamW", "Lion") if adamw_better else ("Lion", "AdamW")
    return ("adamw_better" if adamw_better else "lion_better"), (
        f"{winner}'s best config beats {loser}'s by {abs(diff):.4g} in the objective "
        f"(Lion − AdamW = {diff:.4g}, {span}){assumed}"
    )


def _selection_note(arms: dict[str, _Arm]) -> str:
    """Which arm's best mean is over fresh seeds and which over the runs that picked it."""
    parts = []
    for opt in ARMS:
        arm = arms[opt]
        best = arm.best
        if best is None:
            continue
        name = NAMES[opt]
        if best.held_out:
            part = (
                f"{name}'s best mean is over {len(best.held_out)} runs that took no part in "
                f"ranking it (ranked on {len(best.ranked_on)} others)"
            )
        else:
            part = (
                f"{name}'s best is the best of {len(arm.groups)} configs and its mean is over "
                "the one run that picked it, so it is biased towards looking good and its "
                "interval does not allow for that"
            )
        parts.append(part)
    note = "; ".join(parts)
    if any(a.best is not None and not a.best.held_out for a in arms.values()):
        note += ": re-evaluate the top configs with fresh seeds (spec field reevaluate)"
    return note


def _ratio(
    arms: dict[str, _Arm],
    lion: schemas.OptimizerArmOut,
    adamw: schemas.OptimizerArmOut,
    name: str,
    draw: str,
    expected: tuple[float, float],
) -> schemas.RatioOut | None:
    """AdamW's optimum ``name`` / Lion's, with a bootstrap interval when both are fitted."""
    a, b = getattr(lion, name), getattr(adamw, name)
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    value = b / a
    both_fit = getattr(lion, f"{name}_source") == getattr(adamw, f"{name}_source") == "fit"
    ci = None
    if both_fit:
        la = arms["lion"].surface.draws[draw][1:]
        lb = arms["adamw"].surface.draws[draw][1:]
        if len(la) and len(lb):
            # Independent refits of the two arms, paired at random.
            lb = np.random.default_rng(0).permutation(lb)
            m = min(len(la), len(lb))
            r = np.exp(lb[:m] - la[:m])
            lo, hi = np.percentile(r, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
            ci = [float(lo), float(hi)]
    inside = expected[0] <= value <= expected[1]
    if ci is None:
        agreement = "unclear"
    elif ci[1] < expected[0] or ci[0] > expected[1]:
        agreement = "disagrees"
    else:
        agreement = "agrees" if inside else "unclear"
    label = "lr" if name == "lr" else "weight decay"
    text = f"AdamW's optimum {label} is {value:.3g}× Lion's"
    if ci is not None:
        text += f" (90% CI {ci[0]:.3g} to {ci[1]:.3g})"
    text += f"; the paper expects {expected[0]:.3g}–{expected[1]:.3g}×"
    if name == "weight_decay":
        text += " (Lion's 3–10× larger)"
    if not both_fit:
        which = [NAMES[o.optimizer] for o in (lion, adamw) if getattr(o, f"{name}_source") != "fit"]
        text += (
            f"; the fit of the {' and '.join(which)} arm pins no optimum {label}, so its best "
            "config's value is used and the ratio has no interval"
        )
    verdict = {
        "agrees": "the data agree",
        "disagrees": "the data disagree",
        "unclear": "the data cannot say" + (" (the estimate is in that range)" if inside else ""),
    }[agreement]
    return schemas.RatioOut(
        value=value,
        ci=ci,
        expected=list(expected),
        agreement=agreement,
        note=f"{text}: {verdict}",
    )
