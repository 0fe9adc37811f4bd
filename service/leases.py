"""Leases and reaping: a running trial whose worker stopped sending signs of life is failed
and re-queued. Staleness is decided by the database clock alone (written and compared in SQL),
so neither a server's time zone nor its clock can make a live trial look dead.

Downtime is not held against workers. Every server records, every :func:`liveness_interval`,
that it is alive and reaches the database (``lionsweep_liveness.alive_at``). A gap in that
record longer than :func:`downtime_allowance` is time no server was serving (all were down,
or none could reach the database): its excess is given back to every lease before any lease
is judged, so a worker that kept running through an outage keeps its trial, while one that
died stays silent afterwards and is reaped one grace later as usual.

Each server runs one :class:`Reaper`, the background thread that does both on schedule.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from optuna.trial import TrialState
from sqlalchemy import case, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from service import optuna_tables as ot
from service.db import Database
from service.ledger import Ledger
from service.models import Lease, Liveness, Sweep
from service.settings import Settings

log = logging.getLogger("lionsweep.leases")

LIVENESS_ROW = 1
"""The id of the one ``lionsweep_liveness`` row all servers share."""
BEATS_PER_ALLOWANCE = 3
"""A liveness record may be this many intervals late before the excess counts as downtime."""


def liveness_interval(settings: Settings) -> float:
    """How often a server records that it is alive: every reaper interval, or more often when
    the grace needs it (at most a sixth of the grace left after one heartbeat interval)."""
    spare = settings.heartbeat_grace_seconds - settings.heartbeat_interval_seconds
    return min(settings.reaper_interval_seconds, spare / (2 * BEATS_PER_ALLOWANCE))


def downtime_allowance(settings: Settings) -> float:
    """How late a liveness record may be and still count as ordinary operation (a busy server
    or database); the part of a gap beyond it is downtime, given back to every lease.

    Three liveness intervals: beats run every interval, so a gap this long means at least two
    passes in a row did not happen. It is at most half the grace left after one heartbeat
    interval, so even an outage of any length ages a live lease by at most this much and a
    worker whose last heartbeat came just before the outage still has half that spare time
    to be heard from afterwards. Giving back only the excess (not the whole gap) keeps leases
    ageing by at least the allowance per gap, so a server whose passes all run late still
    reaps dead workers.
    """
    return BEATS_PER_ALLOWANCE * liveness_interval(settings)


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
                .where(
                    ot.trials.c.state == TrialState.RUNNING,
                    Lease.trial_id.is_(None),
                    ~ot.queued_clause(),  # asked ahead of claims: nobody holds it yet
                )
            ).all()
        for tid, sweep_id in rows:
            try:
                self.ledger.lease_running(tid, sweep_id)
            except Exception:
                log.exception("reaper: could not lease running trial %s", tid)

    def forgive_downtime(self) -> float:
        """Record that this server is alive and reaches the database; when no server had done
        so for longer than the allowance, first give the excess back to every lease. Returns
        the seconds given back (0.0 when none).

        One transaction under the liveness row's lock (``FOR UPDATE`` on PostgreSQL, the write
        lock on SQLite), so servers sharing a database give each gap back once. A lease renewed
        during the gap is not pushed past now. Raises when the database cannot be reached.
        """
        allowance = downtime_allowance(self.settings)
        with self.db.transaction() as tx:
            alive_at = self._locked_alive_at(tx)
            now = float(tx.scalar(select(self.db.clock())))
            gap = now - alive_at
            forgiven = gap - allowance if gap > allowance else 0.0
            if forgiven > 0:
                extended = Lease.heartbeat_at + literal(forgiven)
                tx.execute(
                    update(Lease).values(
                        heartbeat_at=case((extended > literal(now), literal(now)), else_=extended)
                    )
                )
            tx.execute(update(Liveness).where(Liveness.id == LIVENESS_ROW).values(alive_at=now))
        if forgiven > 0:
            log.warning(
                "downtime: no server was alive and reaching the database for %.1f s; every "
                "lease was given %.1f s back",
                gap,
                forgiven,
            )
        return forgiven

    def _locked_alive_at(self, tx: Session) -> float:
        """The last liveness record, its row locked; a missing row is made first. A database
        that never had one (new, or last served by a version without it) takes the freshest
        lease's heartbeat as the last moment a server was surely alive."""
        locked = select(Liveness.alive_at).where(Liveness.id == LIVENESS_ROW).with_for_update()
        alive_at = tx.scalar(locked)
        if alive_at is not None:
            return alive_at
        start = func.coalesce(
            select(func.max(Lease.heartbeat_at)).scalar_subquery(), self.db.clock()
        )
        insert = sqlite_insert if self.db.is_sqlite else postgresql_insert
        tx.execute(
            insert(Liveness)
            .from_select(["id", "alive_at"], select(literal(LIVENESS_ROW), start))
            .on_conflict_do_nothing(index_elements=["id"])
        )
        return tx.scalar(locked)

    def reap(self) -> int:
        """Give back any downtime, then fail and re-queue every trial whose lease expired;
        returns how many.

        Nothing is reaped while the downtime cannot be accounted for (the database is
        unreachable: the error is raised). A long pass records liveness again every liveness
        interval, so time it spends (or a pause of the whole process) is never taken for
        missed heartbeats. A failure on one trial or sweep is logged and the pass goes on.
        """
        self.forgive_downtime()
        beat_at = time.monotonic()
        interval = liveness_interval(self.settings)
        grace = self.settings.heartbeat_grace_seconds
        n = 0
        for tid, sweep_id in self.stale():
            if time.monotonic() - beat_at > interval:
                self.forgive_downtime()
                beat_at = time.monotonic()
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


