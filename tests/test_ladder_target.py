"""The verdict of a confirmation's own sweep at its point (``service.ladder_analysis``):
each branch on numbers whose answer is known, in both objective directions, and the seed
noise pooled over the two sweeps; and the arms a confirmation adds where the predicted weight
decay is loosely pinned."""

from __future__ import annotations

import math

import pytest

from service import schemas
from service.analysis import Noise
from service.ladder_analysis import LOOSE_WD, loose_wd_arms, pool_noise, target_verdict


@pytest.mark.parametrize(
    ("sign", "difference", "ci", "verdict", "why"),
    [
        (1.0, -0.02, [-0.08, 0.04], "confirmed", "or better"),  # the prediction did better
        (1.0, 0.04, [0.01, 0.07], "confirmed", "or better"),  # worse, clearly, by < one sd
        (1.0, 0.30, [0.20, 0.40], "target_better", "beyond the noise"),
        (1.0, 0.08, [-0.01, 0.17], "confirmed", "not to be told apart"),  # > one sd, unclear
        (1.0, 0.08, [0.01, 0.15], "target_better", "beyond the noise"),
        (-1.0, -0.30, [-0.40, -0.20], "target_better", "beyond"),  # maximised: lower is worse
        (-1.0, 0.30, [0.20, 0.40], "confirmed", "or better"),
        (-1.0, -0.08, [-0.17, 0.01], "confirmed", "not to be told apart"),
    ],
)
def test_each_verdict_on_known_numbers(sign, difference, ci, verdict, why) -> None:
    got, note = target_verdict(sign, difference, ci, 0.05, measured=True)
    assert got == verdict, note
    assert why in note and "seed sd 0.05" in note


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


def prediction(wd_ci: list[float] | None) -> schemas.LadderPrediction:
    """A prediction of lr 1e-3, weight decay 0.05 with ``wd_ci``."""
    return schemas.LadderPrediction(
        width=None,
        lr=1e-3,
        lr_ci=[8e-4, 1.2e-3],
        weight_decay=0.05,
        weight_decay_ci=wd_ci,
        weight_decay_moved=True,
        value=None,
        value_ci=None,
        note="",
    )


def test_a_loosely_pinned_weight_decay_is_confirmed_at_both_ends_of_its_interval() -> None:
    arms = loose_wd_arms(prediction([0.0117, 0.47]))
    assert [(lr, wd) for lr, wd, _ in arms] == [(1e-3, 0.0117), (1e-3, 0.47)]
    assert "lower end" in arms[0][2] and "upper end" in arms[1][2]
    assert "40× wide" in arms[0][2]
    assert loose_wd_arms(prediction([0.02, 0.02 * LOOSE_WD])) == []  # pinned well enough
    assert loose_wd_arms(prediction(None)) == []
