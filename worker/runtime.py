"""The trial runtime shared by the worker agent (:mod:`worker.agent`) and the Python client
(:func:`lionsweep.trials`): why a running trial must stop (:class:`Interrupt`), its lease and
watchdog (:class:`Lease`), the wait between claims (:class:`Poll`), and stop signals
(:func:`stop_signals`, :func:`signals_set`). It imports neither torch nor the server's
packages.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from protocol import PRUNE, SHUTDOWN_REASON, STOP, STOPPED_REASON
from worker.client import ApiError, Client, ServerUnreachable

log = logging.getLogger("worker.runtime")

#: How often (seconds) a watchdog looks at a running trial.
TICK = 0.1
#: The signals that stop a worker or a client loop: Ctrl-C and a polite kill.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: How a trial ends: ``(state, reason)``, e.g. ``("failed", "worker shutdown")``.
Outcome = tuple[str, str | None]


class Interrupt:
    """Whether, why and since when a running trial must stop: a stop signal to the process
    (``shutdown``, shared by its trials), or the server's ``stop`` or ``prune`` answer."""

    def __init__(self, shutdown: threading.Event | None = None) -> None:
        #: Set on a stop signal (Ctrl-C, SIGTERM): the trial is handed back.
        self.shutdown = shutdown or threading.Event()
        #: What the server asked for: ``("pruned", None)`` or ``("failed", reason)``.
        self.asked: Outcome | None = None
        #: Why the server refused this trial's heartbeat or report (it ended there), if it did.
        self.refused: str | None = None
        self._lock = threading.Lock()
        self._stopped_at: float | None = None
        self._signalled_at: float | None = None

    def answer(self, action: str) -> None:
        """Take the server's answer to a report or heartbeat: ``continue``, ``prune`` or
        ``stop``."""
        if action == STOP:
            self.stop(STOPPED_REASON)
        elif action == PRUNE:
            with self._lock:
                if self.asked is None:
                    self.asked = ("pruned", None)

    def stop(self, reason: str) -> None:
        """Ask the trial to stop and end ``failed`` with ``reason``; the first stop wins,
        over a prune too."""
        with self._lock:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
                self.asked = ("failed", reason)

    def refuse(self, reason: str) -> None:
        """Record that the server refused the trial (the first reason is kept)."""
        with self._lock:
            self.refused = self.refused or reason

    def outcome(self) -> Outcome | None:
        """How the trial must end now: ``("failed", "worker shutdown")`` after a stop
        signal, else what the server asked for; ``None`` while it may go on."""
        if self.shutdown.is_set():
            return ("failed", SHUTDOWN_REASON)
        return self.asked

    def since(self, *, server_stops: bool = True) -> float | None:
        """When (``time.monotonic()``) a stop was first requested: a stop signal, as of the
        first call that saw it, or (with ``server_stops``) the server's stop; ``None`` if
        neither."""
        if self._signalled_at is None and self.shutdown.is_set():
            self._signalled_at = time.monotonic()
        stopped = self._stopped_at if server_stops else None
        return min((t for t in (self._signalled_at, stopped) if t is not None), default=None)


