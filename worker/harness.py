"""Trial config → optimizer, schedule, gradient accumulation, evaluation, divergence checks.

The harness owns the training loop; a task (``worker.tasks``) supplies data, model,
batches, loss and evaluation. :func:`run_trial` trains one trial and returns a
:class:`TrialResult`; it never talks HTTP itself but calls a :class:`Reporter`
(the agent's, or a test's) for intermediate values and for "stop now" signals.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from protocol import CONTINUE, PRUNE, STOP, STOPPED_REASON
from worker.tasks import LOOP_PARAMS, ParamSpec, Task, check_params, check_values, resolve_params

#: A training loss this many times the first step's loss counts as divergence.
DIVERGENCE_FACTOR = 10.0
#: Bounds on the swept trial params that size a trial (``None``: the task's default).
TRIAL_PARAM_SPECS = {
    "batch_size": ParamSpec("int", low=1, high=65_536),
    "warmup_steps": ParamSpec("int", low=0, high=10_000_000),
}
#: Environment variable choosing the Lion step implementation (``auto`` by default).
LION_IMPL_ENV = "LIONSWEEP_LION_IMPL"
#: Steps after the first whose median is the "steady" step time.
_STEADY_STEPS = 10


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines one training run (sent back as the effective config)."""

    task: str
    task_params: dict[str, Any]
    optimizer: str
    lr: float
    weight_decay: float
    beta1: float
    beta2: float
    warmup_steps: int
    batch_size: int
    max_micro_batch: int
    steps: int
    eval_every: int
    seed: int
    device: str
    metric: str
    lion_impl: str = "auto"
    decay_all: bool = False
    device_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return asdict(self)


@dataclass
class TrialResult:
    """How a trial ended: ``state`` is complete, pruned or failed."""

    state: str
    value: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    steps_done: int = 0
    timings: dict[str, float | None] = field(default_factory=dict)


class Reporter(Protocol):
    """The harness's view of the outside world during a trial."""

    def report(self, step: int, value: float, metrics: dict[str, float]) -> str:
        """Deliver an intermediate value; return ``continue``, ``prune`` or ``stop``."""
        ...

    def interrupted(self) -> tuple[str, str | None] | None:
        """``(state, reason)`` to end the trial at this step boundary, or ``None`` to go on.

        For example ``("failed", "worker shutdown")`` after SIGTERM.
        """
        ...


class NullReporter:
    """A reporter that records reports and never interrupts (tests, benchmarks)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, float, dict[str, float]]] = []

    def report(self, step: int, value: float, metrics: dict[str, float]) -> str:
        """Record the report and answer ``continue``."""
        self.reports.append((step, value, metrics))
        return CONTINUE

    def interrupted(self) -> tuple[str, str | None] | None:
        """Never interrupts."""
        return None


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; other values unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return device


def describe_device(device: str) -> str:
    """The device as its owner names it: ``cpu``, or the GPU's model with its index and the
    ``CUDA_VISIBLE_DEVICES`` it was picked from (a supervisor gives each agent one GPU)."""
    if not device.startswith("cuda"):
        return device
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    return f"{torch.cuda.get_device_name(index)} (cuda:{index} of CUDA_VISIBLE_DEVICES={visible})"


def effective_config(task: Task, assignment: dict[str, Any], device: str) -> TrialConfig:
    """The config a trial runs with: the assignment, with the task's defaults where omitted.

    Raises :class:`worker.tasks.InvalidParams` (``invalid task params: …`` or ``invalid
    trial params: …``) before anything is built when a value breaks its declaration.
    """
    params = assignment.get("params", {})
    task_params = dict((assignment.get("task") or {}).get("params") or {})
    check_params(task, task_params)
    sized = {k: params[k] for k in TRIAL_PARAM_SPECS if k in params}
    check_values("trial params", TRIAL_PARAM_SPECS, sized)
    loop = {k: task_params.pop(k) for k in LOOP_PARAMS if k in task_params}
    steps = int(loop.get("steps", task.defaults.steps))
    decay_all = loop.get("decay_all")
    max_steps = (assignment.get("budget") or {}).get("max_steps")
    if max_steps is not None:
        steps = min(steps, int(max_steps))
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    d = task.defaults

    def pick(key: str, default: Any) -> Any:
        value = params.get(key)
        return default if value is None else value

    return TrialConfig(
        task=task.name,
        task_params=resolve_params(task, task_params),
        optimizer=str(pick("optimizer", "lion")).lower(),
        lr=float(params["lr"]),
        weight_decay=float(pick("weight_decay", 0.0)),
        beta1=float(pick("beta1", 0.9)),
        beta2=float(pick("beta2", 0.99)),
        warmup_steps=int(pick("warmup_steps", d.warmup_steps)),
        batch_size=int(pick("batch_size", d.batch_size)),
        max_micro_batch=d.max_micro_batch,
        steps=steps,
        eval_every=max(1, int(loop.get("eval_every", d.eval_every))),
        seed=int(assignment.get("seed", 0)),
        device=device,
        metric=str((assignment.get("objective") or {}).get("metric", "val_loss")),
        lion_impl=os.environ.get(LION_IMPL_ENV, "auto"),
        decay_all=bool(d.decay_all if decay_all is None else decay_all),
        device_name=describe_device(device),
    )


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for the data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def param_groups(config: TrialConfig, model: torch.nn.Module) -> list[dict[str, Any]]:
    """The model's trainable parameters in optimizer groups with their weight decay.

    Matrices and higher (``ndim >= 2``: linear, embedding and convolution weights) take the
    trial's weight decay; vectors and scalars (biases, norm gains) take none, unless
    ``config.decay_all``, which puts every parameter in one decayed group. Empty groups are
    left out (an empty model gives one empty group).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.decay_all:
        return [{"params": params, "weight_decay": config.weight_decay}]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]] or groups[:1]


