"""The one module that reads Optuna's tables directly, for the aggregate queries that Optuna's
storage API has no call for (counts per state, which trial belongs to which study, whether a
failed trial already has its retry), and a bulk read of a study's trials for the answers computed
from all of them. Everything else goes through Optuna's storage API."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import (
    DateTime,
    Enum,
    Float,
    Integer,
    String,
    case,
    cast,
    column,
    exists,
    func,
    or_,
    select,
    table,
)
from sqlalchemy.orm import Session

from service import schemas

RETRY_OF = "lionsweep:retry_of"
FINAL_FAILURE = "lionsweep:final_failure"
RETRY_HISTORY = "lionsweep:retry_history"
STOPPED_BY_CANCEL = "lionsweep:stopped_by_cancel"
#: Set on a trial its worker handed back (reason ``worker shutdown``): re-queued, not failed.
HANDED_BACK = "lionsweep:handed_back"
#: How many times the trials before this one (of one config) were handed back: capped by
#: ``protocol.HAND_BACK_LIMIT``, past which a hand-back uses up a retry.
HAND_BACKS = "lionsweep:hand_backs"
REEVAL_OF = "lionsweep:reevaluation_of"
"""On a re-evaluation trial: the number of the trial whose config it re-runs."""
REEVALUATION = "lionsweep:reevaluation"
"""On a study: what was decided about re-evaluating its leading configs."""
QUEUED = "lionsweep:queued"
"""``true`` on a trial the sampler asked for ahead of claims that no worker has claimed yet
(Optuna's state: RUNNING, asked and not told); lionsweep shows it as waiting. A claim takes it
without the sweep's lock and sets this to ``false``."""
IMPORTED = "lionsweep:imported"
"""On a trial brought in from elsewhere (``POST /api/sweeps/{id}/trials:import``): where it
came from, ``{"source": file name or null, "row": row number in it, "name": run name or null}``.
Imported trials count as trials everywhere except the sweep's n_trials budget."""
IMPORT_KEY = "lionsweep:import_key"
"""On an imported trial: the Idempotency-Key of the import request that brought it, if any."""
IMPORT_DIGEST = "lionsweep:import_digest"
"""On an imported trial brought by a request with an Idempotency-Key: a digest of that request,
so the key given again with other content is told apart from a retry."""
DIVERGED = "lionsweep:diverged"
"""On an imported trial whose run diverged (``true``); its user attr ``reason`` is
``diverged``, as a worker's diverged trial has."""


studies = table("studies", column("study_id", Integer))
trials = table(
    "trials",
    column("trial_id", Integer),
    column("number", Integer),
    column("study_id", Integer),
    column("state", Enum(TrialState, name="trialstate")),
    column("datetime_start", DateTime),
    column("datetime_complete", DateTime),
)
trial_system_attrs = table(
    "trial_system_attributes",
    column("trial_system_attribute_id", Integer),
    column("trial_id", Integer),
    column("key", String),
    column("value_json", String),
)

trial_user_attrs = table(
    "trial_user_attributes",
    column("trial_user_attribute_id", Integer),
    column("trial_id", Integer),
    column("key", String),
    column("value_json", String),
)
trial_params = table(
    "trial_params",
    column("param_id", Integer),
    column("trial_id", Integer),
    column("param_name", String),
    column("param_value", Float),
    column("distribution_json", String),
)
trial_values = table(
    "trial_values",
    column("trial_value_id", Integer),
    column("trial_id", Integer),
    column("objective", Integer),
    column("value", Float),
    column("value_type", String),
)
trial_intermediate_values = table(
    "trial_intermediate_values",
    column("trial_intermediate_value_id", Integer),
    column("trial_id", Integer),
    column("step", Integer),
    column("intermediate_value", Float),
    column("intermediate_value_type", String),
)

STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
STATE_BY_NAME = {v: k for k, v in STATE_NAMES.items()}


@dataclass
class Counts:
    """A study's trials counted by state: its own trials (n_trials of them, with their retries)
    and the re-evaluations of its leading configs (with theirs), apart."""

    by_state: dict[str, int]
    retries: int
    final_failures: int
    first_start: datetime | None
    last_complete: datetime | None
    reeval_by_state: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(schemas.STATES, 0)
    )
    reeval_retries: int = 0
    reeval_final_failures: int = 0
    #: Failed trials that were handed back (a worker shutdown, or stopped by a cancel) and
    #: re-queued: counted in ``by_state["failed"]`` like Optuna does, shown apart.
    handed_back: int = 0
    #: Trials imported from elsewhere, by state: counted in ``by_state``, not in the budget.
    imported_by_state: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(schemas.STATES, 0)
    )
    #: Trials asked ahead of claims, not yet claimed: counted in ``by_state["waiting"]``.
    queued: int = 0

    @property
    def imported(self) -> int:
        """Trials imported from elsewhere."""
        return sum(self.imported_by_state.values())

    @property
    def total(self) -> int:
        """All trials, retries and re-evaluations included."""
        return sum(self.by_state.values())

    @property
    def reeval_total(self) -> int:
        """Re-evaluation trials, their retries included."""
        return sum(self.reeval_by_state.values())

    @property
    def originals(self) -> int:
        """The sweep's own trials that are not a retry of another (re-evaluations and imported
        trials apart)."""
        own = self.total - self.reeval_total - self.imported
        return own - (self.retries - self.reeval_retries)

    @property
    def finished(self) -> int:
        """Own originals whose outcome is final: complete, pruned, or failed with no retry left."""
        s, r, i = self.by_state, self.reeval_by_state, self.imported_by_state
        own_final = self.final_failures - self.reeval_final_failures
        complete = s["complete"] - r["complete"] - i["complete"]
        return complete + s["pruned"] - r["pruned"] - i["pruned"] + own_final

    @property
    def reeval_planned(self) -> int:
        """Re-evaluation runs queued (their retries not counted)."""
        return self.reeval_total - self.reeval_retries

    @property
    def reeval_finished(self) -> int:
        """Re-evaluation runs whose outcome is final."""
        r = self.reeval_by_state
        return r["complete"] + r["pruned"] + self.reeval_final_failures

    @property
    def reeval_pending(self) -> int:
        """Re-evaluation runs waiting or running."""
        return self.reeval_by_state["waiting"] + self.reeval_by_state["running"]


