"""The ``planted`` task: a real Lion run whose objective is a known function of lr and decay."""

from __future__ import annotations

import math
import time

import pytest
import torch

from worker import tasks
from worker.harness import NullReporter, effective_config, run_trial
from worker.tasks.planted import FLOOR, planted_value

tasks.load_builtins()

#: Lion's steps compute in float32: the applied lr is the config's rounded to float32.
LR_RTOL = 2**-23


def run(lr, weight_decay, *, seed=0, params=None, **task_params):
    """One planted trial through the harness; returns (config, result)."""
    task = tasks.get("planted")
    a = {
        "params": {"lr": lr, "weight_decay": weight_decay, "beta1": 0.9, "beta2": 0.99,
                   **(params or {})},
        "task": {"name": "planted", "params": task_params},
        "seed": seed,
    }  # fmt: skip
    config = effective_config(task, a, "cpu")
    result = run_trial(task, config, NullReporter())
    assert result.state == "complete", result
    return config, result


def decay_rtol(lr, weight_decay, steps=20):
    """A bound on the applied decay's relative distance from the config's: each step's
    multiplier 1 − η_t·λ and the product a·(1 − η_t·λ) are rounded to float32."""
    return 2 * steps * 2**-24 / (lr * weight_decay * steps / 2)


@pytest.mark.usefixtures("foreach_lion_one_thread")
@pytest.mark.parametrize(
    ("lr", "weight_decay"), [(1e-3, 0.1), (3e-4, 0.02), (1e-2, 3.0), (1e-4, 30.0), (2e-3, 1e-2)]
)
def test_the_applied_lr_and_decay_are_the_configs_and_the_value_is_the_planted_surface(
    lr, weight_decay
):
    config, result = run(lr, weight_decay, noise=0.0)
    m = result.metrics
    assert m["lr_applied"] == pytest.approx(lr, rel=LR_RTOL)
    assert m["weight_decay_applied"] == pytest.approx(
        weight_decay, rel=decay_rtol(lr, weight_decay)
    )
    assert result.value == m["val_loss_clean"]
    assert result.value == planted_value("valley", m["lr_applied"], m["weight_decay_applied"], {
        "product": 2e-5
    })  # fmt: skip
    expected = math.log(lr * weight_decay / 2e-5) ** 2
    assert result.value == pytest.approx(expected, abs=2 * decay_rtol(lr, weight_decay))
    assert (config.steps, config.eval_every, config.warmup_steps, config.batch_size) == (
        20,
        20,
        0,
        1,
    )


@pytest.mark.usefixtures("foreach_lion_one_thread")
def test_warmup_and_accumulated_batches_change_nothing_applied():
    _, plain = run(1e-3, 0.1, noise=0.0)
    _, other = run(1e-3, 0.1, params={"warmup_steps": 7, "batch_size": 70}, noise=0.0, steps=30)
    assert other.metrics["lr_applied"] == pytest.approx(1e-3, rel=LR_RTOL)
    assert other.metrics["weight_decay_applied"] == pytest.approx(
        0.1, rel=decay_rtol(1e-3, 0.1, 30)
    )
    assert other.value == pytest.approx(plain.value, abs=1e-3)


@pytest.mark.usefixtures("foreach_lion_one_thread")
def test_no_decay_floors_the_valley_and_lr_only_ignores_the_decay():
    _, none = run(1e-3, 0.0, noise=0.0)
    assert none.metrics["weight_decay_applied"] == 0.0
    assert none.value == pytest.approx(math.log(FLOOR / 2e-5) ** 2)
    assert math.isfinite(none.value)
    values = []
    for weight_decay in (0.0, 0.1, 10.0):
        _, result = run(3e-3, weight_decay, noise=0.0, surface="lr_only", lr_target=1e-3)
        values.append(result.value)
    assert values == pytest.approx([math.log(3.0) ** 2] * 3, rel=1e-6)


@pytest.mark.usefixtures("foreach_lion_one_thread")
def test_the_noise_is_the_seeded_global_generators():
    _, first = run(1e-3, 0.02, seed=5)
    _, again = run(1e-3, 0.02, seed=5)
    _, other = run(1e-3, 0.02, seed=6)
    assert first.value == again.value != other.value
    torch.manual_seed(5)
    epsilon = float(torch.randn((), dtype=torch.float64))
    assert first.value - first.metrics["val_loss_clean"] == pytest.approx(0.1 * epsilon)
    _, louder = run(1e-3, 0.02, seed=5, noise=2.0)
    assert louder.value - louder.metrics["val_loss_clean"] == pytest.approx(2.0 * epsilon)


@pytest.mark.usefixtures("foreach_lion_one_thread")
def test_a_trial_takes_well_under_a_second():
    run(1e-3, 0.1)
    started = time.perf_counter()
    run(2e-3, 0.3, seed=1)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("impl", ["auto", "reference", "foreach"])
def test_every_lion_step_implementation_applies_the_same(monkeypatch, impl):
    """``auto`` (the worker's default) runs the float64 parameters without a compiled
    kernel to build: its second trial is as quick as the others."""
    if impl == "auto":
        monkeypatch.delenv("LIONSWEEP_LION_IMPL", raising=False)
    else:
        monkeypatch.setenv("LIONSWEEP_LION_IMPL", impl)
    config, result = run(1e-3, 0.1, noise=0.0)
    assert config.lion_impl == impl
    started = time.perf_counter()
    run(2e-3, 0.3, seed=1)
    assert time.perf_counter() - started < 0.5
    monkeypatch.setenv("LIONSWEEP_LION_IMPL", "foreach")
    _, foreach = run(1e-3, 0.1, noise=0.0)
    assert result.metrics == foreach.metrics
