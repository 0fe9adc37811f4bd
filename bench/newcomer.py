"""Does the lr × weight-decay answer agree with its own trials? Two sweeps a newcomer runs.

Through a real server on a fresh SQLite database:

1. ``mlp``: a breast-cancer MLP (scikit-learn's bundled dataset) trained in this process
   through ``import lionsweep`` — the user's own loop claims the trials — with the sweep's
   defaults (TPE, the default pruner, no repeated seeds);
2. ``awk``: the command task of ``examples/command_task`` (Lion on a quadratic in sh + awk),
   run by a real ``lionsweep worker --commands``, with ``examples/command_task/sweep.yaml``;
3. ``digits``: the built-in task with every default of a sweep spec (sampler, pruner, space,
   re-evaluation) and 30 trials, run by a real ``lionsweep worker``.

For each: the rule's verdict and reason, the numbers it shows, and the checks a reader would
make against the trials table — the optimum inside the lr and weight-decay range of the
trials that trained, below the stability edge, no predicted value below zero for a loss or
below the best config's mean by more than the noise, no slope under a verdict without a
valley, no optimum under ``insufficient``. Prints ``ok`` or what broke.

Usage: python bench/newcomer.py [--mlp-trials 30] [--skip-awk] [--skip-mlp]
       [--digits-trials 30] [--keep db]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import torch
import yaml
from service_overhead import Server
from sklearn.datasets import load_breast_cancer
from torch import nn

import lionsweep

ROOT = Path(__file__).resolve().parents[1]
MLP_SPEC = {
    "name": "newcomer-mlp",
    "task": {"name": "breast-cancer-mlp"},
    "n_trials": 30,
    "space": {
        "lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
    },
}


def mlp_data() -> tuple[torch.Tensor, ...]:
    """Standardised breast-cancer features, a fixed 70/30 split."""
    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)[:, None]
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(0.7 * len(x))
    tr, va = perm[:cut], perm[cut:]
    return x[tr], y[tr], x[va], y[va]


def run_mlp(url: str, n_trials: int) -> int:
    """Submit the MLP sweep and train every trial in this process; the sweep id."""
    spec = {**MLP_SPEC, "n_trials": n_trials}
    with httpx.Client(base_url=url, timeout=60) as c:
        sweep = c.post("/api/sweeps", json=spec).json()["id"]
    x, y, xv, yv = mlp_data()
    for trial in lionsweep.trials(url, sweep=sweep, idle_exit=5):
        with trial:
            g = trial.seed_everything()
            model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1))
            opt = trial.optimizer(model)
            val = float("nan")
            for step in range(1, 301):
                idx = torch.randint(0, len(x), (64,), generator=g)
                loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step % 50 == 0:
                    with torch.no_grad():
                        val = nn.functional.binary_cross_entropy_with_logits(model(xv), yv).item()
                    if trial.report(step, val):
                        break
            trial.finish(val)
    return sweep


def run_digits(url: str, workdir: Path, n_trials: int) -> int:
    """A sweep of the built-in ``digits`` task with every default (sampler, pruner, space,
    re-evaluation), run by a real worker; the sweep id."""
    exe = Path(sys.executable).with_name("lionsweep")
    log = open(workdir / "digits-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [str(exe), "worker", "--server", url, "--device", "cpu", "--idle-exit", "10"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    spec = {"name": "newcomer-digits", "task": {"name": "digits"}, "n_trials": n_trials}
    with httpx.Client(base_url=url, timeout=60) as c:
        sweep = c.post("/api/sweeps", json=spec).json()["id"]
    worker.wait(1800)
    log.close()
    return sweep


def run_awk(url: str, workdir: Path) -> int:
    """Submit the awk sweep and run it with a real worker; the sweep id."""
    exe = Path(sys.executable).with_name("lionsweep")
    commands = ROOT / "examples/command_task/commands.toml"
    log = open(workdir / "awk-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [str(exe), "worker", "--server", url, "--commands", str(commands), "--idle-exit", "10"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    spec = yaml.safe_load((ROOT / "examples/command_task/sweep.yaml").read_text())
    with httpx.Client(base_url=url, timeout=60) as c:
        sweep = c.post("/api/sweeps", json=spec).json()["id"]
    worker.wait(900)
    log.close()
    return sweep


def check(c: httpx.Client, sweep: int) -> list[str]:
    """Print the sweep's answer and return what contradicts its own trials."""
    rule = c.get(f"/api/sweeps/{sweep}/scaling-rule").json()
    best = c.get(f"/api/sweeps/{sweep}/best").json()["best"]
    trials = c.get(f"/api/sweeps/{sweep}/trials", params={"limit": 1000}).json()["items"]
    done = [t for t in trials if t["state"] == "complete"]
    print(f"\n## sweep {sweep}: {len(trials)} trials, {len(done)} complete")
    print(f"verdict: {rule['verdict']} — {rule['reason']}")
    print(f"n fitted {rule['n']} (imputed {rule.get('n_imputed')}), left out {rule['left_out']}")
    print(f"design: {rule.get('design')}; noise: {rule.get('noise_source')}")
    opt = rule.get("optimum") or {}
    print(f"optimum: {opt}")
    print(f"slope: {rule['slope']} {rule['slope_ci']}; stability: {rule.get('stability')}")
    print(f"best config: trial {best['trial_number']} mean {best['mean']:.4g} ({best['n_seeds']})")
    problems = []
    verdict = rule["verdict"]
    if verdict != "valley" and (rule["slope"] is not None or rule["valley"]):
        problems.append("a slope or valley under a verdict without a valley")
    if verdict in ("insufficient", "boundary") and any(opt.get(k) for k in ("lr", "value")):
        problems.append(f"an optimum under verdict {verdict}")
    if verdict == "lr_only" and opt.get("weight_decay") is not None:
        problems.append("a weight decay under lr_only")
    support = rule.get("support") or {}
    for key in ("lr", "weight_decay"):
        v, lo_hi = opt.get(key), support.get(key)
        if v is not None and lo_hi and not lo_hi[0] * 0.999 <= v <= lo_hi[1] * 1.001:
            problems.append(f"optimum {key} {v:.3g} outside the trials' {lo_hi}")
    stab = rule.get("stability") or {}
    if opt.get("lr") and stab.get("lr_diverged_min") and opt["lr"] >= stab["lr_diverged_min"]:
        problems.append("optimum lr at or past the divergence edge")
    if opt.get("value") is not None:
        if opt["value"] < 0 or min(opt.get("value_ci") or [0]) < 0:
            problems.append("a negative predicted loss")
        noise = rule.get("noise_sd") or rule.get("residual_sd") or 0.0
        if opt["value"] < best["mean"] - 3 * noise:
            problems.append("a predicted value far below the best config's mean")
    print("ok" if not problems else "PROBLEMS: " + "; ".join(problems))
    return problems


def main() -> None:
    """Run the newcomer sweeps and check their answers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlp-trials", type=int, default=30)
    ap.add_argument("--skip-awk", action="store_true")
    ap.add_argument("--skip-mlp", action="store_true")
    ap.add_argument("--digits-trials", type=int, default=30, help="0: skip the digits sweep")
    ap.add_argument("--keep", type=Path, help="Copy the SQLite database here at the end.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-newcomer-"))
    server = Server(f"sqlite:///{workdir / 'newcomer.db'}", workdir, {})
    problems = []
    try:
        sweeps = [] if args.skip_mlp else [run_mlp(server.url, args.mlp_trials)]
        if not args.skip_awk:
            sweeps.append(run_awk(server.url, workdir))
        if args.digits_trials:
            sweeps.append(run_digits(server.url, workdir, args.digits_trials))
        with httpx.Client(base_url=server.url, timeout=300) as c:
            for sweep in sweeps:
                problems += check(c, sweep)
    finally:
        server.stop()
        if args.keep:
            shutil.copy(workdir / "newcomer.db", args.keep)
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
