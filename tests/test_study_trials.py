"""The bulk read of a study's trials (:func:`service.optuna_tables.study_trials`) gives what
Optuna's own storage gives, trial for trial, on both backends."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from service import optuna_tables as ot

DISTS = {
    "lr": FloatDistribution(1e-5, 1e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64, "auto", None]),
    "warmup_steps": IntDistribution(0, 100, step=10),
}


def fill(study: optuna.Study) -> None:
    """Trials of every state with params, values (infinite ones too), attrs and steps."""
    kinds = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    for i in range(30):
        state = kinds[i % 3]
        value = None
        if state == TrialState.COMPLETE:
            value = [1.0 + i / 7, math.inf, -math.inf][i % 2 if i % 5 else 2]
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={
                    "lr": 10 ** (-5 + i % 3),
                    "batch_size": [32, 64, "auto", None][i % 4],
                    "warmup_steps": 10 * (i % 4),
                },
                distributions=DISTS,
                user_attrs={"config": {"batch_size": 32, "i": i}, "reason": "x" * (i % 2)},
                system_attrs={ot.RETRY_OF: i - 1} if i % 4 == 0 else {},
                intermediate_values={s: [0.5 * s, math.nan, math.inf][s % 3] for s in range(i % 5)},
            )
        )
    running = study.ask({"lr": DISTS["lr"]})
    running.report(2.0, 1)
    running.set_user_attr("worker_id", "w1")
    study.enqueue_trial({"lr": 1e-3})  # a waiting trial


def same(t: optuna.trial.FrozenTrial) -> dict:
    """A trial's fields, with NaN written so that equal trials compare equal."""
    steps = {k: "nan" if math.isnan(v) else v for k, v in t.intermediate_values.items()}
    return {**t.__dict__, "intermediate_values": steps}


@pytest.mark.parametrize("with_states", [None, (TrialState.COMPLETE, TrialState.PRUNED)])
def test_study_trials_equal_optunas_own(database_url: str, with_states: tuple | None) -> None:
    storage = optuna.storages.RDBStorage(database_url)
    other = optuna.create_study(storage=storage)
    study = optuna.create_study(storage=storage)
    fill(other)
    fill(study)
    engine = create_engine(database_url)
    try:
        with Session(engine) as s:
            got = ot.study_trials(s, study._study_id, states=with_states)
            bare = ot.study_trials(s, study._study_id, states=with_states, steps=False)
            with pytest.raises(KeyError):
                ot.study_trials(s, 10**6)
        want = storage.get_all_trials(study._study_id, deepcopy=False, states=with_states)
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            assert same(g) == same(w), (g, w)
            assert list(g.params) == list(w.params)  # the same order too
        assert [t.intermediate_values for t in bare] == [{} for _ in bare]
    finally:
        engine.dispose()
        storage.engine.dispose()
