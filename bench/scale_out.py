"""Does one sweep scale out? Many scripted workers on one sweep, PostgreSQL behind 2 servers.

Scripted workers (threads in this process, one httpx client each, HTTP only) speak the
worker protocol: ``POST /api/trials/claim``, 3 reports ``--think`` seconds apart (standing
in for training; the first report comes ``--think`` after the claim) and a ``complete``
finish. Worker ``i`` talks to server ``i mod servers``. A phase ends when its quota of
trials is finished. Each database is a fresh one (PostgreSQL: created and dropped here).

(a) Scale-out, on PostgreSQL behind ``--pg-servers`` servers, one large random-sampler
    sweep holding both phases: 1 worker alone for ``--single-trials`` trials, then
    ``--workers`` workers for ``--multi-trials`` trials, both with the think time.
    Goal: trials/s ratio ≥ 8×, claim p95 < 500 ms, no errors.
(b) No think time: ``--burst-workers`` workers on a ``--burst-trials`` sweep, PostgreSQL
    behind ``--pg-servers`` servers against SQLite behind 1 server. Goal: PostgreSQL ≥ 1×
    SQLite.

Printed per phase: trials/s, claim latency p50/p95/max (ms), report and finish p95 (ms),
errors (any answer but 200, timeouts, connection errors; a 204 claim, nothing to claim, is
counted apart as ``empty``); then the ratios against the goals. ``--json PATH`` writes
every figure.

Usage: python bench/scale_out.py [--quick] [--parts a,b] [--workers 32]
       [--single-trials 40] [--multi-trials 1200] [--burst-workers 48]
       [--burst-trials 2000] [--think 0.1] [--pg-servers 2] [--token SECRET]
PostgreSQL admin URL from LIONSWEEP_TEST_POSTGRES_URL (default postgres@127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from service_overhead import Server, fresh_database

REPORTS = 3
TASK = "scale_out"
TIMEOUT = 120.0
"""Seconds one request may take before it counts as an error."""
FULL = {"single_trials": 40, "multi_trials": 1200, "burst_trials": 2000}
"""The default sizes (trials per phase)."""
QUICK = {"single_trials": 12, "multi_trials": 192, "burst_trials": 240}
"""The sizes of ``--quick``: a smoke run of about 2 minutes on an idle machine."""
CLAIM_PATIENCE = 60.0
"""Seconds a worker keeps claiming (after errors or empty answers) before it gives up."""


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    backend: str
    servers: int
    workers: int
    think: float
    trials: int = 0
    wall: float = 0.0
    claims: list[float] = field(default_factory=list, repr=False)
    reports: list[float] = field(default_factory=list, repr=False)
    finishes: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list, repr=False)
    empty: int = 0

    @property
    def rate(self) -> float:
        """Trials finished per second of wall time, all workers together."""
        return self.trials / self.wall if self.wall else 0.0

    def summary(self) -> dict[str, Any]:
        """The phase's figures (latencies in ms), without the raw samples."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        out.update(
            trials_per_s=self.rate,
            claim_ms=_quantiles(self.claims),
            report_p95_ms=_quantiles(self.reports)["p95"],
            finish_p95_ms=_quantiles(self.finishes)["p95"],
            n_errors=len(self.errors),
            first_errors=self.errors[:5],
        )
        return out


def _quantiles(xs: list[float]) -> dict[str, float | None]:
    """p50, p95 and max of ``xs`` seconds, in ms (None when empty)."""
    if not xs:
        return {"p50": None, "p95": None, "max": None}
    s = sorted(xs)
    return {
        "p50": 1000 * statistics.median(s),
        "p95": 1000 * s[min(len(s) - 1, int(0.95 * len(s)))],
        "max": 1000 * s[-1],
    }


def submit(url: str, n_trials: int, headers: dict[str, str]) -> int:
    """Submit the benchmark sweep (random sampler, no pruner); return its id."""
    spec = {
        "name": f"scale-out-{uuid.uuid4().hex[:6]}",
        "task": {"name": TASK},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": n_trials,
        "max_retries": 0,
    }
    r = httpx.post(url + "/api/sweeps", json=spec, headers=headers, timeout=60)
    r.raise_for_status()
    return r.json()["id"]


