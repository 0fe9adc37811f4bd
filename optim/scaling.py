"""Scaling-rule math for Lion: learning rate and decoupled weight decay.

Plain Python (no torch), so the service can import it. The rule: with
σ = width^-½, a good Lion run uses η = α0·σ and λ = α0/(2σ), so the product
η·λ = α0²/2 is constant across widths. A sweep's own answer (the fitted lr × weight-decay
surface, its valley and verdict, and moving it to another width) is ``service.surface`` and
``service.analysis``.
"""

from __future__ import annotations

import math

__all__ = [
    "ADAMW_TO_LION_FACTOR",
    "ALPHA0",
    "from_adamw",
    "lr_and_decay",
]

#: Default α0 of η = α0·σ, λ = α0/(2σ): the relative change per step.
ALPHA0 = 1e-3
#: AdamW → Lion: the lr divided by it, the weight decay multiplied by it (3–10 work well).
ADAMW_TO_LION_FACTOR = 3.0


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def lr_and_decay(
    sigma: float | None = None, width: int | None = None, alpha0: float = ALPHA0
) -> tuple[float, float]:
    """Return (lr, weight_decay) = (α0·σ, α0/(2σ)); σ = width^-½ when a width is given."""
    alpha0 = _positive("alpha0", alpha0)
    if sigma is None and width is None:
        raise ValueError("give either sigma or width")
    if sigma is not None and width is not None:
        raise ValueError("give either sigma or width, not both")
    if width is not None:
        sigma = _positive("width", width) ** -0.5
    sigma = _positive("sigma", sigma)
    return alpha0 * sigma, alpha0 / (2.0 * sigma)


def from_adamw(
    lr: float, weight_decay: float, factor: float = ADAMW_TO_LION_FACTOR
) -> tuple[float, float]:
    """Translate AdamW (lr, weight_decay) to Lion: lr/factor and weight_decay·factor."""
    lr = _positive("lr", lr)
    factor = _positive("factor", factor)
    weight_decay = float(weight_decay)
    if not math.isfinite(weight_decay) or weight_decay < 0.0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return lr / factor, weight_decay * factor