class Lease:
    """A running trial's lease on the server, used as a context manager: a heartbeat every
    ``interval`` seconds whose answer goes to ``interrupt``, and a watchdog that gives the
    trial ``grace`` seconds after a stop request (a signal, or with ``server_stops`` the
    server's stop too), then sets :attr:`overdue` and calls ``on_overdue(seconds waited)``.

    Heartbeats and the watchdog end with the block, once overdue, or once ``active()`` is
    false (the trial ended). ``label`` names the trial in ``logger``'s messages.
    """

    def __init__(
        self,
        client: Client,
        trial_id: int,
        interval: float,
        interrupt: Interrupt,
        *,
        grace: float,
        server_stops: bool = True,
        on_overdue: Callable[[float], None] | None = None,
        active: Callable[[], bool] = lambda: True,
        label: object = None,
        logger: logging.Logger = log,
    ) -> None:
        self.client = client
        self.trial_id = trial_id
        self.interval = interval
        self.interrupt = interrupt
        self.grace = grace
        self.server_stops = server_stops
        self.on_overdue = on_overdue
        self.active = active
        self.label = trial_id if label is None else label
        self.log = logger
        #: Set once a stop request outlasted ``grace``.
        self.overdue = threading.Event()
        #: Seconds from the stop request to the watchdog's verdict, once overdue.
        self.waited: float | None = None
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._beat_loop, name=f"heartbeat-{trial_id}", daemon=True),
            threading.Thread(target=self._watch_loop, name=f"watchdog-{trial_id}", daemon=True),
        ]

    def __enter__(self) -> Lease:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)

    def _beat_loop(self) -> None:
        while not self._done.wait(self.interval) and self.active():
            try:
                action = self.client.heartbeat(self.trial_id, deadline=2 * self.interval)
            except ApiError as exc:
                if self.active():
                    self.log.warning(
                        "trial %s: heartbeat refused (%s); stopping it", self.label, exc
                    )
                    reason = f"heartbeat refused: HTTP {exc.status_code}"
                    self.interrupt.refuse(reason)
                    self.interrupt.stop(reason)
            except ServerUnreachable as exc:
                self.log.warning("trial %s: heartbeat not delivered: %s", self.label, exc)
            else:
                self.interrupt.answer(action)

    def _watch_loop(self) -> None:
        while not self._done.wait(TICK) and self.active():
            requested = self.interrupt.since(server_stops=self.server_stops)
            if requested is None or time.monotonic() - requested < self.grace:
                continue
            self.waited = time.monotonic() - requested
            self._done.set()  # no more heartbeats: the trial is given up
            self.overdue.set()
            if self.on_overdue is not None:
                self.on_overdue(self.waited)
            return


class Poll:
    """The wait between claims that found no trial: ``interval`` seconds at first, ×1.5 after
    each wait up to ``max_interval``; and whether ``idle_exit`` seconds went by without a
    trial (time spent waiting for the server does not count). ``stop`` cuts a wait short."""

    def __init__(
        self,
        stop: threading.Event,
        interval: float = 0.5,
        max_interval: float = 5.0,
        idle_exit: float | None = None,
    ) -> None:
        self.stop = stop
        self.interval = interval
        self.max_interval = max_interval
        self.idle_exit = idle_exit
        #: The next wait, in seconds.
        self.wait = interval
        self._idle_since = time.monotonic()

    def reset(self) -> None:
        """Start over (after a trial): the first wait again, and no idle time."""
        self.wait = self.interval
        self._idle_since = time.monotonic()

    def not_idle(self) -> None:
        """Count all the time so far as waiting for the server, not as idle."""
        self._idle_since = time.monotonic()

    def idle(self) -> bool:
        """Whether ``idle_exit`` seconds went by without a trial."""
        return self.idle_exit is not None and time.monotonic() - self._idle_since >= self.idle_exit

    def sleep(self, at_most: float | None = None) -> None:
        """Wait before the next claim (at most ``at_most`` seconds; until ``stop`` is set,
        if sooner), and make the next wait longer."""
        self.stop.wait(self.wait if at_most is None else min(self.wait, max(0.0, at_most)))
        self.wait = min(self.wait * 1.5, self.max_interval)


@contextmanager
def stop_signals(
    handler: Callable[[int], None], signums: Sequence[int] = STOP_SIGNALS
) -> Iterator[None]:
    """Inside the block, call ``handler(signum)`` on each of ``signums`` instead of what
    the signal did before, which is restored after (main thread only: elsewhere nothing
    changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install signal handlers
        return
    previous = {s: signal.signal(s, lambda signum, frame: handler(signum)) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def signals_set(
    event: threading.Event,
    doing: str,
    signums: Sequence[int] = STOP_SIGNALS,
    logger: logging.Logger = log,
) -> Iterator[None]:
    """Inside the block, each of ``signums`` sets ``event`` instead of ending the process,
    and ``logger`` says ``received SIGTERM; {doing}`` (as :func:`stop_signals`)."""

    def on_signal(signum: int) -> None:
        logger.info("received %s; %s", signal.Signals(signum).name, doing)
        event.set()

    with stop_signals(on_signal, signums):
        yield


def exit_now(code: int, hard_exit: Callable[[int], None] = os._exit) -> None:
    """End the process at once with ``code`` (threads still running or not), its logs and
    output flushed first."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    hard_exit(code)
