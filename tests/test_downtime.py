"""Downtime is not held against workers: time no server was alive, or could reach the database,
is given back to every lease, so a worker that kept running through an outage keeps its trial.

"Ten minutes passed while no server ran" is simulated the way it looks in the database: the
liveness row and every lease's last heartbeat moved the same 600 s into the past.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import create_engine, text

GRACE = 4.0
ENV = {
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": str(GRACE),
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": "0.25",
}
OUTAGE = 600.0
RETRY_AFTER = 1.0
"""A worker's heartbeat retry lands this long after the server is back (its retry back-off):
the reaper has run several passes by then, so a lease that was not given back is gone."""
FORGIVEN = "downtime:"
"""The start of the log line a server writes when it gives downtime back to the leases."""


def _submit(c: httpx.Client, name: str, n: int) -> dict:
    spec = {"name": name, "task": {"name": name}, "n_trials": n, "max_retries": 1}
    r = c.post("/api/sweeps", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def _claim(c: httpx.Client, name: str, worker: str) -> dict:
    r = c.post("/api/trials/claim", json={"worker_id": worker, "tasks": [name]})
    assert r.status_code == 200, r.text
    return r.json()


def _beat(c: httpx.Client, trial: dict) -> httpx.Response:
    return c.post(f"/api/trials/{trial['trial_id']}/heartbeat", json={})


def _state(c: httpx.Client, sweep: dict, trial: dict) -> dict:
    return c.get(f"/api/sweeps/{sweep['id']}/trials/{trial['trial_number']}").json()


def _shift_into_the_past(url: str, seconds: float) -> None:
    """What ``seconds`` with no server alive look like: the last liveness record and every
    lease's last heartbeat lie that much further in the past."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE lionsweep_liveness SET alive_at = alive_at - :s"), {"s": seconds}
            )
            conn.execute(
                text("UPDATE lionsweep_leases SET heartbeat_at = heartbeat_at - :s"),
                {"s": seconds},
            )
    finally:
        engine.dispose()


def _no_retry_charged(c: httpx.Client, sweep: dict, trials: list[dict]) -> None:
    got = c.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["counts"]["failed"] == 0, got["counts"]
    for t in trials:
        assert _state(c, sweep, t)["state"] == "running"
        done = {"state": "complete", "value": 1.0}
        r = c.post(f"/api/trials/{t['trial_id']}/finish", json=done)
        assert r.status_code == 200 and r.json()["requeued"] is False, r.text
    got = c.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["counts"]["failed"] == 0 and got["counts"]["complete"] == len(trials)


