"""Read views: sweeps and trials in the shapes the API answers with."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from optuna.trial import FrozenTrial
from sqlalchemy import func, select

from service import optuna_tables as ot
from service import schemas
from service.analysis import leader, reevaluation_out
from service.catalog import Catalog, SweepInfo
from service.db import Database
from service.errors import NotFound
from service.models import Sweep, Worker

log = logging.getLogger("lionsweep.views")

PAGE_CACHE_SECONDS = 1.0
PAGE_CACHE_ENTRIES = 256


def counts_out(counts: ot.Counts) -> schemas.Counts:
    """A study's counts as the API shows them: handed-back trials apart from the failed."""
    by_state = dict(counts.by_state)
    by_state["failed"] -= counts.handed_back
    return schemas.Counts(**by_state, handed_back=counts.handed_back, imported=counts.imported)


def import_source(imported: object) -> str | None:
    """Where an imported trial came from, in words (``runs.csv row 4 (run-17)``)."""
    if not isinstance(imported, dict):
        return None
    text = f"{imported.get('source') or 'import'} row {imported.get('row')}"
    return text + (f" ({imported['name']})" if imported.get("name") else "")


def aware(dt: datetime | None) -> datetime | None:
    """A database time as an aware UTC datetime (SQLite returns naive ones)."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


class Views:
    """Sweeps and trials as the API shows them."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog
        self._lock = threading.Lock()
        self._pages: dict[tuple[int, int, str | None], tuple[float, int, schemas.SweepPage]] = {}

    def row(self, sweep_id: int) -> Sweep:
        """The sweep's row (404 if unknown)."""
        with self.db.session() as s:
            row = s.get(Sweep, sweep_id)
        if row is None or row.status == "creating":
            raise NotFound(f"sweep {sweep_id} not found")
        return row

    def announced_tasks(self) -> set[str]:
        """Every task some worker has announced."""
        with self.db.session() as s:
            return {t for tasks in s.scalars(select(Worker.tasks)) for t in tasks}

    def sweep(self, row: Sweep, announced: set[str] | None = None) -> schemas.SweepOut:
        """The API view of a sweep: counts, progress, best so far, ETA."""
        info = self.catalog.info(row.id)
        with self.db.session() as s:
            counts = ot.counts(s, row.study_id)
        best = self.leader(info, counts)
        finished = counts.finished
        try:
            attrs = self.db.storage.get_study_system_attrs(row.study_id)
        except KeyError:
            raise NotFound(f"sweep {row.id} not found") from None
        reevaluation = reevaluation_out(info, attrs, counts)
        done = finished + counts.reeval_finished
        planned = row.n_trials + reevaluation.trials
        eta = None
        if row.status == "running" and done and counts.first_start and counts.last_complete:
            elapsed = (counts.last_complete - counts.first_start).total_seconds()
            if elapsed > 0:
                eta = max(planned - done, 0) * elapsed / done
        if announced is None:
            announced = self.announced_tasks()
        is_announced = row.task_name in announced
        warns = [] if is_announced else [f"no worker has announced task {row.task_name!r} yet"]
        activity = row.status
        if row.status == "running" and not is_announced and not counts.by_state["running"]:
            activity = f"waiting for a worker with task {row.task_name!r}"
        return schemas.SweepOut(
            id=row.id,
            name=row.name,
            status=row.status,
            task=info.spec.task,
            spec=row.spec,
            n_trials=row.n_trials,
            counts=counts_out(counts),
            finished=finished,
            progress=1.0 if row.status == "complete" else min(done / planned, 1.0),
            best=best,
            created_at=aware(row.created_at),
            updated_at=aware(row.updated_at),
            study_name=row.study_name,
            task_announced=is_announced,
            activity=activity,
            warnings=warns,
            eta_seconds=eta,
            reevaluation=reevaluation,
            ladder_id=row.ladder_id,
            ladder_role=row.ladder_role,
        )

    def leader(self, info: SweepInfo, counts: ot.Counts) -> schemas.BestSoFar | None:
        """The config /best ranks first (:func:`service.analysis.leader`), or None.

        Kept per sweep while its complete trials stay the same (their count and the last
        finish), so a list of many sweeps reads each sweep's trials only after it changed;
        computed once however many readers ask meanwhile.
        """
        if not counts.by_state["complete"]:
            return None
        stamp = (info.study_id, counts.by_state["complete"], counts.last_complete, counts.imported)
        return self.catalog.answers.get(("leader", info.id), stamp, lambda: self._leader(info))

    def _leader(self, info: SweepInfo) -> schemas.BestSoFar | None:
        try:
            done = self.catalog.trials(info)
        except NotFound:  # deleted meanwhile
            return None
        return leader(info, done)

    def page(self, offset: int, limit: int, status: str | None) -> schemas.SweepPage:
        """A page of sweeps, newest first.

        Pages are kept for up to ``PAGE_CACHE_SECONDS`` while this process changes no sweep,
        so many readers polling the list cost one computation a second; a change made by
        another server process shows within that time.
        """
        key = (offset, limit, status)
        generation = self.catalog.generation
        with self._lock:
            hit = self._pages.get(key)
        fresh = hit is not None and time.monotonic() - hit[0] < PAGE_CACHE_SECONDS
        if fresh and hit[1] == generation:
            return hit[2]
        page = self._page(offset, limit, status)
        with self._lock:
            if len(self._pages) >= PAGE_CACHE_ENTRIES:
                self._pages.clear()
            self._pages[key] = (time.monotonic(), generation, page)
        return page

    def _page(self, offset: int, limit: int, status: str | None) -> schemas.SweepPage:
        cond = [Sweep.status != "creating"]
        if status:
            cond.append(Sweep.status == status)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(Sweep).where(*cond))
            rows = s.scalars(
                select(Sweep).where(*cond).order_by(Sweep.id.desc()).offset(offset).limit(limit)
            ).all()
        announced = self.announced_tasks()
        return schemas.SweepPage(
            items=[self._sweep_or_placeholder(r, announced) for r in rows],
            total=total or 0,
            offset=offset,
            limit=limit,
        )

    def _sweep_or_placeholder(self, row: Sweep, announced: set[str]) -> schemas.SweepOut:
        """The sweep's view, or, if it cannot be built, its row with a warning saying so (one
        unreadable sweep must not take the list down for everyone)."""
        try:
            return self.sweep(row, announced)
        except Exception as e:
            log.exception("sweep %s cannot be shown", row.id)
            return schemas.SweepOut(
                id=row.id,
                name=row.name,
                status=row.status,
                task=schemas.TaskRef.model_construct(name=row.task_name, params={}),
                spec=row.spec if isinstance(row.spec, dict) else {},
                n_trials=row.n_trials,
                counts=schemas.Counts(**dict.fromkeys(schemas.STATES, 0)),
                finished=0,
                progress=0.0,
                best=None,
                created_at=aware(row.created_at),
                updated_at=aware(row.updated_at),
                study_name=row.study_name or "",
                task_announced=row.task_name in announced,
                activity=row.status,
                warnings=[f"this sweep cannot be read ({type(e).__name__}); see the server log"],
                eta_seconds=None,
            )

    def trial(self, info: SweepInfo, t: FrozenTrial) -> schemas.TrialOut:
        """The API view of one trial."""
        start, end = t.datetime_start, t.datetime_complete
        imported = t.system_attrs.get(ot.IMPORTED)
        return schemas.TrialOut(
            number=t.number,
            trial_id=t._trial_id,
            state=ot.state_name(t),
            value=t.value,
            params=info.params(t),
            intermediate_values={str(k): v for k, v in sorted(t.intermediate_values.items())},
            metrics=t.user_attrs.get("metrics") or {},
            config=t.user_attrs.get("config") or {},
            reason=t.user_attrs.get("reason"),
            worker_id=t.user_attrs.get("worker_id"),
            datetime_start=start,
            datetime_complete=end,
            duration_seconds=(end - start).total_seconds()
            if start and end and imported is None
            else None,
            retry_of=t.system_attrs.get(ot.RETRY_OF),
            reevaluation_of=t.system_attrs.get(ot.REEVAL_OF),
            handed_back=ot.STATE_NAMES[t.state] == "failed"
            and any(k in t.system_attrs for k in (ot.HANDED_BACK, ot.STOPPED_BY_CANCEL)),
            imported=imported is not None,
            import_source=import_source(imported),
            diverged=bool(t.system_attrs.get(ot.DIVERGED)),
        )

    def trials(
        self, sweep_id: int, state: str | None, offset: int, limit: int
    ) -> schemas.TrialPage:
        """A page of a sweep's trials by number."""
        info = self.catalog.info(self.row(sweep_id).id)
        # Read from the tables (what is committed), not Optuna's in-process cache, which holds
        # trials a transaction of this process is still writing.
        try:
            with self.db.session() as s:
                numbers = [
                    n for n, name in ot.numbered_states(s, info.study_id) if state in (None, name)
                ]
                page = numbers[offset : offset + limit]
                found = ot.study_trials(s, info.study_id, numbers=page) if page else []
        except KeyError:  # deleted meanwhile
            raise NotFound(f"sweep {sweep_id} not found") from None
        return schemas.TrialPage(
            items=[self.trial(info, t) for t in found],
            total=len(numbers),
            offset=offset,
            limit=limit,
        )

    def trial_by_number(self, sweep_id: int, number: int) -> schemas.TrialOut:
        """One trial by number."""
        info = self.catalog.info(self.row(sweep_id).id)
        try:
            with self.db.session() as s:
                found = ot.study_trials(s, info.study_id, numbers=[number])
        except KeyError:  # deleted meanwhile
            found = []
        if not found:
            raise NotFound(f"sweep {sweep_id} has no trial {number}")
        return self.trial(info, found[0])
