"""Are the rule's intervals honest? The same charlm sweep with several sampler seeds.

Runs ``--seeds`` sweeps of the built-in ``charlm`` task that differ only in the random
sampler's seed (same box, same budget, no pruning), through a real server and one real
worker, then asks each sweep's ``/scaling-rule`` for its optimum lr and weight decay with
their 90% intervals. Each sweep's estimate is a fresh draw of the same estimate, so the
other sweep's estimate differs from this one's by √2 times one estimate's spread: an honest
90% interval (±1.645 sd) then holds it about 75% of the time (P(|Z| < 1.645/√2)), and an
interval as wide as the true 90% spread of the estimate's difference would hold it 90%.
Far below 75% means the intervals are too narrow. Printed: each sweep's verdict and
optimum, and for lr and weight decay the share of ordered pairs (i, j ≠ i) whose interval i
holds estimate j.

Training takes the time, and the answers are
computed from the stored trials when asked, so a run's database can be kept (``--keep``)
and re-analysed later with ``--db`` (for example after the estimator changed) without
training again.

Usage: python bench/calibration.py [--seeds 4] [--trials 24] [--keep calib.db]
       python bench/calibration.py --db calib.db
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from answers import worker
from service_overhead import Server

TASK_PARAMS: dict = {}
"""charlm at its defaults (width 64, 400 steps)."""
SPACE = {
    "beta1": 0.9,
    "beta2": 0.99,
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-2, "high": 30.0, "log": True},
}


def spec(seed: int, n_trials: int) -> dict:
    """The charlm sweep with the random sampler seeded ``seed``."""
    return {
        "name": f"calibration-seed{seed}",
        "task": {"name": "charlm", "params": TASK_PARAMS},
        "sampler": {"name": "random", "seed": seed},
        "pruner": {"name": "none"},
        "n_trials": n_trials,
        "reevaluate": {"mode": "off"},
        "space": SPACE,
    }


def wait_all(c: httpx.Client, ids: list[int]) -> None:
    """Block until every sweep in ``ids`` is complete."""
    while True:
        states = [c.get(f"/api/sweeps/{i}").json()["status"] for i in ids]
        if all(s != "running" for s in states):
            return
        time.sleep(5.0)


def holds(ci: list[float] | None, x: float | None) -> bool | None:
    """Whether interval ``ci`` holds ``x`` (None when either is missing)."""
    if ci is None or x is None:
        return None
    return ci[0] <= x <= ci[1]


def coverage(rules: list[dict], key: str) -> tuple[int, int]:
    """Over ordered pairs of sweeps: how many intervals of ``key`` held the other's estimate,
    out of how many pairs had both."""
    hit = total = 0
    for a, b in itertools.permutations(rules, 2):
        oa, ob = a.get("optimum"), b.get("optimum")
        if not oa or not ob:
            continue
        h = holds(oa.get(f"{key}_ci"), ob.get(key))
        if h is None:
            continue
        total += 1
        hit += h
    return hit, total


def analyse(c: httpx.Client) -> None:
    """Print each calibration sweep's answer and the pairwise coverage."""
    sweeps = [
        s
        for s in c.get("/api/sweeps", params={"limit": 100}).json()["items"]
        if s["name"].startswith("calibration-seed")
    ]
    sweeps.sort(key=lambda s: s["id"])
    rules = []
    for s in sweeps:
        rule = c.get(f"/api/sweeps/{s['id']}/scaling-rule").json()
        rules.append(rule)
        opt = rule.get("optimum")
        shown = [
            f"{name} {opt[key]:.3g} {fmt(opt.get(key + '_ci'))}"
            for key, name in (("lr", "lr"), ("weight_decay", "wd"))
            if opt and opt.get(key) is not None
        ]
        where = ", ".join(shown) or "-"
        print(f"sweep {s['id']} ({s['name']}, n={rule['n']}): {rule['verdict']}; {where}")
        print(f"    {rule['reason']}")
    for key in ("lr", "weight_decay"):
        hit, total = coverage(rules, key)
        share = f"{hit / total:.0%}" if total else "-"
        print(f"{key}: {hit} of {total} ordered pairs held the other sweep's estimate ({share})")


def fmt(pair: list[float] | None) -> str:
    """An interval as text."""
    return "-" if not pair else f"[{pair[0]:.3g}, {pair[1]:.3g}]"


def main() -> None:
    """Run (or re-read) the calibration sweeps and print the coverage."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--keep", type=Path, help="Copy the SQLite database here at the end.")
    ap.add_argument("--db", type=Path, help="Analyse this kept database; train nothing.")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-calibration-"))
    db = workdir / "calibration.db"
    if args.db:
        shutil.copy(args.db, db)
    server = Server(f"sqlite:///{db}", workdir, {})
    print(f"# bench/calibration.py on {platform.machine()}, {os.cpu_count()} cores")
    agent = None
    try:
        with httpx.Client(base_url=server.url, timeout=600) as c:
            if not args.db:
                agent = worker(server.url, workdir)
                t0 = time.monotonic()
                ids = []
                for seed in range(args.seeds):
                    r = c.post("/api/sweeps", json=spec(seed, args.trials))
                    r.raise_for_status()
                    ids.append(r.json()["id"])
                wait_all(c, ids)
                print(f"{args.seeds} sweeps × {args.trials} trials: {time.monotonic() - t0:.0f} s")
            analyse(c)
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(60)
        server.stop()
        if args.keep:
            shutil.copy(db, args.keep)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
