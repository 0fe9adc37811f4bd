"""The worker agent: claim → train → report → finish, until told to stop.

One agent process runs trials one after another, so compiled kernels and loaded data
are reused across trials. It talks to the server only over HTTP (``worker.client``), keeps
each trial's lease and watchdog in background threads (``worker.runtime``), and trains each
trial in a thread of its own while the main thread waits for it (:class:`TrialSession`). On
SIGTERM/SIGINT the trial stops at the next step boundary, is handed back (finished
``failed`` with reason ``worker shutdown``, which the server re-queues) and the agent
exits 0. A step that outlasts ``stop_grace`` seconds after the signal (or after the server
answered ``stop``) does not hold the worker: the watchdog finishes the trial itself and,
for a signal, exits at once (``os._exit``, same code 0); after a server stop the agent
abandons the still-running training and takes no new trial before it has ended. Params
that break a task's declaration fail the trial at once (``invalid task params: …``). A command task
(``--commands``, :mod:`worker.commands`) is claimed, heartbeated and finished the same way,
its program run per trial by :mod:`worker.command_runner` in the training thread's place;
a 409 to its finish means the program (or the server) already ended the trial. While the
server (or its database: a 503) is away, training goes on: heartbeats and reports that
cannot be delivered are logged, reports are kept and sent in order once it is back, a
finish is retried until delivered, and time spent waiting to claim is not idle time. A
server never reached at all (nothing answers at ``--server``, or what answers is not a
lionsweep server) is tried for ``connect_timeout`` seconds, then the agent says so in one
line and exits ``EXIT_CONFIG``; it never exits 0 (``--idle-exit``) before reaching it. With
``--gpus`` a supervisor (``worker.supervisor``) starts one agent per GPU
(``CUDA_VISIBLE_DEVICES`` set for each), forwards signals and restarts agents that crash.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol import (
    CONTINUE,
    SHUTDOWN_FINISH_DEADLINE,
    SHUTDOWN_REASON,
    STOP,
    STOPPED_REASON,
    json_metrics,
)
from worker import DEFAULT_CONNECT_TIMEOUT, DEFAULT_STOP_GRACE, EXIT_CONFIG, commands, tasks
from worker.client import ApiError, Client, Reports, ServerUnreachable
from worker.commands import CommandConfigError, CommandTask
from worker.runtime import TICK, Interrupt, Lease, Poll, exit_now, signals_set
from worker.supervisor import (
    WORKER_INDEX_ENV,
    Supervisor,
    agent_children,
    gpu_slots,
    lionsweep_command,
)

if TYPE_CHECKING:
    from worker.harness import TrialResult

log = logging.getLogger("worker.agent")


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)


class TrialSession:
    """One claimed trial: the harness's reporter, its lease and its watchdog.

    :meth:`run` trains in a thread of its own while the calling (main) thread watches: once
    a stop is requested (``shutdown`` set by a signal, or the server answering ``stop``), a
    trial that has not ended within ``stop_grace`` seconds is given up: :attr:`abandoned` is
    set, heartbeats stop renewing its lease, reports from the training thread are no longer
    sent, and :meth:`run` returns the watchdog's result (``failed``) instead of the trial's.
    """

    def __init__(
        self,
        client: Client,
        assignment: dict[str, Any],
        shutdown: threading.Event,
        stop_grace: float = DEFAULT_STOP_GRACE,
    ):
        self.client = client
        self.trial_id = int(assignment["trial_id"])
        self.interval = float(assignment["heartbeat_interval"])  # the server's setting
        self.shutdown = shutdown
        self.stop_grace = stop_grace
        #: Reports not yet delivered while the server is away (training goes on meanwhile).
        self.reports = Reports(client, self.trial_id, patience=2 * self.interval)
        self.interrupt = Interrupt(shutdown)
        self.lease = Lease(
            client, self.trial_id, self.interval, self.interrupt, grace=stop_grace, logger=log
        )
        self.abandoned = threading.Event()
        self.training: threading.Thread | None = None
        self._trained = threading.Event()
        self._outcome: TrialResult | BaseException | None = None

    def __enter__(self) -> TrialSession:
        self.lease.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lease.__exit__(*exc)

    @property
    def refused(self) -> str | None:
        """Why the server refused this trial's heartbeat or report (it ended there), if it did."""
        return self.interrupt.refused

    def report(self, step: int, value: float, metrics: dict[str, float]) -> str:
        """Deliver an intermediate value; return the action (``continue`` while the server
        is away: the report is kept and delivered later, in order)."""
        if self.abandoned.is_set():
            return STOP  # the watchdog finished this trial; nothing more is sent for it
        try:
            action = self.reports.send(step, value, json_metrics(metrics))
        except ApiError as exc:
            log.warning("trial %d: report refused (%s); stopping it", self.trial_id, exc)
            self.interrupt.refuse(f"report refused: HTTP {exc.status_code}")
            return STOP
        if action is None:  # kept until the server is back: training goes on
            return CONTINUE
        self.interrupt.answer(action)
        return action

    def interrupted(self) -> tuple[str, str | None] | None:
        """``("failed", "worker shutdown")`` after a signal, else what the server asked."""
        return self.interrupt.outcome()

    def _train(self, train: Callable[[], TrialResult]) -> None:
        try:
            self._outcome = train()
        except BaseException as exc:  # handed to the watching thread, which raises it
            self._outcome = exc
        finally:
            self._trained.set()

    def run(self, train: Callable[[], TrialResult]) -> TrialResult:
        """Run ``train()`` in a training thread and return its result (or raise its error),
        unless a stop request outlasts ``stop_grace``: then the watchdog's ``failed`` result
        (reason ``worker shutdown`` after a signal, else the server's) with the trial
        abandoned."""
        from worker.harness import TrialResult

        self.training = threading.Thread(
            target=self._train, args=(train,), name=f"trial-{self.trial_id}", daemon=True
        )
        self.training.start()
        while not self._trained.wait(TICK):
            if not self.lease.overdue.is_set():
                continue
            if self._trained.is_set():
                break  # it ended just now: its own result counts
            self.abandoned.set()
            _, reason = self.interrupt.outcome() or ("failed", STOPPED_REASON)
            log.warning(
                "trial %d: still running %.1fs after the stop request; the watchdog ends it (%s)",
                self.trial_id,
                self.lease.waited,
                reason,
            )
            return TrialResult("failed", None, reason=reason)
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome


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
        stop_grace: float = DEFAULT_STOP_GRACE,
        hard_exit: Callable[[int], None] = os._exit,
        commands: Mapping[str, CommandTask] | None = None,
        token: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.client = client
        self.connect_timeout = connect_timeout
        self.commands = dict(commands or {})
        self.token = token  # handed to command programs (LIONSWEEP_TOKEN)
        self.device = device
        index = os.environ.get(WORKER_INDEX_ENV, "0")
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{index}"
        self.max_trials = max_trials
        self.idle_exit = idle_exit
        self.shutdown = shutdown or threading.Event()
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.stop_grace = stop_grace
        self.hard_exit = hard_exit
        self.trials_run = 0

    def run(self) -> int:
        """Loop until shutdown, ``max_trials`` or ``idle_exit``; return the exit code."""
        builtin = tasks.names()
        defaults = {name: tasks.get(name).defaults.announce() for name in builtin}
        declared = tasks.announce_params(builtin)
        for name, command in self.commands.items():
            if command.specs is not None:
                declared[name] = command.announce()
        names = sorted([*builtin, *self.commands])
        log.info(
            "worker %s on %s, server %s, tasks: %s",
            self.worker_id,
            self.device,
            self.client.server,
            ", ".join(names),
        )
        poll = Poll(self.shutdown, self.poll_interval, self.max_poll_interval, self.idle_exit)
        reached = False  # whether the server ever answered a claim as a lionsweep server does
        give_up = time.monotonic() + self.connect_timeout
        not_reached: str | None = None  # why it has not been reached yet (said once)
        first_claim = uuid.uuid4().hex
        while not self.shutdown.is_set():
            if self.max_trials is not None and self.trials_run >= self.max_trials:
                log.info("ran %d trials (--max-trials); exiting", self.trials_run)
                return 0
            retried = self.client.retried_s
            try:
                # Until the server is reached, one attempt per claim: the loop below retries,
                # with one line for the whole wait instead of one per attempt.
                assignment = self.client.claim(
                    self.worker_id,
                    self.device,
                    names,
                    defaults,
                    declared,
                    # one request id for every attempt: an answer lost on the way is no loss
                    request_id=None if reached else first_claim,
                    deadline=None if reached else 0.0,
                )
                reached = True
                # an outage the client's retries rode out is waiting for the server too: the
                # worker is idle only from the server's answer on
                if self.client.retried_s > retried:
                    poll.not_idle()
            except ServerUnreachable as exc:
                assignment = None
                poll.not_idle()  # waiting for the server is not idling
                if reached or exc.status is not None:
                    reached = True  # it answered (a 503: its database is away): wait for it
                    log.warning("claim failed, waiting for the server: %s", exc)
                else:
                    not_reached = self._not_reached(not_reached, exc.problem)
            except ApiError as exc:
                if exc.status_code in (401, 403):
                    log.error("the server refused this worker's token: %s", exc)
                    return EXIT_CONFIG
                assignment = None
                if reached:
                    log.warning("claim refused: %s", exc)
                else:  # something answers there, but not as a lionsweep server
                    not_reached = self._not_reached(
                        not_reached, f"it answers a claim with {exc}: is it a lionsweep server?"
                    )
            if assignment is None:
                if not reached and time.monotonic() >= give_up:
                    log.error(
                        "cannot reach the lionsweep server at %s within %gs (%s); is --server "
                        "right? (--connect-timeout waits longer)",
                        self.client.server,
                        self.connect_timeout,
                        not_reached,
                    )
                    return EXIT_CONFIG
                if reached and poll.idle():
                    log.info("nothing to run for %.0fs (--idle-exit); exiting", self.idle_exit)
                    return 0
                poll.sleep(None if reached else give_up - time.monotonic())
                continue
            self.run_assignment(assignment)
            self.trials_run += 1
            poll.reset()
        log.info("shutting down")
        return 0

    def _not_reached(self, said: str | None, why: str) -> str:
        """Say once that the server has not been reached yet and for how long it is tried;
        return ``why`` (the latest reason, for the last line)."""
        if said is None:
            log.warning(
                "cannot reach the lionsweep server at %s yet (%s); trying for %gs",
                self.client.server,
                why,
                self.connect_timeout,
            )
        return why

    def _trainer(
        self, task_name: Any, assignment: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable[[TrialSession], TrialResult], float]:
        """``(config, train, watchdog grace)`` for a claimed trial: a built-in task trained
        by the harness, or a command task's program (params checked first either way)."""
        from worker.harness import effective_config, run_trial

        command = self.commands.get(task_name)
        if command is None:
            task = tasks.get(task_name)
            trial_config = effective_config(task, assignment, self.device)
            return trial_config.as_dict(), partial(run_trial, task, trial_config), self.stop_grace
        from worker.command_runner import run_command

        task_params = command.task_params(assignment)
        grace = command.grace(self.stop_grace)
        config = {
            "task": command.name,
            "task_params": task_params,
            "command": list(command.argv),
            "cwd": str(command.cwd),
            "seed": int(assignment.get("seed", 0)),
            "device": self.device,
        }
        env_for = partial(
            commands.trial_env,
            command,
            assignment,
            task_params,
            server=self.client.server,
            token=self.token,
            worker_id=self.worker_id,
            device=self.device,
        )

        def train(session: TrialSession) -> TrialResult:
            return run_command(
                command,
                assignment,
                session,
                env_for=lambda path: env_for(trial_file=path),
                grace=grace,
            )

        # The runner stops its program itself (SIGTERM, then SIGKILL after ``grace``, up
        # to ``grace`` later when the server refused the trial); the watchdog is a backstop.
        return config, train, 2 * grace + 10.0

    def run_assignment(self, assignment: dict[str, Any]) -> None:
        """Train one claimed trial and finish it on the server (whatever happens), once."""
        trial_id = int(assignment["trial_id"])
        number = assignment.get("trial_number")
        task_name = (assignment.get("task") or {}).get("name")
        config: dict[str, Any] = {}
        started = time.perf_counter()
        session: TrialSession | None = None
        try:
            config, train, grace = self._trainer(task_name, assignment)
            if self.shutdown.is_set():
                state, value, metrics, reason, timings = "failed", None, {}, SHUTDOWN_REASON, {}
            else:
                session = TrialSession(self.client, assignment, self.shutdown, grace)
                with session:
                    result = session.run(partial(train, session))
                state, value, metrics, reason = (
                    result.state,
                    result.value,
                    result.metrics,
                    result.reason,
                )
                timings = result.timings
        except tasks.InvalidParams as exc:  # the submitter's error: no traceback
            log.warning("trial %s refused: %s", number, exc)
            state, value, metrics, timings, reason = "failed", None, {}, {}, str(exc)[:500]
        except Exception as exc:  # a broken task or config fails the trial, not the worker
            log.error("trial %s failed:\n%s", number, traceback.format_exc())
            state, value, metrics, timings = "failed", None, {}, {}
            reason = f"{type(exc).__name__}: {exc}"[:500]
        metrics = json_metrics(
            {**metrics, **{f"time_{k}": v for k, v in timings.items() if v is not None}}
        )
        deadline = SHUTDOWN_FINISH_DEADLINE if self.shutdown.is_set() else None
        if session is not None and session.reports.kept and not session.abandoned.is_set():
            try:  # the reports kept while the server was away go first
                session.reports.flush(deadline)
            except (ApiError, ServerUnreachable) as exc:
                log.warning("trial %s: reports kept for later not delivered: %s", number, exc)
        ended_elsewhere: str | None = None
        try:
            self.client.finish(
                trial_id,
                state,
                value,
                metrics,
                config,
                reason,
                deadline=deadline,
                handed_back=state == "failed" and reason == SHUTDOWN_REASON,
            )
        except ApiError as exc:
            if exc.status_code == 409 and task_name in self.commands:
                ended_elsewhere = str(exc.detail)  # e.g. the program finished it itself
            else:
                log.warning("trial %s: finish refused (%s)", number, exc)
        except ServerUnreachable as exc:  # only on shutdown: a finish is retried until delivered
            log.error("trial %s: finish not delivered (the server re-queues it): %s", number, exc)
        wall = time.perf_counter() - started
        if ended_elsewhere is not None:
            log.info(
                "trial %s (sweep %s, id %d) already ended on the server (%s); the worker's "
                "%s%s is not recorded; params=%s wall=%.2fs",
                number,
                assignment.get("sweep_id"),
                trial_id,
                ended_elsewhere,
                state,
                f" ({reason})" if reason else "",
                assignment.get("params"),
                wall,
            )
        else:
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
                wall,
                _fmt(timings.get("setup_s")),
                _fmt(timings.get("first_step_s")),
                _fmt(timings.get("first_step_overhead_s")),
                _fmt(timings.get("optimizer_share")),
            )
        if session is not None and session.abandoned.is_set():
            self._after_abandoning(session, number)

    def _after_abandoning(self, session: TrialSession, number: Any) -> None:
        """After the watchdog ended a trial: exit now on a signal, else wait (still
        answering signals) for the abandoned training to end before the next claim, so
        two trials never share the device."""
        training = session.training
        if training is not None and training.is_alive() and not self.shutdown.is_set():
            log.warning("trial %s: waiting for its abandoned training to end", number)
            while training.is_alive() and not self.shutdown.is_set():
                training.join(TICK)
        if self.shutdown.is_set() and training is not None and training.is_alive():
            log.info("exiting with trial %s's training still running", number)
            exit_now(0, self.hard_exit)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def run_agent(
    server: str,
    token: str | None,
    device: str,
    max_trials: int | None,
    idle_exit: float | None,
    task_modules: list[str],
    stop_grace: float = DEFAULT_STOP_GRACE,
    commands_path: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> int:
    """Run one agent in this process; return its exit code."""
    from worker.harness import resolve_device

    shutdown = threading.Event()
    stopping = f"stopping at the next step boundary (within {stop_grace:g}s)"
    with signals_set(shutdown, stopping, logger=log):
        try:
            names = tasks.load_all(task_modules)
            registered = _load_commands(commands_path, names)
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
                client,
                resolved,
                max_trials=max_trials,
                idle_exit=idle_exit,
                shutdown=shutdown,
                stop_grace=stop_grace,
                commands=registered,
                token=token,
                connect_timeout=connect_timeout,
            )
            return agent.run()


