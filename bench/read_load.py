"""Do many readers starve the worker protocol? A real server, scripted workers, then readers.

Phase 1 (idle): W scripted workers loop claim → 10 reports → finish against one
`lionsweep serve` for D seconds. Phase 2 (loaded): the same, while R reader threads poll
`GET /api/sweeps` as fast as they can. Printed per phase: worker trials/s, reads/s and the
read latency p50/p99; last, loaded worker throughput as a fraction of idle.

With ``--answers N``, instead: a sweep of N imported trials (10,000 at most, 1,000 a
request), then the time of ``/best``, ``/scaling-rule`` and the sweep (``GET /api/sweeps/{id}``)
cold (first read after the server started), warm, and cold again after one more trial (a
change), and ``GET /api/sweeps`` latency while two cold rule requests run, as ratios.

Usage: python bench/read_load.py [--backend sqlite] [--workers 2] [--readers 200]
       [--seconds 20] [--read-concurrency N] [--answers 10000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from service_overhead import REPORTS, Server, fresh_database, objective

ANSWERS = ("sweep", "best", "scaling-rule")
SPACE = {
    "lr": {"low": 1e-5, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
    "beta1": 0.9,
    "beta2": 0.99,
}


def worker_loop(url: str, name: str, stop: threading.Event, done: list[float]) -> None:
    """Claim → 10 reports → finish until ``stop``; append each finish time to ``done``."""
    with httpx.Client(base_url=url, timeout=120) as c:
        while not stop.is_set():
            r = c.post("/api/trials/claim", json={"worker_id": name, "tasks": ["load"]})
            if r.status_code != 200:
                time.sleep(0.05)
                continue
            a = r.json()
            v = objective(a["params"])
            for step in range(1, REPORTS + 1):
                c.post(f"/api/trials/{a['trial_id']}/report", json={"step": step, "value": v})
            c.post(f"/api/trials/{a['trial_id']}/finish", json={"state": "complete", "value": v})
            done.append(time.monotonic())


def reader_loop(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """Poll the sweep list until ``stop``; append each request's seconds to ``latencies``."""
    with httpx.Client(base_url=url, timeout=120) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = c.get("/api/sweeps")
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)


