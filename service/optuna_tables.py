"""The one module that reads Optuna's tables directly, for the aggregate queries that Optuna's
storage API has no call for (counts per state, which trial belongs to which study, whether a
failed trial already has its retry). Everything else goes through Optuna's storage API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optuna.trial import TrialState
from sqlalchemy import (
    DateTime,
    Enum,
    Integer,
    String,
    and_,
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
    column("trial_id", Integer),
    column("key", String),
    column("value_json", String),
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
    """A study's trials counted by state, with its retries and final failures."""

    by_state: dict[str, int]
    retries: int
    final_failures: int
    first_start: datetime | None
    last_complete: datetime | None

    @property
    def total(self) -> int:
        """All trials, retries included."""
        return sum(self.by_state.values())

    @property
    def originals(self) -> int:
        """Trials that are not a retry of another."""
        return self.total - self.retries

    @property
    def finished(self) -> int:
        """Originals whose outcome is final: complete, pruned, or failed with no retry left."""
        s = self.by_state
        return s["complete"] + s["pruned"] + self.final_failures


def counts(session: Session, study_id: int) -> Counts:
    """Count a study's trials by state, and its retries and final failures."""
    rows = session.execute(
        select(
            trials.c.state,
            func.count(),
            func.min(trials.c.datetime_start),
            func.max(trials.c.datetime_complete),
        )
        .where(trials.c.study_id == study_id)
        .group_by(trials.c.state)
    ).all()
    attr_counts = dict(
        session.execute(
            select(trial_system_attrs.c.key, func.count())
            .select_from(
                trial_system_attrs.join(trials, trials.c.trial_id == trial_system_attrs.c.trial_id)
            )
            .where(
                trials.c.study_id == study_id,
                or_(
                    trial_system_attrs.c.key == RETRY_OF,
                    and_(
                        trial_system_attrs.c.key == FINAL_FAILURE,
                        trials.c.state == TrialState.FAIL,
                    ),
                ),
            )
            .group_by(trial_system_attrs.c.key)
        ).all()
    )
    by_state = dict.fromkeys(schemas.STATES, 0)
    first, last = None, None
    for state, n, start, complete in rows:
        name = STATE_NAMES.get(state)
        if name is None:
            continue
        by_state[name] += n
        if name in ("complete", "pruned", "failed"):
            if start is not None and (first is None or start < first):
                first = start
            if complete is not None and (last is None or complete > last):
                last = complete
    return Counts(
        by_state, attr_counts.get(RETRY_OF, 0), attr_counts.get(FINAL_FAILURE, 0), first, last
    )


def study_of_trial(session: Session, trial_id: int) -> int | None:
    """The study a trial belongs to, or None for an unknown trial id."""
    return session.scalar(select(trials.c.study_id).where(trials.c.trial_id == trial_id))


def trial_state(session: Session, trial_id: int) -> TrialState | None:
    """A trial's state as stored now."""
    return session.scalar(select(trials.c.state).where(trials.c.trial_id == trial_id))


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
