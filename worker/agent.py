"""The worker agent: claim → train → report → finish, until told to stop.

One agent process runs trials one after another, so compiled kernels and loaded data
are reused across trials. It talks to the server only over HTTP (``worker.client``),
heartbeats from a background thread while training, and on SIGTERM/SIGINT stops at
the next step boundary, hands its trial back (finished ``failed`` with reason
``worker shutdown``, which the server re-queues) and exits 0. With ``--gpus`` a
supervisor (``worker.supervisor``) starts one agent per GPU (``CUDA_VISIBLE_DEVICES`` set
for each), forwards signals and restarts agents that crash.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
import traceback
from typing import Any

from worker import EXIT_CONFIG, tasks
from worker.client import ApiError, Client, ServerUnreachable
from worker.supervisor import (
    WORKER_INDEX_ENV,
    Supervisor,
    agent_children,
    gpu_slots,
    lionsweep_command,
    stop_signals,
)

log = logging.getLogger("worker.agent")

SHUTDOWN_REASON = "worker shutdown"
#: How long a shutting-down agent keeps trying to hand its trial back.
SHUTDOWN_FINISH_DEADLINE = 20.0


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)


class TrialSession:
    """The harness's reporter for one claimed trial: reports, heartbeats, interrupts."""

    def __init__(self, client: Client, assignment: dict[str, Any], shutdown: threading.Event):
        self.client = client
        self.trial_id = int(assignment["trial_id"])
        self.interval = float(assignment["heartbeat_interval"])  # the server's setting
        self.shutdown = shutdown
        self._interrupt: tuple[str, str | None] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{self.trial_id}", daemon=True
        )

    def __enter__(self) -> TrialSession:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5.0)

    def _answer(self, action: str) -> None:
        if action == "stop":
            self._interrupt = ("failed", "stopped by server")
        elif action == "prune":
            self._interrupt = ("pruned", None)

    def _heartbeat_loop(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self._answer(self.client.heartbeat(self.trial_id, deadline=2 * self.interval))
            except ApiError as exc:
                log.warning("trial %d: heartbeat refused (%s); stopping it", self.trial_id, exc)
                self._interrupt = ("failed", f"heartbeat refused: HTTP {exc.status_code}")
            except ServerUnreachable as exc:
                log.warning("trial %d: heartbeat not delivered: %s", self.trial_id, exc)

    def report(self, step: int, value: float, metrics: dict[str, float]) -> str:
        """Deliver an intermediate value (retried until delivered); return the action."""
        try:
            return self.client.report(self.trial_id, step, value, _finite(metrics))
        except ApiError as exc:
            log.warning("trial %d: report refused (%s); stopping it", self.trial_id, exc)
            return "stop"
        except ServerUnreachable:
            if self.shutdown.is_set():  # the step boundary ends it as "worker shutdown"
                return "continue"
            raise

    def interrupted(self) -> tuple[str, str | None] | None:
        """``("failed", "worker shutdown")`` after a signal, else what the server asked."""
        if self.shutdown.is_set():
            return ("failed", SHUTDOWN_REASON)
        return self._interrupt


class Agent:
    """Claims and runs trials one after another in this process."""

    def __init__(
        self,
        client: Client,
        device: str,
        *,
        worker_id: str | None = None,
        max_trials: int | None = None,
        idle_exit: float | None = None,
        shutdown: threading.Event | None = None,
        poll_interval: float = 0.5,
        max_poll_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.device = device
        index = os.environ.get(WORKER_INDEX_ENV, "0")
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{index}"
        self.max_trials = max_trials
        self.idle_exit = idle_exit
        self.shutdown = shutdown or threading.Event()
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.trials_run = 0

    def run(self) -> int:
        """Loop until shutdown, ``max_trials`` or ``idle_exit``; return the exit code."""
        names = tasks.names()
        defaults = {name: tasks.get(name).defaults.announce() for name in names}
        log.info(
            "worker %s on %s, server %s, tasks: %s",
            self.worker_id,
            self.device,
            self.client.server,
            ", ".join(names),
        )
        idle_since = time.monotonic()
        wait = self.poll_interval
        while not self.shutdown.is_set():
            if self.max_trials is not None and self.trials_run >= self.max_trials:
                log.info("ran %d trials (--max-trials); exiting", self.trials_run)
                return 0
            try:
                assignment = self.client.claim(self.worker_id, self.device, names, defaults)
            except ServerUnreachable as exc:
                log.warning("claim failed: %s", exc)
                assignment = None
            except ApiError as exc:
                if exc.status_code in (401, 403):
                    log.error("the server refused this worker's token: %s", exc)
                    return EXIT_CONFIG
                log.warning("claim refused: %s", exc)
                assignment = None
            if assignment is None:
                if self.idle_exit is not None and time.monotonic() - idle_since >= self.idle_exit:
                    log.info("nothing to run for %.0fs (--idle-exit); exiting", self.idle_exit)
                    return 0
                self.shutdown.wait(wait)
                wait = min(wait * 1.5, self.max_poll_interval)
                continue
            self.run_assignment(assignment)
            self.trials_run += 1
            idle_since = time.monotonic()
            wait = self.poll_interval
        log.info("shutting down")
        return 0

    def run_assignment(self, assignment: dict[str, Any]) -> None:
        """Train one claimed trial and finish it on the server (whatever happens)."""
        from worker.harness import effective_config, run_trial

        trial_id = int(assignment["trial_id"])
        number = assignment.get("trial_number")
        task_name = (assignment.get("task") or {}).get("name")
        config: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            task = tasks.get(task_name)
            trial_config = effective_config(task, assignment, self.device)
            config = trial_config.as_dict()
            if self.shutdown.is_set():
                state, value, metrics, reason, timings = "failed", None, {}, SHUTDOWN_REASON, {}
            else:
                with TrialSession(self.client, assignment, self.shutdown) as session:
                    result = run_trial(task, trial_config, session)
                state, value, metrics, reason = (
                    result.state,
                    result.value,
                    result.metrics,
                    result.reason,
                )
                timings = result.timings
        except Exception as exc:  # a broken task or config fails the trial, not the worker
            log.error("trial %s failed:\n%s", number, traceback.format_exc())
            state, value, metrics, timings = "failed", None, {}, {}
            reason = f"{type(exc).__name__}: {exc}"[:500]
        metrics = _finite(
            {**metrics, **{f"time_{k}": v for k, v in timings.items() if v is not None}}
        )
        log.info(
            "trial %s (sweep %s, id %d) %s value=%s%s params=%s wall=%.2fs "
            "setup=%s first_step=%s overhead=%s optimizer_share=%s",
            number,
            assignment.get("sweep_id"),
            trial_id,
            state,
            value,
            f" reason={reason}" if reason else "",
            assignment.get("params"),
            time.perf_counter() - started,
            _fmt(timings.get("setup_s")),
            _fmt(timings.get("first_step_s")),
            _fmt(timings.get("first_step_overhead_s")),
            _fmt(timings.get("optimizer_share")),
        )
        deadline = SHUTDOWN_FINISH_DEADLINE if self.shutdown.is_set() else None
        try:
            self.client.finish(trial_id, state, value, metrics, config, reason, deadline=deadline)
        except ApiError as exc:
            log.warning("trial %s: finish refused (%s)", number, exc)
        except ServerUnreachable as exc:
            log.error("trial %s: finish not delivered (the server re-queues it): %s", number, exc)


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with non-finite numbers replaced by ``None`` (JSON has no NaN)."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def run_agent(
    server: str,
    token: str | None,
    device: str,
    max_trials: int | None,
    idle_exit: float | None,
    task_modules: list[str],
) -> int:
    """Run one agent in this process; return its exit code."""
    from worker.harness import resolve_device

    shutdown = threading.Event()

    def on_signal(signum: int) -> None:
        log.info("received %s; stopping at the next step boundary", signal.Signals(signum).name)
        shutdown.set()

    with stop_signals(on_signal):
        try:
            names = tasks.load_all(task_modules)
            resolved = resolve_device(device)
        except (ImportError, RuntimeError, TypeError, ValueError) as exc:
            log.error("%s", exc)
            return EXIT_CONFIG
        if not names:
            log.error("no tasks registered")
            return EXIT_CONFIG
        if device == "auto" and resolved == "cpu" and os.environ.get("CUDA_VISIBLE_DEVICES"):
            log.warning("no usable GPU among CUDA_VISIBLE_DEVICES; training on cpu")
        with Client(server, token, cancel=shutdown) as client:
            agent = Agent(
                client, resolved, max_trials=max_trials, idle_exit=idle_exit, shutdown=shutdown
            )
            return agent.run()


def agent_command(
    server: str,
    device: str,
    max_trials: int | None = None,
    idle_exit: float | None = None,
    task_modules: list[str] | None = None,
) -> list[str]:
    """The command line of one supervised agent (a token travels in its environment)."""
    cmd = lionsweep_command("worker", "--server", server, "--device", device)
    if max_trials is not None:
        cmd += ["--max-trials", str(max_trials)]
    if idle_exit is not None:
        cmd += ["--idle-exit", str(idle_exit)]
    for module in task_modules or []:
        cmd += ["--task-module", module]
    return cmd


def main(
    server: str,
    token: str | None,
    device: str = "auto",
    gpus: str | None = None,
    max_trials: int | None = None,
    idle_exit: float | None = None,
    task_modules: list[str] | None = None,
) -> int:
    """Entry point of ``lionsweep worker``: one agent, or with ``gpus`` one per GPU."""
    _setup_logging()
    task_modules = list(task_modules or [])
    if not gpus:
        return run_agent(server, token, device, max_trials, idle_exit, task_modules)
    if device not in ("auto", "cpu", "cuda"):
        log.error("with --gpus, --device must be auto, cpu or cuda (each agent sees one GPU)")
        return EXIT_CONFIG
    try:
        slots = gpu_slots(gpus)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    if not slots:
        log.error("--gpus all: no CUDA device is visible")
        return EXIT_CONFIG
    command = agent_command(server, device, max_trials, idle_exit, task_modules)
    env = {**os.environ, "LIONSWEEP_TOKEN": token} if token else None
    with Supervisor() as supervisor:
        for child in agent_children(command, slots, cpu=device == "cpu", env=env):
            supervisor.start(child)
        return supervisor.run()
