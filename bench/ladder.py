"""Width ladders end to end: a planted ladder, then charlm at three widths confirmed at a fourth.

Starts `lionsweep serve` on a fresh database, then:

1. **planted** — a scripted worker over the REST protocol whose objective has a known width
   rule: ``ln(ηλ/2e-5)² + 0.25·ln(η/η*(w))² + 3/√w + N(0, 0.05²)`` with
   ``η*(w) = 1e-3·(w/64)^-½``, so λ* ∝ w^½ (the ``sqrt`` rule). The ladder's exponents should
   hold −½ and ½ in their intervals; it is confirmed at 4× the widest rung.
2. **charlm** — real `lionsweep worker` processes (``--workers``, one torch thread each)
   train the character-level transformer at ``--widths`` (d_model; 2 layers, 400 steps),
   searching lr (``--lr-box``, default log 3e-4…3e-2) and the product lr·weight decay
   (``lr_wd_product``, ``--product-box``, default log 1e-5…1e-1) with a random sampler,
   no pruning, and re-running each rung's top 3 configs with 3 fresh seeds. Then it confirms
   at ``--confirm`` (3 seeds of the prediction beside 3 of the widest rung's best config,
   unmoved), whatever the rule says.

Printed per ladder: each rung's verdict and optimum with 90% intervals, the exponents with
90% intervals, the candidate rules' χ², p and relative likelihood, the verdict, the
prediction at the confirmation width, the confirmation's outcome and the wall times.

Usage: python bench/ladder.py [--backend sqlite|postgresql] [--widths 32 64 128]
       [--confirm 256] [--trials 40] [--workers 2] [--lr-box 3e-4 3e-2]
       [--product-box 1e-5 1e-1] [--skip-charlm] [--skip-planted] [--keep ladder.db]
       [--reuse ladder.db]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from service_overhead import Server, fresh_database

LN = math.log
PLANTED_DECLARED = {"width": {"type": "int", "default": 64, "low": 8, "high": 65536, "width": True}}


def ci(pair: list[float] | None, digits: int = 3) -> str:
    """A 90% interval as text."""
    return "-" if not pair else f"[{pair[0]:.{digits}g}, {pair[1]:.{digits}g}]"


def num(v: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant digits, or "-"."""
    return "-" if v is None else f"{v:.{digits}g}"


def workers(url: str, workdir: Path, n: int) -> list[subprocess.Popen]:
    """``n`` `lionsweep worker` processes on the CPU, one torch thread each."""
    exe = Path(sys.executable).with_name("lionsweep")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionsweep"]
    procs = []
    for k in range(n):
        log = open(workdir / f"worker-{k}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [*cmd, "worker", "--server", url, "--device", "cpu"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
            )
        )
    return procs


def submit_when_announced(c: httpx.Client, spec: dict, patience: float = 180.0) -> int:
    """Submit a ladder, again each second while no worker has announced its task (up to
    ``patience`` seconds); its id."""
    deadline = time.monotonic() + patience
    while True:
        r = c.post("/api/ladders", json=spec)
        if r.status_code == 201:
            return r.json()["id"]
        if "no worker has announced" not in r.text or time.monotonic() > deadline:
            raise RuntimeError(f"ladder refused: {r.status_code} {r.text}")
        time.sleep(1.0)


def wait_complete(c: httpx.Client, ladder_id: int, what: str = "rungs") -> float:
    """Wait until the ladder's rungs (or everything) are complete, follow rungs included;
    the wall seconds."""
    t0 = time.monotonic()
    while True:
        lad = c.get(f"/api/ladders/{ladder_id}").json()
        sweeps = lad["rungs"] if what == "rungs" else lad["rungs"] + lad["confirmations"]
        if not lad.get("pending") and all(s["status"] == "complete" for s in sweeps):
            return time.monotonic() - t0
        time.sleep(2.0)