def run_phase(phase: Phase, urls: list[str], quota: int, headers: dict[str, str]) -> Phase:
    """Run ``phase.workers`` scripted workers until ``quota`` trials are finished."""
    lock = threading.Lock()
    tickets = iter(range(quota))
    barrier = threading.Barrier(phase.workers + 1)

    def take() -> bool:
        with lock:
            return next(tickets, None) is not None

    def call(c: httpx.Client, what: str, path: str, body: dict, into: list[float]) -> Any:
        t0 = time.perf_counter()
        try:
            r = c.post(path, json=body)
        except httpx.HTTPError as exc:
            with lock:
                phase.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - t0
        with lock:
            if r.status_code == 200:
                into.append(elapsed)
            elif r.status_code == 204 and what == "claim":
                phase.empty += 1
            else:
                phase.errors.append(f"{what}: {r.status_code} {r.text[:200]}")
        return r if r.status_code in (200, 204) else None

    def worker(i: int) -> None:
        name = f"scale-{phase.name}-{i}"
        with httpx.Client(base_url=urls[i % len(urls)], timeout=TIMEOUT, headers=headers) as c:
            barrier.wait()
            while take():
                deadline = time.monotonic() + CLAIM_PATIENCE
                while time.monotonic() < deadline:
                    body = {"worker_id": name, "tasks": [TASK], "request_id": uuid.uuid4().hex}
                    r = call(c, "claim", "/api/trials/claim", body, phase.claims)
                    if r is not None and r.status_code == 200:
                        break
                    time.sleep(0.2)  # an error or nothing to claim: back off, then try again
                else:
                    with lock:
                        phase.errors.append(f"claim: no trial for {CLAIM_PATIENCE:g} s; gave up")
                    return
                trial = r.json()["trial_id"]
                value = sum(v for v in r.json()["params"].values() if isinstance(v, float))
                for step in range(1, REPORTS + 1):
                    time.sleep(phase.think)
                    report = {"worker_id": name, "step": step, "value": value + 1.0 / step}
                    call(c, "report", f"/api/trials/{trial}/report", report, phase.reports)
                finish = {"worker_id": name, "state": "complete", "value": value}
                if call(c, "finish", f"/api/trials/{trial}/finish", finish, phase.finishes):
                    with lock:
                        phase.trials += 1

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(phase.workers)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    phase.wall = time.perf_counter() - started
    print(row(phase), flush=True)
    return phase


@contextmanager
def backend(kind: str, n_servers: int, workdir: Path, env: dict[str, str]):
    """A fresh database on ``kind`` behind ``n_servers`` servers (started one after another,
    so that one migrates it first); yields their URLs; stops them and drops the database."""
    url, drop = fresh_database(kind, workdir)
    servers: list[Server] = []
    try:
        for _ in range(n_servers):
            servers.append(Server(url, workdir, env))
        yield [s.url for s in servers]
    finally:
        for s in servers:
            s.stop()
        drop()


