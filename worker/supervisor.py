"""Finding GPUs and supervising child processes.

The one implementation behind ``lionsweep worker --gpus`` (one agent per GPU) and
``lionsweep up`` (the server and its local agents): start the children, forward SIGINT and
SIGTERM to them, restart crashed agents with backoff, report every exit, and stop them with
a grace period before SIGTERM and SIGKILL. It needs neither torch nor the server's packages,
so a GPU node runs it with the worker-only install.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worker import EXIT_CONFIG
from worker.runtime import stop_signals

log = logging.getLogger("worker.supervisor")

#: Env var with an agent's slot under a supervisor (the ``N`` of its id ``hostname-pid-N``).
WORKER_INDEX_ENV = "LIONSWEEP_WORKER_INDEX"
#: Seconds a child may take to stop after the forwarded signal, before SIGTERM and SIGKILL.
STOP_GRACE = 30.0

Report = Callable[[int, str], None]


def lionsweep_command(*args: str) -> list[str]:
    """The command line of ``lionsweep *args`` run by this interpreter (a child's command)."""
    return [sys.executable, "-m", "lionsweep", *args]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, each as the ``CUDA_VISIBLE_DEVICES`` value of one child.

    ``CUDA_VISIBLE_DEVICES`` when it is set (its entries up to the first empty or ``-1`` one,
    which is where CUDA stops reading), else one index per GPU that ``nvidia-smi -L`` lists
    or, without ``nvidia-smi`` (a container without the driver's utilities), per
    ``/dev/nvidiaN`` device; ``[]`` without any. Torch is not imported: ``up`` runs this in
    the parent process.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry == "-1":
                break
            entries.append(entry)
        return entries
    smi = shutil.which("nvidia-smi")
    if smi is None:
        count = sum(1 for dev in Path("/dev").glob("nvidia*") if dev.name[6:].isdigit())
    else:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)]


def gpu_slots(gpus: str) -> list[str]:
    """``"all"`` → :func:`visible_gpus`; ``"0,2"`` → ``["0", "2"]``; ValueError otherwise."""
    if gpus.strip() == "all":
        return visible_gpus()
    slots = [g.strip() for g in gpus.split(",") if g.strip()]
    bad = [g for g in slots if not g.isdigit()]
    if bad or len(set(slots)) != len(slots):
        raise ValueError(f"--gpus must be 'all' or distinct GPU indices like 0,1 (got {gpus!r})")
    return slots


@dataclass(eq=False)
class Child:
    """One supervised process: ``kind``, ``index`` and ``where`` name it in reports.

    ``restart``: a crash (any exit but 0 and ``EXIT_CONFIG``) restarts it after a backoff;
    without it, any exit ends it. ``log_path``: where its output goes (else inherited).
    """

    kind: str
    where: str
    command: list[str]
    env: dict[str, str]
    index: int | None = None
    restart: bool = True
    grace: float = STOP_GRACE
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    returncode: int | None = None
    done: bool = False
    failures: int = 0
    started_at: float = 0.0
    restart_at: float | None = None

    @property
    def name(self) -> str:
        """``agent 1``, or ``server`` for an unnumbered child."""
        return self.kind if self.index is None else f"{self.kind} {self.index}"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.proc is not None and self.proc.poll() is None


