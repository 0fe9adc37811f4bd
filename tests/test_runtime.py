"""The trial runtime (``worker.runtime``) that the agent and ``lionsweep.trials`` share: why a
trial stops, its lease and watchdog, the wait between claims, and stop signals.

Heartbeats and claims go to a small real HTTP server on a free port that answers by route
(so a test can make it say ``stop``, refuse, or answer 503 for a while); the watchdog's
hand-back and exit and the signal handlers run in real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import get_free_port, wait_for

import lionsweep
from protocol import SHUTDOWN_REASON, STOPPED_REASON
from worker.agent import Agent
from worker.client import Backoff, Client
from worker.runtime import Interrupt, Lease, Poll, signals_set, stop_signals

#: ``(status, JSON body or None)`` for a request ``(method, path)``.
Answer = Callable[[str, str], tuple[int, object]]


class Stub:
    """A real HTTP server on a free port: ``answer(method, path)`` decides each reply, and
    every request is recorded as ``(monotonic time, method, path, JSON body)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[float, str, str, object]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stub.requests.append((time.monotonic(), self.command, self.path, body))
                status, payload = stub.answer(self.command, self.path)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", get_free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def times(self, method: str, path: str) -> list[float]:
        """When each ``method path`` request arrived."""
        return [t for t, m, p, _ in list(self.requests) if (m, p) == (method, path)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Answer], Stub]]:
    started: list[Stub] = []

    def start(answer: Answer) -> Stub:
        started.append(Stub(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def heartbeats_answer(*actions: str) -> Answer:
    """Heartbeats answered with ``actions`` in turn (the last one repeats); all else 200."""
    queue = list(actions)

    def answer(method: str, path: str) -> tuple[int, object]:
        if path.endswith("/heartbeat"):
            return 200, {"action": queue.pop(0) if len(queue) > 1 else queue[0]}
        return 200, {}

    return answer


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


# ---- why a trial stops ---------------------------------------------------------------------


def test_a_stop_outranks_a_prune_the_first_stop_wins_and_a_signal_outranks_both() -> None:
    interrupt = Interrupt()
    interrupt.answer("continue")
    assert interrupt.outcome() is None and interrupt.since() is None
    interrupt.answer("prune")
    assert interrupt.outcome() == ("pruned", None)
    assert interrupt.since() is None  # a prune is no stop request: no watchdog
    before = time.monotonic()
    interrupt.answer("stop")
    assert interrupt.outcome() == ("failed", STOPPED_REASON)
    stopped_at = interrupt.since()
    assert stopped_at is not None and before <= stopped_at <= time.monotonic()
    interrupt.stop("heartbeat refused: HTTP 409")
    interrupt.answer("prune")
    assert interrupt.outcome() == ("failed", STOPPED_REASON)
    assert interrupt.since(server_stops=False) is None
    interrupt.shutdown.set()
    assert interrupt.outcome() == ("failed", SHUTDOWN_REASON)
    signalled_at = interrupt.since(server_stops=False)
    assert signalled_at is not None and signalled_at > stopped_at
    assert interrupt.since() == stopped_at  # the earlier request counts


def test_a_refusal_keeps_its_first_reason() -> None:
    interrupt = Interrupt()
    interrupt.refuse("report refused: HTTP 409")
    interrupt.refuse("heartbeat refused: HTTP 403")
    assert interrupt.refused == "report refused: HTTP 409"
    assert interrupt.outcome() is None  # a refusal alone asks nothing of the trial


def test_trials_share_the_shutdown_and_nothing_else() -> None:
    shutdown = threading.Event()
    first, second = Interrupt(shutdown), Interrupt(shutdown)
    first.answer("stop")
    assert second.outcome() is None
    shutdown.set()
    assert first.outcome() == second.outcome() == ("failed", SHUTDOWN_REASON)


# ---- the lease and its watchdog ------------------------------------------------------------


def test_heartbeats_renew_the_lease_every_interval_and_carry_the_servers_answer(stub) -> None:
    server = stub(heartbeats_answer("continue", "continue", "continue", "stop"))
    interrupt = Interrupt()
    with Client(server.url) as client, Lease(client, 7, 0.2, interrupt, grace=60.0):
        wait_for(lambda: interrupt.outcome(), 10, "the server's stop", every=0.02)
    assert interrupt.outcome() == ("failed", STOPPED_REASON)
    beats = server.times("POST", "/api/trials/7/heartbeat")
    assert len(beats) >= 4
    assert all(gap >= 0.2 - 0.01 for gap in gaps(beats)), gaps(beats)


def test_a_refused_heartbeat_stops_the_trial_and_says_why(stub) -> None:
    server = stub(lambda method, path: (409, {"detail": "trial 7 already ended"}))
    interrupt = Interrupt()
    with Client(server.url) as client, Lease(client, 7, 0.1, interrupt, grace=60.0):
        wait_for(lambda: interrupt.refused, 10, "the refusal", every=0.02)
    assert interrupt.refused == "heartbeat refused: HTTP 409"
    assert interrupt.outcome() == ("failed", "heartbeat refused: HTTP 409")


def test_no_heartbeat_goes_out_once_the_trial_ended(stub) -> None:
    server = stub(heartbeats_answer("continue"))
    ended = threading.Event()
    with Client(server.url) as client:
        lease = Lease(client, 7, 0.1, Interrupt(), grace=60.0, active=lambda: not ended.is_set())
        with lease:
            wait_for(lambda: server.times("POST", "/api/trials/7/heartbeat"), 10, "a heartbeat")
            ended.set()
            time.sleep(0.2)  # a beat already under way may still land
            count = len(server.times("POST", "/api/trials/7/heartbeat"))
            time.sleep(0.5)
    assert len(server.times("POST", "/api/trials/7/heartbeat")) == count


def test_the_watchdog_gives_a_signalled_trial_the_grace_then_gives_it_up(stub) -> None:
    server = stub(heartbeats_answer("continue"))
    interrupt = Interrupt()
    verdicts: list[tuple[float, float]] = []
    overdue = lambda waited: verdicts.append((time.monotonic(), waited))  # noqa: E731
    with Client(server.url) as client:
        lease = Lease(client, 7, 0.1, interrupt, grace=0.6, on_overdue=overdue)
        with lease:
            time.sleep(0.3)
            signalled = time.monotonic()
            interrupt.shutdown.set()
            time.sleep(0.2)
            assert not lease.overdue.is_set()
            assert lease.overdue.wait(5.0)
            beats = len(server.times("POST", "/api/trials/7/heartbeat"))
            time.sleep(0.4)
    assert beats >= 2
    assert len(server.times("POST", "/api/trials/7/heartbeat")) <= beats + 1  # no more after
    ((at, waited),) = verdicts
    assert 0.6 <= waited < 1.5 and 0.6 <= at - signalled < 1.5
    assert lease.waited == waited


@pytest.mark.parametrize("server_stops", [True, False])
def test_the_watchdog_times_a_server_stop_only_when_asked_to(stub, server_stops: bool) -> None:
    server = stub(heartbeats_answer("stop"))
    interrupt = Interrupt()
    with Client(server.url) as client:
        lease = Lease(client, 7, 0.1, interrupt, grace=0.3, server_stops=server_stops)
        with lease:
            wait_for(lambda: interrupt.outcome(), 10, "the server's stop", every=0.02)
            assert lease.overdue.wait(1.5) is server_stops


HANDS_BACK = """
import signal, sys, threading, time
from protocol import SHUTDOWN_REASON
from worker.client import Backoff, Client
from worker.runtime import Interrupt, Lease, exit_now, signals_set

shutdown = threading.Event()
client = Client(sys.argv[1], cancel=shutdown)

def hand_back(waited):
    client.finish(7, "failed", reason=SHUTDOWN_REASON, deadline=5, handed_back=True)
    print(f"handed back after {waited:.1f}s", flush=True)
    exit_now(128 + signal.SIGTERM)

with signals_set(shutdown, "handing the trial back", (signal.SIGTERM,)):
    with Lease(client, 7, 0.2, Interrupt(shutdown), grace=1.0, on_overdue=hand_back):
        print("training", flush=True)
        time.sleep(120)  # never looks at the stop request
print("the watchdog did not end the process", flush=True)
"""


def test_a_trial_that_ignores_sigterm_is_handed_back_after_the_grace_and_the_process_exits(
    stub, tmp_path: Path
) -> None:
    server = stub(heartbeats_answer("continue"))
    script = tmp_path / "hands_back.py"
    script.write_text(textwrap.dedent(HANDS_BACK))
    proc = subprocess.Popen(
        [sys.executable, str(script), server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "training"
        wait_for(lambda: server.times("POST", "/api/trials/7/heartbeat"), 10, "a heartbeat")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    elapsed = time.monotonic() - signalled
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert 1.0 <= elapsed < 8.0, out
    assert "handed back after 1." in out
    ((_, _, _, body),) = [r for r in server.requests if r[2] == "/api/trials/7/finish"]
    assert isinstance(body, dict)
    assert (body["state"], body["reason"], body["handed_back"]) == (
        "failed",
        SHUTDOWN_REASON,
        True,
    )


# ---- stop signals ---------------------------------------------------------------------------


@pytest.fixture
def sigterm_recorder() -> Iterator[list[int]]:
    """A SIGTERM handler of the test's own (so a stray SIGTERM never ends pytest),
    recording the signals it gets; the original handler is put back after."""
    original = signal.getsignal(signal.SIGTERM)
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    yield got
    signal.signal(signal.SIGTERM, original)


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in the main thread at its next instruction


def test_inside_the_block_sigterm_sets_the_event_and_the_old_handler_comes_back(
    sigterm_recorder: list[int],
) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    sigint = signal.getsignal(signal.SIGINT)
    event = threading.Event()
    with signals_set(event, "handing the trial back", (signal.SIGTERM,)):
        assert signal.getsignal(signal.SIGINT) is sigint  # only the signals named
        _deliver(signal.SIGTERM)
        assert event.is_set()
        assert sigterm_recorder == []
    assert signal.getsignal(signal.SIGTERM) is previous
    _deliver(signal.SIGTERM)
    assert sigterm_recorder == [signal.SIGTERM]


def test_stop_signals_call_the_handler_with_the_signal_and_restore_both(
    sigterm_recorder: list[int],
) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    got: list[int] = []
    with stop_signals(got.append):
        _deliver(signal.SIGINT)
        _deliver(signal.SIGTERM)
    assert got == [signal.SIGINT, signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before
    assert sigterm_recorder == []


def test_outside_the_main_thread_the_handlers_are_left_alone(sigterm_recorder) -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def in_a_thread() -> None:
        with signals_set(threading.Event(), "handing the trial back"):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(5)
    assert seen == [before]


# ---- the wait between claims ---------------------------------------------------------------


def test_poll_waits_grow_by_half_up_to_the_cap() -> None:
    poll = Poll(threading.Event(), interval=0.04, max_interval=0.1)
    planned, slept = [], []
    for _ in range(5):
        planned.append(poll.wait)
        started = time.monotonic()
        poll.sleep()
        slept.append(time.monotonic() - started)
    assert planned == pytest.approx([0.04, 0.06, 0.09, 0.1, 0.1])
    assert all(s >= p - 0.005 for s, p in zip(slept, planned, strict=True)), slept
    poll.reset()
    assert poll.wait == 0.04


def test_a_wait_is_cut_short_by_at_most_and_by_stop() -> None:
    stop = threading.Event()
    poll = Poll(stop, interval=5.0, max_interval=5.0)
    started = time.monotonic()
    poll.sleep(at_most=0.05)
    poll.sleep(at_most=-1.0)  # a deadline already past: no wait at all
    assert time.monotonic() - started < 1.0
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    poll.sleep()
    assert 0.05 < time.monotonic() - started < 1.0


def test_idle_time_leaves_out_waiting_for_the_server() -> None:
    assert not Poll(threading.Event()).idle()  # without idle_exit, never idle
    poll = Poll(threading.Event(), idle_exit=0.2)
    assert not poll.idle()
    time.sleep(0.25)
    assert poll.idle()
    poll.not_idle()  # all of it was spent waiting for the server
    assert not poll.idle()
    time.sleep(0.25)
    assert poll.idle()
    time.sleep(0.25)
    poll.reset()
    assert not poll.idle()


def sweep_server(*, unavailable_until: float = 0.0, slow_503: float = 0.0) -> Answer:
    """Sweep 1 (task ``t``) running with no trial free; claims answer 503 (the database is
    away), each after ``slow_503`` seconds, until ``unavailable_until`` (monotonic)."""

    def answer(method: str, path: str) -> tuple[int, object]:
        if path == "/api/trials/claim":
            if time.monotonic() < unavailable_until:
                time.sleep(slow_503)
                return 503, {"detail": "database unavailable"}
            return 204, None
        if path == "/api/sweeps/1":
            return 200, {"id": 1, "task": {"name": "t"}, "status": "running"}
        return 404, {"detail": "not found"}

    return answer


def check_claim_gaps(times: list[float], interval: float, cap: float) -> None:
    """The claims came at least ``interval``·1.5ⁿ apart, capped at ``cap``, and the cap held."""
    expected = [min(interval * 1.5**n, cap) for n in range(len(times) - 1)]
    got = gaps(times)
    assert len(got) >= 6, got
    assert all(g >= e - 0.01 for g, e in zip(got, expected, strict=True)), (got, expected)
    assert min(got[-3:]) < 2 * cap, got  # no growth past the cap


def test_the_client_loop_claims_less_often_up_to_the_cap_then_stops_when_idle(stub) -> None:
    server = stub(sweep_server())
    started = time.monotonic()
    got = list(
        lionsweep.trials(
            server.url, sweep=1, idle_exit=1.0, poll_interval=0.05, max_poll_interval=0.1
        )
    )
    ended = time.monotonic()
    assert got == []
    check_claim_gaps(server.times("POST", "/api/trials/claim"), 0.05, 0.1)
    assert 1.0 <= ended - started < 5.0


def test_the_client_loop_waits_through_a_503_and_does_not_count_it_as_idle(stub) -> None:
    outage = 1.5
    started = time.monotonic()
    # Each 503 takes 0.15 s to come back: those seconds are the server's too.
    server = stub(sweep_server(unavailable_until=started + outage, slow_503=0.15))
    got = list(lionsweep.trials(server.url, sweep=1, idle_exit=0.5, poll_interval=0.05))
    ended = time.monotonic()
    assert got == []
    claims = server.times("POST", "/api/trials/claim")
    assert any(t < started + outage for t in claims)
    answered = min(t for t in claims if t >= started + outage)  # the first 204
    assert ended - answered >= 0.5 - 0.01  # idle only from when the server answers again


def test_the_agent_claims_less_often_up_to_the_cap_then_stops_when_idle(stub) -> None:
    server = stub(sweep_server())
    with Client(server.url) as client:
        agent = Agent(client, "cpu", idle_exit=1.0, poll_interval=0.05, max_poll_interval=0.1)
        started = time.monotonic()
        assert agent.run() == 0
        ended = time.monotonic()
    assert agent.trials_run == 0
    check_claim_gaps(server.times("POST", "/api/trials/claim"), 0.05, 0.1)
    assert 1.0 <= ended - started < 5.0


def test_the_agent_does_not_count_an_outage_its_client_rode_out_as_idle(stub) -> None:
    """A 503 shorter than the client's retry budget is retried inside one claim, which then
    answers "nothing to run": those seconds were the server's, not idle time."""
    outage = 1.5
    started = time.monotonic()
    # Each 503 takes 0.15 s to come back: those seconds are the server's too.
    server = stub(sweep_server(unavailable_until=started + outage, slow_503=0.15))
    with Client(server.url, backoff=Backoff(base=0.5, cap=0.5)) as client:
        agent = Agent(client, "cpu", idle_exit=1.0, poll_interval=0.05, max_poll_interval=0.1)
        assert agent.run() == 0
        ended = time.monotonic()
    claims = server.times("POST", "/api/trials/claim")
    assert any(t < started + outage for t in claims)
    answered = min(t for t in claims if t >= started + outage)  # the first 204
    assert ended - answered >= 1.0 - 0.01  # idle only from when the server answers again
