"""The trial ledger: every state change of a sweep or a trial as one transaction.

Each transition runs inside :meth:`Database.transaction` for its sweep, so it holds the
sweep's lock (a row lock on PostgreSQL, the write lock on SQLite), reads the state it
depends on under that lock, flips statuses with conditional updates, stamps times with the
database clock, and commits once — Optuna's writes included — or not at all.

Per trial we keep, as Optuna attributes: user attrs ``worker_id``, ``device``, ``metrics``,
``config``, ``reason``; system attrs ``lionsweep:retry_of`` / ``lionsweep:retry_history``
(plus Optuna's own ``failed_trial`` and ``retry_history``), ``lionsweep:final_failure`` and
``lionsweep:stopped_by_cancel``. Leases (who holds a trial, under which claim request, last
heartbeat) live in our ``lionsweep_leases`` table.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from protocol import HAND_BACK_LIMIT
from service import optuna_tables as ot
from service import schemas
from service import spec as specs
from service.catalog import Catalog, SweepInfo, config_key
from service.db import Database, create_idempotently
from service.errors import Conflict, Forbidden, Invalid, NotFound
from service.models import Lease, Sweep, Worker
from service.settings import Settings
from service.topups import TopUps

log = logging.getLogger("lionsweep.ledger")

WORKER_TOUCH_SECONDS = 30.0
"""A worker's row is rewritten at most this often when nothing about it changed."""
TOP_UP_BATCH = 4
"""Trials asked per transaction when topping up a queue (the sweep's lock is held that long)."""
BLIND_BATCH = 16
"""Trials drawn per transaction for a sampler in ``TRIAL_BLIND_SAMPLERS``."""
AHEAD_FROM_RUNNING = 4
"""A sweep queues trials ahead of claims only while at least this many of its trials run."""
NON_LEARNING_SAMPLERS = ("random", "qmc", "grid")
"""Samplers whose next point does not depend on results: queueing ahead costs them nothing."""
TRIAL_BLIND_SAMPLERS = ("random",)
"""Samplers whose point for a trial depends on nothing stored (not the study's trials, not its
attributes: QMC keeps its sequence's place there, grid its visited points), only on their
seed: a new trial's params are drawn on a throwaway in-memory study and stored as an ``ask``
stores them, in some 14 SQL statements instead of an ``ask``'s 27 (which first reads again
every unfinished trial of the study, running and queued)."""
UNKNOWN_WORKER = "unknown"
"""The holder of a lease made for a running trial whose claimant is not recorded."""


