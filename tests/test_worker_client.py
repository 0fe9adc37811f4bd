"""The worker's HTTP client: retries, backoff, errors, delivery — against a real HTTP server.

The server here is a small scripted ``http.server`` on a free port, so the tests can make
it answer 503 or stay down for a while; the protocol against the real lionsweep server
is covered by the worker end-to-end tests.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import get_free_port

from worker.client import ApiError, Backoff, Client, Reports, ServerUnreachable

FAST = Backoff(base=0.02, cap=0.2)


class Scripted:
    """A real HTTP server answering from a script of (status, body[, delay s]), last one repeats."""

    def __init__(self, script: list[tuple[int, object]], port: int | None = None) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, dict, object]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                scripted.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload, *delay = (
                    scripted.script.pop(0) if len(scripted.script) > 1 else scripted.script[0]
                )
                time.sleep(delay[0] if delay else 0)
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # the client gave up waiting (a delayed answer)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.port = port or get_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._handler = Handler
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Scripted:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def make(script, port=None, start=True):
        server = Scripted(script, port)
        servers.append(server.start() if start else server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_retries_503_then_succeeds_and_sends_the_token(scripted):
    server = scripted([(503, {"detail": "busy"}), (502, None), (200, {"items": []})])
    with Client(server.url, "s3cret", backoff=FAST) as client:
        assert client.get("/api/sweeps", params={"limit": 5}) == {"items": []}
    assert len(server.requests) == 3
    method, path, headers, _ = server.requests[-1]
    assert (method, path) == ("GET", "/api/sweeps?limit=5")
    assert headers["Authorization"] == "Bearer s3cret"


def test_client_errors_are_raised_at_once_with_the_detail(scripted):
    server = scripted([(409, {"detail": "trial 41 is not running"})])
    with Client(server.url, backoff=FAST) as client, pytest.raises(ApiError) as err:
        client.finish(41, "complete", 0.5)
    assert err.value.status_code == 409
    assert err.value.detail == "trial 41 is not running"
    assert len(server.requests) == 1
    assert "Authorization" not in server.requests[0][2]


def test_unreachable_server_raises_after_the_attempts(scripted):
    url = f"http://127.0.0.1:{get_free_port()}"
    started = time.monotonic()
    with Client(url, backoff=FAST, attempts=3) as client, pytest.raises(ServerUnreachable) as err:
        client.claim("w-1", "cpu", ["quadratic"])
    assert "after 3 attempts" in str(err.value)
    assert time.monotonic() - started < 5


def test_persistent_503_is_unreachable_too(scripted):
    server = scripted([(503, {"detail": "down"})])
    with Client(server.url, backoff=FAST, attempts=4) as client, pytest.raises(ServerUnreachable):
        client.get("/healthz")
    assert len(server.requests) == 4


def test_a_report_is_delivered_once_the_server_comes_back(scripted):
    server = scripted([(200, {"action": "prune"})], start=False)
    threading.Timer(1.0, server.start).start()
    with Client(server.url, backoff=FAST, attempts=2) as client:
        assert client.report(41, 10, 0.5, {"accuracy": 0.8}) == "prune"
    method, path, _, body = server.requests[-1]
    assert (method, path) == ("POST", "/api/trials/41/report")
    assert body == {"step": 10, "value": 0.5, "metrics": {"accuracy": 0.8}}


def test_delivery_gives_up_at_its_deadline():
    url = f"http://127.0.0.1:{get_free_port()}"
    with Client(url, backoff=FAST, delivery_deadline=0.5) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnreachable):
            client.heartbeat(41)
        assert 0.2 < time.monotonic() - started < 3


def test_cancel_stops_ordinary_retries_at_once_but_still_delivers(scripted):
    cancel = threading.Event()
    cancel.set()
    url = f"http://127.0.0.1:{get_free_port()}"
    with Client(url, backoff=Backoff(base=1.0), attempts=10, cancel=cancel) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnreachable):
            client.claim("w-1", "cpu", ["quadratic"])
        assert time.monotonic() - started < 1.0
    server = scripted([(200, {"trial_id": 41, "state": "failed", "requeued": True})], start=False)
    threading.Timer(0.5, server.start).start()
    with Client(server.url, backoff=FAST, cancel=cancel) as client:
        answer = client.finish(
            41, "failed", reason="worker shutdown", config={"lr": 1e-4}, handed_back=True
        )
    assert answer["requeued"] is True
    assert server.requests[-1][3] == {
        "state": "failed",
        "value": None,
        "metrics": {},
        "config": {"lr": 1e-4},
        "reason": "worker shutdown",
        "handed_back": True,
    }


def test_after_cancel_delivery_retries_only_for_the_grace_period():
    cancel = threading.Event()
    url = f"http://127.0.0.1:{get_free_port()}"
    client = Client(url, backoff=FAST, delivery_deadline=900, cancel=cancel, cancel_grace=0.5)
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with client, pytest.raises(ServerUnreachable):
        client.report(41, 10, 0.5)
    assert 0.5 < time.monotonic() - started < 3


def test_claim_with_nothing_to_run_is_none_and_sends_the_announcement(scripted):
    server = scripted([(204, None)])
    defaults = {"quadratic": {"warmup_steps": 10, "batch_size": 16}}
    declared = {
        "quadratic": {
            "dim": {"type": "int", "low": 1, "high": 65536, "choices": None, "default": 32}
        }
    }
    with Client(server.url, backoff=FAST) as client:
        assert client.claim("host-1-0", "cpu", ["quadratic"], defaults, declared) is None
        assert client.claim("host-1-0", "cpu", ["quadratic"], defaults, None) is None
    announced, quiet = (request[3] for request in server.requests)
    assert announced.pop("request_id") and quiet.pop("request_id")
    assert announced == {
        "worker_id": "host-1-0",
        "device": "cpu",
        "tasks": ["quadratic"],
        "task_defaults": defaults,
        "task_params": declared,
    }
    assert quiet == {k: v for k, v in announced.items() if k != "task_params"}


def test_retries_of_a_claim_repeat_its_request_id_and_a_new_claim_has_a_new_one(scripted):
    """A claim whose answer is lost (a timeout, a 504) is retried with the same id, so the
    server hands back the trial it already assigned instead of a second one."""
    assignment = {"trial_id": 7, "trial_number": 0}
    lost = (200, assignment, 1.0)  # answered after the client's 0.3 s timeout
    server = scripted([lost, (504, None), (200, assignment), (204, None)])
    with Client(server.url, backoff=FAST, timeout=0.3) as client:
        assert client.claim("host-1-0", "cpu", ["quadratic"]) == assignment
        assert client.claim("host-1-0", "cpu", ["quadratic"]) is None
    assert [path for _, path, _, _ in server.requests] == ["/api/trials/claim"] * 4
    ids = [body["request_id"] for _, _, _, body in server.requests]
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] != ids[0]
    assert all(isinstance(i, str) and 1 <= len(i) <= 100 for i in ids)


def test_unreachable_says_whether_the_server_answered(scripted):
    server = scripted([(503, {"detail": "the database is unavailable; retry shortly"})])
    with (
        Client(server.url, backoff=FAST, attempts=2) as client,
        pytest.raises(ServerUnreachable) as err,
    ):
        client.get("/api/sweeps")
    assert (err.value.status, err.value.detail) == (
        503,
        "the database is unavailable; retry shortly",
    )
    nowhere = f"http://127.0.0.1:{get_free_port()}"
    with (
        Client(nowhere, backoff=FAST, attempts=2) as client,
        pytest.raises(ServerUnreachable) as err,
    ):
        client.get("/api/sweeps")
    assert err.value.status is None


def test_reports_are_kept_while_the_server_is_away_and_delivered_in_order(scripted):
    port = get_free_port()
    with Client(f"http://127.0.0.1:{port}", backoff=FAST) as client:
        reports = Reports(client, 41, patience=0.3)
        started = time.monotonic()
        assert reports.send(10, 0.5, {}) is None  # waited its patience, then kept
        assert reports.send(20, 0.4, {}) is None  # one attempt: training is not held up
        assert reports.kept == 2 and time.monotonic() - started < 2
        server = scripted([(503, {"detail": "database"}), (200, {"action": "continue"})], port)
        assert reports.flush() == "continue"  # retried through the 503
        assert reports.send(30, 0.3, {"a": 1.0}) == "continue"
        assert reports.kept == 0
    steps = [body["step"] for method, path, _, body in server.requests if body and method == "POST"]
    assert steps[-3:] == [10, 20, 30]
    assert all(path == "/api/trials/41/report" for _, path, _, _ in server.requests)


def test_a_finish_outlasts_the_delivery_deadline(scripted):
    server = scripted([(503, {"detail": "database"})] * 8 + [(200, {"requeued": False})])
    with Client(server.url, backoff=FAST, delivery_deadline=0.1) as client:
        assert client.finish(41, "complete", 0.5) == {"requeued": False}
    assert len(server.requests) == 9
