"""A model-based test of the trial ledger against a real server, on SQLite and PostgreSQL.

Hypothesis drives random sequences of what workers and users do to one sweep — claim
(sometimes repeating a claim's ``request_id``, as after a lost reply), up to 8 claims sent
at the same moment (each trial to one claimant, as many as were available; with more than
four running, the sampler queues trials ahead), report, heartbeat, finish, finish again (a
retried finish), calls on finished trials, crash (the worker vanishes and stops
heartbeating), reap, cancel, resume, and on PostgreSQL the database ending every
connection (as in a failover) — and after every step checks the
ledger the server shows (``GET /api/sweeps/{id}`` and its trials) against a model of it:

- never more than ``n_trials`` originals; a failed trial has at most one retry, with the
  same params, and only a failed trial has one (never a complete or pruned one);
- every RUNNING trial is held by exactly one claim of the model (a held one, or a crashed
  one not yet reaped), and no two running trials share a config;
- every trial the model finished is in the state it was finished in, with the answer's
  ``requeued`` matching whether a retry exists; a repeated claim or finish gets the first
  answer; reports, heartbeats and other finishes to an ended trial are conflicts (409);
- a crashed trial is failed by its lease ("lease expired"), never sooner than the grace
  after its last sign of life, and a reap 0.3 s after the grace finds it expired;
- a failed trial has a retry exactly when retries remain (a failure while the sweep is
  cancelled uses none), else it was its last allowed attempt;
- the sweep's counts equal those of the trials list and ``finished`` is complete + pruned +
  failures without a retry; ``complete`` exactly when finished == n_trials (a cancelled
  sweep may hold a full count until it is resumed);
- a claim gets a trial whenever the sweep is running with a waiting trial or room for an
  original, and none while it is cancelled or complete; a cancelled sweep tells its
  workers to stop;
- at the end of each example (if nothing failed) the model resumes, finishes, reaps, and
  claims and fails trials until the sweep completes: every sweep can be finished, and
  each config's retries run out on the way.

Each backend starts one server on one fresh database (a SQLite file, or a clone of the
migrated PostgreSQL template); each example is a new sweep there with a task name of its own,
so no claim of one example can take another's trials. Leases are short (heartbeat interval 0.2 s,
grace 1.5 s, the server's reaper every 0.2 s); a background thread heartbeats the trials
the model holds, and the reap step waits out the grace, then also runs the reaper
in-process on the same database. The server's reaper may act at any moment, so the model
accepts a crashed trial as running or failed until it sees it reaped.

Examples are derandomized and not shrunk (profile ``lionsweep-ledger-ci``: 10 examples of
30 steps). ``LIONSWEEP_LEDGER_PROFILE=lionsweep-ledger-shrink`` replays the same search
and minimizes a failure (minutes: each try replays a sequence of requests);
``LIONSWEEP_LEDGER_PROFILE=lionsweep-ledger-deep`` searches longer, at random (40 examples
of 50 steps, about 5 minutes per backend).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

HEARTBEAT_INTERVAL = 0.2
GRACE = 1.5
REAPER_INTERVAL = 0.2
LEASE_ENV = {
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_INTERVAL),
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": str(GRACE),
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": str(REAPER_INTERVAL),
}
BEAT_EVERY = 0.3
"""How often the background thread heartbeats held trials (5× inside the grace)."""
REAP_MARGIN = 0.3
"""A reap this long after the grace has run out must find a crashed trial expired."""
EARLY_SLACK = 0.05
"""A crashed trial seen failed sooner than grace − this after its last sign was reaped early."""
STATES = ("complete", "pruned", "failed", "running", "waiting")

# Shrinking a failure replays many examples, so it takes minutes: CI reports the failing
# sequence as found (derandomized, so the same one each run), and the "shrink" profile
# minimizes it.
settings.register_profile(
    "lionsweep-ledger-ci",
    max_examples=10,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.register_profile(
    "lionsweep-ledger-shrink",
    parent=settings.get_profile("lionsweep-ledger-ci"),
    phases=list(Phase),
)
settings.register_profile(
    "lionsweep-ledger-deep",
    parent=settings.get_profile("lionsweep-ledger-shrink"),
    max_examples=40,
    stateful_step_count=50,
    derandomize=False,
)
PROFILE = os.environ.get("LIONSWEEP_LEDGER_PROFILE", "lionsweep-ledger-ci")


def _canon(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _same_trial(got: dict[str, Any], first: dict[str, Any]) -> bool:
    return got["trial_id"] == first["trial_id"] and got["params"] == first["params"]


@dataclass
class Claim:
    """A trial the model got from a claim (held, crashed or finished)."""

    trial_id: int
    number: int
    params: dict[str, Any]
    request_id: str
    last_sign: float = 0.0
    """When the last claim, report or heartbeat of it was sent (monotonic clock)."""
    values: dict[str, float] = field(default_factory=dict)
    next_step: int = 0
    crashed_at: float | None = None
    crash_epoch: int = 0
    crash_status: str = ""
    body: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None


@dataclass
class Backend:
    """The database and the server every example of one backend shares."""

    db_url: str
    server: Any
    postgres: bool = False


class Heartbeats:
    """Heartbeats the held trials every ``BEAT_EVERY`` seconds, as a worker's thread does.

    ``held`` (trial number → claim) is the model's, changed only under ``lock``.
    """

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        self.lock = threading.Lock()
        self.held: dict[int, Claim] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-heartbeats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(BEAT_EVERY):
            with self.lock:
                for c in list(self.held.values()):
                    c.last_sign = time.monotonic()
                    try:
                        r = self.client.post(f"/api/trials/{c.trial_id}/heartbeat", json={})
                    except httpx.HTTPError as e:
                        self.errors.append(f"heartbeat of trial {c.number}: {e!r}")
                        continue
                    if r.status_code == 503:
                        continue  # the database was unreachable: a worker retries
                    if r.status_code != 200:
                        self.errors.append(
                            f"heartbeat of trial {c.number}: {r.status_code} {r.text}"
                        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


class LedgerMachine(RuleBasedStateMachine):
    """The model: what the workers hold, what they finished, what crashed."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self.db_url = backend.db_url
        self.server = backend.server
        # A task of its own (far from every other example's name, so never "did you mean").
        self.task = f"ledger-{uuid.uuid4().hex[:12]}"
        self.client = httpx.Client(base_url=self.server.url, timeout=30)
        self.beats = Heartbeats(self.server.url)
        self.reaper: Any = None
        self.sweep_id: int | None = None
        self.n_trials = 0
        self.max_retries = 0
        self.status = "running"
        self.epoch = 0  # bumped each time the sweep turns cancelled or back
        self.n_claims = 0
        self.held = self.beats.held  # by trial number
        self.lost: dict[int, Claim] = {}  # crashed, not yet seen reaped
        self.reaped: dict[int, Claim] = {}
        self.done: dict[int, Claim] = {}  # finished by the model
        self.free: dict[int, bool | None] = {}  # failure while cancelled (no retry used)?
        self.trials: dict[int, dict[str, Any]] = {}  # the last consistent snapshot
        self.available = 0  # the last snapshot: waiting trials + room for originals, if running

    # ---- plumbing ----

    def _claim(self, request_id: str) -> httpx.Response:
        body = {"worker_id": "w1", "device": "cpu", "tasks": [self.task], "request_id": request_id}
        return self.client.post("/api/trials/claim", json=body)

    def _release(self, number: int) -> None:
        with self.beats.lock:
            del self.held[number]

    def _snapshot(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The sweep and its trials, read until the trials did not change around the sweep:
        the server's reaper may act between the reads (with a crashed trial about), and so
        may its thread that queues trials ahead of claims."""
        url = f"/api/sweeps/{self.sweep_id}"

        def trials() -> list[dict[str, Any]]:
            r = self.client.get(f"{url}/trials", params={"limit": 1000})
            assert r.status_code == 200, r.text
            return r.json()["items"]

        def shape(ts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return [(t["number"], t["state"], t["retry_of"]) for t in ts]

        for _ in range(5):
            r = self.client.get(url)
            assert r.status_code == 200, r.text
            after = trials()
            before, r = after, self.client.get(url)
            assert r.status_code == 200, r.text
            after = trials()
            if shape(before) == shape(after):
                return r.json(), after
        raise AssertionError("the trials kept changing between reads")

    def _retry_bounds(self, number: int) -> tuple[bool, bool]:
        """(may, must): whether failed trial ``number`` may / must have a retry.

        Its earlier attempts' failures used a retry each unless the sweep was cancelled
        then; a crashed trial reaped while the sweep was cancelled and resumed may have
        used one or not (``free`` None): the bounds allow both.
        """
        lo = hi = 0
        ancestor = self.trials[number]["retry_of"]
        while ancestor is not None:
            free = self.free.get(ancestor)
            lo += free is False
            hi += free is not True
            ancestor = self.trials[ancestor]["retry_of"]
        free = self.free.get(number)
        if free is True:
            return True, True
        if free is False:
            return lo < self.max_retries, hi < self.max_retries
        return True, hi < self.max_retries

    @staticmethod
    def _pick(pool: dict[int, Claim], i: int) -> Claim | None:
        """The ``i``-th trial of ``pool`` (cyclically), None when it is empty.

        Steps whose pool is empty do nothing rather than being ruled out by a precondition:
        which steps can be drawn must not depend on the server's timing (its reaper), or
        Hypothesis could not replay and shrink a failure. (Steps on a held trial claim one
        first when none is held: Hypothesis's swarm testing leaves ``claim`` itself out of
        some examples.)
        """
        return pool[sorted(pool)[i % len(pool)]] if pool else None

    # ---- steps ----

    @initialize(
        n_trials=st.integers(4, 6), max_retries=st.integers(1, 2), seed=st.integers(0, 1000)
    )
    def create_sweep(self, n_trials: int, max_retries: int, seed: int) -> None:
        spec = {
            "name": "ledger",
            "task": {"name": self.task},
            "sampler": {"name": "random", "seed": seed},
            "pruner": {"name": "none"},
            "n_trials": n_trials,
            "max_retries": max_retries,
        }
        r = self.client.post("/api/sweeps", json=spec)
        assert r.status_code == 201, r.text
        self.sweep_id, self.n_trials, self.max_retries = r.json()["id"], n_trials, max_retries

    def _claim_one(self, token: str, lost_reply: bool = False) -> Claim | None:
        """One claim with a new request_id (asked again if its reply is lost); None on 204."""
        self.n_claims += 1
        request_id = f"{self.task}-claim-{self.n_claims}-{token}"
        sent = time.monotonic()
        return self._took(self._claim(request_id), request_id, sent, lost_reply)

    def _took(
        self, r: httpx.Response, request_id: str, sent: float, lost_reply: bool = False
    ) -> Claim | None:
        """Check a claim's answer against the model and hold its trial; None on 204."""
        if r.status_code == 204:
            assert self.available == 0, (
                f"claim found nothing, but the sweep was running with {self.available} "
                f"waiting trial(s) or room for originals\n{self._table()}"
            )
            return None
        assert r.status_code == 200, f"claim: {r.status_code} {r.text}"
        a = r.json()
        if lost_reply:
            again = self._claim(request_id)
            assert again.status_code == 200, f"claim retry: {again.status_code} {again.text}"
            assert _same_trial(again.json(), a), (
                f"request_id {request_id!r} gave trial {a['trial_number']}, "
                f"then trial {again.json()['trial_number']}"
            )
        number = a["trial_number"]
        assert self.status == "running", f"a {self.status} sweep handed out trial {number}"
        assert a["sweep_id"] == self.sweep_id, a
        assert a["heartbeat_interval"] == HEARTBEAT_INTERVAL, a
        for pool in (self.held, self.lost, self.reaped, self.done):
            assert number not in pool, f"trial {number} was handed out twice"
        self.available = max(0, self.available - 1)
        # Which trial it retries, if any (the assignment does not say).
        t = self.client.get(f"/api/sweeps/{self.sweep_id}/trials/{number}").json()
        assert t["state"] == "running", f"claimed trial {number} is {t['state']}"
        self.trials[number] = t
        c = Claim(a["trial_id"], number, a["params"], request_id, last_sign=sent)
        with self.beats.lock:
            self.held[c.number] = c
        return c

    def _held(self, i: int) -> Claim | None:
        """The ``i``-th held trial (cyclically); with none held, the worker claims one first."""
        if not self.held:
            return self._claim_one("next")
        return self.held[sorted(self.held)[i % len(self.held)]]

    @rule(
        token=st.text("0123456789abcdef", min_size=4, max_size=4),
        lost_reply=st.booleans(),
        workers=st.integers(1, 3),
    )
    def claim(self, token: str, lost_reply: bool, workers: int) -> None:
        """``workers`` claims, each with a new request_id; a lost reply is asked for again."""
        for _ in range(workers):
            self._claim_one(token, lost_reply)

    @rule(workers=st.integers(2, 8))
    def claim_together(self, workers: int) -> None:
        """``workers`` claims sent at the same moment (as many workers polling at once): each
        trial goes to one of them, and exactly as many get one as the sweep had available
        (plus, at most, one retry per crashed trial the server's reaper fails meanwhile)."""
        available = self.available
        ids = []
        for _ in range(workers):
            self.n_claims += 1
            ids.append(f"{self.task}-claim-{self.n_claims}-together")
        sent = time.monotonic()
        start = threading.Barrier(workers)

        def one(request_id: str) -> httpx.Response:
            with httpx.Client(base_url=self.server.url, timeout=30) as c:
                start.wait()
                body = {"worker_id": "w1", "tasks": [self.task], "request_id": request_id}
                return c.post("/api/trials/claim", json=body)

        with ThreadPoolExecutor(workers) as pool:
            answers = list(pool.map(one, ids))
        got = [a for a in answers if a.status_code == 200]
        # The server's reaper may fail a crashed trial at any moment, and its retry is then
        # claimable too: each crashed trial can add at most one.
        most = min(workers, available + len(self.lost))
        assert min(workers, available) <= len(got) <= most, (
            f"{workers} claims at once got {len(got)} trials; {available} were available "
            f"({len(self.lost)} crashed): {[a.status_code for a in answers]}\n{self._table()}"
        )
        for request_id, r in zip(ids, answers, strict=True):
            if r.status_code == 200:
                self._took(r, request_id, sent)
            else:
                assert r.status_code == 204, f"claim: {r.status_code} {r.text}"

    @precondition(lambda self: self.backend.postgres)
    @rule()
    def drop_connections(self) -> None:
        """PostgreSQL ends every connection to the database (a failover, a restart of a
        pooler): the server reconnects, and nothing the model knows changes."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                conn.commit()
        finally:
            engine.dispose()

    @rule(i=st.integers(0, 50))
    def claim_again(self, i: int) -> None:
        """A worker repeats a claim whose reply it lost: the same trial, never a second one."""
        c = self._held(i)
        if c is None:
            return
        r = self._claim(c.request_id)
        assert r.status_code == 200, f"repeated claim of trial {c.number}: {r.status_code} {r.text}"
        assert _same_trial(r.json(), {"trial_id": c.trial_id, "params": c.params}), (
            f"request_id {c.request_id!r} gave trial {c.number}, "
            f"then trial {r.json()['trial_number']}"
        )

    @rule(
        i=st.integers(0, 50),
        kind=st.sampled_from(["report", "heartbeat"]),
        advance=st.integers(0, 3),
        value=st.floats(-1e3, 1e3),
    )
    def signal(self, i: int, kind: str, advance: int, value: float) -> None:
        """Report (step, value) or heartbeat a held trial; a cancelled sweep says stop."""
        c = self._held(i)
        if c is None:
            return
        step = c.next_step + advance
        body = {"step": step, "value": value} if kind == "report" else {}
        c.last_sign = time.monotonic()
        r = self.client.post(f"/api/trials/{c.trial_id}/{kind}", json=body)
        assert r.status_code == 200, f"{kind} to trial {c.number}: {r.status_code} {r.text}"
        if kind == "report":
            c.values[str(step)] = value
            c.next_step = step + 1
        expected = "stop" if self.status == "cancelled" else "continue"
        assert r.json()["action"] == expected, f"{kind} in a {self.status} sweep: {r.json()}"

    @rule(
        i=st.integers(0, 50),
        state=st.sampled_from(["complete", "pruned", "failed", "failed"]),  # retries run out
        value=st.floats(-1e3, 1e3),
    )
    def finish(self, i: int, state: str, value: float) -> None:
        """Finish a held trial; a failure is re-queued exactly while retries remain."""
        c = self._held(i)
        if c is None:
            return
        self._release(c.number)
        body: dict[str, Any] = {"state": state}
        if state == "complete":
            body["value"] = value
        elif state == "failed":
            body["reason"] = "worker error"
        r = self.client.post(f"/api/trials/{c.trial_id}/finish", json=body)
        assert r.status_code == 200, f"finish trial {c.number}: {r.status_code} {r.text}"
        answer = r.json()
        assert answer["trial_id"] == c.trial_id and answer["state"] == state, answer
        if state == "failed":
            self.free[c.number] = self.status == "cancelled"
            may, must = self._retry_bounds(c.number)
            assert may or not answer["requeued"], f"trial {c.number} re-queued past max_retries"
            assert answer["requeued"] or not must, f"trial {c.number} not re-queued, retries left"
        else:
            assert answer["requeued"] is False, answer
        c.body, c.answer = body, answer
        self.done[c.number] = c

    @rule(
        i=st.integers(0, 50),
        call=st.sampled_from(["same finish", "other finish", "report", "heartbeat"]),
    )
    def replay(self, i: int, call: str) -> None:
        """Calls on an ended trial: a repeated finish (its reply was lost) gets the same answer;
        anything else — also from a worker whose lease ran out — is a conflict (409)."""
        c = self._pick({**self.done, **self.reaped}, i)
        if c is None:
            return
        if call == "same finish" and c.body is not None:
            r = self.client.post(f"/api/trials/{c.trial_id}/finish", json=c.body)
            assert r.status_code == 200, f"finish again {c.number}: {r.status_code} {r.text}"
            assert r.json() == c.answer, f"finish again {c.number}: {r.json()}, first {c.answer}"
            return
        ended = c.body["state"] if c.body is not None else "failed"
        other = {"complete": "pruned", "pruned": "failed", "failed": "complete"}[ended]
        what, body = {
            "report": ("report", {"step": c.next_step, "value": 1.0}),
            "heartbeat": ("heartbeat", {}),
        }.get(call, ("finish", {"state": other, "value": 1.0}))
        r = self.client.post(f"/api/trials/{c.trial_id}/{what}", json=body)
        assert r.status_code == 409, f"{what} {body} to {ended} trial {c.number}: {r.status_code}"

    @rule(i=st.integers(0, 50))
    def crash(self, i: int) -> None:
        """The worker vanishes: no more heartbeats, its lease runs out."""
        c = self._held(i)
        if c is None:
            return
        self._release(c.number)
        c.crashed_at, c.crash_epoch, c.crash_status = time.monotonic(), self.epoch, self.status
        self.lost[c.number] = c

    @rule()
    def reap(self) -> None:
        """Wait out the grace of every crashed trial, then reap (the server may have already)."""
        if not self.lost:
            return
        last = max(c.crashed_at or 0.0 for c in self.lost.values())
        time.sleep(max(0.0, last + GRACE + REAP_MARGIN - time.monotonic()))
        if self.reaper is None:
            from service.db import Database
            from service.settings import Settings
            from service.sweeps import Sweeps

            s = Settings(
                database_url=self.db_url,
                heartbeat_grace_seconds=GRACE,
                heartbeat_interval_seconds=HEARTBEAT_INTERVAL,
                reaper_interval_seconds=REAPER_INTERVAL,
            )
            self.reaper = Sweeps(Database(s), s)
        self.reaper.reap()
        _, trials = self._snapshot()
        states = {t["number"]: t["state"] for t in trials}
        for number in self.lost:
            assert states.get(number) == "failed", (
                f"crashed trial {number} is {states.get(number)}, silent for "
                f"{time.monotonic() - (self.lost[number].crashed_at or 0):.2f} s "
                f"(grace {GRACE} s) and reaped"
            )

    @rule(workers_stop=st.booleans())
    def cancel(self, workers_stop: bool) -> None:
        """Cancel; the next report of a held trial is told to stop, and with ``workers_stop``
        every worker obeys, as the agent does: it finishes its trial as failed."""
        r = self.client.post(f"/api/sweeps/{self.sweep_id}/cancel")
        if r.status_code == 409 and self.status == "running" and self.lost:
            # The server's reaper failed the last crashed trial for good: it just completed.
            self.status = self.client.get(f"/api/sweeps/{self.sweep_id}").json()["status"]
        if self.status == "complete":
            assert r.status_code == 409, f"cancel of a complete sweep: {r.status_code}"
            return
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        self.epoch += self.status != "cancelled"
        self.status = "cancelled"
        if self.held:
            self.signal(0, "report", 0, 0.0)
        while workers_stop and self.held:
            self.finish(0, "failed", 0.0)

    @rule()
    def resume(self) -> None:
        r = self.client.post(f"/api/sweeps/{self.sweep_id}/resume")
        if self.status == "complete":
            assert r.status_code == 409, f"resume of a complete sweep: {r.status_code}"
            return
        assert r.status_code == 200, r.text
        got = r.json()
        full = got["finished"] >= self.n_trials
        assert got["status"] == ("complete" if full else "running"), (
            f"resumed with {got['finished']}/{self.n_trials} finished: {got['status']}"
        )
        self.epoch += self.status == "cancelled"
        self.status = got["status"]

    # ---- the ledger ----

    @precondition(lambda self: self.sweep_id is not None)
    @invariant()
    def ledger_is_consistent(self) -> None:
        # Every transition is one transaction (a failure and its retry commit together), so
        # any consistent snapshot must satisfy every invariant: no settling, no slack.
        sweep, trials = self._snapshot()
        self._observe_reaps(trials)
        problems = self._problems(sweep, trials)
        assert not problems, "\n".join([*problems, self._table()])

    def _observe_reaps(self, trials: list[dict[str, Any]]) -> None:
        self.trials = {t["number"]: t for t in trials}
        now = time.monotonic()
        for number in [n for n, t in self.trials.items() if n in self.lost]:
            if self.trials[number]["state"] == "failed":
                c = self.lost.pop(number)
                silent = now - c.last_sign
                assert silent > GRACE - EARLY_SLACK, (
                    f"crashed trial {number} was reaped after at most {silent:.2f} s without a "
                    f"sign of life; the grace is {GRACE} s"
                )
                self.reaped[number] = c
                same = c.crash_epoch == self.epoch
                self.free[number] = (c.crash_status == "cancelled") if same else None

    def _problems(self, sweep: dict[str, Any], trials: list[dict[str, Any]]) -> list[str]:
        p: list[str] = []
        n = self.n_trials
        by = {t["number"]: t for t in trials}
        counts = Counter(t["state"] for t in trials)
        # A failed trial handed back (stopped by a cancel) is counted apart from the failed.
        shown = {
            **sweep["counts"],
            "failed": sweep["counts"]["failed"] + sweep["counts"]["handed_back"],
        }
        for s in STATES:
            if shown[s] != counts[s]:
                p.append(f"counts[{s}] = {shown[s]}, the trials list has {counts[s]}")
        handed = sum(bool(t.get("handed_back")) for t in trials)
        if sweep["counts"]["handed_back"] != handed:
            p.append(
                f"counts[handed_back] = {sweep['counts']['handed_back']}, the list has {handed}"
            )
        retries: dict[int, list[int]] = defaultdict(list)
        for t in trials:
            if t["retry_of"] is not None:
                retries[t["retry_of"]].append(t["number"])
        originals = [t for t in trials if t["retry_of"] is None]
        if len(originals) > n:
            p.append(f"{len(originals)} originals > n_trials = {n}")
        for k, rs in sorted(retries.items()):
            src = by.get(k)
            if len(rs) > 1:
                p.append(f"trial {k} has {len(rs)} retries: {rs}")
            if src is None:
                p.append(f"trials {rs} retry trial {k}, which does not exist")
                continue
            if src["state"] != "failed":
                p.append(f"trial {k} is {src['state']} but has a retry: {rs}")
            for r in rs:
                if by[r]["params"] != src["params"]:
                    p.append(f"retry {r} of trial {k} has other params")
        final = [t for t in trials if t["state"] == "failed" and t["number"] not in retries]
        finished = counts["complete"] + counts["pruned"] + len(final)
        if sweep["finished"] != finished:
            p.append(
                f"finished = {sweep['finished']}, complete + pruned + final failures = {finished}"
            )
        status, fin = sweep["status"], sweep["finished"]
        if fin > n:
            p.append(f"finished = {fin} > n_trials = {n}")
        if status == "complete" and (fin != n or counts["running"] or counts["waiting"]):
            p.append(f"complete with finished = {fin}, running/waiting trials {dict(counts)}")
        if status == "running" and fin >= n:
            p.append(f"still running with finished = {fin} = n_trials")
        believed = {"cancelled": {"cancelled"}, "complete": {"complete"}}
        if status not in believed.get(self.status, {"running", "complete"}):
            p.append(f"the sweep is {status}; the model thinks {self.status}")
        # Who holds what.
        running = [t for t in trials if t["state"] == "running"]
        for t in running:
            if t["number"] not in self.held and t["number"] not in self.lost:
                p.append(f"trial {t['number']} is running but no claim holds it")
        configs = Counter(_canon(t["params"]) for t in running)
        if any(k > 1 for k in configs.values()):
            p.append("one config is running twice at once")
        for number, c in self.held.items():
            t = by.get(number)
            if t is None or t["state"] != "running":
                p.append(f"held trial {number} is {t and t['state']} on the server")
            elif t["params"] != c.params or t["intermediate_values"] != c.values:
                p.append(f"held trial {number}: server params/values differ from the claim's")
        for number in self.lost:
            t = by.get(number)
            if t is None or t["state"] != "running":
                p.append(f"crashed trial {number} is {t and t['state']}")
        for number in self.reaped:
            t = by.get(number)
            if t is None or t["state"] != "failed":
                p.append(f"reaped trial {number} is {t and t['state']}")
            elif not (t["reason"] or "").startswith("lease expired"):
                p.append(f"reaped trial {number} failed for {t['reason']!r}")
        for number, c in self.done.items():
            t = by.get(number)
            assert c.body is not None and c.answer is not None
            if t is None or t["state"] != c.body["state"]:
                p.append(f"trial {number} finished {c.body['state']} is {t and t['state']}")
            elif c.body["state"] == "complete" and t["value"] != c.body["value"]:
                p.append(f"trial {number} completed with {c.body['value']}, shows {t['value']}")
            elif c.body["state"] == "failed" and c.answer["requeued"] != (number in retries):
                p.append(
                    f"trial {number}: requeued={c.answer['requeued']}, retries {retries[number]}"
                )
        known = self.held.keys() | self.lost.keys() | self.reaped.keys() | self.done.keys()
        for t in trials:
            if t["number"] not in known and t["state"] != "waiting":
                p.append(f"trial {t['number']} is {t['state']} but the model never claimed it")
        for t in trials:
            if t["state"] != "failed":
                continue
            may, must = self._retry_bounds(t["number"])
            has = t["number"] in retries
            if has and not may:
                p.append(f"failed trial {t['number']} was retried past max_retries")
            if must and not has:
                p.append(f"failed trial {t['number']} has retries left but no retry")
        ours = Counter(c.body["state"] for c in self.done.values() if c.body)
        for s in ("complete", "pruned"):
            if counts[s] != ours[s]:
                p.append(f"{counts[s]} trials are {s}; the model finished {ours[s]} so")
        if self.beats.errors:
            p.extend(self.beats.errors)
        if not p:
            self.status = status
            room = counts["waiting"] + n - len(originals)
            self.available = room if status == "running" else 0
        return p

    def _table(self) -> str:
        rows = [
            f"  #{t['number']} {t['state']} retry_of={t['retry_of']}"
            + (" held" if t["number"] in self.held else "")
            + (" crashed" if t["number"] in self.lost else "")
            for t in sorted(self.trials.values(), key=lambda t: t["number"])
        ]
        return (
            f"sweep n_trials={self.n_trials} max_retries={self.max_retries} "
            f"model status={self.status}; last trials seen:\n" + "\n".join(rows)
        )

    # ---- the end ----

    def _drain(self) -> None:
        """Finish everything: the sweep must reach complete with finished == n_trials.

        Every trial claimed here fails, so each config's retries run out on the way.
        """
        while self.held and self.status == "cancelled":  # told to stop, the workers give up
            self.finish(0, "failed", 0.0)
        if self.status == "cancelled":
            self.resume()
        while self.held:
            self.finish(0, "complete", 0.0)
        if self.lost:
            self.reap()
        self.ledger_is_consistent()
        for _ in range(self.n_trials * (self.max_retries + 1) + 1):
            if self.status == "complete":
                break
            c = self._claim_one("end")
            assert c is not None, f"no trial to claim, yet the sweep is {self.status}"
            self.finish(0, "failed", 0.0)
            self.ledger_is_consistent()
        got = self.client.get(f"/api/sweeps/{self.sweep_id}").json()
        assert got["status"] == "complete" and got["finished"] == self.n_trials, got

    def teardown(self) -> None:
        try:
            # Hypothesis calls teardown from a ``finally``: drain only after a clean run.
            if sys.exc_info()[0] is None and self.sweep_id is not None:
                self._drain()
        finally:
            self.beats.close()
            self.client.close()
            if self.reaper is not None:
                self.reaper.db.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
@pytest.mark.slow
def test_trial_ledger_model(backend: str, request: pytest.FixtureRequest, live_server) -> None:
    postgres = backend == "postgres"
    url = request.getfixturevalue("make_postgres_db" if postgres else "make_sqlite_url")()
    b = Backend(url, live_server(url, env=LEASE_ENV), postgres=postgres)
    run_state_machine_as_test(lambda: LedgerMachine(b), settings=settings.get_profile(PROFILE))
