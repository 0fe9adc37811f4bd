"""httpx client for the lionsweep REST API (the worker protocol; the CLI reuses it).

Connection errors and 502/503/504 answers (a 503 is the server saying its database is
unavailable) are retried with exponential backoff. Calls whose loss would lose work keep
retrying: a finish until it is delivered, reports and heartbeats until a deadline, which is
safe because the server treats repeats idempotently. Other 4xx/5xx answers raise
:class:`ApiError` at once; exhausted retries raise :class:`ServerUnreachable`, which says
whether the server answered (and what) or could not be reached at all. A claim carries a
``request_id`` that its retries repeat, so a claim whose answer was lost gets the same trial
again rather than a second one. :class:`Reports` lets training go on while reports cannot be
delivered, and delivers them, in order, once the server is back.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({502, 503, 504})


class ApiError(Exception):
    """The server answered with an error that retrying will not fix. ``foreign``: the answer
    was not JSON, so what answered is not a lionsweep server (or not its API: a wrong port or
    path); ``detail`` then says what it was in a few words."""

    def __init__(self, status_code: int, detail: Any, foreign: bool = False) -> None:
        self.status_code = status_code
        self.detail = detail
        self.foreign = foreign
        super().__init__(f"HTTP {status_code}: {detail}")


class ServerUnreachable(Exception):
    """The server could not be reached (or kept answering 502/503/504) until retries ran out.

    ``status`` is the last HTTP status the server answered with (its ``detail`` alongside),
    or ``None`` when nothing answered at all (connection refused, timeout); ``problem`` is
    the last attempt's failure alone (``ConnectError: [Errno 111] Connection refused``).
    """

    def __init__(
        self, message: str, status: int | None = None, detail: Any = None, problem: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.problem = problem or message


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``base·2ⁿ`` capped at ``cap`` seconds."""

    base: float = 0.25
    cap: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2**attempt) * random.uniform(0.8, 1.2)


