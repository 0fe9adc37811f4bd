"""What never changes about a sweep once created — its spec turned into Optuna objects, its
study — cached per process, and the Optuna studies built on it."""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from sqlalchemy import select

from service import optuna_tables, schemas
from service import spec as specs
from service.db import Database
from service.errors import NotFound
from service.models import Sweep

log = logging.getLogger("lionsweep.answers")
T = TypeVar("T")
SHARED_ENTRIES = 1024
SLOW_SECONDS = 1.0
"""An answer that took this long to compute is logged at INFO (else at DEBUG)."""


_how: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("answers", default=None)


def track_answers() -> list[str]:
    """Start noting, for the calling request, how each shared answer it asks for is obtained:
    returns the list :meth:`SharedAnswers.get` appends to (``kept``, ``shared`` or
    ``computed``, each with its milliseconds)."""
    noted: list[str] = []
    _how.set(noted)
    return noted


def server_timing(noted: list[str]) -> str:
    """Noted answers as a ``Server-Timing`` header value (``answer;desc=computed;dur=812.4``)."""
    return ", ".join(noted)


def _note(how: str, started: float) -> None:
    noted = _how.get()
    if noted is not None:
        noted.append(f"answer;desc={how};dur={1000 * (time.perf_counter() - started):.1f}")


def _quiet(how: str, started: float) -> None:
    pass


