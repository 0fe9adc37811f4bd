"""The verdict of a confirmation's own sweep at its point (``service.ladder_analysis``):
each branch on numbers whose answer is known, in both objective directions, and the seed
noise pooled over the two sweeps."""

from __future__ import annotations

import math

import pytest

from service.analysis import Noise
from service.ladder_analysis import pool_noise, target_verdict


@pytest.mark.parametrize(
    ("sign", "difference", "ci", "verdict"),
    [
        (1.0, -0.02, [-0.08, 0.04], "confirmed"),  # the prediction did better
        (1.0, 0.04, [0.01, 0.07], "confirmed"),  # worse, clearly, but by less than one sd
        (1.0, 0.30, [0.20, 0.40], "target_better"),
        (1.0, 0.08, [-0.01, 0.17], "inconclusive"),  # worse by more than one sd, not clearly
        (-1.0, -0.30, [-0.40, -0.20], "target_better"),  # maximised: lower is worse
        (-1.0, 0.30, [0.20, 0.40], "confirmed"),
        (-1.0, -0.08, [-0.17, 0.01], "inconclusive"),
    ],
)
def test_each_verdict_on_known_numbers(sign, difference, ci, verdict) -> None:
    got, note = target_verdict(sign, difference, ci, 0.05, measured=True)
    assert got == verdict, note
    assert "seed sd 0.05" in note


def test_without_seeds_to_measure_the_noise_nothing_is_judged() -> None:
    assert target_verdict(1.0, 0.5, None, None, measured=True)[0] == "unmeasured"
    assert target_verdict(1.0, 0.5, [0.4, 0.6], 0.05, measured=False)[0] == "unmeasured"
    assert target_verdict(1.0, None, None, 0.05, measured=True)[0] == "unmeasured"


def test_noise_is_pooled_by_degrees_of_freedom() -> None:
    pooled = pool_noise(Noise(0.1, 4), Noise(0.2, 12))
    assert pooled.df == 16
    assert pooled.sd == pytest.approx(math.sqrt((0.01 * 4 + 0.04 * 12) / 16))
    assert pool_noise(Noise(None, 0), Noise(0.2, 3)) == Noise(0.2, 3)
    assert pool_noise(Noise(None, 0), Noise(None, 0)).sd is None
