"""Built-in tasks' trials at their default size, run one after another in one process as a
worker agent runs them (no server): wall time per trial, time per step, the first step's
overhead (compiling) and the optimizer's share of the trial.

    python bench/worker_trials.py                  # every built-in task, 3 trials each
    python bench/worker_trials.py --tasks charlm --trials 2 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv=None):
    """The command-line options of this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", default="quadratic,digits,charlm", help="comma list of tasks")
    ap.add_argument("--trials", type=int, default=3, help="trials per task")
    ap.add_argument("--lr", type=float, default=1e-3, help="every trial's lr")
    ap.add_argument("--weight-decay", type=float, default=0.1, help="every trial's weight decay")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    """Run the trials and print one row per task."""
    args = parse_args(argv)
    import torch

    from worker import tasks
    from worker.harness import NullReporter, effective_config, run_trial

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks.load_builtins()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; lr {args.lr}, "
        f"weight decay {args.weight_decay}; {args.trials} trials per task in one process"
    )
    print(
        f"{'task':10s} {'steps':>6s} {'wall s (each trial)':>26s} {'step ms':>8s} "
        f"{'first-step overhead s':>22s} {'optimizer share':>16s}"
    )
    for name in args.tasks.split(","):
        task = tasks.get(name)
        walls, steps_ms, overheads, shares = [], [], [], []
        for seed in range(args.trials):
            assignment = {
                "params": {"lr": args.lr, "weight_decay": args.weight_decay},
                "task": {"name": name, "params": {}},
                "seed": seed,
            }
            config = effective_config(task, assignment, "cpu")
            started = time.perf_counter()
            result = run_trial(task, config, NullReporter())
            walls.append(time.perf_counter() - started)
            t = result.timings
            steps_ms.append(1e3 * (t.get("step_s") or float("nan")))
            overheads.append(t.get("first_step_overhead_s") or 0.0)
            shares.append(t.get("optimizer_share") or float("nan"))
        print(
            f"{name:10s} {config.steps:6d} {', '.join(f'{w:.2f}' for w in walls):>26s} "
            f"{statistics.median(steps_ms):8.2f} "
            f"{', '.join(f'{o:.2f}' for o in overheads):>22s} "
            f"{statistics.median(shares):15.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