def report(c: httpx.Client, title: str, ladder_id: int, width: float, seconds: float) -> dict:
    """Print the ladder's answer with the prediction at ``width``; returns the rule."""
    rule = c.get(f"/api/ladders/{ladder_id}/rule", params={"width": width}).json()
    print(f"\n## {title} (ladder {ladder_id}, rungs done in {seconds:.0f} s)")
    print("| width | verdict | trials fitted | lr* (90% CI) | λ* (90% CI) | η·λ (90% CI) | used |")
    print("|---|---|---|---|---|---|---|")
    for g in rule["rungs"]:
        print(
            f"| {g['width']:g} | {g['verdict']} | {g['n']} | {num(g['lr'])} {ci(g['lr_ci'])} | "
            f"{num(g['weight_decay'])} {ci(g['weight_decay_ci'])} | {num(g['product'])} "
            f"{ci(g['product_ci'])} | {', '.join(g['used']) or '-'} |"
        )
    print(
        f"lr exponent: {num(rule['lr_exponent'])} {ci(rule['lr_exponent_ci'])}; weight decay "
        f"exponent: {num(rule['wd_exponent'])} {ci(rule['wd_exponent_ci'])}; product exponent: "
        f"{num(rule['product_exponent'])} {ci(rule['product_exponent_ci'])}"
    )
    for axis in rule.get("axes") or []:
        print(
            f"joint fit ({axis['param']}): lr exponent {num(axis['lr_exponent'])} "
            f"{ci(axis['lr_exponent_ci'])}; weight decay exponent {num(axis['wd_exponent'])} "
            f"{ci(axis['wd_exponent_ci'])}; product exponent {num(axis['product_exponent'])} "
            f"{ci(axis['product_exponent_ci'])}"
        )
    if rule.get("axes_note"):
        print(f"  {rule['axes_note']}")
    for s in sorted(rule["rules"], key=lambda s: s["chi2"]):
        print(
            f"  rule {s['name']:<8} (lr ∝ w^{s['lr_exponent']:g}, λ ∝ w^{s['wd_exponent']:g}): "
            f"χ² {s['chi2']:.2f} on {s['dof']} dof, p {s['p_value']:.2g}, relative likelihood "
            f"{s['relative_likelihood']:.2g}{'' if s['consistent'] else ' (does not fit)'}"
        )
    print(f"verdict: {rule['verdict']} (best rule: {rule['best_rule']}) — {rule['reason']}")
    p = rule["prediction"]
    if p:
        print(
            f"prediction at width {width:g}: lr {num(p['lr'])} {ci(p['lr_ci'])}, weight decay "
            f"{num(p['weight_decay'])} {ci(p['weight_decay_ci'])}"
            f"{'' if p['weight_decay_moved'] else ' (unmoved)'}, objective {num(p['value'], 4)} "
            f"{ci(p['value_ci'], 4)} — {p['note']}"
        )
    return rule


def confirm(
    c: httpx.Client,
    ladder_id: int,
    width: float,
    seeds: int,
    drive: Callable[[], int] | None = None,
) -> None:
    """Queue the confirmation at ``width``, run ``drive`` (a scripted worker) if given, wait
    for it, print the outcome."""
    t0 = time.monotonic()
    r = c.post(f"/api/ladders/{ladder_id}/confirm", json={"width": width, "seeds": seeds})
    if r.status_code != 201:
        print(f"confirmation refused ({r.status_code}): {r.text}")
        return
    if drive is not None:
        drive()
    wait_complete(c, ladder_id, "all")
    seconds = time.monotonic() - t0
    [conf] = [
        x
        for x in c.get(f"/api/ladders/{ladder_id}/rule").json()["confirmations"]
        if x["width"] == width
    ]
    t, u = conf["transferred"], conf["untransferred"]
    print(f"confirmation at width {width:g} ({seconds:.0f} s):")
    print(
        f"  transferred   lr {num(t['lr'])} λ {num(t['weight_decay'])}: mean {num(t['mean'], 4)} "
        f"{ci(t['ci'], 4)} over {t['n']} seeds {[round(v, 4) for v in t['values']]}"
    )
    print(
        f"  untransferred lr {num(u['lr'])} λ {num(u['weight_decay'])}: mean {num(u['mean'], 4)} "
        f"{ci(u['ci'], 4)} over {u['n']} seeds {[round(v, 4) for v in u['values']]}"
    )
    pred = conf["predicted"]
    print(
        f"  predicted objective {num(pred and pred['value'], 4)} "
        f"{ci(pred and pred['value_ci'], 4)}; difference {num(conf['difference'], 3)} "
        f"{ci(conf['difference_ci'])}; verdict {conf['verdict']} — {conf['note']}"
    )


def planted_worker(c: httpx.Client, task: str, stop: float) -> int:
    """Claim and finish trials of ``task`` with the planted objective until none is left."""
    n = 0
    while time.monotonic() < stop:
        r = c.post(
            "/api/trials/claim",
            json={"worker_id": "planted", "tasks": [task], "task_params": {task: PLANTED_DECLARED}},
        )
        if r.status_code == 204:
            return n
        a = r.json()
        w, p = a["task"]["params"]["width"], a["params"]
        x = LN(p["lr"] / (1e-3 * (w / 64) ** -0.5))
        value = LN(p["lr"] * p["weight_decay"] / 2e-5) ** 2 + 0.25 * x * x + 3 * w**-0.5
        value += 0.05 * random.Random(a["seed"]).gauss(0, 1)
        c.post(
            f"/api/trials/{a['trial_id']}/finish", json={"state": "complete", "value": value}
        ).raise_for_status()
        n += 1
    return n


