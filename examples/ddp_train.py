"""Sweep a DDP training script: every rank trains, rank 0 alone talks to the server.

Launched by a worker per trial (it finds its trial in the environment)::

    torchrun --nproc_per_node=2 examples/ddp_train.py

or claiming trials itself (rank 0 claims, every rank gets the same trial)::

    torchrun --nproc_per_node=2 examples/ddp_train.py --server http://127.0.0.1:8000 --sweep 1

``trial.report`` is called on every rank at the same steps; rank 0's answer (continue,
prune, stop) is broadcast, so all ranks leave the loop at the same step.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lionsweep


def train(trial: lionsweep.Trial, args: argparse.Namespace) -> None:
    """Train one trial on every rank; report the all-reduced validation loss."""
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if args.cuda else torch.device("cpu")
    torch.manual_seed(trial.seed)  # the same initial weights on every rank
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1)).to(device)
    ddp = DistributedDataParallel(model)
    optimizer = trial.optimizer(model)
    schedule = trial.schedule(optimizer, total_steps=args.steps)
    data = torch.Generator().manual_seed(trial.seed * world + rank)  # this rank's shard
    teacher = torch.linspace(-0.5, 0.5, 8, device=device).unsqueeze(1)
    x_val = torch.randn(128, 8, generator=data).to(device)
    y_val = x_val @ teacher
    val = torch.tensor(float("nan"))
    for step in range(1, args.steps + 1):
        x = torch.randn(32, 8, generator=data).to(device)
        loss = nn.functional.mse_loss(ddp(x), x @ teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        time.sleep(args.step_delay)
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                val = nn.functional.mse_loss(model(x_val), y_val)
            dist.all_reduce(val)
            val /= world
            if trial.report(step, val.item()):
                print(f"rank {rank} stops at step {step}", flush=True)
                break
    state = trial.finish(val.item())
    talks = trial.server is not None
    print(f"rank {rank} trial {trial.number} {state} talks to the server: {talks}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("LIONSWEEP_SERVER"))
    parser.add_argument("--sweep", type=int)
    parser.add_argument("--token", default=os.environ.get("LIONSWEEP_TOKEN"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--max-trials", type=int, default=None)
    parser.add_argument("--step-delay", type=float, default=0.0, help="sleep per step (s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.cuda = torch.cuda.is_available()
    if args.cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if args.cuda else "gloo")
    try:
        if os.environ.get("LIONSWEEP_TRIAL_ID"):  # launched by a worker for one trial
            with lionsweep.current_trial() as trial:
                train(trial, args)
        else:
            for trial in lionsweep.trials(
                args.server, sweep=args.sweep, token=args.token, max_trials=args.max_trials
            ):
                with trial:
                    train(trial, args)
    finally:
        # A DistributedDataParallel wrapper sits in a reference cycle that holds the process
        # group: collect it now, so the group's threads end here and not while the interpreter
        # shuts down (where gloo's can abort the process).
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
