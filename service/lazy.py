"""Heavy imports the server needs only to compute an answer, made on first use: every server
start (and every command that imports the server) would otherwise pay for them."""

from __future__ import annotations

from types import ModuleType


def scipy_stats() -> ModuleType:
    """``scipy.stats`` (about half a second to import)."""
    from scipy import stats

    return stats
