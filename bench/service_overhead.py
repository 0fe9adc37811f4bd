"""Control-plane overhead of the sweep service, through a real server over HTTP.

For each backend (SQLite, PostgreSQL) and each study size (100 and 1,000 finished TPE
trials already in the study), N concurrent scripted clients (1, 4, 16) each loop
claim → 10 reports → finish with no training in between, so all time measured is
control plane. Printed per row:

- trials/s: trials finished per second of wall time, all clients together;
- per-trial ms: mean (p95) client-side time of one claim + 10 reports + finish;
- claim ms: mean (p95) of the claim alone (TPE sampling happens there);
- vs optuna: per-trial time divided by in-process Optuna ask + 10×(report,
  should_prune) + tell on the same database and study size (the baseline, 1 client).

Usage: python bench/service_overhead.py [--backends sqlite,postgres] [--sizes 100,1000]
       [--clients 1,4,16] [--trials-per-client 4] [--servers 1]
PostgreSQL admin URL from LIONSWEEP_TEST_POSTGRES_URL (default postgres@127.0.0.1).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

import httpx
import optuna
from sqlalchemy import create_engine, make_url, text

from service import schemas
from service.db import engine_kwargs
from service.settings import Settings
from service.spec import build_pruner, distributions

ADMIN_URL = os.environ.get(
    "LIONSWEEP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPORTS = 10
optuna.logging.set_verbosity(optuna.logging.WARNING)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``lionsweep serve`` in a subprocess."""

    def __init__(self, database_url: str, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("lionsweep")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionsweep.server_cli"]
        self.log = open(workdir / f"server-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*cmd, "serve", "--port", str(self.port)],
            env={**os.environ, "LIONSWEEP_DATABASE_URL": database_url, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        """Terminate the server and close its log."""
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()


def fresh_database(backend: str, workdir: Path) -> tuple[str, callable]:
    """A new empty database on ``backend`` and a function that drops it."""
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}", lambda: None
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"lionsweep_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False), drop


def spec_for(n_trials: int, task: str, pruner: str) -> dict:
    """The benchmark sweep spec (TPE, the given pruner, ``n_trials`` trials)."""
    return {
        "name": "bench",
        "task": {"name": task},
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": pruner},
        "n_trials": n_trials,
    }


def objective(p: dict) -> float:
    """A synthetic objective of the sampled parameters (no training)."""
    return (p["lr"] * 1e4 - 1) ** 2 + (p["weight_decay"] - 0.1) ** 2 + p["beta1"]


def prefill(study: optuna.Study, spec: dict, n: int) -> None:
    """Add ``n`` finished trials (with 10 intermediate values each) straight into the study."""
    dists = distributions(schemas.SweepSpec.model_validate(spec))
    rng = random.Random(0)
    trials = []
    for _ in range(n):
        params = {
            name: (
                rng.choice(d.choices)
                if isinstance(d, optuna.distributions.CategoricalDistribution)
                else d.low * (d.high / d.low) ** rng.random()
                if d.log
                else rng.uniform(d.low, d.high)
            )
            for name, d in dists.items()
        }
        v = objective(params)
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=v,
                intermediate_values={s: v + 1.0 / s for s in range(1, REPORTS + 1)},
            )
        )
    study.add_trials(trials)


def run_clients(urls: list[str], task: str, n_clients: int, per_client: int) -> dict:
    """Run scripted clients concurrently; their per-trial and claim times, wall time and errors."""
    per_trial: list[float] = []
    claims: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_clients + 1)

    def client(i: int) -> None:
        with httpx.Client(base_url=urls[i % len(urls)], timeout=300) as c:
            barrier.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                body = {"worker_id": f"b{i}", "tasks": [task], "request_id": uuid.uuid4().hex}
                r = c.post("/api/trials/claim", json=body)
                t1 = time.perf_counter()
                if r.status_code != 200:
                    with lock:
                        errors.append(f"claim {r.status_code} {r.text[:200]}")
                    return
                a = r.json()
                v = objective(a["params"])
                for step in range(1, REPORTS + 1):
                    r = c.post(
                        f"/api/trials/{a['trial_id']}/report",
                        json={"step": step, "value": v + 1.0 / step},
                    )
                    if r.json().get("action") != "continue":
                        break
                state = "pruned" if r.json().get("action") == "prune" else "complete"
                r = c.post(f"/api/trials/{a['trial_id']}/finish", json={"state": state, "value": v})
                if r.status_code != 200:
                    with lock:
                        errors.append(f"finish {r.status_code} {r.text[:200]}")
                t2 = time.perf_counter()
                with lock:
                    per_trial.append(t2 - t0)
                    claims.append(t1 - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"wall": wall, "per_trial": per_trial, "claims": claims, "errors": errors}


