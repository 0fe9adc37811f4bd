"""service.surface on planted data whose answer is known: the valley's slope and product, a
surface that ignores weight decay, a box that cuts the valley, and too little data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.surface import Box, Observations, beyond_basin, fit_surface

LN = math.log
PRODUCT = 2e-5


def planted(
    kind: str,
    seed: int,
    n: int = 40,
    noise: float = 0.1,
    box: tuple[float, float, float, float] = (1e-5, 1e-2, 1e-3, 10.0),
    product_axis: bool = False,
    slope: float = -1.0,
) -> tuple[Observations, Box]:
    """Random (lr, wd) in the box, objective planted, Gaussian noise added."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(LN(box[0]), LN(box[1]), n)
    v = rng.uniform(LN(box[2]), LN(box[3]), n)
    y = v - x if product_axis else v
    if kind == "valley":  # best ln λ = ln(product) + slope·ln η  (slope −1: constant ηλ)
        f = (y - LN(PRODUCT / 1e-3) - slope * (x - LN(1e-3))) ** 2
    elif kind == "lr_only":
        f = (x - LN(1e-3)) ** 2
    elif kind == "flat":
        f = np.zeros(n)
    elif kind == "decay_hurts":  # only more decay hurts, the best is the smallest
        f = 0.3 * np.exp(x + y - LN(1e-4)) + (x - LN(1e-3)) ** 2
    else:
        raise ValueError(kind)
    obs = Observations(x, y, np.zeros((n, 0)), f + noise * rng.standard_normal(n), np.zeros(0))
    second = "lr_wd_product" if product_axis else "weight_decay"
    return obs, Box(LN(box[0]), LN(box[1]), LN(box[2]), LN(box[3]), second)


def test_planted_valley_slope_interval_contains_minus_one_and_excludes_zero() -> None:
    hits = 0
    for seed in range(30):
        s = fit_surface(*planted("valley", seed))
        assert s.verdict == "valley", (seed, s.reason)
        assert s.slope is not None and s.product is not None and s.alpha0 is not None
        assert s.slope.hi < 0
        hits += s.slope.lo <= -1 <= s.slope.hi
        assert s.product.lo <= PRODUCT * 1.1 and s.product.hi >= PRODUCT / 1.1
        assert s.alpha0.value == pytest.approx(math.sqrt(2 * s.product.value))
        assert s.valley, "a valley verdict comes with its band"
        for p in s.valley:
            assert p["weight_decay_lo"] <= p["weight_decay"] <= p["weight_decay_hi"]
            assert p["lr"] * p["weight_decay"] == pytest.approx(PRODUCT, rel=0.1)
    assert hits >= 25, f"the 90% interval held -1 in only {hits} of 30 planted sweeps"


def test_planted_valley_with_another_slope_is_recovered() -> None:
    s = fit_surface(*planted("valley", 3, slope=-0.5, n=60))
    assert s.verdict == "valley", s.reason
    assert s.slope.lo <= -0.5 <= s.slope.hi and s.slope.hi < -0.3
    assert s.product is not None


def test_box_cutting_the_valley_does_not_bias_the_slope() -> None:
    # Most of the valley lies outside: at high lr its best wd is below the box.
    s = fit_surface(*planted("valley", 5, box=(1e-4, 1e-1, 1e-3, 10.0), n=50))
    assert s.verdict == "valley", s.reason
    assert s.slope.lo <= -1 <= s.slope.hi
    assert abs(s.slope.value + 1) < 0.1


def test_surface_that_ignores_weight_decay_says_so() -> None:
    verdicts = [fit_surface(*planted("lr_only", seed)).verdict for seed in range(10)]
    assert verdicts.count("lr_only") >= 8, verdicts
    s = fit_surface(*planted("lr_only", 0))
    assert s.product is None and s.alpha0 is None and s.valley == []
    assert "weight decay does not move the objective" in s.reason
    assert s.lr.lo <= 1e-3 <= s.lr.hi


def test_pure_noise_is_insufficient() -> None:
    fits = [fit_surface(*planted("flat", seed)) for seed in range(10)]
    verdicts = [s.verdict for s in fits]
    assert verdicts.count("insufficient") >= 8, verdicts
    assert all(s.product is None and s.valley == [] for s in fits)
    assert any("neither" in s.reason for s in fits)


def test_too_few_trials_is_insufficient() -> None:
    s = fit_surface(*planted("valley", 1, n=8))
    assert s.verdict == "insufficient" and "needs at least 12" in s.reason


def test_best_weight_decay_at_the_edge_of_the_box_is_a_boundary() -> None:
    s = fit_surface(*planted("decay_hurts", 2, n=50, noise=0.05))
    assert s.verdict == "boundary", s.reason
    assert "weight_decay_low" in s.boundary_edges and s.on_boundary
    assert s.product is None


def test_lr_optimum_outside_the_box_is_a_boundary() -> None:
    s = fit_surface(*planted("lr_only", 4, box=(1e-6, 1e-4, 1e-3, 10.0)))
    assert s.verdict == "boundary", s.reason
    assert s.boundary_edges[0] == "lr_high"


def test_searching_along_the_product_axis_gives_the_same_answer() -> None:
    obs, box = planted("valley", 6, box=(1e-5, 1e-2, 2e-6, 2e-4), product_axis=True)
    s = fit_surface(obs, box)
    assert s.verdict == "valley", s.reason
    assert s.slope.lo <= -1 <= s.slope.hi
    assert s.product.lo <= PRODUCT * 1.1 and s.product.hi >= PRODUCT / 1.1


def test_a_value_beyond_the_basin_is_found_and_the_rest_fits() -> None:
    # Formerly left out inside the fit as an "outlier"; now the caller classifies values
    # beyond the basin (a gap wider than the basin itself) as diverged before fitting.
    obs, box = planted("valley", 8)
    obs.value[3] = 3394.0  # a floor value, far off the surface
    out = beyond_basin(obs.value)
    assert out.sum() == 1 and out[3]
    keep = ~out
    s = fit_surface(
        Observations(obs.x[keep], obs.y[keep], obs.z[keep], obs.value[keep], obs.z_ref), box
    )
    assert s.n == 39
    assert s.verdict == "valley", s.reason
    assert s.slope.lo <= -1 <= s.slope.hi


def test_maximised_objectives_are_negated_by_the_caller_and_answers_are_deterministic() -> None:
    a = fit_surface(*planted("valley", 7))
    b = fit_surface(*planted("valley", 7))
    assert (a.slope.lo, a.slope.hi, a.product.value) == (b.slope.lo, b.slope.hi, b.product.value)
