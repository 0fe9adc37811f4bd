"""A scripted worker for ladders over three scale axes (as in ``test_service_ladder_axes``):
it declares ``width`` (role width) and ``train_steps`` (role steps); the batch axis is the
harness's ``batch_size``. Its objective plants a known rule per axis — width ``sqrt``
(η* ∝ w^-½, λ* ∝ w^½), steps ``tau_tokens`` (η* ∝ S^-½, λ* ∝ S^-½), batch ``wd_linear``
(η* unmoved, λ* ∝ B) — a tilted basin around that optimum, plus seed noise."""

from __future__ import annotations

import math
import random
from typing import Any

import httpx

NOISE = 0.05
DECLARED = {
    "width": {"type": "int", "default": 64, "low": 8, "high": 65536, "role": "width"},
    "train_steps": {"type": "int", "default": 100, "low": 1, "high": 10**7, "role": "steps"},
    "depth": {"type": "int", "default": 2, "low": 1, "high": 8},
}
BASE = {"width": 64, "train_steps": 100, "batch_size": 32}
EXPONENTS = {"width": (-0.5, 0.5), "train_steps": (-0.5, -0.5), "batch_size": (0.0, 1.0)}
"""Per axis, the planted (lr exponent, weight-decay exponent)."""
RUNGS = [
    {"width": 64, "train_steps": 100, "batch_size": 32},
    {"width": 128, "train_steps": 100, "batch_size": 32},
    {"width": 256, "train_steps": 100, "batch_size": 32},
    {"width": 64, "train_steps": 200, "batch_size": 32},
    {"width": 64, "train_steps": 400, "batch_size": 32},
    {"width": 64, "train_steps": 100, "batch_size": 64},
    {"width": 64, "train_steps": 100, "batch_size": 128},
]
"""A line along each axis through a shared corner: 7 rungs."""


def optimum(point: dict[str, float]) -> tuple[float, float]:
    """The planted (η*, λ*) at ``point``."""
    ln_lr, ln_wd = math.log(1e-3), math.log(0.02)
    for axis, (a, b) in EXPONENTS.items():
        ln_lr += a * math.log(point[axis] / BASE[axis])
        ln_wd += b * math.log(point[axis] / BASE[axis])
    return math.exp(ln_lr), math.exp(ln_wd)


def objective(params: dict[str, Any], point: dict[str, float], lr_only: bool = False) -> float:
    """A tilted basin around the planted optimum (lr and weight decay trade off), better with
    width; noise-free. ``lr_only``: the weight decay plays no part."""
    lr, wd = optimum(point)
    u, v = math.log(params["lr"] / lr), math.log(params["weight_decay"] / wd)
    if lr_only:
        return 0.5 * u * u + 3 * point["width"] ** -0.5
    return 0.5 * u * u + 0.6 * u * v + 0.5 * v * v + 3 * point["width"] ** -0.5


def claim(client: httpx.Client, task: str) -> dict[str, Any] | None:
    """Claim a trial of ``task``, declaring its params (None when there is none)."""
    r = client.post(
        "/api/trials/claim",
        json={"worker_id": "axes", "tasks": [task], "task_params": {task: DECLARED}},
    )
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def run_all(client: httpx.Client, task: str, lr_only: bool = False, lr_shift: float = 1.0) -> int:
    """Claim and finish every trial of ``task`` with the planted objective and seed noise
    (an axis a ladder does not vary at its default: width 64, 100 steps, batch 32);
    ``lr_shift``: the optimum lr of these trials moved by that factor (a rule that stops
    holding where they run)."""
    n = 0
    while (got := claim(client, task)) is not None:
        point = {
            "width": got["task"]["params"].get("width", BASE["width"]),
            "train_steps": got["task"]["params"].get("train_steps", BASE["train_steps"]),
            "batch_size": got["params"].get("batch_size", BASE["batch_size"]),
        }
        params = {**got["params"], "lr": got["params"]["lr"] / lr_shift}
        value = objective(params, point, lr_only)
        value += NOISE * random.Random(got["seed"]).gauss(0, 1)
        r = client.post(
            f"/api/trials/{got['trial_id']}/finish", json={"state": "complete", "value": value}
        )
        assert r.status_code == 200, r.text
        n += 1
    return n


def spec(task: str, rungs: list[dict[str, Any]], n_trials: int = 24, **extra: Any) -> dict:
    """A ladder of ``task`` over ``rungs``: random, unpruned trials over a wide box."""
    return {
        "name": "axes ladder",
        "task": {"name": task, "params": {"depth": 2}},
        "space": {
            "lr": {"low": 1e-5, "high": 1e-1, "log": True},
            "weight_decay": {"low": 1e-4, "high": 10.0, "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "sampler": {"name": "random", "seed": 3},
        "pruner": {"name": "none"},
        "n_trials": n_trials,
        "reevaluate": "off",
        "ladder": {"rungs": rungs, **extra},
    }


def axes_spec(task: str, name: str = "axes ladder", n_trials: int = 24) -> dict[str, Any]:
    """A ladder of ``task`` over :data:`RUNGS`."""
    return {**spec(task, RUNGS, n_trials), "name": name}
