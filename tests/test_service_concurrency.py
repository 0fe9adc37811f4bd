"""Claims are atomic across server processes: concurrent claimers against two servers."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import optuna
import pytest
from conftest import rdb_storage


def run_claimers(
    urls: list[str], sweep_id: int, task: str, n_clients: int, fail_first: bool
) -> dict:
    """``n_clients`` threads claim and finish until the sweep completes; returns what happened.

    Like real workers, a claimer that gets 204 polls again (a running trial may still
    fail and be re-queued) until the sweep is complete.
    """
    claimed: list[tuple[int, int]] = []
    errors: list[str] = []
    failed_first: list[int] = []
    requeued: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(n_clients)

    def worker(i: int) -> None:
        url = urls[i % len(urls)]
        failed = not fail_first
        with httpx.Client(base_url=url, timeout=120) as c:
            start.wait()
            while True:
                r = c.post("/api/trials/claim", json={"worker_id": f"w{i}", "tasks": [task]})
                if r.status_code == 204:
                    if c.get(f"/api/sweeps/{sweep_id}").json()["status"] == "complete":
                        return
                    time.sleep(0.05)
                    continue
                if r.status_code != 200:
                    with lock:
                        errors.append(f"claim {r.status_code}: {r.text[:300]}")
                    return
                a = r.json()
                with lock:
                    claimed.append((a["trial_id"], a["trial_number"]))
                tid = a["trial_id"]
                r = c.post(f"/api/trials/{tid}/report", json={"step": 1, "value": 1.0})
                if not failed:
                    failed = True
                    body = {"state": "failed", "reason": "simulated crash"}
                    with lock:
                        failed_first.append(tid)
                else:
                    body = {"state": "complete", "value": float(a["trial_number"])}
                r = c.post(f"/api/trials/{tid}/finish", json=body)
                if r.status_code != 200:
                    with lock:
                        errors.append(f"finish {r.status_code}: {r.text[:300]}")
                elif r.json()["requeued"]:
                    with lock:
                        requeued.append(tid)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return {
        "claimed": claimed,
        "errors": errors,
        "failed_first": failed_first,
        "requeued": requeued,
    }


def check(server, client: httpx.Client, sweep: dict, result: dict, n_trials: int) -> None:
    assert result["errors"] == []
    ids = [tid for tid, _ in result["claimed"]]
    dupes = [tid for tid, n in Counter(ids).items() if n > 1]
    assert dupes == [], f"trials claimed twice: {dupes}"
    n_failed = len(result["failed_first"])
    n_requeued = len(result["requeued"])
    # A worker's first trial may itself be a retry (max_retries=1): that failure is final.
    assert 0 < n_requeued <= n_failed
    # Every original ran once, and every re-queued failure ran exactly once more.
    assert len(ids) == n_trials + n_requeued
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete" and got["finished"] == n_trials
    assert got["counts"]["complete"] == n_trials - (n_failed - n_requeued)
    assert got["counts"]["failed"] == n_failed
    study = optuna.load_study(
        study_name=sweep["study_name"], storage=rdb_storage(server.database_url)
    )
    assert len(study.trials) == n_trials + n_requeued
    assert len({t.number for t in study.trials}) == len(study.trials)


@pytest.mark.slow
@pytest.mark.postgres
def test_16_claimers_two_servers_postgres(make_postgres_db, live_server):
    url = make_postgres_db()
    servers = [live_server(url), live_server(url)]
    n_trials = 40
    with httpx.Client(base_url=servers[0].url, timeout=60) as client:
        sweep = client.post(
            "/api/sweeps",
            json={
                "name": "race",
                "task": {"name": "race"},
                "n_trials": n_trials,
                "max_retries": 1,
                "sampler": {"name": "tpe", "seed": 0},
                "pruner": {"name": "none"},
                "enqueue": [{"lr": 1e-4}, {"lr": 2e-4}, {"lr": 3e-4}],
            },
        ).json()
        result = run_claimers([s.url for s in servers], sweep["id"], "race", 16, fail_first=True)
        check(servers[0], client, sweep, result, n_trials)

        # Without failures: exactly n_trials trials, each claimed once.
        clean = client.post(
            "/api/sweeps",
            json={"name": "clean", "task": {"name": "clean"}, "n_trials": 32},
        ).json()
        result = run_claimers([s.url for s in servers], clean["id"], "clean", 16, fail_first=False)
        assert result["errors"] == [] and result["requeued"] == []
        assert sorted(n for _, n in result["claimed"]) == list(range(32))
        study = optuna.load_study(study_name=clean["study_name"], storage=rdb_storage(url))
        assert len(study.trials) == 32


def test_8_claimers_two_servers_sqlite(make_sqlite_url, live_server):
    url = make_sqlite_url()
    servers = [live_server(url), live_server(url)]
    n_trials = 24
    with httpx.Client(base_url=servers[0].url, timeout=60) as client:
        sweep = client.post(
            "/api/sweeps",
            json={
                "name": "race",
                "task": {"name": "race"},
                "n_trials": n_trials,
                "max_retries": 1,
                "sampler": {"name": "random", "seed": 0},
                "pruner": {"name": "median"},
            },
        ).json()
        result = run_claimers([s.url for s in servers], sweep["id"], "race", 8, fail_first=True)
        check(servers[0], client, sweep, result, n_trials)
    for s in servers:
        assert "database is locked" not in s.log()