def header() -> str:
    """The Markdown header of the results table."""
    return (
        "| phase | backend | servers | workers | think s | trials | trials/s | "
        "claim ms p50 / p95 / max | report p95 ms | finish p95 ms | errors | empty |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def row(p: Phase) -> str:
    """One phase as a Markdown table row."""
    c = _quantiles(p.claims)
    return (
        f"| {p.name} | {p.backend} | {p.servers} | {p.workers} | {p.think:g} | {p.trials} | "
        f"{p.rate:.2f} | {_ms(c['p50'])} / {_ms(c['p95'])} / {_ms(c['max'])} | "
        f"{_ms(_quantiles(p.reports)['p95'])} | {_ms(_quantiles(p.finishes)['p95'])} | "
        f"{len(p.errors)} | {p.empty} |"
    )


def verdicts(phases: dict[str, Phase]) -> list[tuple[str, str, bool]]:
    """``(figure, value, goal met)`` for each goal whose phases ran."""
    out = []
    if "a-1" in phases and "a-n" in phases:
        single, multi = phases["a-1"], phases["a-n"]
        ratio = multi.rate / single.rate if single.rate else float("nan")
        p95 = _quantiles(multi.claims)["p95"]
        errors = len(single.errors) + len(multi.errors)
        out += [
            (f"(a) scaling {multi.workers} workers / 1 (goal ≥ 8×)", f"{ratio:.2f}×", ratio >= 8),
            (
                "(a) claim p95 with many workers (goal < 500 ms)",
                f"{_ms(p95)} ms",
                p95 is not None and p95 < 500,
            ),
            ("(a) errors (goal 0)", str(errors), errors == 0),
        ]
    if "b-pg" in phases and "b-sqlite" in phases:
        pg, lite = phases["b-pg"], phases["b-sqlite"]
        ratio = pg.rate / lite.rate if lite.rate else float("nan")
        out.append(("(b) PostgreSQL / SQLite trials/s (goal ≥ 1×)", f"{ratio:.2f}×", ratio >= 1))
    return out


def main() -> None:
    """Run the chosen parts and print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="a,b", help="a (scale-out), b (no think time), or both")
    ap.add_argument("--quick", action="store_true", help="small sizes (see QUICK)")
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--single-trials", type=int, help="default 40 (--quick: 12)")
    ap.add_argument("--multi-trials", type=int, help="default 1200 (--quick: 192)")
    ap.add_argument("--burst-workers", type=int, default=48)
    ap.add_argument("--burst-trials", type=int, help="default 2000 (--quick: 240)")
    ap.add_argument("--think", type=float, default=0.1, help="seconds before each report")
    ap.add_argument("--pg-servers", type=int, default=2)
    ap.add_argument("--token", help="run the servers in token mode with this bootstrap token")
    ap.add_argument("--json", type=Path, help="write every figure to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (printed)")
    args = ap.parse_args()
    sizes = QUICK if args.quick else FULL
    for name, size in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, size)
    parts = set(args.parts.split(","))
    env = {"LIONSWEEP_BOOTSTRAP_TOKEN": args.token} if args.token else {}
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-scale-out-"))
    phases: dict[str, Phase] = {}
    print(header(), flush=True)
    try:
        if "a" in parts:
            with backend("postgres", args.pg_servers, workdir, env) as urls:
                submit(urls[0], args.single_trials + args.multi_trials, headers)
                for key, workers, quota in (
                    ("a-1", 1, args.single_trials),
                    ("a-n", args.workers, args.multi_trials),
                ):
                    phase = Phase(key, "postgres", len(urls), workers, args.think)
                    phases[key] = run_phase(phase, urls, quota, headers)
        if "b" in parts:
            runs: list[tuple[str, str, int]] = [
                ("b-pg", "postgres", args.pg_servers),
                ("b-sqlite", "sqlite", 1),
            ]
            for key, kind, n_servers in runs:
                with backend(kind, n_servers, workdir, env) as urls:
                    submit(urls[0], args.burst_trials, headers)
                    phase = Phase(key, kind, len(urls), args.burst_workers, 0.0)
                    phases[key] = run_phase(phase, urls, args.burst_trials, headers)
    except BaseException:
        for log in sorted(workdir.glob("server-*.log")):
            print(f"--- {log.name} (last lines)", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-20:]), file=sys.stderr)
        raise
    finally:
        if args.keep_logs:
            print(f"server logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    for what, value, met in verdicts(phases):
        print(f"{what}: {value} — {'met' if met else 'NOT met'}")
    for p in phases.values():
        for e in p.errors[:3]:
            print(f"{p.name} error: {e}", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "phases": {k: p.summary() for k, p in phases.items()},
                    "goals": [{"figure": f, "value": v, "met": m} for f, v, m in verdicts(phases)],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
