"""Follow rungs' release: when the last rung of a ladder completes, its pending follow rungs
are added (each box centred on the joint fit's prediction at its point) in the background,
after the completing transaction commits; the reaper's periodic pass (and its first pass, as
the server starts) adds any that a crash or an error left waiting."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from service.db import Database
from service.errors import NotFound
from service.ladder_ledger import LadderLedger
from service.models import Ladder, Sweep

log = logging.getLogger("lionsweep.ladders")


class Follower:
    """Adds ladders' follow rungs when they are due (safe to share between threads)."""

    def __init__(self, db: Database, ledger: LadderLedger) -> None:
        self.db = db
        self.ledger = ledger
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lionsweep-follow")

    def sweep_completed(self, sweep_id: int) -> None:
        """The sweep ledger's completion hook: a completed rung of a ladder queues the
        ladder's release (a no-op unless follow rungs are pending and every rung is done)."""
        with self.db.session() as s:
            found = s.execute(
                select(Sweep.ladder_id, Sweep.ladder_role).where(Sweep.id == sweep_id)
            ).first()
        if found is not None and found[0] is not None and found[1] == "rung":
            self._pool.submit(self.release, found[0])

    def release(self, ladder_id: int) -> int:
        """Add the ladder's follow rungs if they are due; how many were added (0 when none
        were due, the ladder is gone, or adding them failed: logged, tried again later)."""
        try:
            n = self.ledger.release(ladder_id)
        except NotFound:
            return 0
        except (OperationalError, InterfaceError):
            return 0  # the database is away: the reaper says so, and the next pass retries
        except Exception:
            log.exception("adding the follow rungs of ladder %d failed", ladder_id)
            return 0
        if n:
            log.info("ladder %d: added %d follow rung(s)", ladder_id, n)
        return n

    def release_due(self) -> int:
        """Add the follow rungs of every ladder where they are due; returns how many."""
        with self.db.session() as s:
            rows = s.execute(select(Ladder.id, Ladder.spec)).all()
        n = 0
        for ladder_id, spec in rows:
            follow = (spec.get("ladder") or {}).get("follow") or {}
            if follow.get("rungs") and not follow.get("held"):
                n += self.release(ladder_id)
        return n

    def close(self) -> None:
        """Finish the release under way and drop the queued ones (the next start's pass
        catches up)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
