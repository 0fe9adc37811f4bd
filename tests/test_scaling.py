"""optim.scaling: the η/λ rule, AdamW translation, lr-vs-decay fit and width transfer."""

import math
import subprocess
import sys

import pytest

from optim.scaling import LrDecayFit, fit_lr_decay, from_adamw, lr_and_decay, transfer


def test_scaling_does_not_import_torch():
    code = "import sys, optim.scaling, optim.schedules; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lr_and_decay_known_case_width_768():
    lr, wd = lr_and_decay(width=768, alpha0=1.11e-3)
    assert lr == pytest.approx(4.0e-5, rel=2e-3)
    assert wd == pytest.approx(0.0154, rel=2e-3)
    assert lr * wd == pytest.approx(1.11e-3**2 / 2)


def test_lr_and_decay_sigma_matches_width():
    assert lr_and_decay(sigma=0.25, alpha0=2e-3) == pytest.approx((5e-4, 4e-3))
    assert lr_and_decay(width=16, alpha0=2e-3) == pytest.approx((5e-4, 4e-3))
    assert lr_and_decay(sigma=1.0) == pytest.approx((1e-3, 5e-4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "sigma or width"),
        ({"sigma": 0.1, "width": 100}, "not both"),
        ({"sigma": 0.0}, "sigma"),
        ({"width": -4}, "width"),
        ({"sigma": 0.1, "alpha0": -1e-3}, "alpha0"),
        ({"sigma": float("nan")}, "sigma"),
    ],
)
def test_lr_and_decay_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_and_decay(**kwargs)


def test_from_adamw_keeps_product():
    lr, wd = from_adamw(3e-4, 0.1)
    assert (lr, wd) == pytest.approx((1e-4, 0.3))
    assert lr * wd == pytest.approx(3e-4 * 0.1)
    assert from_adamw(1e-3, 0.01, factor=10) == pytest.approx((1e-4, 0.1))
    with pytest.raises(ValueError, match="factor"):
        from_adamw(1e-3, 0.1, factor=0)
    with pytest.raises(ValueError, match="weight_decay"):
        from_adamw(1e-3, -0.1)
    with pytest.raises(ValueError, match="lr"):
        from_adamw(0.0, 0.1)


def _ridge_points(product=2e-6, slope=-1.0, n_lr=8):
    """Synthetic sweep: objective is best where wd = (product/lr0)·(lr/lr0)^slope."""
    points = []
    lr0 = 1e-4
    for i in range(n_lr):
        lr = lr0 * 10 ** (i / (n_lr - 1) * 2 - 1)  # 1e-5 .. 1e-3
        best_wd = (product / lr0) * (lr / lr0) ** slope
        for k in (-2, -1, 0, 1, 2):
            wd = best_wd * 3.0**k
            points.append((lr, wd, 1.0 + abs(k) + 0.01 * i))
    return points


def test_fit_recovers_inverse_rule():
    fit = fit_lr_decay(_ridge_points(product=2e-6), top_fraction=8 / 40)
    assert isinstance(fit, LrDecayFit)
    assert fit.n == 8
    assert fit.slope == pytest.approx(-1.0, abs=1e-9)
    assert fit.product == pytest.approx(2e-6, rel=1e-9)
    assert fit.alpha0 == pytest.approx(math.sqrt(4e-6))
    assert fit.r2 == pytest.approx(1.0)
    assert fit.lr * fit.weight_decay == pytest.approx(fit.product)
    d = fit.as_dict()
    assert set(d) >= {"slope", "intercept", "product", "alpha0", "r2", "n", "lr", "weight_decay"}


def test_fit_other_slope_and_maximize():
    points = _ridge_points(product=1e-5, slope=-0.5)
    flipped = [(lr, wd, -v) for lr, wd, v in points]
    fit = fit_lr_decay(flipped, direction="maximize", top_fraction=8 / 40)
    assert fit.slope == pytest.approx(-0.5, abs=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_fit_skips_unusable_points_and_reports_r2_below_one():
    points = [
        (1e-4, 1e-1, 0.5),
        (2e-4, 4e-2, 0.4),
        (4e-4, 3e-2, 0.45),
        (1e-3, 1e-2, float("nan")),
        (0.0, 1e-2, 0.1),
        (1e-3, 0.0, 0.1),
    ]
    fit = fit_lr_decay(points, top_fraction=1.0)
    assert fit.n == 3
    assert fit.slope < 0
    assert 0.0 < fit.r2 < 1.0
    assert all(math.isfinite(v) for v in fit.as_dict().values())


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([], "at least 3"),
        ([(1e-4, 0.1, 1.0), (2e-4, 0.05, 1.0)], "at least 3"),
        ([(1e-4, 0.1, 1.0), (2e-4, 0.05, float("inf")), (3e-4, 0.02, None)], "numbers|at least"),
        ([(1e-4, 0.1, 1.0), (1e-4, 0.05, 2.0), (1e-4, 0.02, 3.0)], "same lr"),
        ([(1e-4, 0.1)], "lr, weight_decay, objective"),
    ],
)
def test_fit_degenerate_input_is_a_clear_error(points, match):
    with pytest.raises(ValueError, match=match):
        fit_lr_decay(points)


def test_fit_rejects_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        fit_lr_decay(_ridge_points(), direction="up")


def test_transfer_scales_lr_down_and_decay_up_with_width():
    fit = fit_lr_decay(_ridge_points(product=2e-6), top_fraction=8 / 40)
    lr, wd = transfer(fit, from_width=256, to_width=1024)
    assert lr == pytest.approx(fit.lr / 2)
    assert wd == pytest.approx(fit.weight_decay * 2)
    assert lr * wd == pytest.approx(fit.product)
    assert transfer(fit, 512, 512) == pytest.approx((fit.lr, fit.weight_decay))
    with pytest.raises(ValueError, match="to_width"):
        transfer(fit, 256, 0)