def _detail(response: httpx.Response) -> tuple[Any, bool]:
    """An error answer's detail, and whether it was foreign (not JSON: then the detail is a
    few words such as ``Not Found, a text/html page``, not the whole body)."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        words = response.reason_phrase or f"HTTP {response.status_code}"
        return (f"{words}, a {kind} page" if kind else words), True
    if isinstance(body, dict) and "detail" in body:
        return body["detail"], False
    return body, False


class Client:
    """A lionsweep API client bound to one server and (optionally) one bearer token.

    ``attempts`` and ``deadline`` bound the retries of ordinary calls;
    ``delivery_deadline`` bounds those of report/finish/heartbeat. Setting ``cancel``
    (a ``threading.Event``, e.g. on SIGTERM) makes ordinary calls give up at once and
    deliveries within ``cancel_grace`` seconds, so a shutdown is never held up for long.
    """

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        attempts: int = 6,
        deadline: float = 30.0,
        delivery_deadline: float = 900.0,
        backoff: Backoff | None = None,
        cancel: threading.Event | None = None,
        cancel_grace: float = 10.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.attempts = attempts
        self.deadline = deadline
        self.delivery_deadline = delivery_deadline
        self.backoff = backoff or Backoff()
        self.cancel = cancel
        self.cancel_grace = cancel_grace
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)
        #: Seconds spent so far on requests that failed and were retried (and their waits):
        #: time the server was away, which a caller may leave out of its own clocks.
        self.retried_s = 0.0
        self._holders: dict[int, str] = {}

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        deliver: bool = False,
        deadline: float | None = None,
    ) -> httpx.Response:
        """Send a request with retries; return the 2xx response or raise.

        ``deliver=True`` retries until ``deadline`` (default ``delivery_deadline``)
        regardless of the attempt count; once ``cancel`` is set, for ``cancel_grace``
        seconds at most.
        """
        if deadline is None:
            deadline = self.delivery_deadline if deliver else self.deadline
        give_up = time.monotonic() + deadline
        graced = False
        attempt = 0
        status: int | None = None
        detail: Any = None
        while True:
            attempt_started = time.monotonic()
            if deliver and not graced and self.cancel is not None and self.cancel.is_set():
                give_up = min(give_up, time.monotonic() + self.cancel_grace)
                graced = True
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                status, detail = None, None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUS:
                    raise ApiError(response.status_code, *_detail(response))
                problem = f"HTTP {response.status_code}"
                status, detail = response.status_code, _detail(response)[0]
            attempt += 1
            wait = self.backoff.delay(attempt - 1)
            out_of_attempts = not deliver and attempt >= self.attempts
            cancelled = not deliver and self.cancel is not None and self.cancel.is_set()
            if out_of_attempts or cancelled or time.monotonic() + wait > give_up:
                raise ServerUnreachable(
                    f"{method} {self.server}{path}: {problem} (gave up after {attempt} attempts)",
                    status,
                    detail,
                    problem,
                )
            log.warning("%s %s: %s; retrying in %.1fs", method, path, problem, wait)
            if self.cancel is not None and not deliver:
                self.cancel.wait(wait)
            else:
                time.sleep(wait)
            self.retried_s += time.monotonic() - attempt_started

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` and return the decoded JSON body."""
        return self.request("GET", path, params=params).json()

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Any:
        """POST ``json`` to ``path``; return the decoded body (``None`` when empty)."""
        response = self.request("POST", path, json=json, headers=headers)
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        """DELETE ``path``."""
        self.request("DELETE", path)

    # -- the worker protocol -------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        device: str,
        tasks: list[str],
        task_defaults: dict[str, dict[str, Any]] | None = None,
        task_params: dict[str, dict[str, dict[str, Any]]] | None = None,
        sweeps: list[int] | None = None,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any] | None:
        """Ask for a trial; return its assignment, or ``None`` when nothing is runnable.

        ``task_params``: ``{task: {param: {"type", "low", "high", "choices", "default"}}}``
        for the tasks that declare their params. ``sweeps``: claim only from these sweep ids.
        One ``request_id`` per call (or the one given: a caller retrying the claim itself
        passes the same one), repeated by every retry of it: a retry after a lost answer gets
        back the trial the server already handed out. ``deadline``: as :meth:`request`.
        """
        body: dict[str, Any] = {
            "worker_id": worker_id,
            "device": device,
            "tasks": tasks,
            "request_id": request_id or uuid.uuid4().hex,
        }
        if task_defaults:
            body["task_defaults"] = task_defaults
        if task_params:
            body["task_params"] = task_params
        if sweeps is not None:
            body["sweeps"] = list(sweeps)
        response = self.request("POST", "/api/trials/claim", json=body, deadline=deadline)
        if response.status_code == 204 or not response.content:
            return None
        assignment = response.json()
        self._holders[assignment["trial_id"]] = worker_id
        return assignment

    def hold(self, trial_id: int, worker_id: str) -> None:
        """Sign later calls about ``trial_id`` with ``worker_id``: a trial another process
        claimed (the worker that launched this program) is reported and finished as its."""
        self._holders[trial_id] = worker_id

    def _as_holder(self, trial_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` signed with the worker id that claimed the trial (the server refuses
        calls about a trial from any other worker)."""
        holder = self._holders.get(trial_id)
        return {**body, "worker_id": holder} if holder else body

    def report(
        self,
        trial_id: int,
        step: int,
        value: float,
        metrics: dict[str, float] | None = None,
        deadline: float | None = None,
    ) -> str:
        """Deliver an intermediate value (retried until ``deadline``, default
        ``delivery_deadline``); return the server's action (continue/prune/stop)."""
        body = self._as_holder(trial_id, {"step": step, "value": value, "metrics": metrics or {}})
        response = self.request(
            "POST", f"/api/trials/{trial_id}/report", json=body, deliver=True, deadline=deadline
        )
        return response.json()["action"]

    def heartbeat(self, trial_id: int, deadline: float | None = None) -> str:
        """Tell the server the trial is alive; return its action (continue/prune/stop)."""
        response = self.request(
            "POST",
            f"/api/trials/{trial_id}/heartbeat",
            json=self._as_holder(trial_id, {}),
            deliver=True,
            deadline=deadline,
        )
        return response.json()["action"]

    def finish(
        self,
        trial_id: int,
        state: str,
        value: float | None = None,
        metrics: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        reason: str | None = None,
        deadline: float | None = None,
        handed_back: bool = False,
    ) -> dict[str, Any]:
        """End a trial as complete, pruned or failed; return the server's answer.

        ``handed_back`` (with ``failed``) says an interrupt stopped it: the server re-queues
        it without using up a retry (up to ``protocol.HAND_BACK_LIMIT`` times).

        Retried until delivered, however long the server is away, unless ``deadline`` is
        given; once ``cancel`` is set, for ``cancel_grace`` seconds more at most.
        """
        body = self._as_holder(
            trial_id,
            {
                "state": state,
                "value": value,
                "metrics": metrics or {},
                "config": config or {},
                "reason": reason,
                "handed_back": handed_back,
            },
        )
        response = self.request(
            "POST",
            f"/api/trials/{trial_id}/finish",
            json=body,
            deliver=True,
            deadline=math.inf if deadline is None else deadline,
        )
        return response.json()


class Reports:
    """The reports of one trial, delivered in order without holding training up for long.

    :meth:`send` tries for ``patience`` seconds; when the server cannot be reached (or keeps
    answering 503) the report is kept, training goes on, and later sends make one attempt
    each to deliver everything kept before them, oldest first. :meth:`flush` delivers what
    is left (before a finish). A refusal (:class:`ApiError`) is raised to the caller.
    """

    def __init__(self, client: Client, trial_id: int, patience: float) -> None:
        self.client = client
        self.trial_id = trial_id
        self.patience = patience
        self._kept: collections.deque[tuple[int, float, dict[str, Any]]] = collections.deque()
        self._lock = threading.Lock()

    @property
    def kept(self) -> int:
        """How many reports wait for the server."""
        return len(self._kept)

    def send(self, step: int, value: float, metrics: dict[str, Any]) -> str | None:
        """Deliver this report (and any kept before it); return the server's action for it,
        or ``None`` when it was kept for later because the server is away."""
        with self._lock:
            away = bool(self._kept)
            self._kept.append((step, value, metrics))
            try:
                return self._deliver(0.0 if away else self.patience)
            except ServerUnreachable as exc:
                if not away:  # said once per outage, not at every report
                    log.warning(
                        "trial %d: report of step %d kept for later, training goes on: %s",
                        self.trial_id,
                        step,
                        exc,
                    )
                return None

    def flush(self, deadline: float | None = None) -> str | None:
        """Deliver every kept report, retrying until ``deadline`` (default: until delivered;
        :class:`ServerUnreachable` after it); return the last action, ``None`` if none."""
        with self._lock:
            return self._deliver(math.inf if deadline is None else deadline)

    def _deliver(self, deadline: float) -> str | None:
        action = None
        while self._kept:
            step, value, metrics = self._kept[0]
            try:
                action = self.client.report(self.trial_id, step, value, metrics, deadline)
            except ApiError:
                self._kept.clear()  # the trial was refused: nothing more is sent for it
                raise
            self._kept.popleft()
        return action
