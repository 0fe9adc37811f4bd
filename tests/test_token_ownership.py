"""Tokens own trials: only the token a trial was claimed with may report, heartbeat or
finish it; a finish is never silently replaced; tokens are listed and revoked at once."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
from conftest import lionsweep_command
from test_service_auth import bearer, cli_token

SPEC = {
    "name": "owned",
    "task": {"name": "owned"},
    "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
    "n_trials": 4,
}


def token_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``lionsweep token …`` through the real console script."""
    return subprocess.run(
        [*lionsweep_command(), "token", *args],
        env={**os.environ, "LIONSWEEP_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_only_the_claiming_token_may_report_heartbeat_or_finish(database_url, live_server):
    alice, bob = cli_token(database_url, "worker"), cli_token(database_url, "worker")
    submit = cli_token(database_url, "submit")
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sid = c.post("/api/sweeps", json=SPEC, headers=bearer(submit)).json()["id"]
        claim = {"worker_id": "wa", "tasks": ["owned"], "request_id": "r-1"}
        got = c.post("/api/trials/claim", json=claim, headers=bearer(alice))
        assert got.status_code == 200
        tid = got.json()["trial_id"]
        report = {"step": 1, "value": 0.5}
        # Bob's token: refused whether he signs as the claimant, as someone else, or not at all.
        for body in ({**report, "worker_id": "wa"}, {**report, "worker_id": "wb"}, report):
            r = c.post(f"/api/trials/{tid}/report", json=body, headers=bearer(bob))
            assert r.status_code == 403, r.text
            assert "another token" in r.json()["detail"]
        for body in ({"worker_id": "wa"}, {}):
            r = c.post(f"/api/trials/{tid}/heartbeat", json=body, headers=bearer(bob))
            assert r.status_code == 403
        assert c.post(f"/api/trials/{tid}/heartbeat", headers=bearer(bob)).status_code == 403
        r = c.post(f"/api/trials/{tid}/finish", json={"state": "complete", "value": -1e300},
                   headers=bearer(bob))  # fmt: skip
        assert r.status_code == 403
        # No token at all is a 401; Bob cannot replay Alice's claim either.
        assert c.post(f"/api/trials/{tid}/report", json=report).status_code == 401
        r = c.post("/api/trials/claim", json={**claim, "worker_id": "wa"}, headers=bearer(bob))
        assert r.status_code == 409
        # Alice may, unsigned or signed; the trial is untouched by Bob's attempts.
        assert c.post(f"/api/trials/{tid}/report", json=report, headers=bearer(alice)).json() == {
            "action": "continue"
        }
        r = c.post(f"/api/trials/{tid}/heartbeat", json={}, headers=bearer(alice))
        assert r.status_code == 200
        done = {"state": "complete", "value": 0.25, "worker_id": "wa"}
        assert (
            c.post(f"/api/trials/{tid}/finish", json=done, headers=bearer(alice)).status_code == 200
        )
        # The same finish again (a lost reply) is answered the same; another value is a 409.
        again = c.post(f"/api/trials/{tid}/finish", json=done, headers=bearer(alice))
        assert again.status_code == 200 and again.json()["state"] == "complete"
        other = c.post(
            f"/api/trials/{tid}/finish", json={**done, "value": -1e300}, headers=bearer(alice)
        )
        assert other.status_code == 409 and "already complete with value 0.25" in other.text
        other = c.post(
            f"/api/trials/{tid}/finish", json={**done, "value": -1e300}, headers=bearer(bob)
        )
        assert other.status_code == 403
        number = got.json()["trial_number"]
        trial = c.get(f"/api/sweeps/{sid}/trials/{number}", headers=bearer(submit)).json()
        assert (trial["state"], trial["value"]) == ("complete", 0.25)


@pytest.mark.slow
def test_tokens_are_listed_and_revoked_at_once(sqlite_url, live_server):
    admin = cli_token(sqlite_url, "admin")
    worker = cli_token(sqlite_url, "worker")
    submit = cli_token(sqlite_url, "submit")
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/api/sweeps", json=SPEC, headers=bearer(submit)).raise_for_status()
        claim = {"worker_id": "w", "tasks": ["owned"]}
        tid = c.post("/api/trials/claim", json=claim, headers=bearer(worker)).json()["trial_id"]
        assert c.get("/api/tokens", headers=bearer(worker)).status_code == 403
        listed = c.get("/api/tokens", headers=bearer(admin)).json()
        assert [t["scopes"] for t in listed] == [["admin"], ["worker"], ["submit"]]
        assert all("hash" not in str(t) and worker not in str(t) for t in listed)
        worker_id = listed[1]["id"]
        r = c.delete(f"/api/tokens/{worker_id}", headers=bearer(admin))
        assert r.status_code == 200 and r.json()["revoked_at"]
        # At once, on the very next request: no cache to wait out.
        r = c.post(f"/api/trials/{tid}/heartbeat", json={}, headers=bearer(worker))
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert c.post("/api/trials/claim", json=claim, headers=bearer(worker)).status_code == 401
        assert c.delete("/api/tokens/999", headers=bearer(admin)).status_code == 404
        # The CLI lists and revokes too; revoking every token never opens the server.
        out = token_cli(sqlite_url, "list")
        assert out.returncode == 0 and "worker" in out.stdout and "admin" in out.stdout
        for t in listed:
            assert token_cli(sqlite_url, "revoke", str(t["id"])).returncode == 0
        assert token_cli(sqlite_url, "revoke", "999").returncode != 0
        assert c.get("/api/tokens", headers=bearer(admin)).status_code == 401
        assert c.post("/api/sweeps", json=SPEC).status_code == 401
