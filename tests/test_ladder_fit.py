"""The width-exponent fit on planted rungs whose exponents are known: the intervals cover
the planted exponents as often as they claim, the planted rule is named when the data hold
it, and the fit says so when they do not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.ladder_fit import (
    RULES,
    OutOfRange,
    RungPoint,
    exp_in_range,
    fit_ladder,
    rung_point,
)

WIDTHS = [64.0, 128.0, 256.0]


def planted(
    rng: np.random.Generator,
    a: float,
    b: float,
    sd: float,
    widths: list[float] = WIDTHS,
    rho: float = -0.5,
    wd: bool = True,
) -> list[RungPoint]:
    """Rungs whose optimum follows ln η* = ln 1e-3 + a·ln(w/64), ln λ* = ln 0.1 + b·ln(w/64),
    each seen with correlated Gaussian error of sd ``sd`` (the covariance the fit is told)."""
    cov = sd**2 * np.array([[1.0, rho], [rho, 1.0]])
    out = []
    for w in widths:
        s = math.log(w / 64)
        e = rng.multivariate_normal([0.0, 0.0], cov)
        p = RungPoint(width=w, cov=cov)
        p.ln_lr = math.log(1e-3) + a * s + e[0]
        p.ln_wd = math.log(0.1) + b * s + e[1] if wd else None
        p.value = 3.0 - 0.2 * s + rng.normal(0, 0.01)
        p.value_sd = 0.01
        out.append(p)
    return out


@pytest.mark.parametrize("rule", sorted(RULES))
def test_intervals_cover_the_planted_exponents_about_90_percent(rule: str) -> None:
    a, b = RULES[rule]
    rng = np.random.default_rng(1)
    hits = {"lr": 0, "wd": 0, "product": 0}
    runs = 400
    for _ in range(runs):
        fit = fit_ladder(planted(rng, a, b, sd=0.15))
        hits["lr"] += fit.lr_exponent.lo <= a <= fit.lr_exponent.hi
        hits["wd"] += fit.wd_exponent.lo <= b <= fit.wd_exponent.hi
        hits["product"] += fit.product_exponent.lo <= a + b <= fit.product_exponent.hi
    for name, n in hits.items():
        assert 0.84 <= n / runs <= 0.97, (name, n / runs)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_planted_rule_is_identified_when_the_rungs_are_precise(rule: str) -> None:
    a, b = RULES[rule]
    rng = np.random.default_rng(2)
    named = 0
    for _ in range(50):
        fit = fit_ladder(planted(rng, a, b, sd=0.05, widths=[64, 128, 256, 512]))
        if fit.verdict == "rule_identified":
            assert fit.best_rule == rule
            named += 1
    assert named >= 45


def test_noisy_rungs_cannot_tell_the_rules_apart() -> None:
    rng = np.random.default_rng(3)
    fits = [fit_ladder(planted(rng, -0.5, 0.5, sd=1.0)) for _ in range(200)]
    verdicts = [f.verdict for f in fits]
    assert verdicts.count("indistinguishable") >= 180
    assert verdicts.count("rule_identified") <= 4
    fit = next(f for f in fits if f.verdict == "indistinguishable")
    assert "cannot tell" in fit.reason
    assert fit.lr_exponent.hi - fit.lr_exponent.lo > 1.0


def test_a_wrong_rule_is_rarely_named() -> None:
    rng = np.random.default_rng(9)
    wrong = 0
    for _ in range(300):
        fit = fit_ladder(planted(rng, -0.5, 0.5, sd=0.15))
        wrong += fit.verdict == "rule_identified" and fit.best_rule != "sqrt"
    assert wrong / 300 <= 0.03


def test_lr_only_rungs_fit_the_lr_alone_and_cannot_separate_the_mup_rules() -> None:
    fit = fit_ladder(planted(np.random.default_rng(4), -1.0, 1.0, sd=0.05, wd=False))
    assert fit.wd_exponent is None and fit.product_exponent is None
    assert fit.lr_exponent.lo <= -1.0 <= fit.lr_exponent.hi
    scores = {s.name: s for s in fit.scores}
    assert scores["mup"].chi2 == pytest.approx(scores["mup_sqrt"].chi2)
    assert fit.verdict == "indistinguishable"
    assert "compared on the lr alone" in fit.reason
    assert fit.predict(512)["ln_wd"] is None


def test_a_rule_none_of_the_candidates_fits_is_reported() -> None:
    fit = fit_ladder(planted(np.random.default_rng(5), 0.5, -0.5, sd=0.03))
    assert fit.verdict == "no_rule_fits" and fit.best_rule is None
    assert fit.lr_exponent.lo <= 0.5 <= fit.lr_exponent.hi


def test_fewer_than_three_usable_rungs_is_insufficient() -> None:
    points = planted(np.random.default_rng(6), -0.5, 0.5, sd=0.1)
    points[1].ln_lr = None
    fit = fit_ladder(points)
    assert fit.verdict == "insufficient" and fit.lr_exponent is None
    assert "only 2 rung(s)" in fit.reason


def test_prediction_extrapolates_the_lines_with_wider_intervals_further_out() -> None:
    rng = np.random.default_rng(7)
    fit = fit_ladder(planted(rng, -0.5, 0.5, sd=0.05))
    near, far = fit.predict(512), fit.predict(4096)
    for name, slope, base in (("ln_lr", -0.5, math.log(1e-3)), ("ln_wd", 0.5, math.log(0.1))):
        assert near[name].lo <= base + slope * math.log(8) <= near[name].hi
        assert far[name].hi - far[name].lo > near[name].hi - near[name].lo
    assert near["value"].value == pytest.approx(3.0 - 0.2 * math.log(8), abs=0.05)


def test_a_width_floating_point_cannot_place_is_out_of_range_not_a_domain_error() -> None:
    fit = fit_ladder(planted(np.random.default_rng(7), -0.5, 0.5, sd=0.05))
    for width in (5e-324, 0.0, -1.0, math.inf, math.nan):
        with pytest.raises(OutOfRange):
            fit.predict(width)
    assert fit.predict(1e-300)["ln_lr"] is not None  # far, but representable
    for x in (710.0, -746.0, math.nan):  # exp overflows, underflows to 0, is NaN
        with pytest.raises(OutOfRange):
            exp_in_range(x)
    assert exp_in_range(-700.0) > 0


def test_rung_points_read_spread_and_correlation_from_refits() -> None:
    rng = np.random.default_rng(8)
    e = rng.multivariate_normal([0, 0], [[0.04, -0.036], [-0.036, 0.04]], size=2000)
    p = rung_point(100.0, e[:, 0] - 7, e[:, 1] - 2, rng.normal(1, 0.01, 2000))
    assert p.ln_lr == pytest.approx(e[0, 0] - 7)
    assert math.sqrt(p.cov[0, 0]) == pytest.approx(0.2, rel=0.1)
    assert p.cov[0, 1] / math.sqrt(p.cov[0, 0] * p.cov[1, 1]) == pytest.approx(-0.9, abs=0.08)
    assert p.value_sd == pytest.approx(0.01, rel=0.15)


def test_the_objective_beyond_the_widest_rung_is_bracketed_by_the_trend_and_no_change() -> None:
    """A loss that flattens with width (3·w^-½ here) lies between the rungs' straight trend
    in ln width and the widest rung's own value; the interval spans both."""
    rng = np.random.default_rng(10)
    points = planted(rng, -0.5, 0.5, sd=0.05)
    for p in points:
        p.value, p.value_sd = 3 * p.width**-0.5, 0.002
    fit = fit_ladder(points)
    at = fit.predict(1024)["value"]
    trend = fit.value_slope.value * math.log(1024 / fit.reference_width)
    assert at.lo <= 3 / 32 <= at.hi  # the truth at 1024
    assert at.hi >= 3 / 16  # no further change from 256 is inside
    assert at.lo < 3 / 16 + trend  # and so is the trend
    inside = fit.predict(128)["value"]  # between the rungs: the line's own interval
    assert inside.lo <= 3 / 128**0.5 <= inside.hi
    assert inside.hi - inside.lo < at.hi - at.lo
