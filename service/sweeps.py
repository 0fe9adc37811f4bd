"""Sweep lifecycle: create, claim (lock + ask), report, finish, reap — the business rules.

Optuna is the source of truth for trials. Per trial we keep, as Optuna attributes:
user attrs ``worker_id``, ``device``, ``metrics``, ``config``, ``reason``; system attrs
``lionsweep:retry_of`` / ``lionsweep:retry_history`` (plus Optuna's own ``failed_trial``
and ``retry_history`` so RetryHeartbeatStaleTrialCallback helpers read them too).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import (
    DateTime,
    Enum,
    Integer,
    String,
    and_,
    cast,
    column,
    delete,
    exists,
    func,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import schemas
from service.db import Database
from service.models import Sweep, Worker
from service.settings import Settings

log = logging.getLogger("lionsweep.sweeps")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)

WORKER_TOUCH_SECONDS = 30.0
GRID_POINTS_CAP = 100_000
"""The most points a grid sweep may have (the grid sampler holds them all in memory)."""
STATUS_TTL_SECONDS = 1.0
RETRY_OF = "lionsweep:retry_of"
FINAL_FAILURE = "lionsweep:final_failure"
RETRY_HISTORY = "lionsweep:retry_history"
STOPPED_BY_CANCEL = "lionsweep:stopped_by_cancel"

# Optuna's tables, for the few aggregate queries its storage API has no call for.
_trials = table(
    "trials",
    column("trial_id", Integer),
    column("number", Integer),
    column("study_id", Integer),
    column("state", Enum(TrialState, name="trialstate")),
    column("datetime_start", DateTime),
    column("datetime_complete", DateTime),
)
_trial_system_attrs = table(
    "trial_system_attributes",
    column("trial_id", Integer),
    column("key", String),
    column("value_json", String),
)
_heartbeats = table("trial_heartbeats", column("trial_id", Integer), column("heartbeat", DateTime))

_STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
_STATE_BY_NAME = {v: k for k, v in _STATE_NAMES.items()}


class ServiceError(Exception):
    """An error with an HTTP status the routes pass through."""

    status_code = 400

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    """Unknown sweep or trial (404)."""

    status_code = 404


class Conflict(ServiceError):
    """The request conflicts with the current state (409)."""

    status_code = 409


class Invalid(ServiceError):
    """Input that passed pydantic but breaks a cross-field rule (422, FastAPI's shape)."""

    status_code = 422


def _err(loc: tuple[Any, ...], msg: str, value: Any = None) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg, "input": value}


# ---- spec → Optuna ---------------------------------------------------------------------


def _as_param(name: str, v: float) -> float | int:
    return int(v) if name in schemas.INT_PARAMS else v


def distributions(spec: schemas.SweepSpec) -> dict[str, BaseDistribution]:
    """The Optuna distributions of the swept parameters (fixed values are not Optuna params)."""
    out: dict[str, BaseDistribution] = {}
    if spec.baseline == "adamw":
        out["optimizer"] = CategoricalDistribution(["lion", "adamw"])
    for name, dim in spec.space.dimensions().items():
        if dim.is_fixed:
            continue
        if dim.choices is not None:
            out[name] = CategoricalDistribution([_as_param(name, c) for c in dim.choices])
        elif name in schemas.INT_PARAMS:
            out[name] = IntDistribution(
                int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1)
            )
        else:
            out[name] = FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return out


def fixed_params(spec: schemas.SweepSpec) -> dict[str, Any]:
    """Parameters with one fixed value (and ``optimizer`` when there is no baseline arm)."""
    out: dict[str, Any] = {} if spec.baseline else {"optimizer": "lion"}
    for name, dim in spec.space.dimensions().items():
        if dim.is_fixed:
            out[name] = _as_param(name, dim.value)
    return out


def _grid_values(name: str, dim: schemas.Dimension) -> list[Any]:
    if dim.choices is not None:
        return [_as_param(name, c) for c in dim.choices]
    return [_as_param(name, round(dim.low + i * dim.step, 12)) for i in range(dim.n_points())]


def grid_size(spec: schemas.SweepSpec) -> int:
    """How many points the grid of a grid sweep has (counted, not enumerated)."""
    size = 2 if spec.baseline else 1
    for dim in spec.space.dimensions().values():
        size *= dim.n_points()
    return size


def grid_space(spec: schemas.SweepSpec) -> dict[str, list[Any]]:
    """The grid of a grid sweep: each swept parameter's values."""
    grid = {"optimizer": ["lion", "adamw"]} if spec.baseline else {}
    for name, dim in spec.space.dimensions().items():
        if not dim.is_fixed:
            grid[name] = _grid_values(name, dim)
    return grid


def sweep_seed(spec: schemas.SweepSpec, sweep_id: int) -> int:
    """The sweep's seed: the spec's, else the sweep id."""
    return spec.sampler.seed if spec.sampler.seed is not None else sweep_id


def trial_seed(spec: schemas.SweepSpec, sweep_id: int, number: int) -> int:
    """A per-trial seed: the same for the same sweep seed and trial number in any process."""
    return zlib.crc32(f"{sweep_seed(spec, sweep_id)}:{number}".encode()) & 0x7FFFFFFF


