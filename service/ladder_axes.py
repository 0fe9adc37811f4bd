"""The named scaling rules of each scale axis, tested against a joint ladder fit (pure numpy).

A rule fixes some of an axis's exponents — of the lr, of the weight decay, or of their
product η·λ — and is tested by the Wald statistic of the fitted exponents' distance from
those values, with the covariance of the fit's bootstrap refits (widened as the fit's
intervals are): χ² with one degree of freedom per fixed exponent. A fixed exponent of a
coordinate the fit left out (it does not move the objective) is dropped from the test; a
rule with nothing left to test is not scored. Rules of one axis are compared by their
likelihood ratios, as the per-rung width rules are (:mod:`service.ladder_fit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from service.ladder_fit import CONSISTENT_P, LIKELIHOOD_RATIO, RULES
from service.ladder_joint import JointFit
from service.lazy import scipy_stats

AXIS_RULES: dict[str, dict[str, dict[str, float]]] = {
    "width": {name: {"lr": a, "weight_decay": b} for name, (a, b) in RULES.items()},
    "steps": {
        # η·λ ∝ 1/steps: the decay timescale τ = 1/(ηλ) grows with the run, constant in
        # epochs or tokens (Wang & Aitchison 2024)
        "tau_tokens": {"product": -1.0},
        # η·λ unmoved: τ constant in steps, whatever the run's length
        "tau_steps": {"product": 0.0},
    },
    "batch": {
        # λ ∝ B at a fixed lr (the AdamW timescale argument, in steps: fewer steps per epoch)
        "wd_linear": {"lr": 0.0, "weight_decay": 1.0},
        # nothing moves with the batch size
        "fixed": {"lr": 0.0, "weight_decay": 0.0},
    },
}
"""Per role, each named rule's fixed exponents (``lr``, ``weight_decay`` or ``product``)."""


@dataclass
class AxisRule:
    """One named rule tested on one axis."""

    name: str
    fixed: dict[str, float]
    tested: list[str]
    """The exponents the test used (those the fit has)."""
    chi2: float
    dof: int
    p_value: float
    relative_likelihood: float = 1.0

    @property
    def consistent(self) -> bool:
        """The fit does not reject the rule (p ≥ 0.05)."""
        return self.p_value >= CONSISTENT_P


def _combo(fit: JointFit, index: int, which: str) -> tuple[float, np.ndarray] | None:
    """The estimate and bootstrap draws of axis ``index``'s exponent ``which``, or None when
    the fit has no such exponent."""
    axis = fit.axes[index]
    k = len(fit.axes)
    cols = {"lr": [2 + index], "weight_decay": [2 + k + index]}
    cols["product"] = cols["lr"] + cols["weight_decay"]
    needed = {"lr": [axis.lr], "weight_decay": [axis.weight_decay]}
    needed["product"] = needed["lr"] + needed["weight_decay"]
    if any(e is None for e in needed[which]):
        return None
    est = sum(e.value for e in needed[which])
    draws = fit.draws[:, cols[which]].sum(axis=1)
    return est, draws


def score_rules(fit: JointFit, index: int, role: str) -> list[AxisRule]:
    """Every named rule of ``role`` tested on axis ``index`` of ``fit`` (the testable ones),
    with relative likelihoods among those tested on the same exponents."""
    out = []
    for name, fixed in AXIS_RULES.get(role, {}).items():
        parts = [(w, _combo(fit, index, w), target) for w, target in fixed.items()]
        parts = [(w, got, target) for w, got, target in parts if got is not None]
        if not parts:
            continue
        d = np.array([got[0] - target for _, got, target in parts])
        draws = np.column_stack([got[1] for _, got, _ in parts])
        cov = np.atleast_2d(np.cov(draws, rowvar=False)) * fit.widen**2
        cov += np.eye(len(d)) * 1e-12
        chi2 = float(d @ np.linalg.solve(cov, d))
        p = float(scipy_stats().chi2.sf(chi2, len(d)))
        out.append(AxisRule(name, fixed, [w for w, _, _ in parts], chi2, len(d), p))
    for rule in out:
        peers = [r.chi2 for r in out if r.tested == rule.tested]
        rule.relative_likelihood = math.exp(-(rule.chi2 - min(peers)) / 2)
    return out


def axis_verdict(rules: list[AxisRule]) -> tuple[str | None, str]:
    """The rule the data identify on one axis (or None) and a sentence saying why."""
    if not rules:
        return None, "no named rule can be tested: the fit has none of the exponents they fix"
    fits = [r for r in rules if r.consistent]
    if not fits:
        return None, "no named rule fits: " + ", ".join(
            f"{r.name} p = {r.p_value:.2g}" for r in rules
        )
    best = min(rules, key=lambda r: r.chi2)
    others = [r for r in rules if r is not best and r.tested == best.tested]
    if best.consistent and all(r.relative_likelihood * LIKELIHOOD_RATIO <= 1 for r in others):
        return best.name, f"{best.name} fits (p = {best.p_value:.2g}) and every other rule is " + (
            f"over {LIKELIHOOD_RATIO:g}× less likely" if others else "untestable"
        )
    return None, "the data cannot tell apart: " + ", ".join(
        f"{r.name} (p = {r.p_value:.2g})" for r in fits
    )