def test_a_ten_minute_outage_reaps_no_live_trial(database_url, live_server):
    server = live_server(database_url, env=ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = _submit(c, "outage", 3)
        live = [_claim(c, "outage", f"w{i}") for i in range(2)]
        for t in live:
            assert _beat(c, t).status_code == 200
    server.stop()
    _shift_into_the_past(database_url, OUTAGE)
    server = live_server(database_url, env=ENV)
    time.sleep(RETRY_AFTER)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for t in live:
            r = _beat(c, t)
            assert r.status_code == 200 and r.json()["action"] == "continue", r.text
        _no_retry_charged(c, sweep, live)
    assert FORGIVEN in server.log()


@pytest.mark.slow
def test_a_worker_that_died_in_the_outage_is_reaped_one_grace_after_it(
    database_url, live_server, wait_for
):
    server = live_server(database_url, env=ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = _submit(c, "dead", 3)
        alive, dead = _claim(c, "dead", "alive"), _claim(c, "dead", "dead")
        for t in (alive, dead):
            assert _beat(c, t).status_code == 200
    server.stop()
    _shift_into_the_past(database_url, OUTAGE)
    server = live_server(database_url, env=ENV)
    back = time.monotonic()
    time.sleep(RETRY_AFTER)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert _state(c, sweep, dead)["state"] == "running"  # given the outage back too

        def dead_is_reaped() -> dict | None:
            assert _beat(c, alive).status_code == 200
            t = _state(c, sweep, dead)
            return t if t["state"] == "failed" else None

        failed = wait_for(dead_is_reaped, timeout=GRACE + 10, every=0.25)
        took = time.monotonic() - back
        assert failed["reason"].startswith("lease expired")
        assert took < GRACE + 5, f"the silent trial was reaped {took:.1f} s after the outage"
        assert _beat(c, alive).status_code == 200
        assert _state(c, sweep, alive)["state"] == "running"
        counts = c.get(f"/api/sweeps/{sweep['id']}").json()["counts"]
        assert counts["failed"] == 1 and counts["waiting"] == 1  # the dead one, re-queued


@pytest.mark.slow
def test_a_real_server_outage_longer_than_the_grace_costs_no_trial(database_url, live_server):
    server = live_server(database_url, env=ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = _submit(c, "real", 2)
        live = [_claim(c, "real", "w")]
        assert _beat(c, live[0]).status_code == 200
    server.stop()
    time.sleep(GRACE + 1)
    server = live_server(database_url, env=ENV)
    time.sleep(RETRY_AFTER)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert _beat(c, live[0]).status_code == 200
        _no_retry_charged(c, sweep, live)


@pytest.mark.slow
def test_two_servers_give_one_gap_back_once(database_url, live_server):
    """Both servers see the same gap; under the liveness row's lock only one gives it back.

    The shift is held uncommitted for a while, so both servers' next liveness passes queue up
    on its lock and then run one after the other against the same gap.
    """
    servers = [live_server(database_url, env=ENV) for _ in range(2)]
    with httpx.Client(base_url=servers[0].url, timeout=30) as c:
        sweep = _submit(c, "two", 3)
        a, b = _claim(c, "two", "a"), _claim(c, "two", "b")
        for t in (a, b):
            assert _beat(c, t).status_code == 200
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            # b's last sign of life one second older than a's: a gap given back once keeps
            # that second between them; given back twice, both would be capped at "now".
            conn.execute(
                text("UPDATE lionsweep_liveness SET alive_at = alive_at - :s"), {"s": OUTAGE}
            )
            conn.execute(
                text(
                    "UPDATE lionsweep_leases SET heartbeat_at = :t - :s "
                    "- CASE WHEN trial_id = :b THEN 1 ELSE 0 END"
                ),
                {"t": _db_clock(conn), "s": OUTAGE, "b": b["trial_id"]},
            )
            time.sleep(1.0)
        time.sleep(RETRY_AFTER)
        with engine.connect() as conn:
            now = _db_clock(conn)
            beats = dict(
                conn.execute(text("SELECT trial_id, heartbeat_at FROM lionsweep_leases")).all()
            )
    finally:
        engine.dispose()
    assert beats[a["trial_id"]] - beats[b["trial_id"]] == pytest.approx(1.0, abs=1e-3)
    assert now - GRACE < beats[a["trial_id"]] < now
    assert sum(FORGIVEN in s.log() for s in servers) == 1, [s.log()[-2000:] for s in servers]
    for s in servers:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            for t in (a, b):
                assert _beat(c, t).status_code == 200
    with httpx.Client(base_url=servers[1].url, timeout=30) as c:
        _no_retry_charged(c, sweep, [a, b])


def _db_clock(conn) -> float:
    """The database's clock in seconds since the epoch (the clock leases are timed on)."""
    if conn.dialect.name == "sqlite":
        return conn.scalar(text("SELECT (julianday('now') - 2440587.5) * 86400.0"))
    return float(conn.scalar(text("SELECT extract(epoch FROM clock_timestamp())")))


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_outage_with_the_server_up_costs_no_trial(
    make_postgres_db, postgres_admin_url, live_server
):
    """The server runs on but cannot reach its database for longer than the grace: it cannot
    record that it is alive either, so the time counts as downtime when the database returns."""
    url = make_postgres_db()
    name = url.rsplit("/", 1)[1]
    server = live_server(url, env=ENV)
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            sweep = _submit(c, "db", 2)
            live = [_claim(c, "db", "w")]
            assert _beat(c, live[0]).status_code == 200
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
            try:
                time.sleep(GRACE + 1)
                assert c.get("/healthz").status_code == 503
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            time.sleep(RETRY_AFTER)
            r = _beat(c, live[0])
            assert r.status_code == 200, r.text
            _no_retry_charged(c, sweep, live)
    finally:
        admin.dispose()
        server.stop()
        make_postgres_db.drop(url)


def test_heartbeats_during_a_gap_are_not_pushed_into_the_future(database_url, live_server):
    """A lease renewed after the last liveness record is capped at "now" when the gap is
    given back, so a worker that dies right after the outage is not kept for extra time."""
    server = live_server(database_url, env=ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        _submit(c, "cap", 1)
        t = _claim(c, "cap", "w")
        assert _beat(c, t).status_code == 200
    server.stop()
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE lionsweep_liveness SET alive_at = alive_at - :s"), {"s": OUTAGE}
            )
        live_server(database_url, env=ENV)
        with engine.connect() as conn:
            now = _db_clock(conn)
            beat = conn.scalar(text("SELECT heartbeat_at FROM lionsweep_leases"))
    finally:
        engine.dispose()
    assert beat <= now


def test_an_upgrade_from_a_version_without_liveness_gives_its_downtime_back(
    database_url, live_server
):
    """A database last served by a version that kept no liveness row: the freshest heartbeat
    is the last moment a server was surely alive, and the time since is given back."""
    server = live_server(database_url, env=ENV)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = _submit(c, "upgrade", 2)
        live = [_claim(c, "upgrade", "w")]
        assert _beat(c, live[0]).status_code == 200
    server.stop()
    _shift_into_the_past(database_url, OUTAGE)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM lionsweep_liveness"))
    finally:
        engine.dispose()
    server = live_server(database_url, env=ENV)
    time.sleep(RETRY_AFTER)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert _beat(c, live[0]).status_code == 200
        _no_retry_charged(c, sweep, live)
