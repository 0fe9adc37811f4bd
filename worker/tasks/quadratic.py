"""``quadratic``: a noisy, ill-conditioned quadratic — instant, for tests and demos.

Loss of one sample ξ: ½ (x − x* − ξ)ᵀ A (x − x* − ξ) with A diagonal, eigenvalues
log-spaced from 1 to ``condition``; ξ ~ N(0, noise²) drawn from the trial's seeded
generator, so the gradient noise shrinks with the batch size. ``val_loss`` is the
noise-free ½ (x − x*)ᵀ A (x − x*); the problem itself (A, x*, x₀) is fixed by
``problem_seed``. x₀ lies about 0.25 per coordinate from x*, so over the default
1,000 steps Lion's default lr range (1e-5 … 1e-3) spans "barely moved" to "converged".

Params (bounds in ``Quadratic.defaults.specs``): ``dim`` ≤ 65,536, ``condition``,
``noise``, ``problem_seed``, and two test aids, harmless at their defaults:
- ``nan_at_step``: the batch of that step (1-based) is NaN, so the loss is NaN
  (exercises divergence handling);
- ``step_delay``: seconds slept per step (at most 1), so a test can catch a worker
  mid-trial.

The point x is a vector, the whole model, so the task decays it by default
(``decay_all`` is true; the harness would otherwise leave vectors undecayed).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from worker.tasks import ParamSpec, TaskDefaults, register


class _Point(nn.Module):
    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.x = nn.Parameter(data["x0"].clone())
        self.register_buffer("eig", data["eig"])
        self.register_buffer("x_star", data["x_star"])

    def forward(self, xi: torch.Tensor) -> torch.Tensor:
        d = self.x - self.x_star - xi
        return 0.5 * (d * d * self.eig).sum(dim=-1)


@functools.cache
def _problem(dim: int, condition: float, problem_seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(problem_seed)
    eig = torch.logspace(0.0, torch.log10(torch.tensor(float(condition))).item(), dim)
    eig = eig[torch.randperm(dim, generator=g)]
    x_star = torch.randn(dim, generator=g)
    return {"eig": eig, "x_star": x_star, "x0": x_star + 0.25 * torch.randn(dim, generator=g)}


class Quadratic:
    """The ``quadratic`` task."""

    name = "quadratic"
    defaults = TaskDefaults(
        warmup_steps=10,
        batch_size=16,
        max_micro_batch=64,
        steps=1000,
        eval_every=100,
        decay_all=True,
        specs={
            "dim": ParamSpec("int", default=32, low=1, high=65_536),
            "condition": ParamSpec("float", default=100.0, low=1.0, high=1e12),
            "noise": ParamSpec("float", default=0.25, low=0.0, high=1e3),
            "problem_seed": ParamSpec("int", default=0, low=0, high=2**32 - 1),
            "nan_at_step": ParamSpec("int", default=None, low=1, high=10_000_000),
            "step_delay": ParamSpec("float", default=0.0, low=0.0, high=1.0),
        },
    )

    def data(self, params: dict[str, Any], device: Any) -> dict[str, torch.Tensor]:
        """A, x*, x₀ of the problem, on ``device``."""
        p = _problem(int(params["dim"]), float(params["condition"]), int(params["problem_seed"]))
        return {k: v.to(device) for k, v in p.items()}

    def make_model(self, params: dict[str, Any], data: Any, device: Any) -> nn.Module:
        """The point x, starting at x₀."""
        return _Point(data).to(device)

    def batches(
        self, params: dict[str, Any], data: Any, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor]]:
        """Endless batches of noise samples ξ (NaN at ``nan_at_step``)."""
        dim, noise = int(params["dim"]), float(params["noise"])
        nan_at = params["nan_at_step"]
        delay = float(params["step_delay"])
        device = data["eig"].device
        step = 0
        while True:
            step += 1
            if delay:
                time.sleep(delay)
            xi = torch.randn(batch_size, dim, generator=generator) * noise
            if nan_at is not None and step == int(nan_at):
                xi = torch.full_like(xi, float("nan"))
            yield (xi.to(device),)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor]) -> torch.Tensor:
        """Mean per-sample quadratic loss over the batch."""
        (xi,) = batch
        return model(xi).mean()

    def evaluate(self, model: nn.Module, params: dict[str, Any], data: Any) -> dict[str, float]:
        """Noise-free loss ``val_loss`` and the distance to the optimum."""
        with torch.no_grad():
            return {
                "val_loss": float(model(torch.zeros_like(model.x))),
                "distance": float((model.x - model.x_star).norm()),
            }


register(Quadratic())