def _has_attr(key: str) -> Any:
    a = trial_system_attrs.alias()
    return exists().where(a.c.trial_id == trials.c.trial_id, a.c.key == key).correlate(trials)


def queued_clause() -> Any:
    """SQL: the trial is queued (asked ahead, not yet claimed)."""
    a = trial_system_attrs.alias()
    return (
        exists()
        .where(a.c.trial_id == trials.c.trial_id, a.c.key == QUEUED, a.c.value_json == "true")
        .correlate(trials)
    )


def is_queued(trial: FrozenTrial) -> bool:
    """Whether a trial was asked ahead of claims and no worker has claimed it yet."""
    return trial.state == TrialState.RUNNING and trial.system_attrs.get(QUEUED) is True


def state_name(trial: FrozenTrial) -> str:
    """A trial's state as lionsweep shows it: a queued trial is ``waiting``."""
    return "waiting" if is_queued(trial) else STATE_NAMES[trial.state]


def counts(session: Session, study_id: int) -> Counts:
    """Count a study's trials by state, its retries, final failures and re-evaluations."""
    per_trial = (
        select(
            trials.c.state.label("state"),
            trials.c.datetime_start.label("start"),
            trials.c.datetime_complete.label("complete"),
            case((_has_attr(REEVAL_OF), 1), else_=0).label("reeval"),
            case((_has_attr(RETRY_OF), 1), else_=0).label("retry"),
            case((_has_attr(FINAL_FAILURE), 1), else_=0).label("final"),
            case((or_(_has_attr(HANDED_BACK), _has_attr(STOPPED_BY_CANCEL)), 1), else_=0).label(
                "handed"
            ),
            case((_has_attr(IMPORTED), 1), else_=0).label("imported"),
            case((queued_clause(), 1), else_=0).label("queued"),
        )
        .where(trials.c.study_id == study_id)
        .subquery()
    )
    rows = session.execute(
        select(
            per_trial.c.state,
            per_trial.c.reeval,
            per_trial.c.retry,
            per_trial.c.final,
            per_trial.c.handed,
            per_trial.c.imported,
            per_trial.c.queued,
            func.count(),
            func.min(per_trial.c.start),
            func.max(per_trial.c.complete),
        ).group_by(
            per_trial.c.state,
            per_trial.c.reeval,
            per_trial.c.retry,
            per_trial.c.final,
            per_trial.c.handed,
            per_trial.c.imported,
            per_trial.c.queued,
        )
    ).all()
    out = Counts(dict.fromkeys(schemas.STATES, 0), 0, 0, None, None)
    for state, reeval, retry, final, handed, imported, queued, n, start, complete in rows:
        name = STATE_NAMES.get(state)
        if name is None:
            continue
        if queued and name == "running":
            name = "waiting"
            out.queued += n
        out.by_state[name] += n
        out.handed_back += n if handed and name == "failed" else 0
        out.retries += n if retry else 0
        is_final = bool(final) and name == "failed"
        out.final_failures += n if is_final else 0
        if reeval:
            out.reeval_by_state[name] += n
            out.reeval_retries += n if retry else 0
            out.reeval_final_failures += n if is_final else 0
        if imported:
            # An imported trial ran elsewhere: its times say when it was imported, not run.
            out.imported_by_state[name] += n
            continue
        if name in ("complete", "pruned", "failed"):
            if start is not None and (out.first_start is None or start < out.first_start):
                out.first_start = start
            if complete is not None and (out.last_complete is None or complete > out.last_complete):
                out.last_complete = complete
    return out