def make_optimizer(
    config: TrialConfig,
    model: torch.nn.Module | Any,
    *,
    flatten: bool | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """``optim.Lion`` (or AdamW for a baseline arm) with the trial's lr, betas and weight decay.

    ``model`` is a model, whose trainable parameters are grouped by :func:`param_groups`
    (weight decay on matrices only, unless ``decay_all``), or parameters or param groups (the
    trial's weight decay is their default). ``flatten`` (Lion): flat buffers; by default when
    the step is fused, which is safe where the caller owns the loop and zeroes gradients in
    place, as the harness does. ``kwargs`` go to the optimizer.
    """
    betas = (config.beta1, config.beta2)
    groups = param_groups(config, model) if isinstance(model, torch.nn.Module) else model
    hyper = {"lr": config.lr, "betas": betas, "weight_decay": config.weight_decay}
    if config.optimizer == "lion":
        from optim import Lion

        if flatten is None:
            flatten = config.lion_impl in ("auto", "fused")
        options = {"impl": config.lion_impl, "flatten": flatten, **kwargs}
        return Lion(groups, **hyper, **options)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, **hyper, **kwargs)
    raise ValueError(f"optimizer must be 'lion' or 'adamw', not {config.optimizer!r}")


def make_schedule(
    config: TrialConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay over the trial's steps (``optim.schedules``)."""
    from optim.schedules import warmup_cosine

    # A warmup longer than the trial is warmup for the whole trial.
    warmup = min(config.warmup_steps, config.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, config.steps))


def accumulate_gradients(
    task: Task, model: torch.nn.Module, batch: tuple[torch.Tensor, ...], max_micro_batch: int
) -> torch.Tensor:
    """Backpropagate ``batch`` in micro-batches of at most ``max_micro_batch``.

    Each micro-batch's mean loss is weighted by its share of the batch, so the summed
    gradients equal those of the whole batch at once. Returns the batch's mean loss.
    """
    n = batch[0].shape[0]
    total = torch.zeros((), device=batch[0].device)
    for micro in zip(*(t.split(max_micro_batch) for t in batch), strict=True):
        loss = task.loss(model, micro) * (micro[0].shape[0] / n)
        loss.backward()
        total += loss.detach()
    return total


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def evaluate(
    task: Task, model: torch.nn.Module, config: TrialConfig, data: Any
) -> dict[str, float]:
    """Run the task's evaluation in eval mode; check the objective metric is there."""
    model.eval()
    try:
        metrics = {k: float(v) for k, v in task.evaluate(model, config.task_params, data).items()}
    finally:
        model.train()
    if config.metric not in metrics:
        raise KeyError(
            f"task {config.task!r} reports no metric {config.metric!r} (it reports: "
            f"{', '.join(sorted(metrics))})"
        )
    return metrics


