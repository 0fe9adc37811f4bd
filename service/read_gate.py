"""Reads wait their turn in the event loop, so they never take the threads that serve workers.

Every synchronous route runs on a shared thread pool. Hundreds of dashboard or script readers
would fill it and leave claims, reports and finishes queued behind them. This ASGI middleware
lets at most ``limit`` reads run at once; the others wait in the event loop, holding no
thread, while the worker protocol (``/api/trials/…``), health checks and static files never
wait.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

READ_METHODS = frozenset({"GET", "HEAD"})
NEVER_GATED = ("/api/trials/", "/healthz", "/static/")
"""The worker protocol, health checks, and the dashboard's static files (no database work)."""
HEAVY = ("/best", "/scaling-rule", "/importances", "/arms", "/rule")
"""Ends of the paths of answers computed from every trial of a sweep or ladder: they wait for
slots of their own, so a list or a sweep's page never queues behind them."""


class ReadGate:
    """ASGI middleware bounding concurrent read requests to ``limit``, and apart from them
    the heavy reads (:data:`HEAVY`) to ``limit`` too."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._slots: asyncio.Semaphore | None = None
        self._heavy: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, after a free read slot when it is a read."""
        gated = (
            scope["type"] == "http"
            and scope["method"] in READ_METHODS
            and not scope["path"].startswith(NEVER_GATED)
        )
        if not gated:
            await self.app(scope, receive, send)
            return
        if self._slots is None:  # made in the server's event loop, on first use
            self._slots = asyncio.Semaphore(self.limit)
            self._heavy = asyncio.Semaphore(self.limit)
        lane = self._heavy if scope["path"].endswith(HEAVY) else self._slots
        async with lane:
            await self.app(scope, receive, send)
