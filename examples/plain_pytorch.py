"""Sweep your own PyTorch loop: a small MLP regression trained with each trial's Lion config.

Claim and run the trials of a sweep yourself::

    lionsweep submit my-sweep.yaml              # any task name, e.g. {name: mlp-regression}
    python examples/plain_pytorch.py --server http://127.0.0.1:8000 --sweep 1

or let a worker run this program per trial (it then finds its trial in the environment,
see ``lionsweep.current_trial``). The token comes from ``--token`` or ``LIONSWEEP_TOKEN``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

import lionsweep


def make_data(generator: torch.Generator, n: int = 512, dim: int = 16):
    """A noisy linear target with a fixed teacher (the same for every trial)."""
    teacher = 0.25 * torch.randn(dim, 1, generator=torch.Generator().manual_seed(0))
    x = torch.randn(n, dim, generator=generator)
    y = x @ teacher + 0.1 * torch.randn(n, 1, generator=generator)
    return x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4 :], y[n * 3 // 4 :]


def train(trial: lionsweep.Trial, steps: int, eval_every: int, step_delay: float) -> float:
    """Train one trial, reporting the validation loss; return the last one."""
    generator = trial.seed_everything()
    x, y, x_val, y_val = make_data(generator)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = trial.optimizer(model)  # optim.Lion, or AdamW for a baseline-arm trial
    schedule = trial.schedule(optimizer, total_steps=steps)
    batch = int(trial.params.get("batch_size", 32))
    val_loss = float("nan")
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (batch,), generator=generator)
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        time.sleep(step_delay)
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                val_loss = nn.functional.mse_loss(model(x_val), y_val).item()
            if trial.report(step, val_loss, train_loss=loss.item()):
                print(f"trial {trial.number} stops at step {step}", flush=True)
                break
    return val_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("LIONSWEEP_SERVER"))
    parser.add_argument("--sweep", type=int, help="the sweep to claim trials of")
    parser.add_argument("--token", default=os.environ.get("LIONSWEEP_TOKEN"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--step-delay", type=float, default=0.0, help="sleep per step (s)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    if os.environ.get("LIONSWEEP_TRIAL_ID"):  # launched by a worker for one trial
        with lionsweep.current_trial() as trial:
            trial.finish(train(trial, args.steps, args.eval_every, args.step_delay))
        return
    if args.sweep is None:
        parser.error("--sweep is required (or run under a lionsweep worker)")
    for trial in lionsweep.trials(
        args.server, sweep=args.sweep, token=args.token, max_trials=args.max_trials
    ):
        with trial:
            print(f"trial {trial.number}: {trial.params}", flush=True)
            state = trial.finish(train(trial, args.steps, args.eval_every, args.step_delay))
            print(f"trial {trial.number} {state}", flush=True)


if __name__ == "__main__":
    main()
