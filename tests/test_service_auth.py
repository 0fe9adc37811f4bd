"""Auth: bearer tokens with scopes, stored hashed; open local mode only on loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess

import httpx
import pytest
from conftest import get_free_port, lionsweep_command
from sqlalchemy import create_engine, text

from service.auth import create_token
from service.settings import Settings

SPEC = {"name": "a", "task": {"name": "auth"}, "n_trials": 3}
CLAIM = {"worker_id": "w", "tasks": ["auth"]}


def cli_token(database_url: str, *scopes: str) -> str:
    """``lionsweep token create --scope …`` through the real console script."""
    args = [a for s in scopes for a in ("--scope", s)]
    out = subprocess.run(
        [*lionsweep_command(), "token", "create", *args, "--name", "test"],
        env={**os.environ, "LIONSWEEP_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def secured(module_live_server, make_sqlite_url):
    url = make_sqlite_url()
    tokens = {
        "submit": cli_token(url, "submit"),
        "worker": cli_token(url, "worker"),
        "read": create_token(Settings(database_url=url), scopes=["read"], name="reader"),
    }
    server = module_live_server(url)
    return server, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_stored_hashed(secured):
    server, tokens = secured
    engine = create_engine(server.database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT token_hash, scopes FROM lionsweep_tokens")).all()
    engine.dispose()
    stored = {h: s for h, s in rows}
    for scope, token in tokens.items():
        assert token not in str(rows)
        assert stored[hashlib.sha256(token.encode()).hexdigest()] == scope


def test_submit_requires_a_submit_token(secured):
    server, tokens = secured
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/api/sweeps", json=SPEC)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/api/sweeps", json=SPEC, headers=bearer("lsw_wrong")).status_code == 401
        r = c.post("/api/sweeps", json=SPEC, headers={"Authorization": tokens["submit"]})
        assert r.status_code == 401  # not a bearer scheme
        r = c.post("/api/sweeps", json=SPEC, headers=bearer(tokens["worker"]))
        assert r.status_code == 403 and "submit" in r.json()["detail"]
        assert c.get("/api/sweeps").json()["total"] == 0  # nothing written by rejections
        r = c.post("/api/sweeps", json=SPEC, headers=bearer(tokens["submit"]))
        assert r.status_code == 201
        sid = r.json()["id"]
        assert (
            c.post(f"/api/sweeps/{sid}/cancel", headers=bearer(tokens["worker"])).status_code == 403
        )
        assert c.post(f"/api/sweeps/{sid}/cancel").status_code == 401
        assert c.delete(f"/api/sweeps/{sid}", headers=bearer(tokens["read"])).status_code == 403
        assert (
            c.post(f"/api/sweeps/{sid}/resume", headers=bearer(tokens["submit"])).status_code == 200
        )


def test_worker_protocol_requires_a_worker_token(secured):
    server, tokens = secured
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/api/trials/claim", json=CLAIM).status_code == 401
        r = c.post("/api/trials/claim", json=CLAIM, headers=bearer(tokens["submit"]))
        assert r.status_code == 403
        r = c.post("/api/trials/claim", json=CLAIM, headers=bearer(tokens["worker"]))
        assert r.status_code == 200
        tid = r.json()["trial_id"]
        body = {"step": 1, "value": 1.0}
        assert c.post(f"/api/trials/{tid}/report", json=body).status_code == 401
        r = c.post(f"/api/trials/{tid}/report", json=body, headers=bearer("nope"))
        assert r.status_code == 401
        r = c.post(f"/api/trials/{tid}/heartbeat", json={}, headers=bearer(tokens["read"]))
        assert r.status_code == 403
        fin = {"state": "complete", "value": 1.0}
        assert c.post(f"/api/trials/{tid}/finish", json=fin).status_code == 401
        r = c.post(f"/api/trials/{tid}/finish", json=fin, headers=bearer(tokens["worker"]))
        assert r.status_code == 200


def test_reads_are_open_unless_required(secured, live_server):
    server, tokens = secured
    assert httpx.get(server.url + "/api/sweeps").status_code == 200
    strict = live_server(server.database_url, env={"LIONSWEEP_REQUIRE_READ_TOKEN": "true"})
    with httpx.Client(base_url=strict.url, timeout=30) as c:
        assert c.get("/api/sweeps").status_code == 401
        assert c.get("/api/sweeps", headers=bearer("bad")).status_code == 401
        for token in tokens.values():  # any valid token may read
            assert c.get("/api/sweeps", headers=bearer(token)).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_bootstrap_token_has_every_scope(sqlite_url, live_server):
    server = live_server(sqlite_url, env={"LIONSWEEP_BOOTSTRAP_TOKEN": "lsw_boot_secret"})
    with httpx.Client(base_url=server.url, timeout=30, headers=bearer("lsw_boot_secret")) as c:
        assert c.post("/api/sweeps", json=SPEC).status_code == 201
        assert c.post("/api/trials/claim", json=CLAIM).status_code == 200
        assert httpx.post(server.url + "/api/sweeps", json=SPEC).status_code == 401


def test_no_tokens_means_loopback_only(sqlite_url, live_server):
    server = live_server(sqlite_url)
    assert "no API tokens configured" in server.log()
    assert httpx.post(server.url + "/api/sweeps", json=SPEC).status_code == 201
    port = get_free_port()
    proc = subprocess.run(
        [*lionsweep_command(), "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={**os.environ, "LIONSWEEP_DATABASE_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to bind 0.0.0.0" in proc.stderr + proc.stdout


def test_unknown_scope_is_rejected(sqlite_url):
    with pytest.raises(ValueError, match="scopes must be among"):
        create_token(Settings(database_url=sqlite_url), scopes=["root"], name=None)
