"""The training harness: config, accumulation, schedule, divergence, reporting, seeding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from optim import Lion
from worker import tasks
from worker.harness import (
    NullReporter,
    TrialConfig,
    accumulate_gradients,
    effective_config,
    make_optimizer,
    run_trial,
)
from worker.tasks.digits import Digits
from worker.tasks.quadratic import Quadratic

tasks.load_builtins()


# Train with the foreach step (the fused one is covered end to end) on one thread.
pytestmark = pytest.mark.usefixtures("foreach_lion_one_thread")


def assignment(task: str = "quadratic", *, params=None, task_params=None, **extra) -> dict:
    """A trial assignment as the server sends it."""
    base = {"optimizer": "lion", "lr": 1e-3, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99}
    return {
        "trial_id": 1,
        "params": {**base, **(params or {})},
        "task": {"name": task, "params": task_params or {}},
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "budget": {"max_steps": None},
        "seed": 3,
        **extra,
    }


class Scripted(NullReporter):
    """A reporter that answers ``action`` from step ``at`` on, or interrupts before it."""

    def __init__(self, at: int, action: str | None = None, interrupt=None) -> None:
        super().__init__()
        self.at, self.action, self.interrupt = at, action, interrupt
        self.steps_seen = 0

    def report(self, step, value, metrics):
        super().report(step, value, metrics)
        return self.action if self.action and step >= self.at else "continue"

    def interrupted(self):
        self.steps_seen += 1
        return self.interrupt if self.steps_seen > self.at else None


class RecordingDigits(Digits):
    """The digits task, recording the size of every micro-batch it computes a loss on."""

    name = "recording_digits"

    def __init__(self) -> None:
        self.micro_batches: list[int] = []

    def loss(self, model, batch):
        self.micro_batches.append(batch[0].shape[0])
        return super().loss(model, batch)


def test_omitted_values_take_the_task_defaults_and_the_config_is_complete():
    task = tasks.get("quadratic")
    a = assignment(params={"warmup_steps": None}, task_params={"dim": 8})
    config = effective_config(task, a, "cpu")
    d = Quadratic.defaults
    assert (config.warmup_steps, config.batch_size) == (d.warmup_steps, d.batch_size)
    assert config.steps == d.steps and config.eval_every == d.eval_every
    assert config.task_params == {**d.params, "dim": 8}
    assert config.as_dict()["lr"] == 1e-3 and config.as_dict()["seed"] == 3
    assert config.lion_impl == "foreach"

    swept = effective_config(task, assignment(params={"warmup_steps": 0, "batch_size": 128}), "cpu")
    assert (swept.warmup_steps, swept.batch_size) == (0, 128)


def test_steps_come_from_task_params_and_the_budget_caps_them():
    task = tasks.get("quadratic")
    a = assignment(task_params={"steps": 300, "eval_every": 7})
    assert (
        effective_config(task, a, "cpu").steps,
        effective_config(task, a, "cpu").eval_every,
    ) == (
        300,
        7,
    )
    a["budget"] = {"max_steps": 50}
    assert effective_config(task, a, "cpu").steps == 50
    with pytest.raises(ValueError, match=r"^invalid task params: stpes: unknown param"):
        effective_config(task, assignment(task_params={"stpes": 3}), "cpu")


class Unbuildable(Quadratic):
    """The quadratic task, failing the test if the harness ever builds anything of it."""

    name = "unbuildable"

    def data(self, params, device):
        raise AssertionError("built a trial whose params are invalid")


@pytest.mark.parametrize(
    ("task_params", "params", "reason"),
    [
        ({"step_delay": 120}, {}, "invalid task params: step_delay: must be at most 1.0, not 120"),
        ({"dim": 10**9}, {}, "invalid task params: dim: must be at most 65536, not 1000000000"),
        ({"dim": "3"}, {}, "invalid task params: dim: must be int, not str '3'"),
        ({"dim": True}, {}, "invalid task params: dim: must be int, not bool True"),
        ({"dim": 8.0}, {}, "invalid task params: dim: must be int, not float 8.0"),
        ({"dim": None}, {}, "invalid task params: dim: must be int, not null"),
        ({"noise": float("nan")}, {}, "invalid task params: noise: must be finite, not nan"),
        (
            {"condition": float("inf")},
            {},
            "invalid task params: condition: must be finite, not inf",
        ),
        ({"steps": 0}, {}, "invalid task params: steps: must be at least 1, not 0"),
        (
            {"steps": 10**8},
            {},
            "invalid task params: steps: must be at most 10000000, not 100000000",
        ),
        ({"eval_every": "10"}, {}, "invalid task params: eval_every: must be int, not str '10'"),
        (
            {"dim": -1, "sleep": 5},
            {},
            "invalid task params: dim: must be at least 1, not -1; sleep: unknown param (known: "
            "condition, decay_all, dim, eval_every, nan_at_step, noise, problem_seed, step_delay, "
            "steps)",
        ),
        (
            {},
            {"batch_size": 10**6},
            "invalid trial params: batch_size: must be at most 65536, not 1000000",
        ),
        ({}, {"batch_size": "16"}, "invalid trial params: batch_size: must be int, not str '16'"),
        (
            {},
            {"warmup_steps": -1},
            "invalid trial params: warmup_steps: must be at least 0, not -1",
        ),
    ],
)
def test_params_that_break_the_declaration_are_refused_before_anything_is_built(
    task_params, params, reason
):
    task = Unbuildable()
    with pytest.raises(tasks.InvalidParams) as refused:
        config = effective_config(task, assignment(params=params, task_params=task_params), "cpu")
        run_trial(task, config, NullReporter())
    assert str(refused.value) == reason


def test_params_inside_the_declaration_pass_and_an_int_is_a_float():
    task = tasks.get("quadratic")
    a = assignment(
        params={"batch_size": 65_536, "warmup_steps": None},
        task_params={"dim": 65_536, "step_delay": 1, "condition": 10, "nan_at_step": None},
    )
    config = effective_config(task, a, "cpu")
    assert config.batch_size == 65_536 and config.task_params["step_delay"] == 1


def test_a_task_without_a_declaration_is_not_checked():
    class Undeclared(Quadratic):
        name = "undeclared"
        defaults = dataclasses.replace(Quadratic.defaults, specs=None)

    assert Undeclared.defaults.param_specs() is None
    a = assignment(task_params={"step_delay": 120, "dim": "3"})
    assert effective_config(Undeclared(), a, "cpu").task_params["step_delay"] == 120
    with pytest.raises(ValueError, match=r"unknown params \['dimm'\]"):
        effective_config(Undeclared(), assignment(task_params={"dimm": 3}), "cpu")


def test_accumulated_gradients_equal_the_full_batch_gradient():
    task = tasks.get("digits")
    params = task.defaults.params
    data = task.data(params, "cpu")
    batch = next(task.batches(params, data, 100, torch.Generator().manual_seed(0)))
    grads, losses = [], []
    for micro in (100, 32):
        torch.manual_seed(0)
        model = task.make_model(params, data, "cpu")
        losses.append(float(accumulate_gradients(task, model, batch, micro)))
        grads.append([p.grad.clone() for p in model.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for full, accumulated in zip(*grads, strict=True):
        torch.testing.assert_close(accumulated, full, rtol=1e-4, atol=1e-6)


def test_a_trial_accumulates_to_the_requested_batch_size_and_matches_a_full_batch_step():
    recording = RecordingDigits()
    a = assignment("digits", params={"batch_size": 200, "warmup_steps": 0})
    a["task"]["params"] = {"steps": 1, "eval_every": 1}
    a["objective"]["metric"] = "val_loss"
    base = effective_config(recording, a, "cpu")
    results = {}
    for micro in (200, 64):
        recording.micro_batches.clear()
        config = dataclasses.replace(base, max_micro_batch=micro)
        torch.manual_seed(0)
        result = run_trial(recording, config, NullReporter())
        results[micro] = result.value
        expected = [200] if micro == 200 else [64, 64, 64, 8]
        assert recording.micro_batches[: len(expected)] == expected
    assert results[64] == pytest.approx(results[200], rel=1e-4)


def test_same_seed_same_result_other_seed_other_result():
    task = tasks.get("quadratic")
    a = assignment(task_params={"steps": 200})
    first = run_trial(task, effective_config(task, a, "cpu"), NullReporter()).value
    again = run_trial(task, effective_config(task, a, "cpu"), NullReporter()).value
    a["seed"] = 4
    other = run_trial(task, effective_config(task, a, "cpu"), NullReporter()).value
    assert first == again and first != other


def test_evaluation_is_reported_every_n_steps_and_at_the_end():
    task = tasks.get("quadratic")
    reporter = NullReporter()
    a = assignment(task_params={"steps": 250, "eval_every": 100})
    result = run_trial(task, effective_config(task, a, "cpu"), reporter)
    assert [s for s, _, _ in reporter.reports] == [100, 200, 250]
    assert result.state == "complete" and result.value == reporter.reports[-1][1]
    assert set(reporter.reports[0][2]) == {"val_loss", "distance"}
    assert result.timings["first_step_s"] > 0 and result.timings["step_s"] > 0
    assert 0 < result.timings["optimizer_share"] < 1
    # quadratic: one parameter vector; 250 steps of it at some ns per coordinate
    per_param = result.timings["optimizer_ns_per_param"]
    cfg = effective_config(task, a, "cpu")
    n = sum(
        p.numel()
        for p in task.make_model(
            cfg.task_params, task.data(cfg.task_params, "cpu"), "cpu"
        ).parameters()
    )
    assert per_param == pytest.approx(result.timings["optimizer_s"] / 250 / n * 1e9)


def test_nan_loss_ends_the_trial_pruned_as_diverged_at_once():
    task = tasks.get("quadratic")
    a = assignment(task_params={"nan_at_step": 5})
    result = run_trial(task, effective_config(task, a, "cpu"), NullReporter())
    assert (result.state, result.reason, result.value) == ("pruned", "diverged", None)
    assert result.steps_done == 4


class InfiniteGradient(Quadratic):
    """The quadratic task whose loss gains sqrt(|x − x|) from step 3 on: still finite
    (0), but with an infinite gradient."""

    name = "infinite-gradient"
    calls = 0

    def loss(self, model, batch):
        InfiniteGradient.calls += 1
        extra = torch.sqrt((model.x - model.x.detach()).abs()).sum() if self.calls > 2 else 0
        return super().loss(model, batch) + extra


def test_a_finite_loss_with_nonfinite_gradients_ends_the_trial_as_diverged():
    task = InfiniteGradient()
    InfiniteGradient.calls = 0
    result = run_trial(task, effective_config(task, assignment(), "cpu"), NullReporter())
    assert (result.state, result.reason, result.value) == ("pruned", "diverged", None)
    assert result.steps_done == 2  # the third step met the infinite gradient


def test_exploding_loss_is_divergence():
    task = tasks.get("quadratic")
    a = assignment(params={"lr": 10.0, "warmup_steps": 0, "weight_decay": 0.0})
    result = run_trial(task, effective_config(task, a, "cpu"), NullReporter())
    assert (result.state, result.reason) == ("pruned", "diverged")
    assert result.steps_done < 5


def test_prune_answer_ends_pruned_and_stop_answer_ends_failed():
    task = tasks.get("quadratic")
    config = effective_config(task, assignment(), "cpu")
    pruned = run_trial(task, config, Scripted(at=300, action="prune"))
    assert (pruned.state, pruned.reason, pruned.steps_done) == ("pruned", None, 300)
    assert pruned.value is not None
    stopped = run_trial(task, config, Scripted(at=200, action="stop"))
    assert (stopped.state, stopped.reason, stopped.steps_done) == (
        "failed",
        "stopped by server",
        200,
    )


def test_interrupt_stops_at_the_next_step_boundary():
    task = tasks.get("quadratic")
    config = effective_config(task, assignment(), "cpu")
    result = run_trial(task, config, Scripted(at=37, interrupt=("failed", "worker shutdown")))
    assert (result.state, result.reason, result.steps_done) == ("failed", "worker shutdown", 37)


def test_missing_objective_metric_is_an_error():
    task = tasks.get("quadratic")
    a = assignment(task_params={"steps": 10, "eval_every": 10})
    a["objective"]["metric"] = "accuracy"
    with pytest.raises(KeyError, match="reports no metric 'accuracy'.*val_loss"):
        run_trial(task, effective_config(task, a, "cpu"), NullReporter())


def test_optimizer_is_lion_or_adamw_baseline():
    model = torch.nn.Linear(3, 2)
    lion = effective_config(tasks.get("quadratic"), assignment(), "cpu")
    assert isinstance(make_optimizer(lion, model), Lion)
    adamw = dataclasses.replace(lion, optimizer="adamw", lr=3e-3)
    assert isinstance(make_optimizer(adamw, model), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer must be"):
        make_optimizer(dataclasses.replace(lion, optimizer="sgd"), model)
    a = assignment(params={"optimizer": "adamw", "lr": 0.05}, task_params={"steps": 300})
    result = run_trial(
        tasks.get("quadratic"), effective_config(tasks.get("quadratic"), a, "cpu"), NullReporter()
    )
    assert result.state == "complete" and result.value < 5.0


def decayed_once(optimizer: str, **task_params) -> tuple[TrialConfig, dict[str, float]]:
    """One step with zero gradients (decay alone) on a small Linear + LayerNorm model: each
    parameter's value after the step divided by its value before, and the config."""
    a = assignment(
        "digits",
        params={"optimizer": optimizer, "lr": 0.1, "weight_decay": 2.0},
        task_params=task_params,
    )
    config = effective_config(tasks.get("digits"), a, "cpu")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        model[0].bias.fill_(0.5)
        model[1].bias.fill_(0.25)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = make_optimizer(config, model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    ratios = {}
    for name, p in model.named_parameters():
        ratio = p.detach() / before[name]
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio)), name
        ratios[name] = float(ratio.flatten()[0])
    return config, ratios


