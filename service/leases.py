"""Leases and reaping: a running trial whose worker stopped sending signs of life is failed
and re-queued. Staleness is decided by the database clock alone (written and compared in SQL),
so neither a server's time zone nor its clock can make a live trial look dead."""

from __future__ import annotations

import logging

from optuna.trial import TrialState
from sqlalchemy import select

from service import optuna_tables as ot
from service.db import Database
from service.ledger import Ledger
from service.models import Lease, Sweep
from service.settings import Settings

log = logging.getLogger("lionsweep.leases")


class Leases:
    """Finds expired leases and hands each to the ledger (one transaction per trial)."""

    def __init__(self, db: Database, settings: Settings, ledger: Ledger) -> None:
        self.db = db
        self.settings = settings
        self.ledger = ledger

    def stale(self) -> list[tuple[int, int]]:
        """(trial id, sweep id) of running trials whose last sign of life is older than the
        grace period; running trials with no lease at all (left by an older version) get
        one that starts now."""
        grace = self.settings.heartbeat_grace_seconds
        self._adopt_unleased()
        with self.db.session() as s:
            rows = s.execute(
                select(Lease.trial_id, Lease.sweep_id)
                .join(ot.trials, ot.trials.c.trial_id == Lease.trial_id)
                .where(
                    ot.trials.c.state == TrialState.RUNNING,
                    Lease.heartbeat_at < self.db.clock() - grace,
                )
                .order_by(Lease.trial_id)
            ).all()
        return [(tid, sid) for tid, sid in rows]

    def _adopt_unleased(self) -> None:
        with self.db.session() as s:
            rows = s.execute(
                select(ot.trials.c.trial_id, Sweep.id)
                .join(Sweep, Sweep.study_id == ot.trials.c.study_id)
                .outerjoin(Lease, Lease.trial_id == ot.trials.c.trial_id)
                .where(ot.trials.c.state == TrialState.RUNNING, Lease.trial_id.is_(None))
            ).all()
        for tid, sweep_id in rows:
            try:
                self.ledger.lease_running(tid, sweep_id)
            except Exception:
                log.exception("reaper: could not lease running trial %s", tid)

    def reap(self) -> int:
        """Fail and re-queue every trial whose lease expired; returns how many.

        A failure on one trial or sweep is logged and the pass goes on with the others.
        """
        grace = self.settings.heartbeat_grace_seconds
        n = 0
        for tid, sweep_id in self.stale():
            try:
                n += self.ledger.expire(tid, sweep_id, grace)
            except Exception:
                log.exception("reaper: could not expire trial %s of sweep %s", tid, sweep_id)
        try:
            dropped = self.ledger.drop_abandoned_creations()
            if dropped:
                log.info("reaper: deleted %d half-created sweep(s)", dropped)
        except Exception:
            log.exception("reaper: could not delete half-created sweeps")
        return n
