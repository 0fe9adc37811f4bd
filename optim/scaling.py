"""Scaling-rule math for Lion: learning rate and decoupled weight decay.

Plain Python (no torch), so the service can import it. The rule: with
σ = width^-½, a good Lion run uses η = α0·σ and λ = α0/(2σ), so the product
η·λ = α0²/2 is constant across widths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

__all__ = [
    "ADAMW_TO_LION_FACTOR",
    "ALPHA0",
    "LrDecayFit",
    "fit_lr_decay",
    "from_adamw",
    "lr_and_decay",
    "transfer",
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


@dataclass(frozen=True)
class LrDecayFit:
    """How the best weight decay moves with the learning rate in a sweep.

    ``log λ = slope·log η + intercept`` over the best trials; ``product`` is the
    geometric mean of η·λ there, ``alpha0 = √(2·product)``; ``lr`` and
    ``weight_decay`` are the geometric means of the points used.
    """

    slope: float
    intercept: float
    product: float
    alpha0: float
    r2: float
    n: int
    lr: float
    weight_decay: float

    def as_dict(self) -> dict[str, float | int]:
        """Return the fit as a plain JSON-able dict."""
        return asdict(self)


def _usable(points: Iterable) -> list[tuple[float, float, float]]:
    out = []
    for point in points:
        try:
            lr, wd, value = (float(x) for x in point)
        except (TypeError, ValueError):
            raise ValueError(
                f"each point must be (lr, weight_decay, objective) numbers, got {point!r}"
            ) from None
        if lr > 0 and wd > 0 and all(map(math.isfinite, (lr, wd, value))):
            out.append((lr, wd, value))
    return out


def fit_lr_decay(
    points: Iterable,
    direction: str = "minimize",
    *,
    top_fraction: float = 0.25,
    min_points: int = 3,
) -> LrDecayFit:
    """Fit log(weight_decay) against log(lr) over the best trials of a sweep.

    ``points`` are (lr, weight_decay, objective) triples; points with a
    non-positive lr/weight_decay or a non-finite value are ignored. The best
    ``top_fraction`` of the usable points (at least ``min_points``) are used.
    Raises ValueError on degenerate input (too few points, all lrs equal).
    """
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    if min_points < 3:
        raise ValueError(f"min_points must be >= 3, got {min_points!r}")
    usable = _usable(points)
    if len(usable) < min_points:
        raise ValueError(
            f"need at least {min_points} points with lr > 0, weight_decay > 0 and a finite "
            f"objective to fit the lr/weight-decay rule, got {len(usable)}"
        )
    usable.sort(key=lambda t: t[2], reverse=direction == "maximize")
    k = max(min_points, math.ceil(top_fraction * len(usable)))
    best = usable[:k]
    xs = [math.log(lr) for lr, _, _ in best]
    ys = [math.log(wd) for _, wd, _ in best]
    n = len(best)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 1e-24 * max(1.0, mx * mx):
        raise ValueError(
            f"all of the {n} best points have the same lr; "
            "cannot fit how weight decay moves with lr"
        )
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    product = math.exp(mx + my)
    return LrDecayFit(
        slope=slope,
        intercept=intercept,
        product=product,
        alpha0=math.sqrt(2.0 * product),
        r2=r2,
        n=n,
        lr=math.exp(mx),
        weight_decay=math.exp(my),
    )


def transfer(fit: LrDecayFit, from_width: float, to_width: float) -> tuple[float, float]:
    """Move a fitted (lr, weight_decay) from one width to another: η ∝ σ, λ ∝ 1/σ."""
    ratio = math.sqrt(_positive("from_width", from_width) / _positive("to_width", to_width))
    return fit.lr * ratio, fit.weight_decay / ratio
