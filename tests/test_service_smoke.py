"""Smoke: a real server starts on each backend and answers /healthz and a sweep round trip."""

from __future__ import annotations

import httpx


def test_server_starts_and_round_trips(database_url, live_server):
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.post("/api/sweeps", json={"name": "s", "task": {"name": "quadratic"}, "n_trials": 1})
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/api/sweeps/{r.json()['id']}"
        a = c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["quadratic"]})
        assert a.status_code == 200, a.text
        f = c.post(
            f"/api/trials/{a.json()['trial_id']}/finish", json={"state": "complete", "value": 1.0}
        )
        assert f.json()["state"] == "complete"
        assert c.get(f"/api/sweeps/{r.json()['id']}").json()["status"] == "complete"
