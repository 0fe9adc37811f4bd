"""A command task in Python: linear regression trained with the trial's optimizer.

A worker that registers this program (see commands.toml) runs it once per trial. The
program finds its trial with ``lionsweep.current_trial()`` (from the environment the worker
sets: no claim, no heartbeats, the worker does both), reports through the Python client and
finishes the trial itself; a prune or stop answered to a report ends it at once (the worker
stops the program on a cancel or a shutdown). Run by hand, outside a worker, it says so.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import lionsweep


def main() -> int:
    """Train and finish the current trial; return the exit code."""
    try:
        trial = lionsweep.current_trial()
    except lionsweep.NoTrial as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    steps = int(trial.task_params.get("steps", 50))
    eval_every = int(trial.task_params.get("eval_every", 25))
    dim = 8
    teacher = 0.1 * torch.randn(dim, 1, generator=torch.Generator().manual_seed(0))
    x_val = torch.randn(256, dim, generator=torch.Generator().manual_seed(1))
    y_val = x_val @ teacher
    generator = trial.seed_everything()  # the trial's seed decides the batches
    model = nn.Linear(dim, 1, bias=False)
    nn.init.zeros_(model.weight)
    optimizer = trial.optimizer(model)  # optim.Lion (AdamW for a baseline-arm trial)
    schedule = trial.schedule(optimizer, total_steps=steps)
    with trial:  # an exception fails the trial with its reason
        for step in range(1, steps + 1):
            x = torch.randn(64, dim, generator=generator)
            loss = nn.functional.mse_loss(model(x), x @ teacher)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % eval_every == 0 or step == steps:
                with torch.no_grad():
                    val_loss = nn.functional.mse_loss(model(x_val), y_val).item()
                print(f"step {step}: val_loss {val_loss:.4g}", flush=True)
                if trial.report(step, val_loss):
                    break  # pruned or stopped: finish() records that
        state = trial.finish()  # the last reported value, unless pruned or stopped
    print(f"trial {trial.number} {state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