@dataclass
class QueueCounts:
    """What deciding how far ahead to sample needs of a study's trials, read in one cheap
    statement (:func:`queue_counts`); :func:`counts` has them all, at a cost that grows with
    the study's every trial."""

    total: int
    """All trials (the next new trial's number)."""
    waiting: int
    """Trials waiting in Optuna's own sense (enqueued configs, retries, re-evaluations): an
    ``ask`` pops these before it makes a new trial."""
    running: int
    """Running trials that a worker holds (queued ones apart)."""
    queued: int
    """Trials asked ahead of claims, not yet claimed."""
    originals: int
    """The sweep's own trials that are not a retry, a re-evaluation or imported."""


def queue_counts(session: Session, study_id: int) -> QueueCounts:
    """A study's :class:`QueueCounts`: one statement that looks at the attributes of running
    trials and of the few trials that are not originals, not at every trial's."""
    running = trials.c.state == TrialState.RUNNING
    a = trial_system_attrs.alias()
    t = trials.alias()
    not_original = (
        select(func.count(func.distinct(a.c.trial_id)))
        .join(t, t.c.trial_id == a.c.trial_id)
        .where(t.c.study_id == study_id, a.c.key.in_([RETRY_OF, REEVAL_OF, IMPORTED]))
        .scalar_subquery()
    )
    found = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((trials.c.state == TrialState.WAITING, 1), else_=0)), 0),
            func.coalesce(func.sum(case((running, 1), else_=0)), 0),
            func.coalesce(
                func.sum(case((running, case((queued_clause(), 1), else_=0)), else_=0)), 0
            ),
            not_original,
        ).where(trials.c.study_id == study_id)
    ).one()
    total, waiting, running_n, queued_n, extra = (int(x or 0) for x in found)
    return QueueCounts(total, waiting, running_n - queued_n, queued_n, total - extra)


def take_queued(session: Session, study_ids: Any) -> tuple[int, int] | None:
    """Lock the first queued trial of the studies ``study_ids`` (a SQL select of study ids; in
    order of study, then trial) that no other transaction holds; (trial id, study id).

    PostgreSQL skips rows other claims have locked (``FOR UPDATE SKIP LOCKED``), so concurrent
    claims take different trials without waiting for each other; on SQLite the transaction
    already holds the database's write lock. A trial whose claim committed between this
    statement's snapshot and its lock is read again and passed over.
    """
    while True:
        found = session.execute(
            select(trials.c.trial_id, trials.c.study_id)
            .where(
                trials.c.study_id.in_(study_ids),
                trials.c.state == TrialState.RUNNING,
                queued_clause(),
            )
            .order_by(trials.c.study_id, trials.c.trial_id)
            .limit(1)
            .with_for_update(skip_locked=True, of=trials)
        ).first()
        if found is None:
            return None
        if queued(session, found[0]):  # a new statement: sees claims committed meanwhile
            return found[0], found[1]


def queued(session: Session, trial_id: int) -> bool:
    """Whether a trial is queued (asked ahead, not yet claimed)."""
    found = select(trials.c.trial_id).where(trials.c.trial_id == trial_id, queued_clause())
    return session.scalar(found) is not None


def trial_count(session: Session, study_id: int) -> int:
    """How many trials a study has (the next trial's number, as Optuna numbers them)."""
    found = select(func.count()).select_from(trials).where(trials.c.study_id == study_id)
    return session.scalar(found) or 0