def shared_sampler(spec: schemas.SweepSpec, sweep_id: int) -> optuna.samplers.BaseSampler | None:
    """The one sampler all of a sweep's trials use, for samplers that must share one.

    The grid sampler shuffles its grid once and gives trial ``n`` the ``n``-th point, so
    every trial must see the same shuffle (sweep seed); it is built once per sweep since
    building it enumerates the grid.
    """
    if spec.sampler.name == "grid":
        return optuna.samplers.GridSampler(grid_space(spec), seed=sweep_seed(spec, sweep_id))
    return None


def build_sampler(
    spec: schemas.SweepSpec, sweep_id: int, number: int
) -> optuna.samplers.BaseSampler:
    """The sampler for one trial, seeded from (sweep seed, trial number)."""
    name = spec.sampler.name
    seed = trial_seed(spec, sweep_id, number)
    shared = shared_sampler(spec, sweep_id)
    if shared is not None:
        return shared
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(
            seed=sweep_seed(spec, sweep_id), warn_independent_sampling=False
        )
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def build_pruner(spec: schemas.SweepSpec) -> optuna.pruners.BasePruner:
    """The pruner named by the spec."""
    p = spec.pruner
    if p.name == "none":
        return optuna.pruners.NopPruner()
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=5 if p.n_startup_trials is None else p.n_startup_trials,
            n_warmup_steps=p.n_warmup_steps or 0,
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_resource or "auto", reduction_factor=p.reduction_factor or 4
        )
    max_resource = p.max_resource or spec.budget.max_steps or "auto"
    return ThreadSafeHyperbandPruner(
        min_resource=p.min_resource or 1,
        max_resource=max_resource,
        reduction_factor=p.reduction_factor or 3,
    )


class ThreadSafeHyperbandPruner(optuna.pruners.HyperbandPruner):
    """HyperbandPruner whose lazy set-up is safe when server threads share one instance.

    Optuna builds the brackets on the first ``prune`` after a trial completes, mutating
    several lists in place; two threads doing it at once (or one reading half-built lists)
    corrupt the brackets for good. Here set-up runs once under a lock and the brackets are
    used only once complete. (Overrides two internal methods; optuna is pinned < 6.)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._setup_lock = threading.Lock()
        self._ready = False

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """As HyperbandPruner.prune, with the bracket set-up serialized."""
        if not self._ready:
            with self._setup_lock:
                if not self._pruners:
                    super()._try_initialization(study)
                self._ready = bool(self._pruners)
            if not self._ready:
                return False
        return super().prune(study, trial)

    def _get_bracket_id(self, study: optuna.Study, trial: FrozenTrial) -> int:
        return super()._get_bracket_id(study, trial) if self._ready else 0


def enqueued_params(spec: schemas.SweepSpec) -> list[dict[str, Any]]:
    """The spec's ``enqueue`` entries as plain parameter dicts (AdamW configs converted)."""
    out = []
    for cfg in spec.enqueue:
        params = cfg.model_dump(exclude_none=True, exclude={"from_adamw"})
        if cfg.from_adamw is not None:
            from optim.scaling import from_adamw

            a = cfg.from_adamw
            params["lr"], params["weight_decay"] = from_adamw(a.lr, a.weight_decay, factor=a.factor)
        if spec.baseline and "optimizer" not in params:
            params["optimizer"] = "lion"
        out.append(params)
    return out


def check_spec(spec: schemas.SweepSpec, settings: Settings) -> list[dict[str, Any]]:
    """Cross-field rules pydantic cannot see; returns FastAPI-shaped errors (empty if fine)."""
    errors: list[dict[str, Any]] = []
    if spec.n_trials > settings.max_trials_cap:
        errors.append(
            _err(
                ("n_trials",),
                f"n_trials must be <= {settings.max_trials_cap} (the server's cap)",
                spec.n_trials,
            )
        )
    dims = spec.space.dimensions()
    if spec.sampler.name == "grid":
        for name, dim in dims.items():
            if dim.is_continuous:
                errors.append(
                    _err(
                        ("space", name),
                        "the grid sampler cannot search a continuous range: "
                        "give choices or a range with a step",
                    )
                )
        if not errors:
            size = grid_size(spec)
            if size > GRID_POINTS_CAP:
                errors.append(
                    _err(
                        ("space",),
                        f"the grid has {size} points; a grid sweep may have at most "
                        f"{GRID_POINTS_CAP}",
                    )
                )
            elif spec.n_trials > size:
                errors.append(
                    _err(
                        ("n_trials",),
                        f"n_trials must be <= the grid's {size} points",
                        spec.n_trials,
                    )
                )
    if len(spec.enqueue) > spec.n_trials:
        errors.append(_err(("enqueue",), "more enqueued configs than n_trials"))
    for i, cfg in enumerate(spec.enqueue):
        if cfg.optimizer == "adamw" and spec.baseline != "adamw":
            errors.append(
                _err(("enqueue", i, "optimizer"), "optimizer 'adamw' needs baseline: adamw")
            )
    if errors:
        return errors
    for i, params in enumerate(enqueued_params(spec)):
        for name, v in params.items():
            dim = dims.get(name)
            if dim is None:
                if name in schemas.PARAMS:
                    errors.append(
                        _err(("enqueue", i, name), f"{name} is not swept in this sweep", v)
                    )
                continue
            if dim.is_fixed:
                ok = math.isclose(v, dim.value)
                rule = f"must equal the fixed value {dim.value}"
            elif dim.choices is not None:
                ok = any(math.isclose(v, c) for c in dim.choices)
                rule = f"must be one of {dim.choices}"
            else:
                ok = dim.low * (1 - 1e-12) <= v <= dim.high * (1 + 1e-12)
                rule = f"must be within [{dim.low}, {dim.high}]"
            if not ok:
                errors.append(_err(("enqueue", i, name), f"{name}={v:g} {rule}", v))
    return errors