def percentile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` (nearest rank; NaN when empty)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def phase(url: str, workers: int, readers: int, seconds: float) -> dict:
    """Run workers (and readers) for ``seconds``; their throughput and read latencies."""
    stop = threading.Event()
    done: list[float] = []
    latencies: list[float] = []
    threads = [
        threading.Thread(target=worker_loop, args=(url, f"w{i}", stop, done))
        for i in range(workers)
    ] + [threading.Thread(target=reader_loop, args=(url, stop, latencies)) for _ in range(readers)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # warm up, then count
    start, n0, r0 = time.monotonic(), len(done), len(latencies)
    time.sleep(seconds)
    span = time.monotonic() - start
    finished, reads = len(done) - n0, latencies[r0:]
    stop.set()
    for t in threads:
        t.join()
    return {
        "trials_per_s": finished / span,
        "reads_per_s": len(reads) / span,
        "p50": statistics.median(reads) if reads else float("nan"),
        "p99": percentile(reads, 0.99),
    }


def import_rows(n: int, seed: int) -> list[dict]:
    """``n`` complete runs on a noisy bowl in (ln lr, ln weight decay), seed from two values."""
    import math
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lr, wd = 10 ** rng.uniform(-5, -2), 10 ** rng.uniform(-3, 1)
        v = 3 + 0.1 * math.log(lr / 1e-3) ** 2 + 0.05 * math.log(wd / 0.1) ** 2
        out.append({"lr": lr, "weight_decay": wd, "value": v + rng.gauss(0, 0.01), "seed": 0})
    return out


def timed_get(url: str, path: str) -> float:
    """Seconds one GET took (raises on a non-200)."""
    t0 = time.perf_counter()
    httpx.get(url + path, timeout=600).raise_for_status()
    return time.perf_counter() - t0


def answers(backend: str, n: int, workdir: Path) -> None:
    """Time the heavy reads of an ``n``-trial sweep and a light read beside them; print them."""
    url, drop = fresh_database(backend, workdir)
    server = Server(url, workdir, {})
    try:
        spec = {"name": "big", "task": {"name": "big"}, "n_trials": 1, "reevaluate": "off"}
        spec |= {"sampler": {"name": "random", "seed": 0}, "space": SPACE}
        r = httpx.post(server.url + "/api/sweeps", json=spec, timeout=60)
        r.raise_for_status()
        sweep = r.json()["id"]
        first = n - 2  # the last two come as changes, one at a time
        for start in range(0, first, 1000):
            body = {"rows": import_rows(min(1000, first - start), start)}
            path = f"/api/sweeps/{sweep}/trials:import"
            httpx.post(server.url + path, json=body, timeout=600).raise_for_status()
    finally:
        server.stop()
    paths = {a: f"/api/sweeps/{sweep}" + ("" if a == "sweep" else f"/{a}") for a in ANSWERS}
    server = Server(url, workdir, {})  # a fresh process: nothing read or kept yet
    try:
        cold = {a: timed_get(server.url, p) for a, p in paths.items()}
        warm = {a: timed_get(server.url, p) for a, p in paths.items()}
        body = {"rows": import_rows(1, 10**6)}
        path = f"/api/sweeps/{sweep}/trials:import"
        httpx.post(server.url + path, json=body, timeout=600).raise_for_status()
        changed = {a: timed_get(server.url, p) for a, p in paths.items()}
        # Two cold rule requests (after another change) and the sweep list beside them.
        httpx.post(server.url + path, json={"rows": import_rows(1, 10**6 + 1)}, timeout=600)
        rule: list[float] = []
        heavy = [
            threading.Thread(
                target=lambda: rule.append(timed_get(server.url, paths["scaling-rule"]))
            )
            for _ in range(2)
        ]
        for t in heavy:
            t.start()
        time.sleep(0.1)
        light = timed_get(server.url, "/api/sweeps")
        for t in heavy:
            t.join()
    finally:
        server.stop()
        drop()
    print(f"{n} trials, {backend}: seconds")
    print("| read | cold (new process) | warm | cold after a change | warm / cold |")
    print("|---|---|---|---|---|")
    for a in ANSWERS:
        print(
            f"| {a} | {cold[a]:.3f} | {warm[a]:.3f} | {changed[a]:.3f} | {warm[a] / cold[a]:.3f} |"
        )
    print(
        f"GET /api/sweeps beside two cold rule requests: {light:.3f} s "
        f"(the rule requests: {', '.join(f'{x:.3f}' for x in rule)} s)"
    )


def main() -> None:
    """Measure the idle and the loaded phase and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--readers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--read-concurrency", type=int, default=None)
    ap.add_argument("--answers", type=int, default=None, help="time reads of this big a sweep")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-read-load-"))
    if args.answers:
        try:
            answers(args.backend, args.answers, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    url, drop = fresh_database(args.backend, workdir)
    env = {}
    if args.read_concurrency:
        env["LIONSWEEP_READ_CONCURRENCY"] = str(args.read_concurrency)
    server = Server(url, workdir, env)
    try:
        spec = {"name": "load", "task": {"name": "load"}, "n_trials": 10_000}
        spec |= {"pruner": {"name": "none"}, "sampler": {"name": "random", "seed": 0}}
        httpx.post(server.url + "/api/sweeps", json=spec, timeout=60).raise_for_status()
        idle = phase(server.url, args.workers, 0, args.seconds)
        loaded = phase(server.url, args.workers, args.readers, args.seconds)
    finally:
        server.stop()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| phase | worker trials/s | reads/s | /api/sweeps p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, r in (("idle", idle), (f"{args.readers} readers", loaded)):
        print(
            f"| {name} | {r['trials_per_s']:.1f} | {r['reads_per_s']:.0f} | "
            f"{1000 * r['p50']:.0f} | {1000 * r['p99']:.0f} |"
        )
    print(f"loaded worker throughput: {loaded['trials_per_s'] / idle['trials_per_s']:.2f}× idle")


if __name__ == "__main__":
    main()