def numbers_with_attr(session: Session, study_id: int, key: str, value: Any) -> list[int]:
    """The numbers of a study's trials whose system attr ``key`` is ``value``, ascending."""
    a = trial_system_attrs
    found = (
        select(trials.c.number)
        .join(a, a.c.trial_id == trials.c.trial_id)
        .where(trials.c.study_id == study_id, a.c.key == key, a.c.value_json == json.dumps(value))
        .order_by(trials.c.number)
    )
    return list(session.scalars(found))


def numbers_with_key(session: Session, study_id: int, key: str) -> list[int]:
    """The numbers of a study's trials that have the system attr ``key`` at all, ascending."""
    a = trial_system_attrs
    found = (
        select(trials.c.number)
        .join(a, a.c.trial_id == trials.c.trial_id)
        .where(trials.c.study_id == study_id, a.c.key == key)
        .order_by(trials.c.number)
    )
    return list(session.scalars(found))


def study_of_trial(session: Session, trial_id: int) -> int | None:
    """The study a trial belongs to, or None for an unknown trial id."""
    return session.scalar(select(trials.c.study_id).where(trials.c.trial_id == trial_id))


def trial_state(session: Session, trial_id: int) -> TrialState | None:
    """A trial's state as stored now."""
    return session.scalar(select(trials.c.state).where(trials.c.trial_id == trial_id))


def state_and_number(session: Session, trial_id: int) -> tuple[TrialState | None, int]:
    """A trial's state and number as stored now ((None, -1) for an unknown trial)."""
    found = session.execute(
        select(trials.c.state, trials.c.number).where(trials.c.trial_id == trial_id)
    ).first()
    return (None, -1) if found is None else (found[0], found[1])


def number_and_params(session: Session, trial_id: int) -> tuple[int, dict[str, Any]]:
    """A trial's number and its params in their external form (one query; what
    ``FrozenTrial.params`` holds)."""
    rows = session.execute(
        select(
            trials.c.number,
            trial_params.c.param_name,
            trial_params.c.param_value,
            trial_params.c.distribution_json,
        )
        .outerjoin(trial_params, trial_params.c.trial_id == trials.c.trial_id)
        .where(trials.c.trial_id == trial_id)
    ).all()
    params = {
        name: json_to_distribution(dist).to_external_repr(value)
        for _, name, value, dist in rows
        if name is not None
    }
    return rows[0][0], params


def ended_count(study_id: int) -> Any:
    """SQL (a scalar subquery): how many of a study's trials are complete, pruned or failed (an
    upper bound of the sweep's finished count, cheaply read)."""
    return (
        select(func.count())
        .select_from(trials)
        .where(
            trials.c.study_id == study_id,
            trials.c.state.in_([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]),
        )
        .scalar_subquery()
    )


def running_trials(session: Session) -> list[tuple[int, int]]:
    """(trial id, study id) of every RUNNING trial."""
    rows = session.execute(
        select(trials.c.trial_id, trials.c.study_id).where(trials.c.state == TrialState.RUNNING)
    ).all()
    return [(tid, sid) for tid, sid in rows]


def requeued(study_id: Any, number: Any) -> Any:
    """SQL: failed trial ``number`` of ``study_id`` already has its retry (columns or values)."""
    r, ra = trials.alias("r"), trial_system_attrs.alias("ra")
    return (
        exists()
        .select_from(ra.join(r, r.c.trial_id == ra.c.trial_id))
        .where(
            r.c.study_id == study_id,
            ra.c.key == RETRY_OF,
            ra.c.value_json == cast(number, String),
        )
    )


def was_requeued(session: Session, study_id: int, number: int) -> bool:
    """Whether failed trial ``number`` of ``study_id`` has a retry."""
    return bool(session.scalar(select(requeued(study_id, number))))


def numbered_states(session: Session, study_id: int) -> list[tuple[int, str]]:
    """(number, state as lionsweep shows it) of every trial of a study, by number."""
    rows = session.execute(
        select(trials.c.number, trials.c.state, case((queued_clause(), 1), else_=0))
        .where(trials.c.study_id == study_id)
        .order_by(trials.c.number)
    ).all()
    return [
        (n, "waiting" if q and st == TrialState.RUNNING else STATE_NAMES[st]) for n, st, q in rows
    ]


def fingerprint(session: Session, study_id: int) -> tuple[Any, ...]:
    """What changes whenever a study's trials change state or are added: per state its count,
    last trial id and last finish time (a finished trial never changes again), cheaply read.
    Equal fingerprints mean equal finished trials, in this process or any other."""
    rows = session.execute(
        select(
            trials.c.state,
            func.count(),
            func.max(trials.c.trial_id),
            func.max(trials.c.datetime_complete),
        )
        .where(trials.c.study_id == study_id)
        .group_by(trials.c.state)
    ).all()
    return (study_id, *sorted((str(s), n, i, str(c)) for s, n, i, c in rows))