# ---- helpers ---------------------------------------------------------------------------


@dataclass
class _Counts:
    by_state: dict[str, int]
    retries: int
    final_failures: int
    first_start: datetime | None
    last_complete: datetime | None

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def originals(self) -> int:
        return self.total - self.retries

    @property
    def finished(self) -> int:
        s = self.by_state
        return s["complete"] + s["pruned"] + self.final_failures


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


@dataclass
class _Cached:
    spec: schemas.SweepSpec
    study: optuna.Study
    dists: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    sampler: optuna.samplers.BaseSampler | None
    """The sweep-wide sampler (grid), or None when each trial builds its own."""


class Sweeps:
    """The sweep service over one database (safe to share between threads)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.storage = db.storage
        self._cache: dict[int, _Cached] = {}
        self._lock = threading.Lock()
        self._workers_seen: dict[str, tuple[Any, float]] = {}
        self._trial_sweep: dict[int, int] = {}
        self._status: dict[int, tuple[float, str]] = {}
        self._last_beat: dict[int, float] = {}

    # ---- cache ----

    def _cached(self, sweep: Sweep) -> _Cached:
        with self._lock:
            hit = self._cache.get(sweep.id)
        if hit is not None:
            return hit
        spec = schemas.SweepSpec.model_validate(sweep.spec)
        study = optuna.Study(
            study_name=sweep.study_name,
            storage=self.storage,
            sampler=optuna.samplers.RandomSampler(),
            pruner=build_pruner(spec),
        )
        entry = _Cached(
            spec, study, distributions(spec), fixed_params(spec), shared_sampler(spec, sweep.id)
        )
        with self._lock:
            return self._cache.setdefault(sweep.id, entry)

    def _sweep(self, sweep_id: int) -> Sweep:
        with self.db.session() as s:
            sweep = s.get(Sweep, sweep_id)
        if sweep is None or sweep.status == "creating":
            raise NotFound(f"sweep {sweep_id} not found")
        return sweep

    def _sweep_of_study(self, study_id: int) -> Sweep | None:
        with self.db.session() as s:
            return s.scalars(select(Sweep).where(Sweep.study_id == study_id)).first()

    def _counts(self, study_id: int, session: Session | None = None) -> _Counts:
        with contextlib.nullcontext(session) if session else self.db.session() as s:
            rows = s.execute(
                select(
                    _trials.c.state,
                    func.count(),
                    func.min(_trials.c.datetime_start),
                    func.max(_trials.c.datetime_complete),
                )
                .where(_trials.c.study_id == study_id)
                .group_by(_trials.c.state)
            ).all()
            attr_counts = dict(
                s.execute(
                    select(_trial_system_attrs.c.key, func.count())
                    .select_from(
                        _trial_system_attrs.join(
                            _trials, _trials.c.trial_id == _trial_system_attrs.c.trial_id
                        )
                    )
                    .where(
                        _trials.c.study_id == study_id,
                        or_(
                            _trial_system_attrs.c.key == RETRY_OF,
                            and_(
                                _trial_system_attrs.c.key == FINAL_FAILURE,
                                _trials.c.state == TrialState.FAIL,
                            ),
                        ),
                    )
                    .group_by(_trial_system_attrs.c.key)
                ).all()
            )
        by_state = dict.fromkeys(schemas.STATES, 0)
        first, last = None, None
        for state, n, start, complete in rows:
            name = _STATE_NAMES.get(state)
            if name is None:
                continue
            by_state[name] += n
            if name in ("complete", "pruned", "failed"):
                if start is not None and (first is None or start < first):
                    first = start
                if complete is not None and (last is None or complete > last):
                    last = complete
        return _Counts(
            by_state, attr_counts.get(RETRY_OF, 0), attr_counts.get(FINAL_FAILURE, 0), first, last
        )

    def _announced_tasks(self) -> set[str]:
        with self.db.session() as s:
            return {t for tasks in s.scalars(select(Worker.tasks)) for t in tasks}

    # ---- shaping ----

    def effective_params(self, cached: _Cached, trial: FrozenTrial) -> dict[str, Any]:
        """Fixed values plus what Optuna sampled."""
        return {**cached.fixed, **trial.params}

    def sweep_out(self, sweep: Sweep, announced: set[str] | None = None) -> schemas.SweepOut:
        """The API view of a sweep: counts, progress, best so far, ETA."""
        cached = self._cached(sweep)
        counts = self._counts(sweep.study_id)
        best = None
        try:
            bt = self.storage.get_best_trial(sweep.study_id)
            best = schemas.BestSoFar(
                trial_number=bt.number, value=bt.value, params=self.effective_params(cached, bt)
            )
        except ValueError:
            pass
        finished = counts.finished
        eta = None
        if sweep.status == "running" and finished and counts.first_start and counts.last_complete:
            elapsed = (counts.last_complete - counts.first_start).total_seconds()
            if elapsed > 0:
                eta = max(sweep.n_trials - finished, 0) * elapsed / finished
        if announced is None:
            announced = self._announced_tasks()
        is_announced = sweep.task_name in announced
        warns = [] if is_announced else [f"no worker has announced task {sweep.task_name!r} yet"]
        return schemas.SweepOut(
            id=sweep.id,
            name=sweep.name,
            status=sweep.status,
            task=cached.spec.task,
            spec=sweep.spec,
            n_trials=sweep.n_trials,
            counts=schemas.Counts(**counts.by_state),
            finished=finished,
            progress=min(finished / sweep.n_trials, 1.0),
            best=best,
            created_at=_aware(sweep.created_at),
            updated_at=_aware(sweep.updated_at),
            study_name=sweep.study_name,
            task_announced=is_announced,
            warnings=warns,
            eta_seconds=eta,
        )

    def trial_out(self, cached: _Cached, t: FrozenTrial) -> schemas.TrialOut:
        """The API view of one trial."""
        start, end = t.datetime_start, t.datetime_complete
        return schemas.TrialOut(
            number=t.number,
            trial_id=t._trial_id,
            state=_STATE_NAMES[t.state],
            value=t.value,
            params=self.effective_params(cached, t),
            intermediate_values={str(k): v for k, v in sorted(t.intermediate_values.items())},
            metrics=t.user_attrs.get("metrics") or {},
            config=t.user_attrs.get("config") or {},
            reason=t.user_attrs.get("reason"),
            worker_id=t.user_attrs.get("worker_id"),
            datetime_start=start,
            datetime_complete=end,
            duration_seconds=(end - start).total_seconds() if start and end else None,
            retry_of=t.system_attrs.get(RETRY_OF),
        )

    # ---- sweeps ----

    def create(
        self, spec: schemas.SweepSpec, idempotency_key: str | None = None
    ) -> tuple[schemas.SweepOut, bool]:
        """Create a sweep and its Optuna study; returns (sweep, created)."""
        errors = check_spec(spec, self.settings)
        if errors:
            raise Invalid(errors)
        spec_json = spec.model_dump(mode="json", exclude_none=True)
        enqueue = enqueued_params(spec)
        if idempotency_key:
            existing = self._by_key(idempotency_key, spec_json)
            if existing is not None:
                return existing, False
        try:
            with self.db.session() as s:
                row = Sweep(
                    name=spec.name,
                    status="creating",
                    task_name=spec.task.name,
                    spec=spec_json,
                    n_trials=spec.n_trials,
                    idempotency_key=idempotency_key,
                )
                s.add(row)
                s.flush()
                row.study_name = f"lionsweep-{row.id}"
        except IntegrityError:
            existing = self._by_key(idempotency_key, spec_json) if idempotency_key else None
            if existing is None:
                raise
            return existing, False
        study_id = None
        try:
            study = optuna.create_study(
                storage=self.storage, study_name=row.study_name, direction=spec.objective.direction
            )
            study_id = study._study_id
            study.set_user_attr("lionsweep_sweep_id", row.id)
            study.set_user_attr("lionsweep_task", spec.task.name)
            for params in enqueue:
                study.enqueue_trial(params)
            with self.db.session() as s:
                s.execute(
                    update(Sweep)
                    .where(Sweep.id == row.id)
                    .values(status="running", study_id=study_id)
                )
        except BaseException:
            if study_id is not None:
                self.storage.delete_study(study_id)
            with self.db.session() as s:
                s.execute(delete(Sweep).where(Sweep.id == row.id))
            raise
        return self.get(row.id), True

    def _by_key(self, key: str, spec_json: dict[str, Any]) -> schemas.SweepOut | None:
        for _ in range(50):
            with self.db.session() as s:
                row = s.scalars(select(Sweep).where(Sweep.idempotency_key == key)).first()
            if row is None:
                return None
            if row.status != "creating":
                break
            time.sleep(0.1)
        if row.spec != spec_json:
            raise Conflict("Idempotency-Key was already used with a different sweep spec")
        return self.sweep_out(row)

    def get(self, sweep_id: int) -> schemas.SweepOut:
        """One sweep."""
        return self.sweep_out(self._sweep(sweep_id))

    def list(self, offset: int, limit: int, status: str | None) -> schemas.SweepPage:
        """A page of sweeps, newest first."""
        cond = [Sweep.status != "creating"]
        if status:
            cond.append(Sweep.status == status)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(Sweep).where(*cond))
            rows = s.scalars(
                select(Sweep).where(*cond).order_by(Sweep.id.desc()).offset(offset).limit(limit)
            ).all()
        announced = self._announced_tasks()
        return schemas.SweepPage(
            items=[self.sweep_out(r, announced) for r in rows],
            total=total or 0,
            offset=offset,
            limit=limit,
        )

    def cancel(self, sweep_id: int) -> schemas.SweepOut:
        """Stop new claims; running workers are told to stop."""
        self._set_open_status(sweep_id, "cancelled")
        return self.get(sweep_id)

    def resume(self, sweep_id: int) -> schemas.SweepOut:
        """Let a cancelled sweep's trials be claimed again."""
        self._set_open_status(sweep_id, "running")
        self._maybe_complete(sweep_id)
        return self.get(sweep_id)

    def _set_open_status(self, sweep_id: int, status: str) -> None:
        """Set a sweep that is not complete to ``status`` (409 once it is complete)."""
        if self._sweep(sweep_id).status == "complete":
            raise Conflict(f"sweep {sweep_id} is already complete")
        with self.db.session() as s:
            s.execute(update(Sweep).where(Sweep.id == sweep_id).values(status=status))
        self._forget_status(sweep_id)

    def delete(self, sweep_id: int) -> None:
        """Delete the sweep and its Optuna study."""
        sweep = self._sweep(sweep_id)
        if sweep.study_id is not None:
            with contextlib.suppress(KeyError):
                self.storage.delete_study(sweep.study_id)
        with self.db.session() as s:
            s.execute(delete(Sweep).where(Sweep.id == sweep_id))
        with self._lock:
            self._cache.pop(sweep_id, None)
        self._forget_status(sweep_id)

    def _maybe_complete(self, sweep_id: int) -> None:
        sweep = self._sweep(sweep_id)
        if sweep.status != "running":
            return
        if self._counts(sweep.study_id).finished >= sweep.n_trials:
            with self.db.session() as s:
                s.execute(
                    update(Sweep)
                    .where(Sweep.id == sweep_id, Sweep.status == "running")
                    .values(status="complete")
                )
            self._forget_status(sweep_id)

    # ---- trials (read) ----

    def trials(
        self, sweep_id: int, state: str | None, offset: int, limit: int
    ) -> schemas.TrialPage:
        """A page of a sweep's trials by number."""
        sweep = self._sweep(sweep_id)
        cached = self._cached(sweep)
        states = (_STATE_BY_NAME[state],) if state else None
        all_trials = self.storage.get_all_trials(sweep.study_id, deepcopy=False, states=states)
        all_trials = sorted(all_trials, key=lambda t: t.number)
        return schemas.TrialPage(
            items=[self.trial_out(cached, t) for t in all_trials[offset : offset + limit]],
            total=len(all_trials),
            offset=offset,
            limit=limit,
        )

    def trial(self, sweep_id: int, number: int) -> schemas.TrialOut:
        """One trial by number."""
        sweep = self._sweep(sweep_id)
        cached = self._cached(sweep)
        try:
            tid = self.storage.get_trial_id_from_study_id_trial_number(sweep.study_id, number)
        except KeyError:
            raise NotFound(f"sweep {sweep_id} has no trial {number}") from None
        return self.trial_out(cached, self.storage.get_trial(tid))

    def _complete_trials(self, sweep: Sweep) -> list[FrozenTrial]:
        return list(
            self.storage.get_all_trials(
                sweep.study_id, deepcopy=False, states=(TrialState.COMPLETE,)
            )
        )

    def best(self, sweep_id: int, k: int) -> schemas.BestOut:
        """The best complete trial and the top k as ready-to-use configs."""
        sweep = self._sweep(sweep_id)
        cached = self._cached(sweep)
        done = self._complete_trials(sweep)
        if not done:
            raise Conflict(f"sweep {sweep_id} has no complete trial yet")
        sign = -1.0 if cached.spec.objective.direction == "maximize" else 1.0
        done.sort(key=lambda t: (sign * t.value, t.number))
        configs = [self._config(cached, t) for t in done[:k]]
        return schemas.BestOut(best=configs[0], top=configs)

    def _config(self, cached: _Cached, t: FrozenTrial) -> schemas.ConfigOut:
        """A trial as ready-to-use config; unswept warmup/batch size from what the worker used."""
        p = self.effective_params(cached, t)
        used = t.user_attrs.get("config") or {}
        return schemas.ConfigOut(
            trial_number=t.number,
            value=t.value,
            optimizer=p.get("optimizer", "lion"),
            optimizer_kwargs=schemas.OptimizerKwargs(
                lr=p.get("lr"),
                betas=[p.get("beta1"), p.get("beta2")],
                weight_decay=p.get("weight_decay"),
            ),
            warmup_steps=p.get("warmup_steps", used.get("warmup_steps")),
            batch_size=p.get("batch_size", used.get("batch_size")),
            params=p,
        )

    def scaling_rule(self, sweep_id: int) -> schemas.ScalingFitOut:
        """``optim.scaling.fit_lr_decay`` on the sweep's complete Lion trials."""
        from optim.scaling import fit_lr_decay

        sweep = self._sweep(sweep_id)
        cached = self._cached(sweep)
        points = []
        for t in self._complete_trials(sweep):
            p = self.effective_params(cached, t)
            if p.get("optimizer", "lion") == "lion" and "lr" in p and "weight_decay" in p:
                points.append((p["lr"], p["weight_decay"], t.value))
        if len(points) < 3:
            raise Conflict(
                f"the scaling rule needs at least 3 complete Lion trials; sweep {sweep_id} "
                f"has {len(points)}"
            )
        try:
            fit = fit_lr_decay(points, direction=cached.spec.objective.direction)
        except ValueError as e:
            raise Conflict(f"cannot fit the scaling rule: {e}") from None
        d = fit.as_dict()
        return schemas.ScalingFitOut(**{k: d[k] for k in schemas.ScalingFitOut.model_fields})

    def importances(self, sweep_id: int) -> schemas.ImportancesOut:
        """Optuna's parameter importances over complete trials."""
        sweep = self._sweep(sweep_id)
        cached = self._cached(sweep)
        if len(self._complete_trials(sweep)) < 2:
            raise Conflict("importances need at least 2 complete trials")
        try:
            imp = optuna.importance.get_param_importances(cached.study)
        except (ValueError, RuntimeError) as e:
            raise Conflict(f"cannot compute importances: {e}") from None
        return schemas.ImportancesOut(importances={k: float(v) for k, v in imp.items()})

    # ---- worker protocol ----

    def _touch_worker(self, req: schemas.ClaimRequest) -> None:
        """Record the worker and the tasks it announces (at most every 30 s if unchanged)."""
        key = (req.device, tuple(req.tasks))
        now = time.monotonic()
        with self._lock:
            seen = self._workers_seen.get(req.worker_id)
            if seen is not None and seen[0] == key and now - seen[1] < WORKER_TOUCH_SECONDS:
                return
            self._workers_seen[req.worker_id] = (key, now)
        with self.db.session() as s:
            w = s.get(Worker, req.worker_id)
            if w is None:
                s.add(Worker(id=req.worker_id, device=req.device, tasks=list(req.tasks)))
            else:
                w.device, w.tasks = req.device, list(req.tasks)
                w.last_seen = func.now()

    def claim(self, req: schemas.ClaimRequest) -> schemas.Assignment | None:
        """Give the worker a trial of a running sweep whose task it runs, or None."""
        with contextlib.suppress(IntegrityError):  # two first claims of one worker at once
            self._touch_worker(req)
        with self.db.session() as s:
            sweeps = s.scalars(
                select(Sweep)
                .where(Sweep.status == "running", Sweep.task_name.in_(req.tasks))
                .order_by(Sweep.id)
            ).all()
        for sweep in sweeps:
            got = self._reserve(sweep)
            if got is not None:
                return self._assign(sweep, *got, req)
        return None

    def _reserve(self, sweep: Sweep) -> tuple[int, int] | None:
        """Under the sweep's lock: pop a WAITING trial or create one if below n_trials."""
        if not self._has_work(sweep):
            return None
        with self.db.sweep_lock(sweep.id) as s:
            if s.scalar(select(Sweep.status).where(Sweep.id == sweep.id)) != "running":
                return None
            waiting = s.execute(
                select(_trials.c.trial_id, _trials.c.number)
                .where(_trials.c.study_id == sweep.study_id, _trials.c.state == TrialState.WAITING)
                .order_by(_trials.c.trial_id)
            ).all()
            for tid, number in waiting:
                try:
                    if self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                        popped = tid, number
                        break
                except UpdateFinishedTrialError:
                    continue
            else:
                popped = None
            if popped is None:
                if self._counts(sweep.study_id, s).originals >= sweep.n_trials:
                    return None
                tid = self.storage.create_new_trial(sweep.study_id)
                number = s.scalar(select(_trials.c.number).where(_trials.c.trial_id == tid))
                return tid, number
        # Outside the lock: let this process's trial cache learn the trial another process
        # created (Optuna's own ask() reads the trials the same way).
        self.storage.get_all_trials(sweep.study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return popped

    def _has_work(self, sweep: Sweep) -> bool:
        c = self._counts(sweep.study_id)
        return c.by_state["waiting"] > 0 or c.originals < sweep.n_trials

    def _assign(
        self, sweep: Sweep, tid: int, number: int, req: schemas.ClaimRequest
    ) -> schemas.Assignment:
        cached = self._cached(sweep)
        spec = cached.spec
        try:
            view = copy.copy(cached.study)
            view.sampler = cached.sampler or build_sampler(spec, sweep.id, number)
            trial = optuna.Trial(view, tid)
            for name, dist in cached.dists.items():
                _suggest(trial, name, dist)
            params = {**cached.fixed, **trial.params}
            self.storage.set_trial_user_attr(tid, "worker_id", req.worker_id)
            self.storage.set_trial_user_attr(tid, "device", req.device)
            self._beat(tid, force=True)
        except Exception as e:
            log.exception("sampling trial %s of sweep %s failed", number, sweep.id)
            self._fail(cached, sweep, tid, f"the server could not sample this trial: {e}")
            raise
        return schemas.Assignment(
            sweep_id=sweep.id,
            trial_id=tid,
            trial_number=number,
            params=params,
            task=spec.task,
            objective=spec.objective,
            budget=spec.budget,
            seed=trial_seed(spec, sweep.id, number),
            heartbeat_interval=self.settings.heartbeat_interval_seconds,
        )

    def _trial_and_sweep(self, trial_id: int) -> tuple[FrozenTrial, Sweep, _Cached]:
        try:
            t = self.storage.get_trial(trial_id)
        except KeyError:
            raise NotFound(f"trial {trial_id} not found") from None
        sweep = self._sweep_of_trial(trial_id)
        if sweep is None:
            raise NotFound(f"trial {trial_id} does not belong to a sweep")
        return t, sweep, self._cached(sweep)

    def _sweep_of_trial(self, trial_id: int) -> Sweep | None:
        """The trial's sweep; the trial→sweep link and the status are cached briefly."""
        with self._lock:
            sweep_id = self._trial_sweep.get(trial_id)
        if sweep_id is not None:
            sweep = self._sweep_fresh(sweep_id)
            if sweep is not None:
                return sweep
        with self.db.session() as s:
            sweep = s.scalars(
                select(Sweep)
                .join(_trials, _trials.c.study_id == Sweep.study_id)
                .where(_trials.c.trial_id == trial_id)
            ).first()
        if sweep is not None:
            with self._lock:
                if len(self._trial_sweep) > 100_000:
                    self._trial_sweep.clear()
                self._trial_sweep[trial_id] = sweep.id
                self._status[sweep.id] = (time.monotonic(), sweep)
        return sweep

    def _forget_status(self, sweep_id: int) -> None:
        with self._lock:
            self._status.pop(sweep_id, None)

    def _sweep_fresh(self, sweep_id: int) -> Sweep | None:
        """The sweep row, re-read at most once per STATUS_TTL_SECONDS."""
        with self._lock:
            hit = self._status.get(sweep_id)
        if hit is not None and time.monotonic() - hit[0] < STATUS_TTL_SECONDS:
            return hit[1]
        with self.db.session() as s:
            sweep = s.get(Sweep, sweep_id)
        with self._lock:
            if sweep is None:
                self._status.pop(sweep_id, None)
            else:
                self._status[sweep_id] = (time.monotonic(), sweep)
        return sweep

    def _beat(self, trial_id: int, force: bool = False) -> None:
        """Record a heartbeat (database clock); reports do so at most every few seconds."""
        every = min(self.settings.heartbeat_interval_seconds, self.settings.heartbeat_grace_seconds)
        now = time.monotonic()
        with self._lock:
            last = self._last_beat.get(trial_id)
            if not force and last is not None and now - last < every / 4:
                return
            if len(self._last_beat) > 100_000:
                self._last_beat.clear()
            self._last_beat[trial_id] = now
        self.storage.record_heartbeat(trial_id)

    def report(self, trial_id: int, req: schemas.ReportRequest) -> schemas.ActionOut:
        """Record an intermediate value (and heartbeat); say continue, prune or stop."""
        t, sweep, cached = self._trial_and_sweep(trial_id)
        if t.state != TrialState.RUNNING:
            raise Conflict(f"trial {trial_id} is {_STATE_NAMES[t.state]}, not running")
        try:
            # Optuna refuses writes to a trial finished since the check above.
            self.storage.set_trial_intermediate_value(trial_id, req.step, req.value)
            if req.metrics:
                self.storage.set_trial_user_attr(trial_id, "metrics", req.metrics)
        except UpdateFinishedTrialError:
            t = self.storage.get_trial(trial_id)
            raise Conflict(f"trial {trial_id} is {_STATE_NAMES[t.state]}, not running") from None
        t = self.storage.get_trial(trial_id)
        with contextlib.suppress(UpdateFinishedTrialError):
            self._beat(trial_id)
        if sweep.status == "cancelled":
            return schemas.ActionOut(action="stop")
        if cached.study.pruner.prune(cached.study, t):
            return schemas.ActionOut(action="prune")
        return schemas.ActionOut(action="continue")

    def heartbeat(self, trial_id: int) -> schemas.ActionOut:
        """Extend the trial's lease."""
        t, sweep, _ = self._trial_and_sweep(trial_id)
        if t.state != TrialState.RUNNING:
            raise Conflict(f"trial {trial_id} is {_STATE_NAMES[t.state]}, not running")
        self._beat(trial_id, force=True)
        return schemas.ActionOut(action="stop" if sweep.status == "cancelled" else "continue")

    def finish(self, trial_id: int, req: schemas.FinishRequest) -> schemas.FinishOut:
        """Complete, prune or fail a running trial (a failure is re-queued while retries remain)."""
        t, sweep, cached = self._trial_and_sweep(trial_id)
        wanted = _STATE_BY_NAME[req.state]
        if t.state == TrialState.RUNNING:
            try:
                for key, value in (("metrics", req.metrics), ("config", req.config)):
                    if value:
                        self.storage.set_trial_user_attr(trial_id, key, value)
                if req.reason:
                    self.storage.set_trial_user_attr(trial_id, "reason", req.reason)
                if wanted == TrialState.COMPLETE:
                    cached.study.tell(t.number, req.value, state=wanted)
                elif wanted == TrialState.PRUNED:
                    cached.study.tell(t.number, state=wanted)
                else:
                    return self._fail(cached, sweep, trial_id, None, told=True)
            except (UpdateFinishedTrialError, ValueError, RuntimeError):
                t = self.storage.get_trial(trial_id)
                if t.state == TrialState.RUNNING:
                    raise
            else:
                self._maybe_complete(sweep.id)
                return schemas.FinishOut(trial_id=trial_id, state=req.state, requeued=False)
        if t.state == wanted:
            return schemas.FinishOut(
                trial_id=trial_id, state=req.state, requeued=self._was_requeued(t)
            )
        raise Conflict(
            f"trial {trial_id} is already {_STATE_NAMES[t.state]}; cannot mark it {req.state}"
        )

    def _fail(
        self, cached: _Cached, sweep: Sweep, trial_id: int, reason: str | None, told: bool = False
    ) -> schemas.FinishOut:
        """Fail a running trial, then re-queue it with the same params if retries remain.

        A failure that will not be retried is marked final *before* the state changes, so
        a concurrent count never takes a failure awaiting its retry for a finished trial.
        A trial that fails while its sweep is cancelled (told to stop, or its lease ran out)
        is re-queued without using up a retry, so that resuming the sweep runs it.
        """
        try:
            running = self.storage.get_trial(trial_id)
            if running.state == TrialState.RUNNING:
                with self.db.session() as s:
                    status = s.scalar(select(Sweep.status).where(Sweep.id == sweep.id))
                if status == "cancelled":
                    self.storage.set_trial_system_attr(trial_id, STOPPED_BY_CANCEL, True)
                elif not self._retries_left(cached, running):
                    self.storage.set_trial_system_attr(trial_id, FINAL_FAILURE, True)
            if reason:
                self.storage.set_trial_user_attr(trial_id, "reason", reason)
            if told:
                cached.study.tell(self.storage.get_trial(trial_id).number, state=TrialState.FAIL)
            else:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError, RuntimeError):
            t = self.storage.get_trial(trial_id)
            if t.state != TrialState.FAIL:
                raise Conflict(
                    f"trial {trial_id} is already {_STATE_NAMES[t.state]}; cannot mark it failed"
                ) from None
            return schemas.FinishOut(
                trial_id=trial_id, state="failed", requeued=self._was_requeued(t)
            )
        t = self.storage.get_trial(trial_id)
        requeued = self._requeue(cached, t)
        self._maybe_complete(sweep.id)
        return schemas.FinishOut(trial_id=trial_id, state="failed", requeued=requeued)

    @staticmethod
    def _retries_left(cached: _Cached, t: FrozenTrial) -> bool:
        return len(t.system_attrs.get(RETRY_HISTORY, [])) < cached.spec.max_retries

    def _requeue(self, cached: _Cached, t: FrozenTrial) -> bool:
        """Add a WAITING copy of failed ``t`` if a retry remains (a cancel's stop uses none)."""
        free = bool(t.system_attrs.get(STOPPED_BY_CANCEL))
        if not free and not self._retries_left(cached, t):
            return False
        history = list(t.system_attrs.get(RETRY_HISTORY, []))
        if not free:
            history.append(t.number)
        attrs: dict[str, Any] = {
            RETRY_OF: t.number,
            RETRY_HISTORY: history,
            "failed_trial": history[0] if history else t.number,
            "retry_history": history,
        }
        if "fixed_params" in t.system_attrs:
            attrs["fixed_params"] = t.system_attrs["fixed_params"]
        cached.study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                system_attrs=attrs,
            )
        )
        return True

    def _was_requeued(self, t: FrozenTrial) -> bool:
        with self.db.session() as s:
            study_id = select(_trials.c.study_id).where(_trials.c.trial_id == t._trial_id)
            return bool(s.scalar(select(_requeued(study_id.scalar_subquery(), t.number))))

    # ---- leases ----

    def reap(self) -> int:
        """Fail RUNNING trials with no heartbeat (or start) for the grace period; re-queue them."""
        grace = self.settings.heartbeat_grace_seconds
        with self.db.session() as s:
            now = s.execute(select(func.now())).scalar()
            if isinstance(now, str):  # pragma: no cover - defensive for odd drivers
                now = datetime.fromisoformat(now)
            cutoff = now.replace(tzinfo=None) - timedelta(seconds=grace)
            # A trial reserved by a server that died before its first heartbeat has no
            # heartbeat row: its start time is its last sign of life.
            last_seen = func.coalesce(_heartbeats.c.heartbeat, _trials.c.datetime_start)
            stale = s.execute(
                select(_trials.c.trial_id, _trials.c.study_id)
                .outerjoin(_heartbeats, _heartbeats.c.trial_id == _trials.c.trial_id)
                .where(_trials.c.state == TrialState.RUNNING, last_seen < cutoff)
            ).all()
        n = 0
        for tid, study_id in stale:
            sweep = self._sweep_of_study(study_id)
            if sweep is None:
                continue
            try:
                self._fail(
                    self._cached(sweep),
                    sweep,
                    tid,
                    f"lease expired: no heartbeat for {grace:g} s",
                )
                n += 1
            except (Conflict, UpdateFinishedTrialError):
                continue
        return n + self._repair_orphans()

    def _repair_orphans(self) -> int:
        """Re-queue failures left without their retry (a server died between the two steps).

        A failure that will not be retried is marked final before it fails, so an
        unmarked failure older than the grace period with no retry is such an orphan.
        """
        t, a = _trials.alias("t"), _trial_system_attrs.alias("a")
        cutoff = datetime.now() - timedelta(seconds=self.settings.heartbeat_grace_seconds)
        with self.db.session() as s:
            rows = s.execute(
                select(t.c.trial_id, t.c.study_id, t.c.number, Sweep.id)
                .join(Sweep, Sweep.study_id == t.c.study_id)
                .where(
                    Sweep.status == "running",
                    t.c.state == TrialState.FAIL,
                    t.c.datetime_complete < cutoff,
                    ~exists().where(a.c.trial_id == t.c.trial_id, a.c.key == FINAL_FAILURE),
                    ~_requeued(t.c.study_id, t.c.number),
                )
            ).all()
        n = 0
        for tid, study_id, number, sweep_id in rows:
            cached = self._cached(self._sweep(sweep_id))
            with self.db.sweep_lock(sweep_id) as s:
                # Another reaper (another server process) may have re-queued it since.
                if s.scalar(select(_requeued(study_id, number))):
                    continue
                n += self._requeue(cached, self.storage.get_trial(tid))
        if n:
            log.info("reaper: re-queued %d failed trial(s) that had lost their retry", n)
        return n


def _requeued(study_id: Any, number: Any) -> Any:
    """SQL: failed trial ``number`` of ``study_id`` already has its retry (columns or values)."""
    r, ra = _trials.alias("r"), _trial_system_attrs.alias("ra")
    return (
        exists()
        .select_from(ra.join(r, r.c.trial_id == ra.c.trial_id))
        .where(
            r.c.study_id == study_id,
            ra.c.key == RETRY_OF,
            ra.c.value_json == cast(number, String),
        )
    )


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """Suggest ``name`` from ``dist`` through Optuna's public API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