def optuna_baseline(database_url: str, spec: dict, size: int, n: int, sync: bool) -> float:
    """Mean seconds of ask + 10×(report, should_prune) + tell, in-process, same study size."""
    sp = schemas.SweepSpec.model_validate(spec)
    settings = Settings(database_url=database_url, db_synchronous_commit=sync)
    storage = optuna.storages.RDBStorage(database_url, engine_kwargs=engine_kwargs(settings))
    study = optuna.create_study(
        storage=storage,
        study_name=f"baseline-{uuid.uuid4().hex[:6]}",
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True),
        pruner=build_pruner(sp, first_report_step=1),
    )
    prefill(study, spec, size)
    dists = distributions(sp)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        v = objective(trial.params)
        for step in range(1, REPORTS + 1):
            trial.report(v + 1.0 / step, step)
            if trial.should_prune():
                break
        study.tell(trial, v)
        times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def p95(xs: list[float]) -> float:
    """The 95th percentile of ``xs``."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.95 * len(xs)))]


def main() -> None:
    """Measure every backend, study size and client count, and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--trials-per-client", type=int, default=4)
    ap.add_argument("--servers", type=int, default=1, help="lionsweep serve processes per database")
    ap.add_argument("--server-processes", type=int, default=1, help="uvicorn processes per server")
    ap.add_argument("--pruner", default="hyperband", choices=list(schemas.PRUNERS))
    ap.add_argument(
        "--sync-commit",
        choices=["on", "off"],
        default="on",
        help="PostgreSQL synchronous_commit for the service (LIONSWEEP_DB_SYNCHRONOUS_COMMIT)",
    )
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="lionsweep-bench-"))
    rows = []
    try:
        for backend in args.backends.split(","):
            for size in [int(x) for x in args.sizes.split(",")]:
                url, drop = fresh_database(backend, workdir)
                env = {
                    "LIONSWEEP_DB_SYNCHRONOUS_COMMIT": args.sync_commit,
                    "LIONSWEEP_SERVER_PROCESSES": str(args.server_processes),
                }
                servers = [Server(url, workdir, env) for _ in range(args.servers)]
                try:
                    task = f"bench{size}"
                    warmup = len(servers) * args.server_processes
                    measured = sum(c * args.trials_per_client for c in clients) + warmup
                    spec = spec_for(size + measured, task, args.pruner)
                    sweep = httpx.post(servers[0].url + "/api/sweeps", json=spec, timeout=60)
                    sweep.raise_for_status()
                    study = optuna.load_study(study_name=sweep.json()["study_name"], storage=url)
                    prefill(study, spec, size)
                    base = optuna_baseline(url, spec, size, 5, args.sync_commit == "on")
                    for s in servers:  # warm up: each process loads the study into its cache
                        run_clients([s.url], task, args.server_processes, 1)
                    for n in clients:
                        res = run_clients([s.url for s in servers], task, n, args.trials_per_client)
                        if res["errors"]:
                            print("errors:", res["errors"][:3], file=sys.stderr)
                        pt, cl = res["per_trial"], res["claims"]
                        rows.append(
                            (
                                backend,
                                size,
                                n,
                                len(pt) / res["wall"],
                                1000 * statistics.mean(pt),
                                1000 * p95(pt),
                                1000 * statistics.mean(cl),
                                1000 * p95(cl),
                                1000 * res["wall"] / len(pt),
                                statistics.mean(pt) / base,
                                1000 * base,
                            )
                        )
                        print_row(rows[-1], flush=True)
                finally:
                    for s in servers:
                        s.stop()
                    drop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(header())
    for r in rows:
        print_row(r)


def header() -> str:
    """The Markdown header of the results table."""
    return (
        "| backend | finished trials | clients | trials/s | per-trial ms mean (p95) | "
        "claim ms mean (p95) | wall ms / trial | vs optuna in-process (ms) |\n"
        "|---|---|---|---|---|---|---|---|"
    )


def print_row(r: tuple, flush: bool = False) -> None:
    """Print one result as a Markdown table row."""
    b, size, n, tps, m, p, cm, cp, amort, ratio, base = r
    print(
        f"| {b} | {size} | {n} | {tps:.1f} | {m:.0f} ({p:.0f}) | {cm:.0f} ({cp:.0f}) | "
        f"{amort:.0f} | {ratio:.1f}x ({base:.0f}) |",
        flush=flush,
    )


if __name__ == "__main__":
    main()