def run_trial(task: Task, config: TrialConfig, reporter: Reporter) -> TrialResult:
    """Train one trial to completion, pruning, divergence or interruption.

    Ends ``complete`` with the final objective value; ``pruned`` when the reporter
    answers ``prune`` or on divergence (reason ``diverged``: a non-finite loss or one
    above ``DIVERGENCE_FACTOR`` × the first step's); ``failed`` (reason ``stopped by
    server``) when it answers ``stop``; the reporter's ``(state, reason)`` when it
    interrupts (checked at every step boundary). Task errors propagate.
    """
    started = time.perf_counter()
    device = config.device
    generator = seed_everything(config.seed)
    data = task.data(config.task_params, device)
    model = task.make_model(config.task_params, data, device)
    model.train()
    optimizer = make_optimizer(config, model)
    schedule = make_schedule(config, optimizer)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batches = task.batches(config.task_params, data, config.batch_size, generator)
    setup_s = time.perf_counter() - started

    first_step_s: float | None = None
    steady: list[float] = []
    optimizer_s = 0.0
    first_loss: float | None = None
    last_value: float | None = None
    metrics: dict[str, float] = {}
    step = 0

    def finish(state: str, value: float | None, reason: str | None) -> TrialResult:
        wall = time.perf_counter() - started
        step_s = statistics.median(steady) if steady else None
        # What the first step costs beyond a steady one (compiling the fused kernel, first
        # allocations). Without such work the difference is timing noise of either sign
        # (other processes share the cores), so it is floored at zero.
        overhead = max(0.0, first_step_s - step_s) if first_step_s is not None and step_s else None
        timings = {
            "wall_s": wall,
            "setup_s": setup_s,
            "first_step_s": first_step_s,
            "step_s": step_s,
            "first_step_overhead_s": overhead,
            "optimizer_s": optimizer_s,
            "optimizer_share": optimizer_s / wall if wall > 0 else None,
            # the optimizer's step time per trained parameter: comparable across model sizes
            # and devices (a bandwidth-bound step moves 20 bytes per parameter with fp32 Lion)
            "optimizer_ns_per_param": (
                optimizer_s / step / n_params * 1e9 if step and n_params else None
            ),
        }
        return TrialResult(state, value, metrics, reason, step, timings)

    while step < config.steps:
        interrupt = reporter.interrupted()
        if interrupt is not None:
            return finish(interrupt[0], last_value, interrupt[1])
        t0 = time.perf_counter()
        loss = float(accumulate_gradients(task, model, next(batches), config.max_micro_batch))
        if first_loss is None:
            first_loss = loss
        if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(first_loss, 1e-12):
            return finish("pruned", None, "diverged")
        _sync(device)
        t1 = time.perf_counter()
        optimizer.step()
        _sync(device)
        optimizer_s += time.perf_counter() - t1
        # Lion leaves coordinates whose gradient is not finite as they were and counts them
        # (a finite loss can still have one): the run has gone wrong all the same.
        if getattr(optimizer, "nonfinite_grads", 0):
            return finish("pruned", None, "diverged")
        # Zeroed in place: the fused Lion step keeps gradients as views of one flat buffer.
        optimizer.zero_grad(set_to_none=False)
        schedule.step()
        step += 1
        elapsed = time.perf_counter() - t0
        if step == 1:
            first_step_s = elapsed
        elif len(steady) < _STEADY_STEPS:
            steady.append(elapsed)

        if step % config.eval_every == 0 or step == config.steps:
            metrics = evaluate(task, model, config, data)
            value = metrics[config.metric]
            if not math.isfinite(value):
                return finish("pruned", None, "diverged")
            last_value = value
            action = reporter.report(step, value, metrics)
            if action == PRUNE:
                return finish("pruned", value, None)
            if action == STOP:
                return finish("failed", value, STOPPED_REASON)
    return finish("complete", last_value, None)