class _Flight:
    """One computation in progress, and what it gave."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SharedAnswers:
    """Answers computed once per change and shared (safe to share between threads).

    An answer is kept under its key with the stamp it was computed for (e.g. a sweep's
    :func:`service.optuna_tables.fingerprint`): a caller with the same stamp gets it at once;
    callers that arrive while it is being computed wait for that one computation instead of
    starting their own (single flight); a new stamp computes it again.
    """

    def __init__(self, entries: int = SHARED_ENTRIES) -> None:
        self.entries = entries
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[Hashable, Any]] = {}
        self._flights: dict[tuple[Hashable, Hashable], _Flight] = {}
        self.computed = 0
        """How many answers this process computed (not counting those it shared)."""

    def get(
        self, key: Hashable, stamp: Hashable, compute: Callable[[], T], noted: bool = True
    ) -> T:
        """The answer kept under ``key`` for ``stamp``, computed by ``compute`` when missing
        (once, however many callers ask meanwhile; its error reaches each of them). With
        ``noted`` false, how it was obtained is not noted for the request (an input of
        answers, not an answer)."""
        started = time.perf_counter()
        note = _note if noted else _quiet
        with self._lock:
            hit = self._kept.get(key)
            if hit is not None and hit[0] == stamp:
                note("kept", started)
                return hit[1]
            flight = self._flights.get((key, stamp))
            mine = flight is None
            if mine:
                flight = self._flights[(key, stamp)] = _Flight()
        if not mine:
            flight.done.wait()
            note("shared", started)
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = compute()
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                self._flights.pop((key, stamp), None)
                self.computed += 1
                if flight.error is None:
                    if len(self._kept) >= self.entries:
                        self._kept.clear()
                    self._kept[key] = (stamp, flight.value)
            flight.done.set()
            note("computed", started)
        took = time.perf_counter() - started
        log.log(
            logging.INFO if took >= SLOW_SECONDS else logging.DEBUG,
            "computed %s in %.3f s",
            _name(key),
            took,
        )
        return flight.value


def _name(key: Hashable) -> str:
    """A key in words for the log (``rule of sweep 3``)."""
    if isinstance(key, tuple) and len(key) >= 2:
        return f"{key[0]} of sweep {key[1]}" + "".join(f" ({k})" for k in key[2:])
    return str(key)


@dataclass
class SweepInfo:
    """A sweep's fixed facts: ids, budget, spec and its Optuna distributions."""

    id: int
    study_id: int
    study_name: str
    n_trials: int
    task_name: str
    spec: schemas.SweepSpec
    dists: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    grid_sampler: optuna.samplers.BaseSampler | None
    pruners: dict[int, optuna.pruners.BasePruner] = field(default_factory=dict)
    study: optuna.Study | None = None

    def params(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """A trial's full parameters: the sweep's fixed values plus what Optuna sampled, and
        ``weight_decay = lr_wd_product / lr`` in a sweep that searches the product."""
        return self.full_params(trial.params)

    def full_params(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The full parameters of a trial whose sampled params are ``sampled`` (see
        :meth:`params`)."""
        p = {**self.fixed, **sampled}
        product, lr = p.get("lr_wd_product"), p.get("lr")
        if product is not None and lr:
            p["weight_decay"] = product / lr
        return p

    @property
    def sign(self) -> float:
        """+1 when lower objective values are better, -1 when higher are."""
        return -1.0 if self.spec.objective.direction == "maximize" else 1.0


def config_key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable key of a config's parameters (equal params, equal key)."""
    return tuple(sorted(params.items()))


class Catalog:
    """Per-process cache of :class:`SweepInfo` (safe to share between threads)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._infos: dict[int, SweepInfo] = {}
        self.answers = SharedAnswers()
        """Answers computed from a sweep's trials, once per change of its trials."""
        self.generation = 0
        """Bumped by every change of a sweep's status or counts made in this process."""

    def info(self, sweep_id: int) -> SweepInfo:
        """The sweep's facts (404 for an unknown sweep)."""
        with self._lock:
            hit = self._infos.get(sweep_id)
        if hit is not None:
            return hit
        with self.db.session() as s:
            row = s.get(Sweep, sweep_id)
        if row is None or row.study_id is None or row.status == "creating":
            raise NotFound(f"sweep {sweep_id} not found")
        return self.remember(row)

    def remember(self, row: Sweep) -> SweepInfo:
        """Cache and return the facts of a sweep row."""
        spec = schemas.SweepSpec.model_validate(row.spec)
        info = SweepInfo(
            id=row.id,
            study_id=row.study_id,
            study_name=row.study_name,
            n_trials=row.n_trials,
            task_name=row.task_name,
            spec=spec,
            dists=specs.distributions(spec),
            fixed=specs.fixed_params(spec),
            grid_sampler=specs.shared_sampler(spec, row.id),
        )
        with self._lock:
            return self._infos.setdefault(row.id, info)

    def of_trial(self, trial_id: int) -> SweepInfo:
        """The sweep a trial belongs to (404 for an unknown trial or one outside any sweep).

        Not cached: on SQLite a deleted study's trial ids can be given out again.
        """
        trials = optuna_tables.trials
        with self.db.session() as s:
            found = s.execute(
                select(trials.c.trial_id, Sweep.id)
                .outerjoin(Sweep, Sweep.study_id == trials.c.study_id)
                .where(trials.c.trial_id == trial_id)
            ).first()
        if found is None:
            raise NotFound(f"trial {trial_id} not found")
        if found[1] is None:
            raise NotFound(f"trial {trial_id} does not belong to a sweep")
        return self.info(found[1])

    def fingerprint(self, info: SweepInfo) -> tuple[Any, ...]:
        """The sweep's trials' :func:`service.optuna_tables.fingerprint` (one cheap query):
        answers kept under it stay right across changes made by any server process."""
        with self.db.session() as s:
            return optuna_tables.fingerprint(s, info.study_id)

    def trials(self, info: SweepInfo) -> list[optuna.trial.FrozenTrial]:
        """Every trial of the sweep by number (:func:`service.optuna_tables.study_trials`), read
        once per change of its trials and shared by every answer computed from them (404 once
        the sweep is deleted). Callers must not change them."""

        def read() -> list[optuna.trial.FrozenTrial]:
            try:
                with self.db.session() as s:
                    return optuna_tables.study_trials(s, info.study_id)
            except KeyError:
                raise NotFound(f"sweep {info.id} not found") from None

        return self.answers.get(("trials", info.id), self.fingerprint(info), read, noted=False)

    def changed(self) -> None:
        """Note that a sweep's status or counts changed (cached views are stale)."""
        with self._lock:
            self.generation += 1

    def forget(self, sweep_id: int) -> None:
        """Drop a deleted sweep's facts."""
        with self._lock:
            self._infos.pop(sweep_id, None)

    def sampler(self, info: SweepInfo, number: int) -> optuna.samplers.BaseSampler:
        """The sampler for trial ``number``: the sweep's grid, else one seeded for the trial."""
        return info.grid_sampler or specs.build_sampler(info.spec, info.id, number)

    def pruner(self, info: SweepInfo, first_report_step: int) -> optuna.pruners.BasePruner:
        """The sweep's pruner, its rungs counted in steps from the first report's step.

        The instance keeps Hyperband's brackets between calls; it is only ever used inside
        the sweep's transaction, whose lock makes one caller at a time use it.
        """
        with self._lock:
            pruner = info.pruners.get(first_report_step)
            if pruner is None:
                pruner = specs.build_pruner(info.spec, first_report_step)
                info.pruners[first_report_step] = pruner
            return pruner

    def study(
        self,
        info: SweepInfo,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
    ) -> optuna.Study:
        """The sweep's Optuna study with the given sampler and pruner (on the shared storage).

        One ``optuna.Study`` per sweep and storage is loaded once; each call gets a shallow
        copy with its own ``sampler`` and ``pruner`` (public attributes of a study).
        """
        storage = self.db.storage
        base = info.study
        if base is None or base._storage is not storage:
            base = optuna.Study(study_name=info.study_name, storage=storage)
            info.study = base
        view = copy.copy(base)
        view.sampler = sampler or optuna.samplers.RandomSampler()
        view.pruner = pruner or optuna.pruners.NopPruner()
        return view
