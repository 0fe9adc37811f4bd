"""Run one trial of a command task: the program, its output, its stop, its outcome.

The program (see :mod:`worker.commands` for its registration and environment) starts in a
process group of its own (``start_new_session``), with no stdin, and dies with the worker
(Linux: the parent-death signal; kill -9 of the worker also kills it, and the server's
lease reaper re-queues the trial). The worker heartbeats for it the whole time.

**The line protocol.** A program that does not use the Python client reports by printing
lines on stdout that start with ``lionsweep:`` followed by one JSON object:

- ``lionsweep: {"step": 3, "value": 0.51}`` — an intermediate value of the objective at a
  step (an int ≥ 0), optionally with ``"metrics": {"acc": 0.9}`` (numbers). The worker
  relays it to the server at once and acts on the answer: a prune or stop stops the
  program.
- ``lionsweep: {"final": 0.42}`` — the trial's final value (optionally with ``"metrics"``);
  the trial completes with it when the program exits with code 0.

Values must be finite numbers. Any other key, a line that is not a JSON object, or a
non-finite value fails the trial with the reason (``malformed metric line 7: …``,
``non-finite value at step 3: NaN``) and stops the program. Every other stdout line, and
every stderr line, goes to the worker's log.

**Stopping.** When the server answers prune or stop, the worker is signalled (SIGTERM or
SIGINT), the task's ``timeout`` passes or a line breaks the protocol, the program's group
gets SIGTERM and, ``stop_grace`` seconds later, SIGKILL. When the server refuses the
trial's heartbeat (the trial ended there, e.g. finished by a Python program itself), the
program gets ``stop_grace`` seconds to exit on its own first. Processes the program leaves
behind when it exits are stopped the same way, before the trial is finished: on Linux every
process it started, even one that left its group (``setsid()``) or whose parent exited (the
worker adopts orphans, see :mod:`worker.proctree`, and reaps them); elsewhere those in its
process group.

**Outcome** (:func:`run_command`): pruned after a prune; failed with the server's reason
after a stop, ``worker shutdown`` after a signal (the server re-queues it), ``timed out
after N s``, the protocol error, ``exit code K: <last stderr lines>`` (``killed by
SIGSEGV: …`` for a signal), or ``program exited 0 without finishing trial N``; complete
with the final value after exit code 0. A trial the Python program finished itself keeps
that finish: the server refuses the worker's different one (409).
"""

from __future__ import annotations

import collections
import ctypes
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from protocol import PRUNE
from worker.commands import CommandTask
from worker.proctree import Tree, become_subreaper

if TYPE_CHECKING:
    from worker.harness import TrialResult

log = logging.getLogger("worker.command")

PREFIX = "lionsweep:"
#: Longest stdout/stderr line read at once; the rest of a longer one follows as a new line.
MAX_LINE = 65536
#: How many of the last stderr lines a failure reason quotes, and its length at most.
STDERR_LINES = 10
REASON_CHARS = 1000
_POLL = 0.05
_PR_SET_PDEATHSIG = 1
#: Seconds to wait for SIGKILLed leftovers to die.
_KILL_WAIT = 5.0


@dataclass(frozen=True)
class Report:
    """``lionsweep: {"step": …, "value": …}``: an intermediate value."""

    step: int
    value: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Final:
    """``lionsweep: {"final": …}``: the trial's final value."""

    value: float
    metrics: dict[str, float] = field(default_factory=dict)


class ProtocolError(ValueError):
    """A ``lionsweep:`` line that breaks the line protocol (the message says how)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(what: str, value: Any) -> float:
    if not _number(value):
        raise ProtocolError(f"{what} must be a number, not {json.dumps(value)}")
    if not math.isfinite(value):
        raise ProtocolError(f"non-finite {what}: {json.dumps(value)}")
    return float(value)


def _metrics(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ProtocolError("metrics must be an object of numbers")
    return {str(k): _finite(f"metric {k!r}", v) for k, v in value.items()}


def parse_line(line: str) -> Report | Final | None:
    """The protocol message on ``line``, or ``None`` for an ordinary line.

    Raises :class:`ProtocolError` for a ``lionsweep:`` line that breaks the protocol.
    """
    if not line.startswith(PREFIX):
        return None
    try:
        message = json.loads(line[len(PREFIX) :])
    except ValueError as exc:
        raise ProtocolError(f"not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise ProtocolError('expected an object like {"step": 3, "value": 0.5}')
    kind = "final" if "final" in message else "step"
    allowed = {"final", "metrics"} if kind == "final" else {"step", "value", "metrics"}
    unknown = sorted(set(message) - allowed)
    if unknown:
        raise ProtocolError(f"unknown key {unknown[0]!r} (a line holds {sorted(allowed)})")
    metrics = _metrics(message.get("metrics", {}))
    if kind == "final":
        value = message["final"]
        if _number(value) and not math.isfinite(value):
            raise ProtocolError(f"non-finite final value: {json.dumps(value)}")
        return Final(_finite("final value", value), metrics)
    step = message.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ProtocolError(f"step must be an int ≥ 0, not {json.dumps(step)}")
    if "value" not in message:
        raise ProtocolError("no value")
    value = message["value"]
    if _number(value) and not math.isfinite(value):
        raise ProtocolError(f"non-finite value at step {step}: {json.dumps(value)}")
    return Report(step, _finite("value", value), metrics)


class Session(Protocol):
    """What the runner needs from the agent's trial session (``worker.agent.TrialSession``)."""

    refused: str | None
    shutdown: threading.Event

    def report(self, step: int, value: float, metrics: dict[str, float]) -> str:
        """Deliver an intermediate value; return continue, prune or stop."""
        ...

    def interrupted(self) -> tuple[str, str | None] | None:
        """``(state, reason)`` to end the trial now, or ``None``."""
        ...


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child SIGKILL when the worker dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)

    return preexec


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; ``False`` when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member is no longer ours to signal
        return True
    return True