_STORED_FLOATS = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}
"""Optuna's stored types of a value that is not finite (its value column is then NULL)."""


def _stored(value: float | None, kind: str) -> float:
    """A trial value or intermediate value as Optuna reads it back from its stored form."""
    kind = getattr(kind, "name", kind)  # a database enum may come back as a Python enum
    return _STORED_FLOATS[kind] if kind in _STORED_FLOATS else float(value)  # type: ignore[arg-type]


def study_trials(
    session: Session,
    study_id: int,
    states: tuple[TrialState, ...] | None = None,
    steps: bool = True,
    numbers: list[int] | None = None,
) -> list[FrozenTrial]:
    """A study's trials (of ``states``, all when None; only ``numbers`` when given) by number,
    as committed (never a cache's copy of a write not yet committed), as Optuna's storage gives
    them: state, values, params and their distributions, user and system attrs, times, and the
    intermediate values (left empty when ``steps`` is false). One query per table, however
    many trials: for answers computed from every trial, where reading them through Optuna's
    storage takes seconds at 10,000 trials. KeyError for an unknown study, as Optuna's."""
    chosen = [trials.c.study_id == study_id]
    if states is not None:
        chosen.append(trials.c.state.in_(states))
    if numbers is not None:
        chosen.append(trials.c.number.in_(numbers))
    ids = select(trials.c.trial_id).where(*chosen).scalar_subquery()

    def rows(t: Any, *cols: Any, order: Any) -> Any:
        return session.execute(
            select(t.c.trial_id, *cols).where(t.c.trial_id.in_(ids)).order_by(order)
        )

    found = session.execute(
        select(
            trials.c.trial_id,
            trials.c.number,
            trials.c.state,
            trials.c.datetime_start,
            trials.c.datetime_complete,
        )
        .where(*chosen)
        .order_by(trials.c.number, trials.c.trial_id)
    ).all()
    if (
        not found
        and session.scalar(select(studies.c.study_id).where(studies.c.study_id == study_id)) is None
    ):
        raise KeyError(f"no study {study_id}")
    parts: dict[int, tuple[list, dict, dict, dict, dict, dict]] = {
        r[0]: ([], {}, {}, {}, {}, {}) for r in found
    }
    v = trial_values
    for tid, objective, value, kind in rows(
        v, v.c.objective, v.c.value, v.c.value_type, order=v.c.trial_value_id
    ):
        if tid in parts:
            parts[tid][0].append((objective, _stored(value, kind)))
    p = trial_params
    dists: dict[str, BaseDistribution] = {}
    for tid, name, value, dist_json in rows(
        p, p.c.param_name, p.c.param_value, p.c.distribution_json, order=p.c.param_id
    ):
        if tid not in parts:
            continue
        dist = dists.get(dist_json)
        if dist is None:
            dist = dists[dist_json] = json_to_distribution(dist_json)
        parts[tid][1][name] = dist.to_external_repr(value)
        parts[tid][2][name] = dist
    for where, attrs, order in (
        (3, trial_user_attrs, trial_user_attrs.c.trial_user_attribute_id),
        (4, trial_system_attrs, trial_system_attrs.c.trial_system_attribute_id),
    ):
        for tid, key, value_json in rows(attrs, attrs.c.key, attrs.c.value_json, order=order):
            if tid in parts:
                parts[tid][where][key] = json.loads(value_json)
    if steps:
        iv = trial_intermediate_values
        for tid, step, value, kind in rows(
            iv,
            iv.c.step,
            iv.c.intermediate_value,
            iv.c.intermediate_value_type,
            order=iv.c.trial_intermediate_value_id,
        ):
            if tid in parts:
                parts[tid][5][step] = _stored(value, kind)
    out = []
    for tid, number, state, start, complete in found:
        values, params, distributions, user, system, intermediate = parts[tid]
        out.append(
            FrozenTrial(
                number=number,
                state=state,
                value=None,
                values=[x for _, x in sorted(values)] if values else None,
                datetime_start=start,
                datetime_complete=complete,
                params=params,
                distributions=distributions,
                user_attrs=user,
                system_attrs=system,
                intermediate_values=intermediate,
                trial_id=tid,
            )
        )
    return out