@pytest.mark.parametrize("optimizer", ["lion", "adamw"])
def test_weight_decay_reaches_matrices_only_unless_decay_all(optimizer):
    config, ratios = decayed_once(optimizer)
    assert config.decay_all is False and config.as_dict()["decay_all"] is False
    assert ratios["0.weight"] == pytest.approx(1 - 0.1 * 2.0)
    assert ratios["0.bias"] == ratios["1.weight"] == ratios["1.bias"] == 1.0
    config, ratios = decayed_once(optimizer, decay_all=True)
    assert config.decay_all is True and config.as_dict()["decay_all"] is True
    assert "decay_all" not in config.task_params
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert ratios[name] == pytest.approx(1 - 0.1 * 2.0), name


def test_decay_all_is_a_declared_loop_param_with_a_default_per_task():
    quadratic = effective_config(tasks.get("quadratic"), assignment(), "cpu")
    assert quadratic.decay_all is True  # its one vector is the model
    assert effective_config(tasks.get("digits"), assignment("digits"), "cpu").decay_all is False
    off = assignment(task_params={"decay_all": False})
    assert effective_config(tasks.get("quadratic"), off, "cpu").decay_all is False
    with pytest.raises(tasks.InvalidParams, match="decay_all: must be bool, not int 1"):
        effective_config(tasks.get("quadratic"), assignment(task_params={"decay_all": 1}), "cpu")


