"""A scripted worker for width-ladder tests: it speaks the worker protocol over HTTP and
answers with a planted objective whose width rule is known — a valley along η·λ = PRODUCT
whose optimum along it sits at η*(w) = 1e-3·(w/64)^a (a = −½: the ``sqrt`` rule), plus a
value that improves with width, plus seed noise."""

from __future__ import annotations

import math
import random
from typing import Any

import httpx

PRODUCT = 2e-5
NOISE = 0.05
DECLARED = {
    "width": {"type": "int", "default": 64, "low": 8, "high": 65536, "width": True},
    "depth": {"type": "int", "default": 2, "low": 1, "high": 8},
}
"""The params the scripted worker declares for its task (``width`` is the width)."""


def lr_star(width: float, a: float = -0.5) -> float:
    """The planted optimum lr: 1e-3 at width 64, ∝ width^a."""
    return 1e-3 * (width / 64) ** a


def planted(
    params: dict[str, Any], width: float, a: float = -0.5, lr_only_at: float | None = None
) -> float:
    """The planted objective (noise-free); at width ``lr_only_at`` it depends on the lr alone
    (so that rung's weight decay is not pinned down)."""
    x = math.log(params["lr"] / lr_star(width, a))
    if width == lr_only_at:
        return x**2 + 3 * width**-0.5
    valley = math.log(params["lr"] * params["weight_decay"] / PRODUCT) ** 2
    return valley + 0.25 * x**2 + 3 * width**-0.5


def claim(client: httpx.Client, task: str) -> dict[str, Any] | None:
    """Claim a trial of ``task``, declaring its params (None when there is none)."""
    r = client.post(
        "/api/trials/claim",
        json={"worker_id": "fake", "tasks": [task], "task_params": {task: DECLARED}},
    )
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def run_all(
    client: httpx.Client, task: str, a: float = -0.5, lr_only_at: float | None = None
) -> int:
    """Claim and finish every trial of ``task`` with the planted objective and seed noise;
    returns how many."""
    n = 0
    while (got := claim(client, task)) is not None:
        width = got["task"]["params"]["width"]
        noise = NOISE * random.Random(got["seed"]).gauss(0, 1)
        value = planted(got["params"], width, a, lr_only_at) + noise
        r = client.post(
            f"/api/trials/{got['trial_id']}/finish", json={"state": "complete", "value": value}
        )
        assert r.status_code == 200, r.text
        n += 1
    return n


def ladder_spec(task: str, name: str = "planted ladder", **ladder: Any) -> dict[str, Any]:
    """A three-rung ladder (widths 64, 128, 256) of ``task``: 36 random, unpruned trials per
    rung over lr log 1e-5…1e-1 and weight decay log 1e-3…10, no re-evaluation."""
    return {
        "name": name,
        "task": {"name": task, "params": {"depth": 2}},
        "space": {
            "lr": {"low": 1e-5, "high": 1e-1, "log": True},
            "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "sampler": {"name": "random", "seed": 1},
        "pruner": {"name": "none"},
        "n_trials": 36,
        "reevaluate": "off",
        "ladder": {"param": "width", "widths": [64, 128, 256], **ladder},
    }