def _load_commands(path: str | None, task_names: list[str]) -> dict[str, CommandTask]:
    """The command tasks of the ``--commands`` file (none without one); raises
    :class:`CommandConfigError` for a bad file or a name a registered task has."""
    if path is None:
        return {}
    registered = commands.load(path)
    commands.check_clashes(registered, task_names, path)
    return registered


def agent_command(
    server: str,
    device: str,
    max_trials: int | None = None,
    idle_exit: float | None = None,
    task_modules: list[str] | None = None,
    stop_grace: float | None = None,
    commands_path: str | None = None,
    connect_timeout: float | None = None,
) -> list[str]:
    """The command line of one supervised agent (a token travels in its environment)."""
    cmd = lionsweep_command("worker", "--server", server, "--device", device)
    if connect_timeout is not None:
        cmd += ["--connect-timeout", str(connect_timeout)]
    if commands_path is not None:
        cmd += ["--commands", str(Path(commands_path).resolve())]
    if stop_grace is not None:
        cmd += ["--stop-grace", str(stop_grace)]
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
    stop_grace: float = DEFAULT_STOP_GRACE,
    commands_path: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> int:
    """Entry point of ``lionsweep worker``: one agent, or with ``gpus`` one per GPU."""
    _setup_logging()
    task_modules = list(task_modules or [])
    if not stop_grace >= 0 or not math.isfinite(stop_grace):
        log.error("--stop-grace must be a finite number of seconds ≥ 0, not %s", stop_grace)
        return EXIT_CONFIG
    if not connect_timeout >= 0:
        log.error("--connect-timeout must be a number of seconds ≥ 0, not %s", connect_timeout)
        return EXIT_CONFIG
    try:  # checked here too, so that a bad file is reported once, before any agent starts
        registered = commands.load(commands_path) if commands_path else {}
    except CommandConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    if not gpus:
        return run_agent(
            server,
            token,
            device,
            max_trials,
            idle_exit,
            task_modules,
            stop_grace,
            commands_path,
            connect_timeout,
        )
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
    command = agent_command(
        server,
        device,
        max_trials,
        idle_exit,
        task_modules,
        stop_grace,
        commands_path,
        connect_timeout,
    )
    # Room for the agent's own watchdog (a program's stop included) and its last finish.
    graces = [stop_grace, *(2 * c.grace(stop_grace) + 10.0 for c in registered.values())]
    env = {**os.environ, "LIONSWEEP_TOKEN": token} if token else None
    with Supervisor() as supervisor:
        for child in agent_children(command, slots, cpu=device == "cpu", env=env):
            # Room for the agent's own watchdog and its last finish before escalating.
            child.grace = max(child.grace, max(graces) + SHUTDOWN_FINISH_DEADLINE + 5.0)
            supervisor.start(child)
        return supervisor.run()
