"""Ladders over several axes: planted ladders (how often the joint fit's intervals hold the
truth, how often each axis names its planted rule, trials spent per interval width), then
charlm over width × training length through real workers, confirmed beyond the ladder.

    python bench/ladder_axes.py --skip-charlm          # the planted part only (about 1 min)
    python bench/ladder_axes.py --skip-planted         # charlm only
    python bench/ladder_axes.py --skip-planted --follow   # charlm, the corner following the fit

**Planted** (no server: ``service.ladder_joint`` and ``service.ladder_axes`` on the trials a
random sampler would give): a tilted basin in (ln η, ln λ) around a planted optimum with
η* ∝ w^-½ S^-½ B^0 and λ* ∝ w^½ S^-½ B^1 (width ``sqrt``, steps ``tau_tokens``, batch
``wd_linear``), a level per rung, Gaussian noise. Two designs — width × steps (a line on each
axis through a corner, plus the far corner: 6 rungs) and width × steps × batch (a line on each
axis through a corner: 7 rungs) — at ``--per-rung`` trials each, ``--ladders`` replications per
noise level. Printed: the share of 90% intervals holding the planted exponent, their median
width, and per axis how often its planted rule is named, a wrong one named, the planted one
rejected.

**charlm** (``lionsweep serve`` on SQLite and ``--workers`` `lionsweep worker` processes, one
torch thread each): d_model × steps rungs (``--widths`` at the first of ``--steps``, ``--steps``
at the first width, and the far corner), ``--trials`` random trials each over lr and the
product lr·λ (``lr_wd_product``), no pruning, no re-runs. With ``--follow`` the far corner is a
follow rung: started once the L through the corner is complete, its box centred on the joint
fit's prediction there (÷/× ``--follow-span``); ``--grid`` makes every point of the 3 × 3
grid a rung (with ``--follow``, the four off the L follow its fit). Printed: each axis's
exponents with 90% intervals, trials spent per unit of interval width (trials / CI width, per
fitted exponent: the design's cost of an answer, to compare with and without ``--follow``), its
named rules, wall time; then the prediction at ``--target`` (2× beyond the ladder on both
axes) and its confirmation: ``--seeds`` runs of the prediction beside as many of the nearest
rung's own optimum, unmoved; with ``--sweep-trials N`` also a sweep of N trials at the target
itself, the prediction judged against its best config.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from ladder import ci, num, submit_when_announced, wait_complete, workers
from service_overhead import Server, fresh_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.ladder_axes import axis_verdict, score_rules  # noqa: E402
from service.ladder_joint import fit_joint  # noqa: E402

TRUTH = {"width": (-0.5, 0.5), "steps": (-0.5, -0.5), "batch": (0.0, 1.0)}
RULE = {"width": "sqrt", "steps": "tau_tokens", "batch": "wd_linear"}
BASE = {"width": 64, "steps": 400, "batch": 32}
DESIGNS = {
    "width × steps": [
        {"width": 64, "steps": 400},
        {"width": 128, "steps": 400},
        {"width": 256, "steps": 400},
        {"width": 64, "steps": 800},
        {"width": 64, "steps": 1600},
        {"width": 256, "steps": 1600},
    ],
    "width × steps × batch": [
        {"width": 64, "steps": 400, "batch": 32},
        {"width": 128, "steps": 400, "batch": 32},
        {"width": 256, "steps": 400, "batch": 32},
        {"width": 64, "steps": 800, "batch": 32},
        {"width": 64, "steps": 1600, "batch": 32},
        {"width": 64, "steps": 400, "batch": 64},
        {"width": 64, "steps": 400, "batch": 128},
    ],
}


def planted_ladder(rng: np.random.Generator, rungs: list[dict], per_rung: int, noise: float):
    """Random trials at every rung of the planted objective: lr, λ, value, axis columns."""
    rows = []
    for point in rungs:
        ln_lr, ln_wd = math.log(1e-3), math.log(2e-2)
        for axis, value in point.items():
            a, b = TRUTH[axis]
            ln_lr += a * math.log(value / BASE[axis])
            ln_wd += b * math.log(value / BASE[axis])
        for _ in range(per_rung):
            x, y = rng.uniform(math.log(1e-5), math.log(1e-1)), rng.uniform(-9.2, 2.3)
            u, v = x - ln_lr, y - ln_wd
            level = 3 * point["width"] ** -0.5
            value = 0.5 * u * u + 0.6 * u * v + 0.5 * v * v + level + noise * rng.normal()
            rows.append((math.exp(x), math.exp(y), value, *point.values()))
    r = np.array(rows)
    return r[:, 0], r[:, 1], r[:, 2], {a: r[:, 3 + i] for i, a in enumerate(rungs[0])}


def run_planted(ladders: int, per_rung: int, noises: list[float]) -> None:
    """Coverage, interval widths and rule identification over planted ladders."""
    print("\n## Planted ladders (joint fit, 90% intervals)")
    print(
        "| design | noise sd | trials | ladders fitted | intervals holding the truth | "
        "median width (lr, λ) | rule named: planted / wrong / planted rejected |"
    )
    print("|---|---|---|---|---|---|---|")
    for design, rungs in DESIGNS.items():
        for noise in noises:
            rng = np.random.default_rng(12345)
            held = total = fitted = 0
            widths: dict[str, list[float]] = {"lr": [], "wd": []}
            named = {a: [0, 0, 0] for a in rungs[0]}
            for rep in range(ladders):
                lr, wd, value, axes = planted_ladder(rng, rungs, per_rung, noise)
                try:
                    got = fit_joint(lr, wd, value, axes, bootstrap=100, seed=rep)
                except ValueError:
                    continue
                fitted += 1
                for i, axis in enumerate(got.axes):
                    a, b = TRUTH[axis.name]
                    for exponent, want, key in ((axis.lr, a, "lr"), (axis.weight_decay, b, "wd")):
                        if exponent is None:
                            continue
                        held += exponent.ci[0] <= want <= exponent.ci[1]
                        total += 1
                        widths[key].append(exponent.width)
                    rules = score_rules(got, i, axis.name)
                    best, _ = axis_verdict(rules)
                    named[axis.name][0] += best == RULE[axis.name]
                    named[axis.name][1] += best is not None and best != RULE[axis.name]
                    planted = next(r for r in rules if r.name == RULE[axis.name])
                    named[axis.name][2] += not planted.consistent
            rates = "; ".join(f"{a} {n[0]}/{n[1]}/{n[2]} of {fitted}" for a, n in named.items())
            share = f"{held}/{total} = {held / max(total, 1):.2f}"
            med = (
                f"{statistics.median(widths['lr']):.3f}, {statistics.median(widths['wd']):.3f}"
                if widths["lr"] and widths["wd"]
                else "-"
            )
            print(
                f"| {design} | {noise:g} | {per_rung * len(rungs)} | {fitted}/{ladders} | {share} "
                f"| {med} | {rates} |"
            )


def run_charlm(
    c: httpx.Client,
    widths: list[int],
    steps: list[int],
    trials: int,
    target: tuple[int, int],
    seeds: int,
    lr_box: list[float],
    product_box: list[float],
    follow_span: float | None = None,
    rules: bool = False,
    sweep_trials: int | None = None,
    grid: bool = False,
    sampler_seed: int = 0,
) -> None:
    """The charlm width × steps ladder, its answer, and its confirmation at ``target`` (with
    ``rules``, an arm per named rule too; with ``sweep_trials``, a sweep of the point's own);
    with ``follow_span`` the far corner follows the fit of the L through the corner."""
    rungs = [{"d_model": w, "steps": steps[0]} for w in widths]
    rungs += [{"d_model": widths[0], "steps": s} for s in steps[1:]]
    rest = (
        [{"d_model": w, "steps": s} for w in widths[1:] for s in steps[1:]]
        if grid
        else [{"d_model": widths[-1], "steps": steps[-1]}]
    )
    ladder: dict = {"rungs": rungs}
    if follow_span is None:
        rungs.extend(rest)
    else:
        ladder["follow"] = {"rungs": rest, "span": follow_span}
    spec = {
        "name": "charlm width x steps",
        "task": {"name": "charlm", "params": {"eval_every": 10_000}},
        "space": {
            "lr": {"low": lr_box[0], "high": lr_box[1], "log": True},
            "lr_wd_product": {"low": product_box[0], "high": product_box[1], "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "sampler": {"name": "random", "seed": sampler_seed},
        "pruner": {"name": "none"},
        "n_trials": trials,
        "reevaluate": "off",
        "ladder": ladder,
    }
    lid = submit_when_announced(c, spec)
    seconds = wait_complete(c, lid)
    query = {"width": target[0], "steps": target[1]}
    rule = c.get(f"/api/ladders/{lid}/rule", params=query).json()
    n = sum(g["n"] for g in rule["rungs"])
    n_rungs = len(rungs) + (len(rest) if follow_span is not None else 0)
    print(
        f"\n## charlm d_model {widths} × steps {steps} ({n_rungs} rungs of {trials} trials, "
        f"{n} fitted; lr log {lr_box[0]:g}…{lr_box[1]:g}, η·λ log {product_box[0]:g}…"
        f"{product_box[1]:g}); rungs done in {seconds:.0f} s"
    )
    print("| rung | verdict | lr* (90% CI) | λ* (90% CI) |")
    print("|---|---|---|---|")
    for g in rule["rungs"]:
        point = ", ".join(f"{k} {v:g}" for k, v in g["point"].items())
        print(
            f"| {point} | {g['verdict']} | {num(g['lr'])} {ci(g['lr_ci'])} | "
            f"{num(g['weight_decay'])} {ci(g['weight_decay_ci'])} |"
        )
    for g in c.get(f"/api/ladders/{lid}").json()["followed"]:
        where = ", ".join(f"{k} {v:g}" for k, v in g["point"].items())
        print(f"followed the fit at {where}: {g['box']} box, {g['note']}")
    print(f"verdict: {rule['verdict']} — {rule['reason']}")
    print(f"joint fit: {rule['axes_note']}")
    for axis in rule["axes"]:
        spans = [
            e[1] - e[0] for e in (axis["lr_exponent_ci"], axis["wd_exponent_ci"]) if e is not None
        ]
        print(
            f"- {axis['param']} ({axis['role']}): lr exponent {num(axis['lr_exponent'])} "
            f"{ci(axis['lr_exponent_ci'])}, λ exponent {num(axis['wd_exponent'])} "
            f"{ci(axis['wd_exponent_ci'])}, η·λ exponent {num(axis['product_exponent'])} "
            f"{ci(axis['product_exponent_ci'])}; widest interval "
            f"{max(spans) if spans else float('nan'):.3g} for {n} trials; rule: "
            f"{axis['best_rule'] or '-'} ({axis['rule_note']})"
        )
        per_width = [
            f"{label} {n / (e[1] - e[0]):.0f}"
            for label, e in (
                ("lr", axis["lr_exponent_ci"]),
                ("λ", axis["wd_exponent_ci"]),
                ("η·λ", axis["product_exponent_ci"]),
            )
            if e is not None and e[1] > e[0]
        ]
        print(f"    trials / CI width: {', '.join(per_width) or '-'}")
        for rr in axis["rules"]:
            print(
                f"    {rr['name']}: χ² {rr['chi2']:.2f} on {rr['dof']}, p {rr['p_value']:.2g}"
                f"{'' if rr['consistent'] else ' (rejected)'}"
            )
    p = rule["prediction"]
    if p is None:
        print(f"no prediction at d_model {target[0]}, steps {target[1]}: nothing to confirm")
        return
    print(
        f"prediction at d_model {target[0]}, steps {target[1]}: lr {num(p['lr'])} "
        f"{ci(p['lr_ci'])}, weight decay {num(p['weight_decay'])} {ci(p['weight_decay_ci'])} — "
        f"{p['note']}"
    )
    t0 = time.monotonic()
    body = {**query, "seeds": seeds, "rules": rules}
    if sweep_trials is not None:
        body["sweep_trials"] = sweep_trials
    r = c.post(f"/api/ladders/{lid}/confirm", json=body)
    if r.status_code != 201:
        print(f"confirmation refused: {r.status_code} {r.text}")
        return
    wait_complete(c, lid, "all")
    [conf] = c.get(f"/api/ladders/{lid}/rule").json()["confirmations"]
    for name, arm in [(n, conf[n]) for n in ("transferred", "untransferred")] + [
        ("arm", a) for a in conf.get("arms") or []
    ]:
        print(
            f"- {name}: lr {num(arm['lr'])}, λ {num(arm['weight_decay'])}: mean "
            f"{num(arm['mean'], 4)} {ci(arm['ci'], 4)} over {arm['n']} seeds ({arm['source']})"
        )
    print(
        f"confirmation ({time.monotonic() - t0:.0f} s): {conf['verdict']} — difference "
        f"{num(conf['difference'], 3)} {ci(conf['difference_ci'], 3)}; {conf['note']}"
    )
    own = conf.get("target")
    if own:
        best = own["best"] or {}
        print(
            f"the point's own sweep {own['sweep_id']} ({own['finished']} runs): best lr "
            f"{num(best.get('lr'))}, λ {num(best.get('weight_decay'))}: mean "
            f"{num(best.get('mean'), 4)} {ci(best.get('ci'), 4)} over {best.get('n')} fresh "
            f"seeds; its own optimum lr {num(own['lr'])} {ci(own['lr_ci'])}, λ "
            f"{num(own['weight_decay'])} {ci(own['weight_decay_ci'])}"
        )
        print(
            f"prediction against it: {own['verdict']} — difference {num(own['difference'], 3)} "
            f"{ci(own['difference_ci'], 3)}, seed sd {num(own['noise_sd'], 3)}; {own['note']}"
        )


def main() -> None:
    """Run the parts asked for and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ladders", type=int, default=30)
    ap.add_argument("--per-rung", type=int, default=20)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.3, 1.0])
    ap.add_argument("--widths", type=int, nargs=3, default=[32, 64, 128])
    ap.add_argument("--steps", type=int, nargs=3, default=[200, 400, 800])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--target", type=int, nargs=2, default=[256, 1600], metavar=("W", "S"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lr-box", type=float, nargs=2, default=[3e-4, 3e-2], metavar=("LO", "HI"))
    ap.add_argument(
        "--product-box", type=float, nargs=2, default=[1e-5, 3e-1], metavar=("LO", "HI")
    )
    ap.add_argument(
        "--follow",
        action="store_true",
        help="charlm: start the L through the corner; the far corner follows its fit",
    )
    ap.add_argument("--follow-span", type=float, default=3.0)
    ap.add_argument(
        "--grid",
        action="store_true",
        help="charlm: every point of the widths × steps grid (9 rungs), not only the L and its "
        "far corner; with --follow, the points off the L follow its fit",
    )
    ap.add_argument(
        "--rules",
        action="store_true",
        help="charlm: the confirmation also runs an arm per named rule's prediction",
    )
    ap.add_argument(
        "--sweep-trials",
        type=int,
        default=None,
        help="charlm: the confirmation also runs a sweep of this many trials at the target",
    )
    ap.add_argument("--sampler-seed", type=int, default=0, help="charlm: the rungs' sampler seed")
    ap.add_argument("--skip-planted", action="store_true")
    ap.add_argument("--skip-charlm", action="store_true")
    args = ap.parse_args()
    print(f"# bench/ladder_axes.py on {platform.machine()}, {os.cpu_count()} cores")
    t0 = time.monotonic()
    if not args.skip_planted:
        run_planted(args.ladders, args.per_rung, args.noise)
        print(f"\nplanted part: {time.monotonic() - t0:.0f} s")
    if args.skip_charlm:
        return
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-axes-"))
    url, drop = fresh_database("sqlite", workdir)
    server = Server(url, workdir, {})
    agents: list[subprocess.Popen] = []
    t1 = time.monotonic()
    try:
        agents = workers(server.url, workdir, args.workers)
        with httpx.Client(base_url=server.url, timeout=300) as c:
            run_charlm(
                c,
                args.widths,
                args.steps,
                args.trials,
                tuple(args.target),
                args.seeds,
                args.lr_box,
                args.product_box,
                args.follow_span if args.follow else None,
                args.rules,
                args.sweep_trials,
                args.grid,
                args.sampler_seed,
            )
        print(f"\ncharlm part: {time.monotonic() - t1:.0f} s")
    finally:
        for a in agents:
            a.terminate()
        for a in agents:
            a.wait(60)
        server.stop()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
