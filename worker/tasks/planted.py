"""``planted``: a real Lion run whose objective is a known function of the applied lr and decay.

For testing the service's analysis (best configs, the fitted lr-versus-decay rule) on
data whose answer is known. The model has two 1×1 weight matrices (``ndim`` 2, so the
harness decays them whatever ``decay_all`` says):

- ``a`` starts at 1 and has a zero gradient, so Lion only decays it:
  ``a_{t+1} = a_t·(1 − η_t·λ)``;
- ``b`` starts at 0 and has gradient +1, so Lion's update is +1 at every step:
  ``b_{t+1} = b_t·(1 − η_t·λ) − η_t``.

:meth:`Planted.loss` records ``(a, b)`` after every optimizer step (when they changed since
the last record: gradient accumulation calls it several times per step), and
:meth:`Planted.evaluate` reads back each step's ``r_t = a_{t+1}/a_t`` and
``η_t = b_t·r_t − b_{t+1}``. The applied lr ``η`` is ``max_t η_t`` (the schedule peaks at
multiplier 1), the applied decay ``λ = Σ_t (1 − r_t) / Σ_t η_t`` (the η-weighted mean of
the steps' ``(1 − r_t)/η_t``). ``val_loss`` is then ``f(η, λ) + noise·ε`` with ε ~ N(0, 1)
from torch's global generator (the harness seeds it with the trial's seed: the same seed
gives the same noise, another seed other noise), and ``f`` is chosen by ``surface``:

- ``valley`` (default): ``f = ln(max(η·λ, 1e-30) / product)²`` — a valley along the line
  ``η·λ = product`` (the constant-product rule), minimum 0 on it. A trial without decay
  (λ = 0) lands at the floor: ``ln(1e-30 / product)²``, about 3,400 for the default
  product, large but finite;
- ``lr_only``: ``f = ln(max(η, 1e-30) / lr_target)²`` — λ plays no part.

Precision: the parameters are float64, so the worker's default step (``auto``) runs them
with the foreach step, no compiled kernel to build (``impl="fused"`` refuses float64
parameters: a worker forced to it cannot run this task). Lion's steps compute in float32
whatever the parameter dtype, so the applied multiplier is ``fl32(1 − η_t·λ)``: the applied
η equals the config's lr to about 6e-8 (relative), the applied λ equals the config's weight
decay to about ``6e-8·√steps / (λ·Σ_t η_t)`` — a few 1e-5 at lr 1e-3 and weight decay 0.1
— and once ``η·λ`` is below about 3e-8 a step applies no decay at all (the objective then
sees λ = 0, as the optimizer applied). ``lr_applied`` and ``weight_decay_applied`` are the
values ``f`` was computed from; every step implementation gives the same.

Params: ``surface``, ``product``, ``lr_target``, ``noise``; defaults 20 steps, one
evaluation at the end, no warmup, batch size 1 (a batch is a dummy tensor).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from worker.tasks import ParamSpec, TaskDefaults, register

#: ``η·λ`` (valley) or ``η`` (lr_only) is floored here before the logarithm.
FLOOR = 1e-30


class _Probe(nn.Module):
    """The two watched weights and the ``(a, b)`` history the loss records."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(1, 1, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(1, 1, dtype=torch.float64))
        self.history: list[tuple[float, float]] = [self.values()]

    def values(self) -> tuple[float, float]:
        """The current ``(a, b)`` as Python floats."""
        return float(self.a.detach()), float(self.b.detach())

    def record(self) -> None:
        """Append ``(a, b)`` to the history when it changed since the last record."""
        now = self.values()
        if now != self.history[-1]:
            self.history.append(now)


def applied(history: list[tuple[float, float]]) -> tuple[float, float]:
    """The peak lr ``η`` and the weight decay ``λ`` the optimizer applied, read from the
    ``(a, b)`` history (``(0, 0)`` before any step)."""
    etas, shrink = [], 0.0
    for (a0, b0), (a1, b1) in zip(history, history[1:], strict=False):
        r = a1 / a0
        etas.append(b0 * r - b1)
        shrink += 1.0 - r
    total = sum(etas)
    if not etas or total <= 0.0:
        return 0.0, 0.0
    return max(etas), max(shrink / total, 0.0)


def planted_value(surface: str, lr: float, weight_decay: float, params: dict[str, Any]) -> float:
    """The noise-free objective ``f(η, λ)`` of ``surface`` (see the module docstring)."""
    if surface == "valley":
        return math.log(max(lr * weight_decay, FLOOR) / float(params["product"])) ** 2
    if surface == "lr_only":
        return math.log(max(lr, FLOOR) / float(params["lr_target"])) ** 2
    raise ValueError(f"planted: surface must be 'valley' or 'lr_only', not {surface!r}")


class Planted:
    """The ``planted`` task."""

    name = "planted"
    defaults = TaskDefaults(
        warmup_steps=0,
        batch_size=1,
        max_micro_batch=32,
        steps=20,
        eval_every=20,
        specs={
            "surface": ParamSpec("str", default="valley", choices=("valley", "lr_only")),
            "product": ParamSpec("float", default=2e-5, low=1e-20, high=1e3),
            "lr_target": ParamSpec("float", default=1e-3, low=1e-12, high=1e3),
            "noise": ParamSpec("float", default=0.1, low=0.0, high=1e3),
        },
    )

    def data(self, params: dict[str, Any], device: Any) -> None:
        """Nothing: the task has no data."""
        if params["surface"] not in ("valley", "lr_only"):
            surface = params["surface"]
            raise ValueError(f"planted: surface must be 'valley' or 'lr_only', not {surface!r}")
        return None

    def make_model(self, params: dict[str, Any], data: Any, device: Any) -> nn.Module:
        """The two weights ``a = 1`` and ``b = 0``, on ``device``."""
        return _Probe().to(device)

    def batches(
        self, params: dict[str, Any], data: Any, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor]]:
        """Endless dummy batches of ``batch_size`` zeros."""
        while True:
            yield (torch.zeros(batch_size, 1),)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor]) -> torch.Tensor:
        """``b + 0·a`` (gradients 1 and 0); records ``(a, b)`` as left by the last step."""
        model.record()
        return model.b.sum() + 0.0 * model.a.sum()

    def evaluate(self, model: nn.Module, params: dict[str, Any], data: Any) -> dict[str, float]:
        """``val_loss`` (the planted surface plus noise), ``lr_applied``,
        ``weight_decay_applied`` and the noise-free ``val_loss_clean``."""
        model.record()
        lr, weight_decay = applied(model.history)
        clean = planted_value(params["surface"], lr, weight_decay, params)
        epsilon = float(torch.randn((), dtype=torch.float64))
        return {
            "val_loss": clean + float(params["noise"]) * epsilon,
            "val_loss_clean": clean,
            "lr_applied": lr,
            "weight_decay_applied": weight_decay,
        }


register(Planted())