def run_planted(c: httpx.Client) -> None:
    """The planted ladder: recover η* ∝ w^-½, λ* ∝ w^½, then confirm at 4× the widest."""
    task = "planted-ladder"
    planted_worker(c, task, time.monotonic() + 5)  # announce the task and its width param
    spec = {
        "name": "planted-ladder",
        "task": {"name": task},
        "space": {
            "lr": {"low": 1e-5, "high": 1e-1, "log": True},
            "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": 36,
        "reevaluate": {"top_k": 3, "seeds": 3},
        "ladder": {"param": "width", "widths": [64, 128, 256]},
    }
    t0 = time.monotonic()
    lid = c.post("/api/ladders", json=spec).raise_for_status().json()["id"]
    planted_worker(c, task, time.monotonic() + 600)
    report(
        c, "planted: η* ∝ w^-½, λ* ∝ w^½ (sqrt), noise sd 0.05", lid, 1024, time.monotonic() - t0
    )
    confirm(c, lid, 1024, 3, lambda: planted_worker(c, task, time.monotonic() + 600))


def run_charlm(
    c: httpx.Client,
    widths: list[int],
    target: int,
    trials: int,
    lr_box: list[float],
    product_box: list[float],
) -> None:
    """The charlm ladder at ``widths``, confirmed at ``target``."""
    spec = {
        "name": "charlm-ladder",
        "task": {"name": "charlm"},
        "space": {
            "lr": {"low": lr_box[0], "high": lr_box[1], "log": True},
            "lr_wd_product": {"low": product_box[0], "high": product_box[1], "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": trials,
        "reevaluate": {"top_k": 3, "seeds": 3},
        "ladder": {"param": "d_model", "widths": widths},
    }
    lid = submit_when_announced(c, spec)
    seconds = wait_complete(c, lid)
    title = (
        f"charlm d_model {widths} (lr log {lr_box[0]:g}…{lr_box[1]:g}, η·λ log "
        f"{product_box[0]:g}…{product_box[1]:g}, {trials} + 9 trials each)"
    )
    report(c, title, lid, target, seconds)
    confirm(c, lid, target, 3)


def reuse_charlm(c: httpx.Client, target: int) -> None:
    """The kept database's charlm ladder: its answer now, and its confirmation at ``target``."""
    ladder = next(
        lad for lad in c.get("/api/ladders").json()["items"] if lad["task"]["name"] == "charlm"
    )
    title = f"charlm d_model {[int(w) for w in ladder['widths']]} (kept run, refitted)"
    report(c, title, ladder["id"], target, 0.0)
    if not any(x["width"] == target for x in ladder["confirmations"]):
        confirm(c, ladder["id"], target, 3)


def main() -> None:
    """Run the ladders and print their answers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--confirm", type=int, default=256)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lr-box", type=float, nargs=2, default=[3e-4, 3e-2], metavar=("LO", "HI"))
    ap.add_argument(
        "--product-box", type=float, nargs=2, default=[1e-5, 1e-1], metavar=("LO", "HI")
    )
    ap.add_argument("--skip-charlm", action="store_true")
    ap.add_argument("--skip-planted", action="store_true")
    ap.add_argument("--keep", type=Path, help="Copy the SQLite database here at the end.")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="A SQLite database kept from an earlier run (--keep): skip the planted ladder, "
        "answer for its charlm ladder as this version fits it, and confirm it if not yet done.",
    )
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-ladder-"))
    if args.reuse:
        shutil.copy(args.reuse, workdir / "reused.db")
        url, drop = f"sqlite:///{workdir / 'reused.db'}", lambda: None
        args.skip_planted = True
    else:
        url, drop = fresh_database(args.backend, workdir)
    server = Server(url, workdir, {})
    agents: list[subprocess.Popen] = []
    print(f"# bench/ladder.py on {platform.machine()}, {os.cpu_count()} cores, {args.backend}")
    t0 = time.monotonic()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            if not args.skip_planted:
                run_planted(c)
            if args.reuse:
                agents = workers(server.url, workdir, args.workers)
                reuse_charlm(c, args.confirm)
            elif not args.skip_charlm:
                agents = workers(server.url, workdir, args.workers)
                run_charlm(c, args.widths, args.confirm, args.trials, args.lr_box, args.product_box)
        print(f"\ntotal wall time: {time.monotonic() - t0:.0f} s")
    finally:
        for a in agents:
            a.terminate()
        for a in agents:
            a.wait(60)
        server.stop()
        if args.keep and url.startswith("sqlite:///"):
            shutil.copy(url.removeprefix("sqlite:///"), args.keep)
        drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
