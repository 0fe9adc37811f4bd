"""Leases: a RUNNING trial without heartbeats is failed by the reaper and re-queued."""

from __future__ import annotations

import httpx

LEASE_ENV = {
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "1.5",
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": "0.25",
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
}


def test_lease_expiry_requeues_with_same_params(database_url, live_server, wait_for):
    server = live_server(database_url, env=LEASE_ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = c.post(
            "/api/sweeps",
            json={"name": "lease", "task": {"name": "lease"}, "n_trials": 2, "max_retries": 1},
        ).json()
        claim = {"worker_id": "crashy", "tasks": ["lease"]}
        lost = c.post("/api/trials/claim", json=claim).json()
        kept = c.post("/api/trials/claim", json=claim).json()
        assert lost["heartbeat_interval"] == 0.5

        def kept_alive_until_lost_is_requeued():
            c.post(f"/api/trials/{kept['trial_id']}/heartbeat", json={})
            c.post(f"/api/trials/{kept['trial_id']}/report", json={"step": 1, "value": 1.0})
            t = c.get(f"/api/sweeps/{sweep['id']}/trials/{lost['trial_number']}").json()
            return t if t["state"] == "failed" else None

        failed = wait_for(kept_alive_until_lost_is_requeued)
        assert failed["reason"].startswith("lease expired")
        # The heartbeating trial kept its lease; the silent one lost it.
        t = c.get(f"/api/sweeps/{sweep['id']}/trials/{kept['trial_number']}").json()
        assert t["state"] == "running"
        r = c.post(f"/api/trials/{lost['trial_id']}/report", json={"step": 2, "value": 1.0})
        assert r.status_code == 409

        again = c.post("/api/trials/claim", json={"worker_id": "w2", "tasks": ["lease"]}).json()
        assert again["params"] == lost["params"]
        retry = c.get(f"/api/sweeps/{sweep['id']}/trials/{again['trial_number']}").json()
        assert retry["retry_of"] == lost["trial_number"] and retry["state"] == "running"
        counts = c.get(f"/api/sweeps/{sweep['id']}").json()["counts"]
        assert counts == {
            "complete": 0,
            "pruned": 0,
            "failed": 1,
            "running": 2,
            "waiting": 0,
            "handed_back": 0,
            "imported": 0,
        }

        # The retry also goes silent: retries are exhausted, so it stays failed for good.
        def kept_alive_until_retry_fails():
            c.post(f"/api/trials/{kept['trial_id']}/heartbeat", json={})
            t = c.get(f"/api/sweeps/{sweep['id']}/trials/{again['trial_number']}").json()
            return t["state"] == "failed"

        wait_for(kept_alive_until_retry_fails)
        c.post(f"/api/trials/{kept['trial_id']}/finish", json={"state": "complete", "value": 1})
        got = c.get(f"/api/sweeps/{sweep['id']}").json()
        assert got["status"] == "complete" and got["finished"] == 2
        assert got["counts"]["failed"] == 2 and got["counts"]["waiting"] == 0
        assert c.post("/api/trials/claim", json=claim).status_code == 204
    assert "reaper: failed 1 stale trial(s)" in server.log()


def test_finish_after_lease_expiry_is_a_conflict(sqlite_url, live_server, wait_for):
    server = live_server(sqlite_url, env=LEASE_ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post(
            "/api/sweeps",
            json={"name": "l", "task": {"name": "l"}, "n_trials": 2, "max_retries": 0},
        )
        claims = [
            c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["l"]}).json()
            for _ in range(2)
        ]
        wait_for(lambda: c.get("/api/sweeps/1").json()["counts"]["failed"] == 2)
        for a, state in zip(claims, ["complete", "pruned"], strict=True):
            r = c.post(f"/api/trials/{a['trial_id']}/finish", json={"state": state, "value": 1.0})
            assert r.status_code == 409 and "already failed" in r.json()["detail"]
        assert c.get("/api/sweeps/1").json()["status"] == "complete"


def test_a_running_trial_that_never_sent_a_heartbeat_is_reaped(database_url, live_server, wait_for):
    """A server dying between reserving a trial and its first heartbeat leaves no heartbeat row."""
    import optuna

    server = live_server(database_url, env=LEASE_ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = c.post(
            "/api/sweeps",
            json={"name": "nb", "task": {"name": "nb"}, "n_trials": 1, "max_retries": 1},
        ).json()
        storage = optuna.storages.RDBStorage(database_url)
        study_id = storage.get_study_id_from_name(sweep["study_name"])
        tid = storage.create_new_trial(study_id)  # RUNNING, as _reserve leaves it
        number = storage.get_trial_number_from_id(tid)
        storage.engine.dispose()
        url = f"/api/sweeps/{sweep['id']}"
        wait_for(lambda: c.get(f"{url}/trials/{number}").json()["state"] == "failed")
        assert c.get(f"{url}/trials/{number}").json()["reason"].startswith("lease expired")
        retry = c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["nb"]}).json()
        assert c.get(f"{url}/trials/{retry['trial_number']}").json()["retry_of"] == number
        done = {"state": "complete", "value": 1.0}
        c.post(f"/api/trials/{retry['trial_id']}/finish", json=done)
        assert c.get(url).json()["status"] == "complete"


def test_a_lease_expiring_while_cancelled_uses_no_retry(sqlite_url, live_server, wait_for):
    server = live_server(sqlite_url, env=LEASE_ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = c.post(
            "/api/sweeps",
            json={"name": "lc", "task": {"name": "lc"}, "n_trials": 1, "max_retries": 0},
        ).json()
        url = f"/api/sweeps/{sweep['id']}"
        a = c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["lc"]}).json()
        c.post(f"{url}/cancel")
        # stopped while cancelled: handed back (re-queued, no retry used), not failed
        wait_for(lambda: c.get(url).json()["counts"]["handed_back"] == 1)
        assert c.get(url).json()["counts"]["waiting"] == 1
        assert c.post(f"{url}/resume").json()["status"] == "running"
        b = c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["lc"]}).json()
        assert b["params"] == a["params"]
        c.post(f"/api/trials/{b['trial_id']}/finish", json={"state": "complete", "value": 1.0})
        got = c.get(url).json()
        assert got["status"] == "complete" and got["counts"]["complete"] == 1
