"""Where trials come from: claimed by this process (:func:`trials`, :func:`optimize`) or
handed to it by the worker that launched it (:func:`current_trial`)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, TypeVar

from lionsweep import distributed
from lionsweep.errors import NoTrial, check_url, translated, waiting_message
from lionsweep.trial import Trial
from protocol import DEFAULT_SERVER, SHUTDOWN_REASON
from worker import DEFAULT_STOP_GRACE
from worker import client as http
from worker.runtime import Lease, Poll, exit_now, signals_set

log = logging.getLogger("lionsweep")

#: The reason a trial ends with when the ``for`` loop over :func:`trials` is left before it
#: finished (an exception in the loop body without ``with trial:``, or a ``break``).
LEFT_REASON = "the loop over lionsweep.trials() ended before the trial finished"
#: Seconds :func:`trials` keeps trying to reach a server when nothing has answered at its
#: address yet, before it raises :class:`lionsweep.ServerUnreachable` (a wrong URL).
CONNECT_DEADLINE = 5.0
#: How often a loop waiting through an outage says again what it waits for.
NOTICE_EVERY = 60.0
T = TypeVar("T")


def trials(
    server: str | None = None,
    *,
    sweep: int,
    token: str | None = None,
    max_trials: int | None = None,
    idle_exit: float | None = None,
    worker_id: str | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
    poll_interval: float = 0.5,
    max_poll_interval: float = 5.0,
) -> Iterator[Trial]:
    """Claim the trials of sweep ``sweep`` one after another and yield each.

    ``server`` defaults to ``$LIONSWEEP_SERVER`` (else http://127.0.0.1:8000) and ``token``
    to ``$LIONSWEEP_TOKEN``. Write the loop body as ``with trial: ...``: an exception then
    fails the trial with its reason. While a trial runs, heartbeats keep its lease; a SIGTERM
    makes :attr:`Trial.should_stop` true, the trial is handed back (``failed``, reason
    ``worker shutdown``, re-queued by the server) and the iteration ends; a trial still
    running ``stop_grace`` s after the signal is handed back by a watchdog, which then exits
    the process (code 143). The iteration ends when the sweep is no longer running, after
    ``max_trials`` trials, or after ``idle_exit`` s without a trial to claim.

    While the server answers 503 (its database is down) or, once it has answered, cannot be
    reached, the loop waits for it as long as that lasts, saying what it waits for (once,
    then every minute); time spent so does not count towards ``idle_exit``.

    Under ``torch.distributed`` (process group initialized first) every rank iterates:
    rank 0 claims and the others receive the same trial. Raises :class:`lionsweep.ClientError`
    subclasses when nothing answers at ``server`` within 5 s of the start, when the server
    refuses the token, or when it has no such sweep.
    """
    if distributed.active() and distributed.rank() != 0:
        yield from _follow()
        return
    url = check_url(server or os.environ.get("LIONSWEEP_SERVER") or DEFAULT_SERVER)
    token = token if token is not None else os.environ.get("LIONSWEEP_TOKEN") or None
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-client"
    shutdown = threading.Event()
    claimed = 0
    with http.Client(url, token, cancel=shutdown) as client, _sigterm_sets(shutdown):
        poll = Poll(shutdown, poll_interval, max_poll_interval, idle_exit)
        claimer = _Claimer(client, url, sweep, worker_id=worker_id, poll=poll)
        while True:
            assignment = None
            if not shutdown.is_set() and (max_trials is None or claimed < max_trials):
                assignment = claimer.next()
            if distributed.active():
                distributed.broadcast_object(assignment)
            if assignment is None:
                return
            claimed += 1
            trial = Trial(assignment, client=client, worker_id=worker_id, shutdown=shutdown)
            log.info("trial %d (sweep %d) claimed: %s", trial.number, sweep, trial.params)
            with _lease(trial, client, float(assignment["heartbeat_interval"]), stop_grace):
                try:
                    yield trial
                except GeneratorExit:
                    reason = SHUTDOWN_REASON if shutdown.is_set() else LEFT_REASON
                    trial._end_quietly("failed", reason)
                    raise
                if trial.state is None:
                    trial.finish()


def optimize(
    objective: Callable[[Trial], float | None],
    server: str | None = None,
    *,
    sweep: int,
    token: str | None = None,
    **options: Any,
) -> int:
    """Run ``objective(trial)`` on each trial of ``sweep`` (as :func:`trials` yields them);
    its return value finishes the trial unless it finished the trial itself. An exception
    fails the trial with its reason and propagates. Returns the number of trials run."""
    n = 0
    for trial in trials(server, sweep=sweep, token=token, **options):
        n += 1
        with trial:
            value = objective(trial)
            if trial.state is None:
                trial.finish(value)
    return n


_current: Trial | None = None


def current_trial() -> Trial:
    """The trial a lionsweep worker launched this program for, built from its environment
    (``LIONSWEEP_SERVER``, ``LIONSWEEP_TOKEN``, ``LIONSWEEP_WORKER_ID``, ``LIONSWEEP_TRIAL_ID``,
    ``LIONSWEEP_TRIAL_FILE``; the same object on every call).

    The worker claimed the trial and keeps its lease; this program reports and finishes it
    as that worker. On ranks other than 0 of a ``torchrun`` job nothing is sent and
    :meth:`Trial.report` learns rank 0's answer. Raises :class:`lionsweep.NoTrial` when the
    environment holds no trial.
    """
    global _current
    env = os.environ
    raw_id = env.get("LIONSWEEP_TRIAL_ID")
    if not raw_id:
        raise NoTrial(
            "no trial in this environment (LIONSWEEP_TRIAL_ID is not set): current_trial() is "
            "for programs a lionsweep worker runs; use lionsweep.trials(server, sweep=ID) to "
            "claim trials yourself"
        )
    if _current is not None and str(_current.id) == raw_id:
        return _current
    assignment = _assignment_from_env(env, raw_id)
    client = None
    worker_id = env.get("LIONSWEEP_WORKER_ID") or None
    if distributed.rank() == 0:
        server = env.get("LIONSWEEP_SERVER")
        if not server:
            raise NoTrial("LIONSWEEP_TRIAL_ID is set but LIONSWEEP_SERVER is not")
        client = http.Client(check_url(server), env.get("LIONSWEEP_TOKEN") or None)
        if worker_id:
            client.hold(int(assignment["trial_id"]), worker_id)
    _current = Trial(assignment, client=client, worker_id=worker_id)
    return _current


def _assignment_from_env(env: os._Environ[str] | dict[str, str], raw_id: str) -> dict[str, Any]:
    """The claim's assignment: the JSON of ``LIONSWEEP_TRIAL_FILE``, else rebuilt from
    ``LIONSWEEP_SEED`` and the ``LIONSWEEP_PARAM_*`` variables."""
    try:
        trial_id = int(raw_id)
    except ValueError:
        raise NoTrial(f"LIONSWEEP_TRIAL_ID must be an integer, not {raw_id!r}") from None
    path = env.get("LIONSWEEP_TRIAL_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                assignment = json.load(f)
        except (OSError, ValueError) as exc:
            raise NoTrial(f"LIONSWEEP_TRIAL_FILE {path!r}: {exc}") from None
        if not isinstance(assignment, dict) or "params" not in assignment:
            raise NoTrial(f"LIONSWEEP_TRIAL_FILE {path!r} holds no trial assignment")
        if int(assignment.get("trial_id", trial_id)) != trial_id:
            raise NoTrial(f"LIONSWEEP_TRIAL_FILE {path!r} is not about trial id {trial_id}")
        return {**assignment, "trial_id": trial_id}
    params = {}
    prefix = "LIONSWEEP_PARAM_"
    for key, text in env.items():
        if key.startswith(prefix):
            try:
                params[key[len(prefix) :].lower()] = json.loads(text)
            except ValueError:
                problem = f"{key} must be JSON (a number, string or bool), not {text!r}"
                raise NoTrial(problem) from None
    return {"trial_id": trial_id, "params": params, "seed": int(env.get("LIONSWEEP_SEED", "0"))}


class _Patience:
    """Calls the server until it answers, through outages of any length: a server that
    answers 503 (its database is away), or one that answered before and no longer does.
    Says what it waits for once, then every :data:`NOTICE_EVERY` s. Gives up (raises
    :class:`worker.client.ServerUnreachable`) on shutdown, or when nothing ever answered at
    the address within :data:`CONNECT_DEADLINE` s (a wrong URL fails fast)."""

    def __init__(self, server: str, shutdown: threading.Event) -> None:
        self.server = server
        self.shutdown = shutdown
        self.backoff = http.Backoff()
        self.reached = False
        self.started = time.monotonic()
        #: Seconds spent waiting for the server so far.
        self.waited = 0.0

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` (one attempt at a request), retried with backoff until the server answers;
        ``what`` the call is for, in words ("claim a trial of sweep 3")."""
        attempt = 0
        said_at: float | None = None
        while True:
            try:
                result = fn()
            except http.ServerUnreachable as exc:
                if exc.status is not None:
                    self.reached = True
                elif not self.reached and time.monotonic() - self.started >= CONNECT_DEADLINE:
                    raise
                if self.shutdown.is_set():
                    raise
                if said_at is None or time.monotonic() - said_at >= NOTICE_EVERY:
                    log.warning("%s", waiting_message(self.server, exc, what))
                    said_at = time.monotonic()
                pause = self.backoff.delay(attempt)
                self.shutdown.wait(pause)
                self.waited += pause
                attempt += 1
                continue
            self.reached = True
            if said_at is not None:
                log.warning("the lionsweep server at %s answers again", self.server)
            return result


def _sweep_task(client: http.Client, patience: _Patience, sweep: int) -> str:
    """The name of ``sweep``'s task (raises unless the sweep exists and the token may read)."""
    with translated(patience.server, f"sweep {sweep}"):
        response = patience.call(
            lambda: client.request("GET", f"/api/sweeps/{int(sweep)}", deadline=0),
            f"read sweep {sweep}",
        )
    return str(response.json()["task"]["name"])


def _device() -> str:
    """This process's device, as the server records it with each trial it claims."""
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.current_device()}"
    return "cpu"


