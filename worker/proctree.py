"""The processes a command trial started, however far they strayed from its process group.

A program may leave its process group (``setsid()``, a daemon's double fork), and its
parent may exit before it. On Linux the worker makes itself a *child subreaper*
(:func:`become_subreaper`): an orphaned descendant is then re-parented to the worker rather
than to init, so everything a trial started is either a descendant of its program or of a
process the worker adopted after the program started. :class:`Tree` finds those processes
in ``/proc``, signals them, and reaps the adopted ones once they are dead (the worker is
their parent now, so nobody else will). Elsewhere (no ``/proc``) a tree is empty and the
runner falls back to the program's process group alone.

While a command trial runs, the worker starts no other process, so a process it adopted
after the program started belongs to the trial.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("worker.command")

_PR_SET_CHILD_SUBREAPER = 36
_PROC = Path("/proc")


@functools.cache
def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux 3.4+); whether it does."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning(
            "cannot adopt orphaned processes (prctl: %s); a program's processes that leave "
            "its process group may outlive its trial",
            os.strerror(ctypes.get_errno()),
        )
        return False
    return True


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/<pid>/stat`` shows it (``start`` in clock ticks since boot)."""

    pid: int
    ppid: int
    pgrp: int
    start: int
    zombie: bool


def _stat(pid: int) -> Proc | None:
    """The process ``pid``, or ``None`` when it is gone (or there is no ``/proc``)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    try:
        return Proc(pid, int(fields[1]), int(fields[2]), int(fields[19]), fields[0] in "ZX")
    except (IndexError, ValueError):
        return None


def processes() -> list[Proc]:
    """Every process in ``/proc`` (empty without one)."""
    if not _PROC.is_dir():
        return []
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (proc := _stat(int(entry.name))) is not None:
            found.append(proc)
    return found


def _signal(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class Tree:
    """The processes of one program run: ``root`` (the program, which its ``Popen`` reaps),
    its descendants, the orphans this process adopted since the root started and their
    descendants, and any member of the root's process group."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.owner = os.getpid()
        proc = _stat(root)
        self.since = proc.start if proc is not None else None

    def members(self) -> list[Proc]:
        """The tree's processes now, zombies included, the root excluded."""
        if self.since is None:
            return []
        procs = processes()
        children: dict[int, list[Proc]] = {}
        for proc in procs:
            children.setdefault(proc.ppid, []).append(proc)
        adopted = [
            p for p in children.get(self.owner, []) if p.pid != self.root and p.start >= self.since
        ]
        group = [p for p in procs if p.pgrp == self.root]
        found: dict[int, Proc] = {}
        todo = [*children.get(self.root, []), *adopted, *group]
        while todo:
            proc = todo.pop()
            if proc.pid not in found:
                found[proc.pid] = proc
                todo.extend(children.get(proc.pid, []))
        found.pop(self.root, None)
        found.pop(self.owner, None)
        return list(found.values())

    def alive(self) -> bool:
        """Whether a member other than the root is running (not a zombie); reaps the dead."""
        members = self.members()
        self._reap(members)
        return any(not p.zombie for p in members)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every running member but the root; reap the dead."""
        members = self.members()
        _signal((p.pid for p in members if not p.zombie), signum)
        self._reap(members)

    def reap(self) -> None:
        """Collect the exit status of the dead members this process is the parent of."""
        self._reap(self.members())

    def _reap(self, members: Iterable[Proc]) -> None:
        for proc in members:
            if proc.zombie and proc.ppid == self.owner and proc.pid != self.root:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)
