"""Do the answers hold up? Planted sweeps and a charlm sweep through a real server and worker.

Starts `lionsweep serve` on a fresh database and one `lionsweep worker`, then runs:

1. ``planted`` with a valley (val_loss = ln(ηλ/2e-5)² + noise): the verdict should be
   ``valley`` with a slope interval holding −1 and a product interval holding 2e-5;
2. ``planted`` ignoring weight decay (ln(η/1e-3)² + noise): the verdict should be ``lr_only``;
3. ``charlm`` at one width over lr log 1e-4…1e-2 and weight decay log 1e-2…30: whatever the
   data say.

Each sweep re-runs its top 3 configs with 3 fresh seeds. Printed per sweep: the verdict and
its reason, slope and product with 90% intervals, the fitted optimum, the best config's seed
mean with its interval, the seed noise sd, and the wall time.

Usage: python bench/answers.py [--backend sqlite|postgresql] [--planted-trials 40]
       [--charlm-trials 40] [--skip-charlm] [--keep answers.db]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from service_overhead import Server, fresh_database

SPACE = {"beta1": 0.9, "beta2": 0.99}
REEVALUATE = {"top_k": 3, "seeds": 3}


def worker(url: str, workdir: Path) -> subprocess.Popen:
    """One `lionsweep worker` on the CPU."""
    exe = Path(sys.executable).with_name("lionsweep")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionsweep"]
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [*cmd, "worker", "--server", url, "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def sweep_spec(
    name: str, task: dict, n_trials: int, lr_low: float, wd_low: float, wd_high: float
) -> dict:
    """A random-sampler, unpruned sweep over lr log lr_low…1e-2 and weight decay log
    wd_low…wd_high, re-running its top 3 configs with 3 fresh seeds."""
    return {
        "name": name,
        "task": task,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": n_trials,
        "reevaluate": REEVALUATE,
        "space": {
            **SPACE,
            "lr": {"low": lr_low, "high": 1e-2, "log": True},
            "weight_decay": {"low": wd_low, "high": wd_high, "log": True},
        },
    }


def run_sweep(c: httpx.Client, spec: dict) -> tuple[dict, float]:
    """Submit ``spec`` and wait for the sweep to complete; its id and the wall seconds."""
    t0 = time.monotonic()
    sweep = c.post("/api/sweeps", json=spec)
    sweep.raise_for_status()
    sid = sweep.json()["id"]
    while (got := c.get(f"/api/sweeps/{sid}").json())["status"] == "running":
        time.sleep(1.0)
    return got, time.monotonic() - t0


def ci(pair: list[float] | None, digits: int = 3) -> str:
    """A 90% interval as text."""
    return "-" if not pair else f"[{pair[0]:.{digits}g}, {pair[1]:.{digits}g}]"


def report(c: httpx.Client, title: str, sweep: dict, seconds: float) -> None:
    """Print the sweep's answers."""
    sid = sweep["id"]
    rule = c.get(f"/api/sweeps/{sid}/scaling-rule").json()
    best = c.get(f"/api/sweeps/{sid}/best", params={"k": 3}).json()
    counts = sweep["counts"]
    print(f"\n## {title} (sweep {sid}, {seconds:.0f} s, {counts})")
    print(f"verdict: {rule['verdict']} — {rule['reason']}")
    if rule["slope"] is not None:
        print(f"slope d ln λ / d ln η: {rule['slope']:.3f}  90% CI {ci(rule['slope_ci'])}")
    if rule["product"] is not None:
        print(f"η·λ at the optimum: {rule['product']:.3g}  90% CI {ci(rule['product_ci'])}")
        print(f"α0 = √(2ηλ): {rule['alpha0']:.3g}  90% CI {ci(rule['alpha0_ci'])}")
    opt = rule["optimum"] or {}
    shown = [
        f"{name} {opt[key]:.{digits}g} {ci(opt[key + '_ci'], digits)}"
        for key, name, digits in (
            ("lr", "lr", 3),
            ("weight_decay", "weight decay", 3),
            ("value", "predicted", 4),
        )
        if opt.get(key) is not None
    ]
    if shown:  # only what the verdict shows
        print("fitted optimum: " + ", ".join(shown))
    stab = rule.get("stability") or {}
    if stab.get("lr_diverged_min") is not None:
        print(f"stability: {stab['note']}")
    print(f"trials fitted: {rule['n']}, left out: {rule['left_out']}")
    b = best["best"]
    kw = b["optimizer_kwargs"]
    print(
        f"best config: trial {b['trial_number']} lr {kw['lr']:.3g} weight decay "
        f"{kw['weight_decay']:.3g}: mean {b['mean']:.4g} over {b['n_seeds']} fresh seeds, "
        f"90% CI {ci(b['ci'], 4)} (the run that selected it: {b['selection_value']})"
    )
    noise = best["noise_sd"]
    print(f"seed noise sd: {'-' if noise is None else f'{noise:.3g}'} ({best['noise_df']} df)")
    print(f"ties: {best['tied']} — {best['note']}")


def main() -> None:
    """Run the sweeps and print their answers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--planted-trials", type=int, default=40)
    ap.add_argument("--charlm-trials", type=int, default=40)
    ap.add_argument("--skip-charlm", action="store_true")
    ap.add_argument("--keep", type=Path, help="Copy the SQLite database here at the end.")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-answers-"))
    url, drop = fresh_database(args.backend, workdir)
    server = Server(url, workdir, {})
    agent = worker(server.url, workdir)
    print(f"# bench/answers.py on {platform.machine()}, {os.cpu_count()} cores, {args.backend}")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for surface, title in (
                ("valley", "planted valley: ln(ηλ/2e-5)² + N(0, 0.1²)"),
                ("lr_only", "planted, weight decay ignored: ln(η/1e-3)² + N(0, 0.1²)"),
            ):
                params = {"surface": surface, "noise": 0.1}
                task = {"name": "planted", "params": params}
                spec = sweep_spec(f"planted-{surface}", task, args.planted_trials, 1e-5, 1e-3, 10.0)
                report(c, title, *run_sweep(c, spec))
            if not args.skip_charlm:
                task = {"name": "charlm"}
                spec = sweep_spec("charlm-lr-wd", task, args.charlm_trials, 1e-4, 1e-2, 30.0)
                report(c, "charlm at its default width", *run_sweep(c, spec))
    finally:
        agent.terminate()
        agent.wait(60)
        server.stop()
        if args.keep and url.startswith("sqlite:///"):
            shutil.copy(url.removeprefix("sqlite:///"), args.keep)
        drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