class _Claimer:
    """Claims the next trial of one sweep for :func:`trials`, waiting (``poll``) while none
    is free."""

    def __init__(
        self, client: http.Client, server: str, sweep: int, *, worker_id: str, poll: Poll
    ) -> None:
        self.client = client
        self.server = server
        self.sweep = int(sweep)
        self.poll = poll
        self.shutdown = poll.stop
        self.patience = _Patience(server, self.shutdown)
        self.task = _sweep_task(client, self.patience, self.sweep)
        self.device = _device()
        self.worker_id = worker_id

    def next(self) -> dict[str, Any] | None:
        """The next trial's assignment; ``None`` once the sweep is no longer running, after
        ``idle_exit`` s without one, or on shutdown."""
        self.poll.reset()
        while not self.shutdown.is_set():
            request_id = uuid.uuid4().hex  # repeated by every retry of this claim
            with translated(self.server, f"sweep {self.sweep}"):
                try:
                    waited = self.patience.waited
                    claim = partial(
                        self.client.claim,
                        self.worker_id,
                        self.device,
                        [self.task],
                        sweeps=[self.sweep],
                        request_id=request_id,
                        deadline=0,
                    )
                    assignment = self.patience.call(claim, f"claim a trial of sweep {self.sweep}")
                    if assignment is not None:
                        return assignment
                    status = self.patience.call(
                        lambda: self.client.request(
                            "GET", f"/api/sweeps/{self.sweep}", deadline=0
                        ).json()["status"],
                        f"read sweep {self.sweep}",
                    )
                except http.ServerUnreachable:
                    if self.shutdown.is_set():
                        return None
                    raise
                if self.patience.waited > waited:  # it waited for the server: idle from here
                    self.poll.not_idle()
            if status != "running":
                log.info("sweep %d is %s: no more trials", self.sweep, status)
                return None
            if self.poll.idle():
                log.info(
                    "no trial of sweep %d for %.0fs; stopping", self.sweep, self.poll.idle_exit
                )
                return None
            self.poll.sleep()
        return None