def test_a_vector_model_is_not_decayed_without_decay_all():
    task = tasks.get("quadratic")

    def value(weight_decay: float, decay_all: bool) -> float:
        a = assignment(params={"lr": 1e-3, "weight_decay": weight_decay})
        a["task"]["params"] = {"steps": 50, "eval_every": 50, "noise": 0.0, "decay_all": decay_all}
        return run_trial(task, effective_config(task, a, "cpu"), NullReporter()).value

    assert value(1.0, False) == value(10.0, False)
    assert value(1.0, True) != value(10.0, True)


def learning_rates(warmup_steps: int, steps: int) -> list[float]:
    """The lr of each step of a quadratic trial under the harness's schedule."""
    task = tasks.get("quadratic")
    a = assignment(
        params={"warmup_steps": warmup_steps}, task_params={"steps": steps, "eval_every": steps}
    )
    config: TrialConfig = effective_config(task, a, "cpu")
    from worker.harness import make_schedule

    model = task.make_model(config.task_params, task.data(config.task_params, "cpu"), "cpu")
    optimizer = make_optimizer(config, model)
    schedule = make_schedule(config, optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_warmup_schedule_drives_the_learning_rate():
    lrs = learning_rates(warmup_steps=10, steps=20)
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[10] == pytest.approx(1e-3) and lrs[-1] < 1e-4


def test_warmup_longer_than_the_trial_warms_up_throughout():
    lrs = learning_rates(warmup_steps=50, steps=20)
    assert lrs == sorted(lrs) and lrs[-1] == pytest.approx(1e-3)
