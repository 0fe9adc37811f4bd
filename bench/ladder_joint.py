"""Joint ladder fit against today's per-rung fit, on planted width ladders whose exponents are
known: how wide the 90% intervals of the lr and weight-decay exponents are, and how often they
hold the planted values, over many replications of the same design.

    python bench/ladder_joint.py                     # 40 ladders, noise 0.05 and 0.2
    python bench/ladder_joint.py --ladders 100 --noise 0.1

Per-rung (``service.ladder_fit``, what ladders serve today): each rung's surface is fitted on
its own (``service.surface``), its optimum's refits become a point, and lines go through the
points. Joint (``service.ladder_joint``): one basin fitted to every trial at once. The planted
objective is the one the ladder tests use: a valley along η·λ = 2e-5 with the optimum along
it at η* = 1e-3·(w/64)^-½ (the sqrt rule), plus a level that improves with width.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.ladder_fit import fit_ladder, rung_point  # noqa: E402
from service.ladder_joint import fit_joint  # noqa: E402
from service.surface import Box, Observations, fit_surface  # noqa: E402

PRODUCT = 2e-5
WIDTHS = (64, 128, 256)
TRUTH = (-0.5, 0.5)  # lr and weight-decay exponents of width


def planted(lr: float, wd: float, w: float) -> float:
    """The ladder tests' planted objective (noise-free)."""
    lr_star = 1e-3 * (w / 64) ** TRUTH[0]
    x = math.log(lr / lr_star)
    return math.log(lr * wd / PRODUCT) ** 2 + 0.25 * x**2 + 3 * w**-0.5


def ladder(rng: np.random.Generator, per_rung: int, noise: float) -> list[tuple]:
    """Random trials over lr log 1e-5…1e-1 and weight decay log 1e-3…10 at every width."""
    rows = []
    for w in WIDTHS:
        for _ in range(per_rung):
            lr = math.exp(rng.uniform(math.log(1e-5), math.log(1e-1)))
            wd = math.exp(rng.uniform(math.log(1e-3), math.log(10)))
            rows.append((lr, wd, planted(lr, wd, w) + noise * rng.normal(), w))
    return rows


def per_rung(rows: list[tuple]) -> tuple[tuple | None, tuple | None]:
    """Today's answer: (lr exponent CI, weight-decay exponent CI), None where not given."""
    box = Box(math.log(1e-5), math.log(1e-1), math.log(1e-3), math.log(10))
    points = []
    for w in WIDTHS:
        mine = [r for r in rows if r[3] == w]
        x = np.log([r[0] for r in mine])
        y = np.log([r[1] for r in mine])
        obs = Observations(
            x=x,
            y=y,
            z=np.zeros((len(mine), 0)),
            value=np.array([r[2] for r in mine]),
            z_ref=np.zeros(0),
        )
        surface = fit_surface(obs, box)
        if surface.lr is None:
            continue
        d = surface.draws
        points.append(rung_point(w, d["ln_lr"], d["ln_wd"], d["value"]))
    fit = fit_ladder(points)
    lr = fit.lr_exponent.pair() if fit.lr_exponent else None
    wd = fit.wd_exponent.pair() if fit.wd_exponent else None
    return lr, wd


def joint(rows: list[tuple]) -> tuple[tuple, tuple]:
    """The joint fit's (lr exponent CI, weight-decay exponent CI)."""
    r = np.array(rows)
    got = fit_joint(r[:, 0], r[:, 1], r[:, 2], {"width": r[:, 3]})
    [axis] = got.axes
    return axis.lr.ci, axis.weight_decay.ci


def summary(cis: list[tuple | None], truth: float) -> str:
    """Given / held the truth / median width of a list of intervals."""
    given = [c for c in cis if c is not None]
    if not given:
        return "never given"
    held = sum(lo <= truth <= hi for lo, hi in given)
    width = statistics.median(hi - lo for lo, hi in given)
    return f"given {len(given)}/{len(cis)}, held {held}/{len(given)}, median width {width:.3f}"


def main(argv=None) -> int:
    """Run the comparison and print one block per noise level."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ladders", type=int, default=40, help="replications per noise level")
    ap.add_argument("--per-rung", type=int, default=36, help="trials per rung")
    ap.add_argument("--noise", default="0.05,0.2", help="comma list of noise sds")
    args = ap.parse_args(argv)
    print(
        f"widths {WIDTHS}, {args.per_rung} random trials per rung, planted exponents "
        f"lr {TRUTH[0]}, weight decay {TRUTH[1]}; 90% intervals"
    )
    for noise in [float(v) for v in args.noise.split(",")]:
        started = time.perf_counter()
        results = {"per-rung": ([], []), "joint": ([], [])}
        for rep in range(args.ladders):
            rows = ladder(np.random.default_rng(rep), args.per_rung, noise)
            for name, fn in (("per-rung", per_rung), ("joint", joint)):
                lr, wd = fn(rows)
                results[name][0].append(lr)
                results[name][1].append(wd)
        print(f"\nnoise sd {noise} ({args.ladders} ladders, {time.perf_counter() - started:.0f} s)")
        for name, (lr, wd) in results.items():
            print(f"  {name:8}  lr: {summary(lr, TRUTH[0])}")
            print(f"  {'':8}  wd: {summary(wd, TRUTH[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