def _follow() -> Iterator[Trial]:
    """A non-zero rank's side of :func:`trials`: rank 0's trials, until it sends none."""
    with _sigterm_sets(threading.Event()):  # rank 0 decides when to stop; this rank follows
        while (assignment := distributed.broadcast_object(None)) is not None:
            trial = Trial(assignment, client=None)
            try:
                yield trial
            except GeneratorExit:
                trial._end_quietly("failed", LEFT_REASON)
                raise
            if trial.state is None:
                trial.finish()


def _sigterm_sets(event: threading.Event) -> AbstractContextManager[None]:
    """While inside, SIGTERM sets ``event`` instead of ending the process (main thread only)."""
    return signals_set(event, "handing the running trial back", (signal.SIGTERM,), logger=log)


def _lease(trial: Trial, client: http.Client, interval: float, stop_grace: float) -> Lease:
    """While a trial runs: heartbeats every ``interval`` s (the server's answer reaches
    :attr:`Trial.should_stop`), and the watchdog that hands the trial back and exits the
    process when it outlasts ``stop_grace`` s after a SIGTERM."""
    return Lease(
        client,
        trial.id,
        interval,
        trial._interrupt,
        grace=stop_grace,
        server_stops=False,  # the user's loop ends a trial the server stopped; no watchdog
        on_overdue=partial(_hand_back_and_exit, trial),
        active=lambda: trial.state is None,
        label=trial.number,
        logger=log,
    )


def _hand_back_and_exit(trial: Trial, waited: float) -> None:
    """Hand the trial back and end the process: its training ignored the SIGTERM."""
    log.warning(
        "trial %d still running %.1fs after SIGTERM; handing it back and exiting",
        trial.number,
        waited,
    )
    trial._end_quietly("failed", SHUTDOWN_REASON)
    exit_now(128 + signal.SIGTERM)
