"""The worker protocol's shared facts: what the server answers, how a trial ends, how metrics
travel. Imported by the server (``service``), the worker agent (``worker``) and the Python
client (``lionsweep``); it imports nothing but the standard library, so importing it pulls in
neither the server's dependencies nor torch.
"""

from __future__ import annotations

import math
from typing import Any

#: Where a server listens unless told otherwise, and so where clients look for one.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_SERVER = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
#: How often (seconds) a worker renews its trial's lease unless the server says otherwise.
DEFAULT_HEARTBEAT_INTERVAL = 10.0

#: What the server answers a report or heartbeat: go on, stop as pruned, or stop (a cancel).
CONTINUE, PRUNE, STOP = "continue", "prune", "stop"
ACTIONS = (CONTINUE, PRUNE, STOP)

#: The reason shown for a trial its worker handed back on an interrupt (Ctrl-C, SIGTERM). What
#: makes it a hand-back is the finish's ``handed_back`` field, never this text.
SHUTDOWN_REASON = "worker shutdown"
#: The reason a worker gives for a trial it stopped because the server said ``stop``.
STOPPED_REASON = "stopped by server"
#: How long an interrupted worker keeps trying to deliver its trial's end (seconds).
SHUTDOWN_FINISH_DEADLINE = 20.0

#: How many times one config may be handed back without using a retry: a hand-back past this
#: counts as an ordinary failure, so a program that is interrupted on every run still ends.
HAND_BACK_LIMIT = 3


def server_url_problem(server: object) -> str | None:
    """What is wrong with ``server`` as a lionsweep server's base URL (it must be an http(s)
    URL), or None: ``must be an http(s) URL such as …, not '…'``."""
    if isinstance(server, str) and server.startswith(("http://", "https://")):
        return None
    missing = isinstance(server, str) and "://" not in server
    return f"must be an http(s) URL such as {DEFAULT_SERVER}, not {server!r}" + (
        " (it is missing the http://)" if missing else ""
    )


def json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` as JSON values: tensors and NumPy scalars as Python numbers, NaN and ±inf
    as None (JSON has no NaN), keys as strings."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[str(key)] = value
    return out
