"""A background thread that keeps sweeps' claim queues topped up, off the claims' path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("lionsweep.topups")


class TopUps:
    """Runs ``top_up(sweep_id)`` in one daemon thread for each sweep asked for; requests for a
    sweep already waiting its turn are merged into one."""

    def __init__(self, top_up: Callable[[int], None]) -> None:
        self._top_up = top_up
        self._wanted: dict[int, None] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, sweep_id: int) -> None:
        """Ask for ``sweep_id``'s queue to be topped up soon (returns at once)."""
        with self._cond:
            if self._closed:
                return
            self._wanted[sweep_id] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="lionsweep-topups", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the top-up in progress, if any."""
        with self._cond:
            self._closed = True
            self._wanted.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                sweep_id = next(iter(self._wanted))
                del self._wanted[sweep_id]
            try:
                self._top_up(sweep_id)
            except Exception:
                log.exception("topping up the claim queue of sweep %s failed", sweep_id)