class Reaper:
    """A background thread that records every liveness interval that this server is alive
    (giving any downtime back to the leases) and fails stale RUNNING trials every reaper
    interval."""

    def __init__(
        self,
        leases: Leases,
        settings: Settings,
        periodic: Callable[[], object] | None = None,
    ) -> None:
        self.leases = leases
        self.interval = settings.reaper_interval_seconds
        self.beat = liveness_interval(settings)
        self.periodic = periodic
        """Also run on the thread's first pass and every reaper interval (catching up on work
        a crash left undone, such as due follow rungs)."""
        self._unreachable = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lionsweep-reaper", daemon=True)

    def start(self) -> None:
        """Give back the downtime before this server started (before it serves anything),
        then keep going in the background."""
        self._pass(reap=False)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self._catch_up()
        reap_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, min(self.beat, reap_at - time.monotonic()))):
            due = time.monotonic() >= reap_at
            if due:
                reap_at = time.monotonic() + self.interval
            self._pass(reap=due)
            if due:
                self._catch_up()

    def _catch_up(self) -> None:
        """Run ``periodic``, unless the database is unreachable; its errors are logged."""
        if self.periodic is None or self._unreachable:
            return
        try:
            self.periodic()
        except (OperationalError, InterfaceError):
            pass  # the next pass reports the outage
        except Exception:
            log.exception("reaper: periodic pass failed")

    def _pass(self, reap: bool) -> None:
        """Record liveness (and reap when ``reap``); a database outage is logged once."""
        try:
            n = self.leases.reap() if reap else self.leases.forgive_downtime()
        except (OperationalError, InterfaceError) as e:
            if not self._unreachable:
                log.warning(
                    "reaper: the database is unreachable (%s); no lease is judged until it is "
                    "back, and the time until then is given back to every lease",
                    str(e).splitlines()[0] if str(e) else type(e).__name__,
                )
            self._unreachable = True
            return
        except Exception:
            log.exception("reaper pass failed")
            return
        if self._unreachable:
            log.warning("reaper: the database is reachable again")
            self._unreachable = False
        if reap and n:
            log.info("reaper: failed %d stale trial(s)", n)