def _signal_all(tree: Tree, signum: int) -> None:
    """Send ``signum`` to the program's process group and to every process of its tree."""
    _signal_group(tree.root, signum)
    tree.signal(signum)


def _leftovers(tree: Tree) -> bool:
    """Whether a process of the program's tree (Linux) or group (elsewhere) still runs."""
    if tree.since is None:  # no /proc: only the process group can be seen
        return _signal_group(tree.root, 0)
    return tree.alive()


class CommandRun:
    """One program run for one trial: start, read, relay, stop, and the outcome."""

    def __init__(
        self,
        task: CommandTask,
        assignment: Mapping[str, Any],
        session: Session,
        env: Mapping[str, str],
        grace: float,
    ) -> None:
        self.task = task
        self.session = session
        self.env = dict(env)
        self.grace = grace
        self.trial_id = int(assignment["trial_id"])
        self.number = assignment.get("trial_number")
        self.final: Final | None = None
        self.steps = 0
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._outcome: tuple[str, str | None] | None = None  # set once we decide to stop it
        self._term_at: float | None = None
        self._kill_at: float | None = None
        self._problem: str | None = None  # a protocol error or undeliverable report
        self._pruned = False
        self._lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self._problem is None:
                self._problem = reason

    def _on_stdout(self, lineno: int, line: str) -> None:
        try:
            message = parse_line(line)
        except ProtocolError as exc:
            shown = line if len(line) <= 200 else line[:200] + "…"
            if str(exc).startswith("non-finite"):
                self._fail(f"{exc} (line {lineno}: {shown})")
            else:
                self._fail(f"malformed metric line {lineno}: {exc}: {shown}")
            log.warning("trial %s: %s", self.number, self._problem)
            return
        if message is None:
            log.info("trial %s | %s", self.number, line)
        elif isinstance(message, Final):
            self.final = message
        elif self._outcome is None and self._problem is None and not self._pruned:
            # After a prune answer nothing more is relayed: the program is being stopped.
            try:
                action = self.session.report(message.step, message.value, message.metrics)
            except Exception as exc:  # not delivered: the trial cannot go on
                self._fail(f"report of step {message.step} not delivered: {exc}")
                return
            self.steps += 1
            if action == PRUNE:
                self._pruned = True

    def _read(self, stream: IO[bytes], on_line: Callable[[int, str], None]) -> None:
        for lineno, raw in enumerate(iter(lambda: stream.readline(MAX_LINE), b""), 1):
            on_line(lineno, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _on_stderr(self, _lineno: int, line: str) -> None:
        if line.strip():
            self.stderr_tail.append(line)
        log.info("trial %s stderr | %s", self.number, line)

    # -- stopping -----------------------------------------------------------------------

    def _stop(self, state: str, reason: str | None, delay: float = 0.0) -> None:
        """Decide the outcome (the first decision wins) and when the SIGTERM goes out."""
        if self._outcome is None:
            self._outcome = (state, reason)
            log.info(
                "trial %s: stopping its program (%s)%s",
                self.number,
                reason or state,
                f" in {delay:g}s unless it exits" if delay else "",
            )
        at = time.monotonic() + delay
        if self._term_at is None or at < self._term_at:
            self._term_at = at

    def _check(self, started: float) -> None:
        """Look at everything that can end the trial; schedule the stop it asks for."""
        if self.session.shutdown.is_set():
            self._stop(*(self.session.interrupted() or ("failed", None)))
        elif self._outcome is not None:
            return
        elif self._problem is not None:
            self._stop("failed", self._problem)
        elif self._pruned:
            self._stop("pruned", None)
        elif self.session.refused is not None:
            self._stop("failed", self.session.refused, delay=self.grace)
        elif (interrupt := self.session.interrupted()) is not None:
            # A prune the heartbeat relays was answered to the program's own report (the
            # Python client): the program gets the grace period to end the trial itself.
            self._stop(*interrupt, delay=self.grace if interrupt[0] == "pruned" else 0.0)
        elif self.task.timeout is not None and time.monotonic() - started > self.task.timeout:
            self._stop("failed", f"timed out after {self.task.timeout:g} s")

    def _escalate(self, tree: Tree) -> None:
        """Send the scheduled SIGTERM, then SIGKILL once ``grace`` has passed since."""
        now = time.monotonic()
        if self._kill_at is None and self._term_at is not None and now >= self._term_at:
            _signal_all(tree, signal.SIGTERM)
            self._kill_at = now + self.grace
        elif self._kill_at is not None and now >= self._kill_at:
            log.warning(
                "trial %s: program still running %gs after SIGTERM; SIGKILL",
                self.number,
                self.grace,
            )
            _signal_all(tree, signal.SIGKILL)
            self._kill_at = math.inf

    def _stop_leftovers(self, tree: Tree) -> None:
        """Stop every process the program left running, in its group or not, and reap
        those the worker adopted: SIGTERM, then SIGKILL ``grace`` seconds later (at once
        when the program itself needed a SIGKILL)."""
        if not _leftovers(tree):
            return
        log.warning("trial %s: its program left processes behind; stopping them", self.number)
        if self._kill_at != math.inf:
            _signal_all(tree, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            while time.monotonic() < deadline and _leftovers(tree):
                time.sleep(_POLL)
        deadline = time.monotonic() + _KILL_WAIT
        while _leftovers(tree) and time.monotonic() < deadline:
            _signal_all(tree, signal.SIGKILL)  # again: one may have forked meanwhile
            time.sleep(_POLL)
        tree.reap()
        if _leftovers(tree):
            log.error("trial %s: processes it left behind survive SIGKILL", self.number)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> TrialResult:
        """Start the program, watch it until it exits, and return the trial's outcome."""
        from worker.harness import TrialResult

        become_subreaper()
        started = time.monotonic()
        proc = subprocess.Popen(
            list(self.task.argv),
            cwd=self.task.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        tree = Tree(proc.pid)
        log.info("trial %s: started %s (pid %d)", self.number, self.task.argv[0], proc.pid)
        readers = [
            threading.Thread(target=self._read, args=(stream, fn), daemon=True)
            for stream, fn in ((proc.stdout, self._on_stdout), (proc.stderr, self._on_stderr))
        ]
        for reader in readers:
            reader.start()
        while proc.poll() is None:
            self._check(started)
            self._escalate(tree)
            time.sleep(_POLL)
        self._stop_leftovers(tree)
        for reader in readers:
            reader.join(timeout=max(10.0, self.grace))
        wall = time.monotonic() - started
        state, value, reason, metrics = self._result(proc.returncode)
        return TrialResult(state, value, {**metrics, "time_wall_s": wall}, reason, self.steps)

    def _result(self, code: int) -> tuple[str, float | None, str | None, dict[str, float]]:
        """``(state, value, reason, metrics)`` of the trial, the program having exited."""
        if self._outcome is not None:
            state, reason = self._outcome
            return state, None, reason, {}
        if self._problem is not None:
            return "failed", None, self._problem, {}
        if code == 0 and self.final is not None:
            return "complete", self.final.value, None, dict(self.final.metrics)
        if code == 0:
            return "failed", None, f"program exited 0 without finishing trial {self.number}", {}
        if code < 0:
            try:
                what = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"killed by signal {-code}"
        else:
            what = f"exit code {code}"
        tail = " | ".join(self.stderr_tail)
        if len(tail) > REASON_CHARS:
            tail = "…" + tail[-REASON_CHARS:]
        return "failed", None, f"{what}: {tail}" if tail else what, {}


def run_command(
    task: CommandTask,
    assignment: Mapping[str, Any],
    session: Session,
    *,
    env_for: Callable[[Path], dict[str, str]],
    grace: float,
) -> TrialResult:
    """Run ``task``'s program for one claimed trial and return how the trial ended.

    The assignment is written to a trial file in a fresh temporary folder (removed after);
    ``env_for(trial_file)`` gives the program's environment.
    """
    with tempfile.TemporaryDirectory(prefix=f"lionsweep-trial-{assignment['trial_id']}-") as d:
        trial_file = Path(d) / "trial.json"
        trial_file.write_text(json.dumps(dict(assignment), indent=2))
        run = CommandRun(task, assignment, session, env_for(trial_file), grace)
        return run.run()
