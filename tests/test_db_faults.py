"""Database faults on real PostgreSQL: a connection killed mid-request (as in a failover) and
a database that refuses connections for a while. The server answers 503 with Retry-After,
never a 500; workers and ``lionsweep.trials()`` wait through it and lose no work.

A request is killed mid-transaction reliably by holding an ``ACCESS EXCLUSIVE`` lock on a
table it needs: the request blocks inside its transaction, its backend (every backend of the
database but the test's) is terminated, and the lock is released.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from conftest import wait_for
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool
from test_worker_agent import start_worker  # noqa: F401 (the fixture)

import lionsweep

pytestmark = pytest.mark.postgres

LEASES = {
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "60",
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": "0.5",
}
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = :n AND pid <> pg_backend_pid()"
)


class Database:
    """The test's handle on the server's PostgreSQL database: lock tables, kill backends,
    refuse connections."""

    def __init__(self, url: str, admin_url: str) -> None:
        self.name = make_url(url).database
        self.engine: Engine = create_engine(url, poolclass=NullPool)
        self.admin: Engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def terminate(self, conn: Connection | None = None) -> None:
        """Terminate every backend of the database (but ``conn``'s, when given)."""
        if conn is not None:
            conn.execute(text(TERMINATE), {"n": self.name})
            return
        with self.admin.connect() as admin:
            admin.execute(text(TERMINATE), {"n": self.name})

    def waiting_on_locks(self, conn: Connection) -> int:
        """How many backends of the database wait for a lock, as of now: PostgreSQL keeps one
        snapshot of pg_stat_activity per transaction, and ``conn``'s transaction holds the
        lock the request waits for, so the snapshot is cleared first (a count taken before
        the request began to wait read 0 for the rest of the wait: a flaky 60 s timeout)."""
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :n "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ),
            {"n": self.name},
        ).scalar_one()

    @contextmanager
    def killing_what_waits_for(self, table: str, trial_id: int) -> Iterator[None]:
        """Lock trial ``trial_id``'s row of ``table``; on leaving, wait for a backend blocked
        on it, terminate every backend of the database, release."""
        with self.engine.connect() as conn:

            def locked() -> bool:
                conn.rollback()
                lock = f"SELECT trial_id FROM {table} WHERE trial_id = :t FOR UPDATE"
                return bool(conn.execute(text(lock), {"t": trial_id}).all())

            wait_for(locked, 30, f"trial {trial_id}'s row of {table} locked")
            yield
            what = f"a request blocked on {table}"
            wait_for(lambda: self.waiting_on_locks(conn), 60, what, every=0.05)
            self.terminate(conn)
            conn.rollback()

    def allow(self, on: bool) -> None:
        """Allow (``on``) or refuse new connections to the database."""
        with self.admin.connect() as admin:
            admin.execute(text(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS {on}'))

    def refuse(self, on: bool) -> None:
        """Refuse (``on``) or allow new connections; refusing also ends every open one."""
        self.allow(not on)
        if on:
            self.terminate()

    def dispose(self) -> None:
        """Allow connections again and close the test's own."""
        self.refuse(False)
        self.engine.dispose()
        self.admin.dispose()


@pytest.fixture
def pg(make_postgres_db, postgres_admin_url, live_server):
    """A server on a fresh PostgreSQL database: ``(server, Database)``."""
    url = make_postgres_db()
    server = live_server(url, env=LEASES)
    db = Database(url, postgres_admin_url)
    try:
        yield server, db
    finally:
        db.dispose()
        server.stop()
        make_postgres_db.drop(url)


def submit(api: httpx.Client, n_trials: int, task: str, **params) -> int:
    """Submit a sweep of ``task`` (random sampler, no pruner); return its id."""
    body = {
        "name": "faults",
        "task": {"name": task, "params": params},
        "n_trials": n_trials,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
    }
    r = api.post("/api/sweeps", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def trials_of(api: httpx.Client, sweep_id: int) -> list[dict]:
    """Every trial of the sweep."""
    r = api.get(f"/api/sweeps/{sweep_id}/trials", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def running(api: httpx.Client, sweep_id: int) -> list[dict]:
    """The sweep's running trials."""
    return [t for t in trials_of(api, sweep_id) if t["state"] == "running"]


def in_thread(call: Callable[[], httpx.Response]) -> Callable[[], httpx.Response]:
    """Start ``call`` in a thread; return a function that waits for its answer."""
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()

    def answer() -> httpx.Response:
        thread.join(60)
        assert out, "the request did not return"
        return out[0]

    return answer


@pytest.mark.parametrize(
    ("call", "table"),
    [
        ("report", "trials"),
        ("heartbeat", "lionsweep_leases"),
        ("finish", "trials"),
    ],
)
def test_a_connection_killed_mid_request_is_a_503_and_the_trial_keeps_running(pg, call, table):
    server, db = pg
    task = f"own{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=60) as api:
        sweep = submit(api, 1, task)
        r = api.post("/api/trials/claim", json={"worker_id": "w", "tasks": [task]})
        assert r.status_code == 200, r.text
        trial_id = r.json()["trial_id"]
        bodies = {
            "report": {"worker_id": "w", "step": 1, "value": 0.5, "metrics": {}},
            "heartbeat": {"worker_id": "w"},
            "finish": {"worker_id": "w", "state": "complete", "value": 0.25},
        }
        path = f"/api/trials/{trial_id}/{call}"
        with db.killing_what_waits_for(table, trial_id):
            answer = in_thread(lambda: api.post(path, json=bodies[call]))
        r = answer()
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert "database" in r.json()["detail"]
        assert "database unavailable" in server.log()
        assert "KeyError" not in server.log()
        (trial,) = trials_of(api, sweep)
        assert trial["state"] == "running", trial
        # The client's retry goes through; the trial ends as the worker says, first time.
        r = api.post(path, json=bodies[call])
        assert r.status_code == 200, r.text
        r = api.post(f"/api/trials/{trial_id}/finish", json=bodies["finish"])
        assert r.status_code == 200 and r.json()["requeued"] is False, r.text
        (trial,) = trials_of(api, sweep)
        assert (trial["state"], trial["value"]) == ("complete", 0.25)


@pytest.mark.slow
def test_a_worker_keeps_its_trial_through_a_killed_report_and_a_503_window(
    pg,
    start_worker,  # noqa: F811
):
    server, db = pg
    with httpx.Client(base_url=server.url, timeout=60) as api:
        sweep = submit(api, 1, "quadratic", steps=300, step_delay=0.02, eval_every=20)
        worker = start_worker(server.url, "--idle-exit", "3")
        (trial,) = wait_for(lambda: running(api, sweep), 60, "a running trial")
        # Its next report waits for the row, and its connection is killed there (a failover).
        with db.killing_what_waits_for("trials", trial["trial_id"]):
            pass
        time.sleep(0.5)
        db.refuse(True)
        time.sleep(8)  # the database refuses connections: every request is a 503
        db.refuse(False)
        assert worker.wait(120) == 0, worker.log()
        (trial,) = trials_of(api, sweep)
    assert trial["state"] == "complete", (trial, worker.log())
    assert sorted(map(int, trial["intermediate_values"])) == list(range(20, 301, 20))
    assert "HTTP 503" in worker.log()
    assert "refused" not in worker.log()
    assert "KeyError" not in server.log()


@pytest.mark.slow
def test_an_idle_exit_worker_started_during_an_outage_waits_for_the_database(
    pg,
    start_worker,  # noqa: F811
):
    server, db = pg
    with httpx.Client(base_url=server.url, timeout=60) as api:
        sweep = submit(api, 1, "quadratic", steps=20)
        db.refuse(True)
        worker = start_worker(server.url, "--idle-exit", "2")
        time.sleep(12)  # longer than a claim's retries and the idle time together
        assert worker.process.poll() is None, worker.log()
        db.refuse(False)
        assert worker.wait(90) == 0, worker.log()
        (trial,) = trials_of(api, sweep)
    assert trial["state"] == "complete", (trial, worker.log())
    assert "HTTP 503" in worker.log()


@pytest.mark.slow
def test_a_trials_loop_started_during_an_outage_waits_and_says_why(pg, caplog):
    server, db = pg
    task = f"own{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=60) as api:
        sweep = submit(api, 1, task)
    db.refuse(True)
    back = threading.Timer(10.0, db.refuse, args=(False,))
    back.start()
    started = time.monotonic()
    ran = []
    try:
        with caplog.at_level(logging.INFO, logger="lionsweep"):
            for trial in lionsweep.trials(server.url, sweep=sweep, max_trials=1):
                with trial:
                    trial.report(1, 0.5)
                    ran.append(trial.finish(0.25))
    finally:
        back.join()
    assert ran == ["complete"]
    assert time.monotonic() - started >= 10
    waiting = [r.getMessage() for r in caplog.records if "answers 503" in r.getMessage()]
    assert waiting, caplog.text
    assert waiting[0].startswith(f"the lionsweep server at {server.url} answers 503"), waiting
    assert "database" in waiting[0] and "retrying" in waiting[0], waiting
    assert len(waiting) <= 3, waiting  # said once, then now and then: not at every retry