def agent_children(
    command: list[str],
    slots: Sequence[str | None],
    *,
    cpu: bool,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> list[Child]:
    """One agent per slot, running ``command``.

    A GPU slot becomes the agent's only visible GPU; a ``None`` slot is a CPU agent. With
    ``cpu``, the agents share the cores: each gets ``OMP_NUM_THREADS`` = cores / agents
    unless the environment already sets it. ``log_dir``: one ``worker-N.log`` per agent.
    """
    base = dict(os.environ if env is None else env)
    threads = max(1, (os.cpu_count() or 1) // max(1, len(slots)))
    children = []
    for index, slot in enumerate(slots):
        child_env = {**base, WORKER_INDEX_ENV: str(index)}
        if slot is not None:
            child_env["CUDA_VISIBLE_DEVICES"] = slot
        if cpu:
            child_env.setdefault("OMP_NUM_THREADS", str(threads))
        children.append(
            Child(
                "agent",
                "cpu" if slot is None else f"GPU {slot}",
                command,
                child_env,
                index=index,
                log_path=None if log_dir is None else log_dir / f"worker-{index}.log",
            )
        )
    return children


def _log_report(level: int, message: str) -> None:
    log.log(level, "%s", message)


class Supervisor:
    """Starts children, restarts crashed ones, forwards stop signals, stops them all.

    Use it as a context manager: inside, SIGINT and SIGTERM set :attr:`stopping` (and are
    forwarded to the children when they are stopped); on exit every child still running is
    stopped. ``report(level, message)`` receives every start and exit (default: logging).
    """

    def __init__(
        self, *, report: Report | None = None, max_backoff: float = 60.0, interval: float = 0.2
    ) -> None:
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.signum: int | None = None
        self.max_backoff = max_backoff
        self.interval = interval
        self._report = report or _log_report
        self._signals = stop_signals(self._on_signal)

    def __enter__(self) -> Supervisor:
        self._signals.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._signals.__exit__(None, None, None)

    def _on_signal(self, signum: int) -> None:
        self.signum = signum
        self.stopping.set()

    def start(self, child: Child) -> Child:
        """Start ``child`` and supervise it."""
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        out = None if child.log_path is None else open(child.log_path, "ab")  # noqa: SIM115
        try:
            # A session of its own: a terminal's Ctrl-C reaches the children only through
            # this supervisor, once, and in the order it stops them.
            child.proc = subprocess.Popen(
                child.command,
                env=child.env,
                stdout=out,
                stderr=None if out is None else subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        child.started_at = time.monotonic()
        self._report(logging.INFO, f"started {child.name} (pid {child.proc.pid}) on {child.where}")

    def poll(self) -> None:
        """Note the children that exited (report, schedule restarts); restart those due."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                child.returncode = child.proc.returncode
                child.proc = None
                self._exited(child, now)
            if child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                self._spawn(child)

    def _exited(self, child: Child, now: float) -> None:
        code = child.returncode
        who = f"{child.kind} on {child.where}"
        see = "" if child.log_path is None else f" (log: {child.log_path})"
        if code == 0:
            child.done = True
            self._report(logging.INFO, f"{who} exited cleanly")
        elif not child.restart:
            child.done = True
            self._report(logging.ERROR, f"{who} exited with {code}{see}")
        elif code == EXIT_CONFIG:
            child.done = True
            self._report(logging.ERROR, f"{who} cannot run as configured; not restarting{see}")
        else:
            if now - child.started_at > self.max_backoff:
                child.failures = 0  # it ran for a while: start the backoff over
            delay = min(self.max_backoff, 2.0**child.failures)
            child.failures += 1
            child.restart_at = now + delay
            self._report(
                logging.WARNING, f"{who} exited with {code}; restarting in {delay:.0f}s{see}"
            )

    def run(self, tick: Callable[[], None] | None = None) -> int:
        """Supervise until a stop signal or until every child is done; return the exit code.

        ``tick`` runs once per round (every ``interval`` seconds). The code is
        ``EXIT_CONFIG`` when an agent could not run as configured, else 0.
        """
        while not self.stopping.is_set() and not all(c.done for c in self.children):
            self.poll()
            if tick is not None:
                tick()
            self.stopping.wait(self.interval)
        if self.signum is not None:
            self._report(logging.INFO, f"received {signal.Signals(self.signum).name}; stopping")
        config = [c for c in self.children if c.restart and c.returncode == EXIT_CONFIG]
        return EXIT_CONFIG if config else 0

    def stop(self, children: Iterable[Child] | None = None) -> None:
        """Stop children (default: all): the received signal (else SIGINT) to each, then
        SIGTERM after its grace period and SIGKILL 5 s later for those still running."""
        targets = list(self.children if children is None else children)
        for child in targets:
            child.restart_at = None
        running = [c for c in targets if c.running]
        forwarded = self.signum or signal.SIGINT
        for child in running:
            child.proc.send_signal(forwarded)
        started = time.monotonic()
        for child in running:
            proc = child.proc
            for escalation, deadline in (
                (None, started + child.grace),
                (signal.SIGTERM, None),
                (signal.SIGKILL, None),
            ):
                if escalation is not None:
                    self._report(
                        logging.WARNING,
                        f"{child.kind} on {child.where} did not stop in time; "
                        f"sending {escalation.name}",
                    )
                    proc.send_signal(escalation)
                    deadline = time.monotonic() + 5.0
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    continue
            child.returncode = proc.returncode
            child.proc = None
            child.done = True
