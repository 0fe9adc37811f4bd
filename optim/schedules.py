"""Learning-rate multipliers for ``torch.optim.lr_scheduler.LambdaLR``.

Plain Python (no torch). Each factory returns a callable ``step -> multiplier``:
a linear warmup over ``warmup_steps`` (step 0 already gets ``1/warmup_steps``),
then constant, cosine or inverse-time decay. The callables are small dataclasses,
so they pickle and LambdaLR can save them in its state_dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["warmup_constant", "warmup_cosine", "warmup_inverse_time"]


def _check_steps(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _warmup(step: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return (max(step, 0) + 1) / warmup_steps
    return 1.0


@dataclass(frozen=True)
class WarmupConstant:
    """Linear warmup, then a multiplier of 1."""

    warmup_steps: int

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps)


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup, then cosine decay from 1 to ``min_ratio`` at ``total_steps``."""

    warmup_steps: int
    total_steps: int
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class WarmupInverseTime:
    """Linear warmup, then 1/(κ·t + 1) with t counted from the end of warmup."""

    warmup_steps: int
    kappa: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        return 1.0 / (self.kappa * (step - self.warmup_steps) + 1.0)


def warmup_constant(warmup_steps: int) -> WarmupConstant:
    """Multiplier: linear warmup over ``warmup_steps``, then constant 1."""
    return WarmupConstant(_check_steps("warmup_steps", warmup_steps))


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> WarmupCosine:
    """Multiplier: linear warmup, then cosine decay to ``min_ratio`` at ``total_steps``."""
    _check_steps("warmup_steps", warmup_steps)
    _check_steps("total_steps", total_steps)
    if total_steps < warmup_steps:
        raise ValueError(
            f"total_steps must be >= warmup_steps, got {total_steps!r} < {warmup_steps!r}"
        )
    min_ratio = float(min_ratio)
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio!r}")
    return WarmupCosine(warmup_steps, total_steps, min_ratio)


def warmup_inverse_time(warmup_steps: int, kappa: float) -> WarmupInverseTime:
    """Multiplier: linear warmup, then inverse-time decay 1/(κ·t + 1)."""
    _check_steps("warmup_steps", warmup_steps)
    kappa = float(kappa)
    if not math.isfinite(kappa) or kappa < 0.0:
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
    return WarmupInverseTime(warmup_steps, kappa)