class Ledger:
    """The transitions of sweeps and trials (safe to share between threads)."""

    def __init__(self, db: Database, settings: Settings, catalog: Catalog) -> None:
        self.db = db
        self.settings = settings
        self.catalog = catalog
        self._workers_seen: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._prune_locks: dict[int, threading.Lock] = {}
        self._sampling = 0
        """Claims of this process waiting for (or holding) a sweep's lock to sample."""
        self.topups = TopUps(self.top_up)
        self.completed: list[Callable[[int], None]] = []
        """Called with a sweep's id after the transaction that completed it commits."""

    def close(self) -> None:
        """Stop the background work (topping up claim queues)."""
        self.topups.close()

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        """Optuna's storage (joins the open transaction of this thread)."""
        return self.db.storage

    # ---- sweeps ----

    def create(self, spec: schemas.SweepSpec, idempotency_key: str | None) -> tuple[int, bool]:
        """Create a sweep with its study and enqueued trials; returns (sweep id, created).

        The same ``idempotency_key`` with the same spec returns the first sweep.
        """
        errors = specs.check_spec(spec, self.settings)
        errors += specs.check_task_name(spec.task.name, self.announced_tasks())
        declared = self.declared_params(spec.task.name)
        if declared is not None:
            errors += specs.check_task_params(spec.task.params, declared)
        if errors:
            raise Invalid(errors)
        spec_json = spec.model_dump(mode="json", exclude_none=True)
        created = create_idempotently(
            lambda: self._create_once(spec, spec_json, idempotency_key), idempotency_key
        )
        self.catalog.changed()
        return created

    def _create_once(
        self, spec: schemas.SweepSpec, spec_json: dict[str, Any], key: str | None
    ) -> tuple[int, bool]:
        with self.db.transaction() as tx:
            if key:
                existing = tx.scalars(select(Sweep).where(Sweep.idempotency_key == key)).first()
                if existing is not None and existing.status != "creating":
                    if existing.spec != spec_json:
                        raise Conflict(
                            "Idempotency-Key was already used with a different sweep spec"
                        )
                    return existing.id, False
                if existing is not None:
                    self.drop_sweep(tx, existing)
            return self.insert_sweep(tx, spec, spec_json, key), True

    def insert_sweep(
        self,
        tx: Session,
        spec: schemas.SweepSpec,
        spec_json: dict[str, Any],
        key: str | None = None,
        ladder_id: int | None = None,
        ladder_role: str | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> int:
        """Write a sweep row, its Optuna study (with ``attrs`` as study user attrs) and its
        enqueued trials inside the open transaction (the spec already checked); returns the
        sweep id."""
        row = Sweep(
            name=spec.name,
            status="running",
            task_name=spec.task.name,
            spec=spec_json,
            n_trials=spec.n_trials,
            idempotency_key=key,
            ladder_id=ladder_id,
            ladder_role=ladder_role,
        )
        tx.add(row)
        tx.flush()
        row.study_name = f"lionsweep-{row.id}"
        study = optuna.create_study(
            storage=self.storage,
            study_name=row.study_name,
            direction=spec.objective.direction,
        )
        row.study_id = self.storage.get_study_id_from_name(row.study_name)
        study.set_user_attr("lionsweep_sweep_id", row.id)
        study.set_user_attr("lionsweep_task", spec.task.name)
        for name, value in (attrs or {}).items():
            study.set_user_attr(name, value)
        for params in specs.enqueued_params(spec):
            study.enqueue_trial(params)
        tx.flush()
        return row.id

    def drop_sweep(self, tx: Session, row: Sweep) -> None:
        """Delete a sweep row, its leases and its study, inside the open transaction."""
        if row.study_id is not None:
            self.storage.delete_study(row.study_id)
        elif row.study_name:
            with contextlib.suppress(KeyError):
                self.storage.delete_study(self.storage.get_study_id_from_name(row.study_name))
        tx.execute(delete(Lease).where(Lease.sweep_id == row.id))
        tx.execute(delete(Sweep).where(Sweep.id == row.id))

    def drop_abandoned_creations(self) -> int:
        """Delete sweeps left half-created (status ``creating``) by an older server version.

        A sweep is created in one transaction, so a committed ``creating`` row can only be
        one whose creation died mid-way under a version that committed in steps.
        """
        with self.db.session() as s:
            ids = list(s.scalars(select(Sweep.id).where(Sweep.status == "creating")))
        for sweep_id in ids:
            with self.db.transaction(sweep_id) as tx:
                row = tx.get(Sweep, sweep_id)
                if row is not None and row.status == "creating":
                    self.drop_sweep(tx, row)
        return len(ids)

    def set_status(self, sweep_id: int, status: str) -> None:
        """Cancel (``cancelled``) or resume (``running``) a sweep that is not complete.

        The flip is conditional on the current status; doing it twice is harmless, and a
        complete sweep stays complete (409).
        """
        other = {"cancelled": "running", "running": "cancelled"}[status]
        info = self.catalog.info(sweep_id)
        with self.db.transaction(sweep_id) as tx:
            flipped = tx.execute(
                update(Sweep)
                .where(Sweep.id == sweep_id, Sweep.status == other)
                .values(status=status)
                .returning(Sweep.id)
            ).first()
            if flipped is None:
                now = _status(tx, sweep_id)
                if now == "complete":
                    raise Conflict(f"sweep {sweep_id} is already complete")
            if status == "running":
                self._complete_if_done(tx, info)
        self.catalog.changed()

    def delete(self, sweep_id: int) -> None:
        """Delete the sweep, its leases and its Optuna study (even one whose spec this
        version cannot read)."""
        with self.db.transaction(sweep_id) as tx:
            row = tx.get(Sweep, sweep_id)
            if row is None or row.status == "creating":
                raise NotFound(f"sweep {sweep_id} not found")
            if row.ladder_id is not None:
                raise Conflict(
                    f"sweep {sweep_id} is a {row.ladder_role} of ladder {row.ladder_id}: "
                    f"delete the ladder (DELETE /api/ladders/{row.ladder_id})"
                )
            self.drop_sweep(tx, row)
        self.catalog.forget(sweep_id)
        self.catalog.changed()

    def _complete_if_done(self, tx: Session, info: SweepInfo) -> None:
        """Mark a running sweep complete once n_trials originals have a final outcome and the
        re-evaluation of its leading configs (queued at that moment, if any) is done."""
        counts = ot.counts(tx, info.study_id)
        if counts.finished < info.n_trials:
            return
        attrs = self.storage.get_study_system_attrs(info.study_id)
        if ot.REEVALUATION not in attrs and self._queue_reevaluation(info) > 0:
            return
        if counts.reeval_pending == 0:
            done = tx.execute(
                update(Sweep)
                .where(Sweep.id == info.id, Sweep.status == "running")
                .values(status="complete")
            )
            if done.rowcount:
                for listener in self.completed:
                    self.db.after_commit(functools.partial(listener, info.id))

    def _queue_reevaluation(self, info: SweepInfo) -> int:
        """Decide once whether to re-run the leading configs with fresh seeds, record the
        decision on the study, and queue the runs; returns how many were queued.

        The leaders are the top_k distinct configs by value among the sweep's own complete
        trials (per optimizer arm in a sweep with a baseline). ``auto`` queues them when the
        estimated cost (runs × the median complete-trial duration) is within the server's
        ``reevaluate_auto_seconds``.
        """
        cfg = info.spec.reevaluate
        mode = cfg.mode
        decision: dict[str, Any] = {"mode": mode}
        queued = 0
        if mode == "off":
            decision["status"] = "off"
        else:
            decision.update(top_k=cfg.top_k, seeds=cfg.seeds)
            own = [
                t
                for t in self.storage.get_all_trials(
                    info.study_id, deepcopy=False, states=(TrialState.COMPLETE,)
                )
                if ot.REEVAL_OF not in t.system_attrs and t.value is not None
            ]
            leaders = _leaders(info, own, cfg.top_k)
            durations = sorted(
                (t.datetime_complete - t.datetime_start).total_seconds()
                for t in own
                if t.datetime_complete is not None
                and t.datetime_start is not None
                and ot.IMPORTED not in t.system_attrs  # ran elsewhere: duration unknown
            )
            median = durations[len(durations) // 2] if durations else 0.0
            estimate = len(leaders) * cfg.seeds * median
            decision["estimate_seconds"] = estimate
            if not leaders:
                decision.update(status="skipped", reason="no complete trial to re-evaluate")
            elif mode == "auto" and not 0 <= estimate <= self.settings.reevaluate_auto_seconds:
                decision.update(
                    status="skipped",
                    reason=f"estimated {estimate:.0f} s of worker time is more than the "
                    f"server's reevaluate_auto_seconds ({self.settings.reevaluate_auto_seconds:g}"
                    " s); set reevaluate: {top_k, seeds} in the spec to run it anyway",
                )
            elif mode == "auto" and self.settings.reevaluate_auto_seconds == 0:
                decision.update(
                    status="skipped",
                    reason="the server's reevaluate_auto_seconds is 0 (no automatic "
                    "re-evaluation); set reevaluate: {top_k, seeds} in the spec to run it",
                )
            else:
                study = self.catalog.study(info)
                for t in leaders:
                    for _ in range(cfg.seeds):
                        study.add_trial(
                            optuna.trial.create_trial(
                                state=TrialState.WAITING,
                                params=t.params,
                                distributions=t.distributions,
                                system_attrs={"fixed_params": t.params, ot.REEVAL_OF: t.number},
                            )
                        )
                        queued += 1
                decision.update(status="queued", of=[t.number for t in leaders])
        self.storage.set_study_system_attr(info.study_id, ot.REEVALUATION, decision)
        return queued

    # ---- claims ----

    def declared_params(self, task: str) -> dict[str, dict[str, Any]] | None:
        """The params ``task`` accepts, as the most recently seen worker declaring it said, or
        None when no worker has declared them."""
        with self.db.session() as s:
            rows = s.execute(
                select(Worker.task_params).order_by(Worker.last_seen.desc(), Worker.id)
            ).all()
        for (declared,) in rows:
            if isinstance(declared, dict) and isinstance(declared.get(task), dict):
                return declared[task]
        return None

    def announced_tasks(self) -> set[str]:
        """Every task some worker has announced."""
        with self.db.session() as s:
            return {t for tasks in s.scalars(select(Worker.tasks)) for t in tasks}

    def touch_worker(self, req: schemas.ClaimRequest) -> None:
        """Record the worker, the tasks it announces and their declared params (at most every
        30 s if unchanged)."""
        task_params = req.task_params or None
        key = (req.device, tuple(req.tasks), repr(task_params))
        now = time.monotonic()
        seen = self._workers_seen.get(req.worker_id)
        if seen is not None and seen[0] == key and now - seen[1] < WORKER_TOUCH_SECONDS:
            return
        try:
            with self.db.session() as s:
                w = s.get(Worker, req.worker_id)
                if w is None:
                    s.add(
                        Worker(
                            id=req.worker_id,
                            device=req.device,
                            tasks=list(req.tasks),
                            task_params=task_params,
                        )
                    )
                else:
                    w.device, w.tasks, w.task_params = req.device, list(req.tasks), task_params
                    w.last_seen = func.now()
        except IntegrityError:  # two first claims of one worker at once: the other wrote it
            return
        self._workers_seen[req.worker_id] = (key, now)
        self.catalog.changed()

    def claim(
        self, req: schemas.ClaimRequest, token_id: int | None = None
    ) -> schemas.Assignment | None:
        """Give the worker a trial of a running sweep whose task it runs (among
        ``req.sweeps`` when given), or None; the trial is held by ``token_id`` (the caller's
        token, None on an open server).

        A queued trial (sampled ahead) is taken without the sweep's lock; only when none is
        queued does the claim take a sweep's lock to sample (and queue some ahead). A claim
        repeated with the same ``request_id`` (a retry after a lost reply) returns the same
        assignment. A sweep whose sampler fails is skipped (and logged), so it cannot stop
        claims of the others; the database's own errors propagate (the route answers 503).
        """
        self.touch_worker(req)
        runnable = select(Sweep.id).where(Sweep.status == "running", Sweep.task_name.in_(req.tasks))
        if req.sweeps is not None:
            runnable = runnable.where(Sweep.id.in_(req.sweeps))
        try:
            got = self._take_queued(runnable, req, token_id)
            if got is not None:
                return got
            with self._lock:
                self._sampling += 1
            try:
                got = self._sample(runnable, req, token_id)
            finally:
                with self._lock:
                    self._sampling -= 1
            # A retry after a lost reply finds its first assignment when its new lease's
            # request id collides (below) or, with nothing left to claim, here.
            return got if got is not None or not req.request_id else self._replay(req, token_id)
        except IntegrityError:
            replay = self._replay(req, token_id) if req.request_id else None
            if replay is None:
                raise
            return replay
        except NotFound:  # the claimed trial's sweep was deleted meanwhile
            return None

    def _sample(
        self, runnable: Any, req: schemas.ClaimRequest, token_id: int | None
    ) -> schemas.Assignment | None:
        """Sample a trial of the first runnable sweep that has work (see :meth:`_sample_in`)."""
        with self.db.session() as s:
            sweep_ids = list(s.scalars(runnable.order_by(Sweep.id)))
        for sweep_id in sweep_ids:
            try:
                got = self._sample_in(sweep_id, req, token_id)
            except NotFound:  # deleted meanwhile: try the next sweep
                continue
            except (SQLAlchemyError, StorageInternalError):
                raise
            except Exception:
                log.exception("claiming a trial of sweep %s failed; skipping it", sweep_id)
                continue
            if got is not None:
                return got
        return None

    def _replay(self, req: schemas.ClaimRequest, token_id: int | None) -> schemas.Assignment | None:
        """The assignment already made for ``req.request_id``, if any."""
        with self.db.session() as s:
            lease = s.scalars(select(Lease).where(Lease.request_id == req.request_id)).first()
        if lease is None:
            return None
        if lease.worker_id != req.worker_id or lease.token_id != token_id:
            raise Conflict(f"request_id {req.request_id!r} was used by another worker")
        info = self.catalog.info(lease.sweep_id)
        with self.db.session() as s:
            number, params = ot.number_and_params(s, lease.trial_id)
        return self.assignment(info, lease.trial_id, number, params)

    def _take_queued(
        self, runnable: Any, req: schemas.ClaimRequest, token_id: int | None
    ) -> schemas.Assignment | None:
        """Claim the first queued trial of a runnable sweep no other claim is taking."""
        studies = select(Sweep.study_id).where(Sweep.id.in_(runnable.scalar_subquery()))
        with self.db.transaction() as tx:
            found = ot.take_queued(tx, studies)
            if found is None:
                return None
            trial_id, study_id = found
            sweep_id = tx.scalar(select(Sweep.id).where(Sweep.study_id == study_id))
            info = self.catalog.info(sweep_id)
            held = self._hold(tx, info, trial_id, req, token_id, queued=True)
        self.catalog.changed()
        self.topups.request(info.id)
        return self.assignment(info, trial_id, *held)

    def _ahead(self, info: SweepInfo, counts: ot.QueueCounts) -> int:
        """How many trials a sweep keeps queued ahead of claims, at most the server's
        ``claim_ahead_max``: none while fewer than ``AHEAD_FROM_RUNNING`` trials run (a sweep
        of a few workers samples exactly as it is claimed); then one per running trial for a
        sampler that does not learn from results (random, QMC, grid: sampling ahead costs
        them nothing), one per four for one that does (TPE, CMA-ES, GP)."""
        running = counts.running
        if running < AHEAD_FROM_RUNNING:
            return 0
        per = 1 if info.spec.sampler.name in NON_LEARNING_SAMPLERS else 4
        return min(self.settings.claim_ahead_max, running // per)

    def top_up(self, sweep_id: int) -> int:
        """Queue trials ahead of claims for a running sweep whose queue is below half of what
        it should hold (see :meth:`_ahead`); returns how many were queued.

        Runs in the background after a claim took a queued trial, so claims rarely wait for
        the sampler. The sweep's lock is taken only when there is something to queue.
        """
        try:
            info = self.catalog.info(sweep_id)
        except NotFound:
            return 0
        with self.db.session() as s:
            counts = ot.queue_counts(s, info.study_id)
        if 2 * counts.queued >= self._ahead(info, counts) or not _has_work(counts, info):
            return 0
        total = 0
        while True:  # in small batches: a claim that finds the queue empty waits for one batch
            with self.db.transaction(sweep_id) as tx:
                if _status(tx, sweep_id) != "running":
                    break
                counts = ot.queue_counts(tx, info.study_id)
                want = min(self._ahead(info, counts) - counts.queued, _room(counts, info))
                n = min(want, _batch(info))
                self._queue(info, counts, n)
            if n <= 0:
                break
            total += n
            self.catalog.changed()
            if n == want:
                break
        return total

    def _queue(self, info: SweepInfo, counts: ot.QueueCounts, n: int, first: int = 0) -> list[int]:
        """Ask the sampler for ``n`` trials (inside the sweep's transaction) and queue all but
        the first ``first`` of them for claims to take; returns the ids of every trial asked.

        A queued trial stays what Optuna made it, asked and not told (RUNNING), so the
        sampler's next asks see it pending (TPE's constant liar) and never hand it out again.
        """
        asked = []
        blind = info.spec.sampler.name in TRIAL_BLIND_SAMPLERS
        waiting = counts.waiting  # an ask pops these first
        for i in range(max(0, n)):
            # Seeded for the number the trial gets: a popped waiting trial takes no new number
            # (its params are fixed), so the new ones after it are numbered from the total.
            sampler = self.catalog.sampler(info, counts.total + max(0, i - waiting))
            if blind and i >= waiting:
                asked.append(self._add_drawn(info, sampler, queued=i >= first))
                continue
            asked.append(self.catalog.study(info, sampler).ask(info.dists)._trial_id)
            if i >= first:
                self.storage.set_trial_system_attr(asked[-1], ot.QUEUED, True)
        return asked

    def _add_drawn(
        self, info: SweepInfo, sampler: optuna.samplers.BaseSampler, queued: bool
    ) -> int:
        """Store a new running trial whose params ``sampler`` (one of
        ``TRIAL_BLIND_SAMPLERS``) draws as it would in an ``ask`` of the sweep's study (the
        same draws in the same order: the sampler reads nothing stored); returns its id."""
        drawn = optuna.create_study(sampler=sampler).ask(info.dists)
        trial = optuna.trial.create_trial(
            state=TrialState.RUNNING, system_attrs={ot.QUEUED: True} if queued else {}
        )
        trial_id = self.storage.create_new_trial(info.study_id, template_trial=trial)
        for name, value in drawn.params.items():  # as ask stores them, one call each
            dist = drawn.distributions[name]
            self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
        return trial_id

    def _sample_in(
        self, sweep_id: int, req: schemas.ClaimRequest, token_id: int | None
    ) -> schemas.Assignment | None:
        """Under the sweep's lock: take a trial queued meanwhile, else ask the sampler for one
        trial for this claim and queue more ahead: as many as there are other claims of this
        process waiting to sample, or one per four running trials up to the server's
        ``claim_ahead_max`` if that is more; never past the sweep's budget. The claims that
        waited behind it then take those trials without sampling."""
        info = self.catalog.info(sweep_id)
        with self.db.session() as s:  # no lock taken (on SQLite: no write lock) for no work
            if not _has_work(ot.queue_counts(s, info.study_id), info):
                return None
        with self.db.transaction(sweep_id) as tx:
            if _status(tx, sweep_id) != "running":
                return None
            studies = select(Sweep.study_id).where(Sweep.id == sweep_id)
            found = ot.take_queued(tx, studies)
            if found is not None:
                trial_id = found[0]
                held = self._hold(tx, info, trial_id, req, token_id, queued=True)
            else:
                counts = ot.queue_counts(tx, info.study_id)
                if not _has_work(counts, info):
                    return None
                room = _room(counts, info)
                if room <= 0:  # only queued trials are left, each being taken by a claim
                    return None
                with self._lock:
                    waiting = self._sampling - 1
                ahead = min(max(self._ahead(info, counts), waiting), room - 1, _batch(info))
                asked = self._queue(info, counts, 1 + max(0, ahead), first=1)
                trial_id = asked[0]
                held = self._hold(tx, info, trial_id, req, token_id)
        self.catalog.changed()
        self.topups.request(info.id)
        return self.assignment(info, trial_id, *held)

    def _hold(
        self,
        tx: Session,
        info: SweepInfo,
        trial_id: int,
        req: schemas.ClaimRequest,
        token_id: int | None,
        queued: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Give the running trial (a ``queued`` one: taken from the queue) a lease held by the
        claiming worker and token; returns the trial's number and params."""
        tx.add(
            Lease(
                trial_id=trial_id,
                sweep_id=info.id,
                request_id=req.request_id,
                worker_id=req.worker_id,
                token_id=token_id,
                claimed_at=self.db.clock(),
                heartbeat_at=self.db.clock(),
            )
        )
        tx.flush()
        if queued:
            self.storage.set_trial_system_attr(trial_id, ot.QUEUED, False)
        self.storage.set_trial_user_attr(trial_id, "worker_id", req.worker_id)
        self.storage.set_trial_user_attr(trial_id, "device", req.device)
        return ot.number_and_params(tx, trial_id)

    def assignment(
        self, info: SweepInfo, trial_id: int, number: int, params: dict[str, Any]
    ) -> schemas.Assignment:
        """What a worker needs to run trial ``number`` (its sampled ``params``)."""
        return schemas.Assignment(
            sweep_id=info.id,
            trial_id=trial_id,
            trial_number=number,
            params=info.full_params(params),
            task=info.spec.task,
            objective=info.spec.objective,
            budget=info.spec.budget,
            seed=specs.trial_seed(info.spec, info.id, number),
            heartbeat_interval=self.settings.heartbeat_interval_seconds,
        )

    # ---- a running trial ----

    def report(
        self, trial_id: int, req: schemas.ReportRequest, token_id: int | None = None
    ) -> schemas.ActionOut:
        """Record an intermediate value and a heartbeat; say continue, prune or stop.

        Only the trial's holder may report (its token; its worker id when it gives one). A
        report locks the trial's lease, not its sweep. A report of the step last reported (a
        retry after a lost reply) gets the same answer.
        """
        with self.db.transaction() as tx:
            lease, info, status = self._running_lease(tx, trial_id)
            _check_holder(lease, req.worker_id, token_id)
            if lease.last_step == req.step and lease.last_action:
                return schemas.ActionOut(action=lease.last_action)
            self.storage.set_trial_intermediate_value(trial_id, req.step, req.value)
            if req.metrics:
                self.storage.set_trial_user_attr(trial_id, "metrics", req.metrics)
            if status == "cancelled":
                action = "stop"
            elif info.spec.pruner.name == "none":
                action = "continue"
            else:
                trial = self.storage.get_trial(trial_id)
                # A re-evaluation measures the noise at the budget: it is never pruned.
                reevaluation = ot.REEVAL_OF in trial.system_attrs
                prune = not reevaluation and self._prune(info, trial)
                action = "prune" if prune else "continue"
            lease.heartbeat_at = self.db.clock()
            lease.last_step, lease.last_action = req.step, action
        return schemas.ActionOut(action=action)

    def _prune(self, info: SweepInfo, trial: FrozenTrial) -> bool:
        """The sweep's pruner's decision on ``trial`` (one report at a time per sweep in this
        process: the pruner instance keeps state between calls)."""
        with self._lock:
            lock = self._prune_locks.setdefault(info.id, threading.Lock())
        with lock:
            pruner = self.catalog.pruner(info, min(trial.intermediate_values))
            return pruner.prune(self.catalog.study(info), trial)

    def heartbeat(
        self, trial_id: int, worker_id: str | None = None, token_id: int | None = None
    ) -> schemas.ActionOut:
        """Extend a running trial's lease; say stop when its sweep is cancelled, and prune when
        its last report was answered prune (so a worker running a program for the trial learns
        of a prune the program was told of, and can enforce it). Only its holder may."""
        with self.db.transaction() as tx:
            lease, info, status = self._running_lease(tx, trial_id)
            _check_holder(lease, worker_id, token_id)
            lease.heartbeat_at = self.db.clock()
            pruned = lease.last_action == "prune"
        if status == "cancelled":
            return schemas.ActionOut(action="stop")
        return schemas.ActionOut(action="prune" if pruned else "continue")

    def finish(
        self, trial_id: int, req: schemas.FinishRequest, token_id: int | None = None
    ) -> schemas.FinishOut:
        """Complete, prune or fail a running trial (a failure is re-queued while retries remain).

        Only the trial's holder may. Finishing a trial again the same way with the same value
        (a retry after a lost reply) gives the same answer; any other finish of an ended trial
        is a 409. A complete or pruned finish locks only the trial's lease; a failure takes the
        sweep's lock (its retry is a new trial of the study).
        """
        wanted = ot.STATE_BY_NAME[req.state]
        # A failure takes the sweep's lock (its retry is a new trial): its sweep is read first.
        info = self.catalog.of_trial(trial_id) if wanted == TrialState.FAIL else None
        with self.db.transaction(info.id if info is not None else None) as tx:
            held = self._held(tx, trial_id)
            if held is not None:
                lease, sweep_id, status, state, number = held
                info = self.catalog.info(sweep_id)
                _check_holder(lease, req.worker_id, token_id)
            else:  # no lease: a queued trial (refused), or one left by an older version
                info = info or self.catalog.of_trial(trial_id)
                status = _status(tx, info.id)
                if status is None:
                    raise NotFound(f"trial {trial_id} does not belong to a sweep")
                state, number = ot.state_and_number(tx, trial_id)
                _refuse_queued(tx, trial_id)
            if state != TrialState.RUNNING:
                _check_repeat(self.storage.get_trial(trial_id), wanted, req)
                requeued = ot.was_requeued(tx, info.study_id, number)
                return schemas.FinishOut(trial_id=trial_id, state=req.state, requeued=requeued)
            for key, value in (("metrics", req.metrics), ("config", req.config)):
                if value:
                    self.storage.set_trial_user_attr(trial_id, key, value)
            if wanted == TrialState.FAIL:
                trial = self.storage.get_trial(trial_id)
                requeued = self._fail(tx, info, status, trial, req.reason, req.handed_back)
                self._complete_if_done(tx, info)
            else:
                if req.reason:
                    self.storage.set_trial_user_attr(trial_id, "reason", req.reason)
                value = req.value if wanted == TrialState.COMPLETE else None
                self._tell(info, trial_id, number, wanted, value)
                requeued = False
        if wanted != TrialState.FAIL:
            self.complete_if_done(info.id)
        self.catalog.changed()
        return schemas.FinishOut(trial_id=trial_id, state=req.state, requeued=requeued)

    def complete_if_done(self, sweep_id: int) -> None:
        """Mark the sweep complete (or queue its re-evaluation) if its trials are all done.

        Read first without a lock, so the finishes of a sweep's many trials do not queue on
        its lock; the last finish to commit sees every other one, so none is missed.
        """
        info = self.catalog.info(sweep_id)
        with self.db.session() as s:
            found = s.execute(
                select(Sweep.status, ot.ended_count(info.study_id)).where(Sweep.id == sweep_id)
            ).first()
            # the count of ended trials is an upper bound of the finished ones, cheaply read
            if found is None or found[0] != "running" or found[1] < info.n_trials:
                return
            if ot.counts(s, info.study_id).finished < info.n_trials:
                return
        with self.db.transaction(sweep_id) as tx:
            if _status(tx, sweep_id) == "running":
                self._complete_if_done(tx, info)
        self.catalog.changed()

    def expire(self, trial_id: int, sweep_id: int, grace: float) -> bool:
        """Fail (and re-queue) a running trial whose lease ran out; False if it was renewed.

        The staleness is checked again under the lock, on the database clock.
        """
        info = self.catalog.info(sweep_id)
        with self.db.transaction(sweep_id) as tx:
            status = _status(tx, sweep_id)
            lease = tx.get(Lease, trial_id, with_for_update=True)
            stale = lease is not None and tx.scalar(
                select(lease.heartbeat_at < self.db.clock() - grace)
            )
            if status is None or not stale or ot.trial_state(tx, trial_id) != TrialState.RUNNING:
                return False
            trial = self.storage.get_trial(trial_id)
            self._fail(tx, info, status, trial, f"lease expired: no heartbeat for {grace:g} s")
            self._complete_if_done(tx, info)
        self.catalog.changed()
        return True

    def lease_running(self, trial_id: int, sweep_id: int) -> None:
        """Give a running trial that has no lease (left by an older version) one from now."""
        info = self.catalog.info(sweep_id)
        with self.db.transaction(sweep_id) as tx:
            running = ot.trial_state(tx, trial_id) == TrialState.RUNNING
            if running and not ot.queued(tx, trial_id):
                self._lease(tx, info, trial_id)

    # ---- inside a transaction ----

    def _held(self, tx: Session, trial_id: int) -> tuple[Lease, int, str, TrialState, int] | None:
        """The trial's lease and its row in Optuna's trials (both locked, so the state read is the
        one committed last: a statement that waited for a lock sees the new version of each row
        it locked, and the version its snapshot had of any other), its sweep's id and status,
        its state and number, in one statement; None when it has no lease (or belongs to no
        sweep)."""
        found = tx.execute(
            select(Lease, Sweep.id, Sweep.status, ot.trials.c.state, ot.trials.c.number)
            .join(ot.trials, ot.trials.c.trial_id == Lease.trial_id)
            .join(Sweep, Sweep.study_id == ot.trials.c.study_id)
            .where(Lease.trial_id == trial_id)
            .with_for_update(of=[Lease.__table__, ot.trials])
        ).first()
        return None if found is None else tuple(found)  # type: ignore[return-value]

    def _running_lease(self, tx: Session, trial_id: int) -> tuple[Lease, SweepInfo, str]:
        """A running trial's lease (locked; one is made for a running trial that has none, see
        :meth:`_lease`), its sweep and the sweep's status; 404 for a trial of no sweep, 409 for
        one that is not running (or is queued, claimed by no worker)."""
        held = self._held(tx, trial_id)
        if held is None:
            info = self.catalog.of_trial(trial_id)
            lease = self._lease(tx, info, trial_id)
            return lease, info, self._running_trial(tx, info, trial_id)
        lease, sweep_id, status, state, _ = held
        if state != TrialState.RUNNING:
            raise Conflict(f"trial {trial_id} is {ot.STATE_NAMES[state]}, not running")
        return lease, self.catalog.info(sweep_id), status

    def _running_trial(self, tx: Session, info: SweepInfo, trial_id: int) -> str:
        """The sweep's status, after checking (under the lock) that the trial is running."""
        found = tx.execute(
            select(Sweep.status, ot.trials.c.state)
            .join(ot.trials, ot.trials.c.study_id == Sweep.study_id)
            .where(Sweep.id == info.id, ot.trials.c.trial_id == trial_id)
        ).first()
        if found is None:
            raise NotFound(f"trial {trial_id} does not belong to a sweep")
        status, state = found
        if state != TrialState.RUNNING:
            raise Conflict(f"trial {trial_id} is {ot.STATE_NAMES[state]}, not running")
        return status

    def _lease(self, tx: Session, info: SweepInfo, trial_id: int) -> Lease:
        """The trial's lease, locked; one is made for a running trial that has none (from a
        version that kept none), starting its lease now."""
        lease = tx.get(Lease, trial_id, with_for_update=True)
        if lease is None:
            _refuse_queued(tx, trial_id)
            clock = tx.scalar(select(self.db.clock()))
            worker = self.storage.get_trial(trial_id).user_attrs.get("worker_id") or UNKNOWN_WORKER
            lease = Lease(
                trial_id=trial_id,
                sweep_id=info.id,
                worker_id=str(worker)[:200],
                claimed_at=clock,
                heartbeat_at=clock,
            )
            tx.add(lease)
        return lease

    def _tell(
        self,
        info: SweepInfo,
        trial_id: int,
        number: int,
        state: TrialState,
        value: float | None = None,
    ) -> None:
        """Finish trial ``number`` as Optuna's ``tell`` with the sweep's real sampler would.

        A complete trial of a sampler that does nothing after a trial (random) has its state
        and value stored directly: ``tell`` would first read the whole trial twice (some 12
        statements) only to hand it to that sampler's empty ``after_trial``.
        """
        sampler = self.catalog.sampler(info, number)
        if state == TrialState.COMPLETE and _ignores_results(sampler):
            self.storage.set_trial_state_values(trial_id, state, [float(value)])
            return
        study = self.catalog.study(info, sampler)
        try:
            study.tell(number, value, state=state)
        except RuntimeError as e:
            # GridSampler.after_trial calls study.stop() once the grid is used up; outside
            # optimize() Optuna raises after it has stored the state. Nothing to stop here.
            if "Study.stop" not in str(e):
                raise

    def _fail(
        self,
        tx: Session,
        info: SweepInfo,
        status: str,
        trial: FrozenTrial,
        reason: str | None,
        handed_back: bool = False,
    ) -> bool:
        """Fail a running trial and re-queue it with the same params if a retry remains.

        A trial that fails while its sweep is cancelled (told to stop, or its lease ran out),
        or that its worker handed back on an interrupt, is re-queued without using up a
        retry; a config handed back more than ``HAND_BACK_LIMIT`` times uses one.
        """
        tid = trial._trial_id
        hand_backs = int(trial.system_attrs.get(ot.HAND_BACKS, 0))
        handed_back = handed_back and status != "cancelled" and hand_backs < HAND_BACK_LIMIT
        retry_free = status == "cancelled" or handed_back
        retries_left = retry_free or _retries_used(trial) < info.spec.max_retries
        if status == "cancelled":
            self.storage.set_trial_system_attr(tid, ot.STOPPED_BY_CANCEL, True)
        elif handed_back:
            self.storage.set_trial_system_attr(tid, ot.HANDED_BACK, True)
        elif not retries_left:
            self.storage.set_trial_system_attr(tid, ot.FINAL_FAILURE, True)
        if reason:
            self.storage.set_trial_user_attr(tid, "reason", reason)
        self._tell(info, trial._trial_id, trial.number, TrialState.FAIL)
        if not retries_left:
            return False
        history = list(trial.system_attrs.get(ot.RETRY_HISTORY, []))
        if not retry_free:
            history.append(trial.number)
        attrs: dict[str, Any] = {
            ot.RETRY_OF: trial.number,
            ot.RETRY_HISTORY: history,
            ot.HAND_BACKS: hand_backs + handed_back,
            "failed_trial": history[0] if history else trial.number,
            "retry_history": history,
        }
        for key in ("fixed_params", ot.REEVAL_OF):
            if key in trial.system_attrs:
                attrs[key] = trial.system_attrs[key]
        self.catalog.study(info).add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs=attrs,
            )
        )
        return True


def _room(counts: ot.QueueCounts, info: SweepInfo) -> int:
    """How many trials the sampler may still be asked for: the waiting trials not yet queued
    (asking pops them) plus the originals the budget has room for."""
    return counts.waiting + max(0, info.n_trials - counts.originals)


def _has_work(counts: ot.QueueCounts, info: SweepInfo) -> bool:
    """Whether a trial can be handed out: one is waiting, or fewer than n_trials originals."""
    return counts.waiting + counts.queued > 0 or counts.originals < info.n_trials


def _leaders(info: SweepInfo, done: list[FrozenTrial], top_k: int) -> list[FrozenTrial]:
    """The best trial of each of the top_k distinct configs by value (per optimizer arm)."""
    ranked = sorted(done, key=lambda t: (info.sign * t.value, t.number))
    seen: set[Any] = set()
    per_arm: dict[str, int] = {}
    out = []
    for t in ranked:
        params = info.params(t)
        key = config_key(params)
        arm = str(params.get("optimizer", "lion"))
        if key in seen or per_arm.get(arm, 0) >= top_k:
            continue
        seen.add(key)
        per_arm[arm] = per_arm.get(arm, 0) + 1
        out.append(t)
    return out


def _status(tx: Session, sweep_id: int) -> str | None:
    """The sweep's status as read inside the transaction (None once deleted)."""
    return tx.scalar(select(Sweep.status).where(Sweep.id == sweep_id))


def _check_holder(lease: Lease, worker_id: str | None, token_id: int | None) -> None:
    """Refuse a call about a trial from a token (403) or a worker (409) other than the one
    that claimed it. A trial claimed with a token answers to that token alone, whatever
    worker id a call gives or leaves out."""
    if lease.token_id is not None and token_id != lease.token_id:
        raise Forbidden(f"trial {lease.trial_id} was claimed with another token")
    if worker_id is not None and lease.worker_id not in (worker_id, UNKNOWN_WORKER):
        raise Conflict(
            f"trial {lease.trial_id} was claimed by worker {lease.worker_id!r}, not {worker_id!r}"
        )


def _refuse_queued(tx: Session, trial_id: int) -> None:
    """Refuse a call about a trial no worker has claimed yet (queued ahead of claims)."""
    if ot.queued(tx, trial_id):
        raise Conflict(f"trial {trial_id} is waiting, not running: no worker has claimed it")


def _check_repeat(trial: FrozenTrial, wanted: TrialState, req: schemas.FinishRequest) -> None:
    """Accept a finish of an ended trial only as a repeat of the finish that ended it (same
    state, same value); anything else is a 409, so a worker never takes a dropped result for
    a recorded one."""
    name = ot.STATE_NAMES[trial.state]
    if trial.state != wanted:
        raise Conflict(f"trial {trial._trial_id} is already {name}; cannot mark it {req.state}")
    if wanted == TrialState.COMPLETE and trial.value != req.value:
        raise Conflict(
            f"trial {trial._trial_id} is already complete with value {trial.value!r}; "
            f"cannot record {req.value!r}"
        )


def _batch(info: SweepInfo) -> int:
    """How many new trials one hold of the sweep's lock asks for at most: ``BLIND_BATCH`` for
    a sampler that draws without reading the study (cheap, and every claim waiting behind the
    lock then finds one queued), ``TOP_UP_BATCH`` for the others."""
    return BLIND_BATCH if info.spec.sampler.name in TRIAL_BLIND_SAMPLERS else TOP_UP_BATCH


def _ignores_results(sampler: optuna.samplers.BaseSampler) -> bool:
    """Whether ``sampler`` keeps Optuna's empty ``after_trial`` (it learns nothing when a trial
    ends: random)."""
    return type(sampler).after_trial is optuna.samplers.BaseSampler.after_trial


def _retries_used(trial: FrozenTrial) -> int:
    return len(trial.system_attrs.get(ot.RETRY_HISTORY, []))
