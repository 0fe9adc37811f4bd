"""The trial ledger's transitions: one transaction each, idempotent retries, database clock.

Each test pins a defect of the version that committed each step on its own: a lost claim
reply burning a retry, a crashed create poisoning its Idempotency-Key, cancel overwriting
complete, leases judged by the server's local clock, Hyperband rungs collapsing, Optuna
writes surviving a failed transition.
"""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import optuna
import pytest
from conftest import lionsweep_command
from optuna.trial import TrialState
from sqlalchemy import select

from service import optuna_tables as ot
from service.db import Database, upgrade
from service.models import Sweep
from service.settings import Settings

LEASE_ENV = {
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "1.5",
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": "0.25",
}


def make_sweep(c: httpx.Client, **extra: object) -> dict:
    """Submit a small sweep of task ``t`` (no worker needed: the test plays the worker)."""
    spec = {"name": "s", "task": {"name": "t"}, "n_trials": 2, "pruner": {"name": "none"}}
    r = c.post("/api/sweeps", json={**spec, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def claim(c: httpx.Client, request_id: str | None = None, worker: str = "w") -> httpx.Response:
    body: dict[str, object] = {"worker_id": worker, "tasks": ["t"]}
    if request_id is not None:
        body["request_id"] = request_id
    return c.post("/api/trials/claim", json=body)


def test_a_retried_claim_returns_the_same_trial(database_url, live_server):
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = make_sweep(c, max_retries=0)
        first = claim(c, "claim-1")
        again = claim(c, "claim-1")  # the reply to the first was lost; the client retries
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        view = c.get(f"/api/sweeps/{sweep['id']}").json()
        assert view["counts"]["running"] == 1 and view["counts"]["failed"] == 0
        other = claim(c, "claim-2")
        assert other.status_code == 200
        assert other.json()["trial_id"] != first.json()["trial_id"]
        assert claim(c, "claim-3").status_code == 204  # n_trials reached
        stolen = claim(c, "claim-1", worker="another")
        assert stolen.status_code == 409 and "another worker" in stolen.json()["detail"]
        bad = claim(c, "has spaces")
        assert bad.status_code == 422 and "request_id" in str(bad.json()["detail"][0]["loc"])


def test_a_retried_finish_or_report_gets_the_same_answer(database_url, live_server):
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        make_sweep(c, max_retries=1)
        tid = claim(c).json()["trial_id"]
        report = {"step": 10, "value": 1.0}
        first = c.post(f"/api/trials/{tid}/report", json=report)
        assert c.post(f"/api/trials/{tid}/report", json=report).json() == first.json()
        done = c.post(f"/api/trials/{tid}/finish", json={"state": "failed", "reason": "x"})
        again = c.post(f"/api/trials/{tid}/finish", json={"state": "failed", "reason": "x"})
        assert done.status_code == again.status_code == 200
        assert done.json() == again.json() == {"trial_id": tid, "state": "failed", "requeued": True}
        other = c.post(f"/api/trials/{tid}/finish", json={"state": "complete", "value": 1.0})
        assert other.status_code == 409
        late = c.post(f"/api/trials/{tid}/report", json={"step": 20, "value": 1.0})
        assert late.status_code == 409


def test_a_crashed_create_does_not_poison_its_idempotency_key(database_url, live_server):
    server = live_server(database_url)
    # What a server that died inside create (under the old stepwise code) left behind.
    settings = Settings(database_url=database_url)
    db = Database(settings)
    try:
        with db.session() as s:
            s.add(
                Sweep(
                    name="dead",
                    status="creating",
                    task_name="t",
                    spec={},
                    n_trials=1,
                    idempotency_key="key-1",
                )
            )
    finally:
        db.dispose()
    spec = {"name": "s", "task": {"name": "t"}, "n_trials": 2}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        t0 = time.monotonic()
        r = c.post("/api/sweeps", json=spec, headers={"Idempotency-Key": "key-1"})
        assert r.status_code == 201, r.text
        assert time.monotonic() - t0 < 3
        again = c.post("/api/sweeps", json=spec, headers={"Idempotency-Key": "key-1"})
        assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
        assert claim(c).status_code == 200
        listed = c.get("/api/sweeps").json()
        assert [s["id"] for s in listed["items"]] == [r.json()["id"]]


def test_concurrent_creates_with_one_key_make_one_sweep(database_url, live_server):
    server = live_server(database_url)
    spec = {"name": "s", "task": {"name": "t"}, "n_trials": 2}
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            answers.append(c.post("/api/sweeps", json=spec, headers={"Idempotency-Key": "k"}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/api/sweeps").json()["total"] == 1


def test_cancel_and_resume_never_overwrite_complete(database_url, live_server):
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = make_sweep(c, n_trials=1)
        tid = claim(c).json()["trial_id"]
        c.post(f"/api/trials/{tid}/finish", json={"state": "complete", "value": 1.0})
        for action in ("cancel", "resume"):
            r = c.post(f"/api/sweeps/{sweep['id']}/{action}")
            assert r.status_code == 409 and "complete" in r.json()["detail"]
            assert c.get(f"/api/sweeps/{sweep['id']}").json()["status"] == "complete"
        other = make_sweep(c)
        for _ in range(2):  # twice: the second is a harmless no-op
            assert c.post(f"/api/sweeps/{other['id']}/cancel").json()["status"] == "cancelled"
        for _ in range(2):
            assert c.post(f"/api/sweeps/{other['id']}/resume").json()["status"] == "running"


@pytest.mark.slow
@pytest.mark.parametrize("tz", ["Asia/Tokyo", "America/Los_Angeles"])
def test_leases_follow_the_database_clock_under_any_server_time_zone(
    database_url, live_server, wait_for, tz
):
    env = {**LEASE_ENV, "TZ": tz}  # the server's zone differs from the database's (UTC)
    server = live_server(database_url, env=env)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = make_sweep(c, n_trials=2, max_retries=1)
        alive = claim(c).json()["trial_id"]
        silent = claim(c).json()
        deadline = time.monotonic() + 5.0  # over three grace periods
        while time.monotonic() < deadline:
            assert c.post(f"/api/trials/{alive}/heartbeat").json()["action"] == "continue"
            time.sleep(0.3)
        trials = {
            t["trial_id"]: t for t in c.get(f"/api/sweeps/{sweep['id']}/trials").json()["items"]
        }
        assert trials[alive]["state"] == "running"
        assert trials[silent["trial_id"]]["state"] == "failed"
        assert "lease expired" in trials[silent["trial_id"]]["reason"]
        done = c.post(f"/api/trials/{alive}/finish", json={"state": "complete", "value": 1.0})
        assert done.json()["requeued"] is False
        time.sleep(2.0)  # a finished trial is never re-queued, whatever the clocks say
        items = c.get(f"/api/sweeps/{sweep['id']}/trials").json()["items"]
        assert len(items) == 3
        assert [t["retry_of"] for t in items if t["retry_of"] is not None] == [
            silent["trial_number"]
        ]


def test_settings_refuse_a_grace_shorter_than_two_heartbeats(tmp_path):
    with pytest.raises(ValueError, match="LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS"):
        Settings(heartbeat_grace_seconds=6, heartbeat_interval_seconds=10)
    assert Settings(heartbeat_grace_seconds=20, heartbeat_interval_seconds=10)
    env = {
        "PATH": "/usr/bin:/bin",
        "LIONSWEEP_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "6",
    }
    run = subprocess.run(
        [*lionsweep_command(), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "LIONSWEEP_HEARTBEAT_GRACE_SECONDS" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_a_failed_transition_rolls_back_optuna_writes_too(database_url):
    settings = Settings(database_url=database_url)
    upgrade(settings)
    db = Database(settings)
    try:
        study_id = db.storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
        with pytest.raises(RuntimeError, match="boom"), db.transaction() as tx:
            tid = db.storage.create_new_trial(study_id)
            db.storage.set_trial_user_attr(tid, "k", 1)
            tx.add(Sweep(name="x", status="running", task_name="t", spec={}, n_trials=1))
            tx.flush()
            raise RuntimeError("boom")
        assert db.storage.get_all_trials(study_id) == []
        with db.session() as s:
            assert s.scalars(select(Sweep)).all() == []
        with db.transaction() as tx:
            tid = db.storage.create_new_trial(study_id)
            tx.add(Sweep(name="y", status="running", task_name="t", spec={}, n_trials=1))
        assert [t._trial_id for t in db.storage.get_all_trials(study_id)] == [tid]
        with db.session() as s:
            assert [r.name for r in s.scalars(select(Sweep))] == ["y"]
    finally:
        db.dispose()


def test_concurrent_qmc_claims_get_distinct_points(database_url, live_server):
    server = live_server(database_url)
    n = 12
    with httpx.Client(base_url=server.url, timeout=30) as c:
        make_sweep(
            c,
            n_trials=n,
            sampler={"name": "qmc", "seed": 3},
            space={"lr": {"low": 1e-5, "high": 1e-2, "log": True}},
        )
    got: list[dict] = []

    def worker(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for _ in range(n):
                r = claim(c, worker=f"w{i}")
                if r.status_code == 204:
                    return
                got.append(r.json())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == n
    assert len({a["params"]["lr"] for a in got}) == n


def test_a_grid_sweep_refuses_enqueued_configs(sqlite_url, live_server):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(
            "/api/sweeps",
            json={
                "name": "g",
                "task": {"name": "t"},
                "n_trials": 2,
                "sampler": {"name": "grid"},
                "space": {
                    "lr": {"choices": [1e-4, 1e-3]},
                    "weight_decay": 0.1,
                    "beta1": 0.9,
                    "beta2": 0.99,
                },
                "enqueue": [{"lr": 1e-4}],
            },
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "enqueue"]
        assert c.get("/api/sweeps").json()["total"] == 0


@pytest.mark.slow
def test_hyperband_rungs_are_report_steps_in_several_brackets(sqlite_url, live_server):
    """Reports every 100 steps up to 900: Hyperband (reduction 3) has brackets whose first rung
    is step 100, 300 or 900 (rungs at 100·3^k); no trial passes two rungs on one report."""
    server = live_server(sqlite_url)
    n = 40
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = make_sweep(
            c,
            n_trials=n,
            sampler={"name": "random", "seed": 0},
            pruner={"name": "hyperband"},
            budget={"max_steps": 900},
            space={"lr": {"low": 1e-5, "high": 1e-2, "log": True}},
        )
        for _ in range(n):
            a = claim(c).json()
            base = abs(a["params"]["lr"] - 1e-3) * 1000
            state = "complete"
            for step in range(100, 1000, 100):
                value = base + 1.0 / step  # a distinct value per step tells which step it was
                r = c.post(
                    f"/api/trials/{a['trial_id']}/report", json={"step": step, "value": value}
                )
                if r.json()["action"] == "prune":
                    state = "pruned"
                    break
            c.post(f"/api/trials/{a['trial_id']}/finish", json={"state": state, "value": value})
    study = optuna.load_study(study_name=sweep["study_name"], storage=sqlite_url)
    first_rung_steps = set()
    pruned = 0
    for t in study.trials:
        by_value = {v: s for s, v in t.intermediate_values.items()}
        rung_steps = [
            by_value[v] for k, v in t.system_attrs.items() if k.startswith("completed_rung_")
        ]
        assert len(rung_steps) == len(set(rung_steps)), (t.number, rung_steps)
        assert set(rung_steps) <= {100, 300, 900}, (t.number, rung_steps)
        if "completed_rung_0" in t.system_attrs:
            first_rung_steps.add(by_value[t.system_attrs["completed_rung_0"]])
        pruned += t.state == TrialState.PRUNED
    assert first_rung_steps == {100, 300, 900}  # three brackets
    assert 0 < pruned < n


def test_only_the_claimant_may_report_heartbeat_or_finish(database_url, live_server):
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = make_sweep(c, n_trials=1, max_retries=1)
        a = claim(c, worker="w1").json()
        url = f"/api/trials/{a['trial_id']}"
        stranger = {"worker_id": "w2"}
        for path, body in [
            ("report", {"step": 1, "value": 1.0}),
            ("heartbeat", {}),
            ("finish", {"state": "complete", "value": 1.0}),
        ]:
            r = c.post(f"{url}/{path}", json={**body, **stranger})
            assert r.status_code == 409 and "claimed by worker 'w1'" in r.json()["detail"], r.text
        trial = c.get(f"/api/sweeps/{sweep['id']}/trials/{a['trial_number']}").json()
        assert trial["state"] == "running" and trial["intermediate_values"] == {}
        assert c.post(f"{url}/report", json={"step": 1, "value": 1.0, "worker_id": "w1"}).is_success
        assert c.post(f"{url}/report", json={"step": 2, "value": 1.0}).is_success  # unsigned
        done = c.post(f"{url}/finish", json={"state": "failed", "worker_id": "w1"})
        assert done.json()["requeued"] is True
        # The retry belongs to whoever claims it next.
        b = claim(c, worker="w2").json()
        finish = {"state": "complete", "value": 1.0, "worker_id": "w2"}
        assert c.post(f"/api/trials/{b['trial_id']}/finish", json=finish).is_success


def test_new_trials_never_repeat_a_config_after_retries(database_url, live_server):
    """Retries waiting in the study and new trials drawn in one batch ahead of claims: each new
    trial of a random sweep is drawn with the seed of its own number, so no two originals share
    a config (a batch that popped a retry once drew with the next batch's seeds: duplicates)."""
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = make_sweep(c, n_trials=40, max_retries=3, sampler={"name": "random", "seed": 1})
        held: list[int] = []
        for round_ in range(8):
            for _ in range(6):
                r = claim(c)
                assert r.status_code == 200, r.text
                held.append(r.json()["trial_id"])
            for tid in held[:2]:  # two fail: their retries wait in the study
                body = {"worker_id": "w", "state": "failed", "reason": "crash"}
                assert c.post(f"/api/trials/{tid}/finish", json=body).status_code == 200
            for tid in held[2:]:
                body = {"worker_id": "w", "state": "complete", "value": float(round_)}
                assert c.post(f"/api/trials/{tid}/finish", json=body).status_code == 200
            held = []
        study_name = c.get(f"/api/sweeps/{sweep['id']}").json()["study_name"]
    study = optuna.load_study(study_name=study_name, storage=database_url)
    originals = [t for t in study.trials if ot.RETRY_OF not in t.system_attrs]
    configs = [tuple(sorted(t.params.items())) for t in originals]
    assert len(originals) >= 30
    assert len(set(configs)) == len(configs), "a new trial repeated another's config"
