"""optim.scaling: the analytic η/λ rule and the AdamW translation."""

import subprocess
import sys

import pytest

from optim.scaling import from_adamw, lr_and_decay


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
