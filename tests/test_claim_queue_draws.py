"""The claim queue of a random sweep: trials drawn ahead without an ``ask`` of the sweep's study
are the trials an ``ask`` would have made, and the cheap counts that size the queue agree with
the full ones."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from service import optuna_tables as ot
from service import schemas
from service import spec as specs
from service.db import Database
from service.settings import Settings

SPEC = {
    "name": "draws",
    "task": {"name": "draws"},
    "sampler": {"name": "random", "seed": 7},
    "pruner": {"name": "none"},
    "n_trials": 24,
    "max_retries": 1,
}


def _claim(c, worker: str) -> dict | None:
    r = c.post("/api/trials/claim", json={"worker_id": worker, "tasks": ["draws"]})
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _asked_params(spec: schemas.SweepSpec, sweep_id: int, number: int) -> dict:
    """What the sweep's sampler gives trial ``number`` through an ``ask`` on a stored study."""
    storage = optuna.storages.RDBStorage("sqlite://")
    study = optuna.create_study(
        storage=storage, sampler=specs.build_sampler(spec, sweep_id, number)
    )
    return study.ask(specs.distributions(spec)).params


def test_random_trials_drawn_ahead_are_what_an_ask_gives(database_url, live_server, wait_for):
    import httpx

    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sweep_id = c.post("/api/sweeps", json=SPEC).json()["id"]
        held = [_claim(c, f"w{i}") for i in range(8)]  # 8 running: the queue fills ahead
        study_name = f"lionsweep-{sweep_id}"

        def queued_ahead() -> bool:
            study = optuna.load_study(study_name=study_name, storage=database_url)
            return len(study.trials) > len(held)

        wait_for(queued_ahead, what="trials queued ahead of claims")
        while (got := _claim(c, "rest")) is not None:
            held.append(got)
    assert len(held) == SPEC["n_trials"]
    spec = schemas.SweepSpec.model_validate(SPEC)
    study = optuna.load_study(study_name=study_name, storage=database_url)
    assert [t.number for t in study.trials] == list(range(SPEC["n_trials"]))
    by_number = {a["trial_number"]: a for a in held}
    for t in study.trials:
        assert t.state == TrialState.RUNNING
        assert t.params == _asked_params(spec, sweep_id, t.number), t.number
        assert t.distributions == specs.distributions(spec)
        assert t.system_attrs.get(ot.QUEUED) in (None, False)
        assert {k: by_number[t.number]["params"][k] for k in t.params} == t.params


def test_queue_counts_agree_with_the_full_counts(database_url, live_server):
    import httpx

    server = live_server(database_url)
    db = Database(Settings(database_url=database_url))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            sweep_id = c.post("/api/sweeps", json=SPEC).json()["id"]
            study_id = optuna.load_study(
                study_name=f"lionsweep-{sweep_id}", storage=database_url
            )._study_id

            def check() -> None:
                # the server tops queues up on a background thread, so a draw can land between
                # the two reads: read again until they are taken with nothing moving between
                deadline = time.monotonic() + 10
                while True:
                    with db.session() as s:
                        before = ot.queue_counts(s, study_id)
                        full, cheap = ot.counts(s, study_id), ot.queue_counts(s, study_id)
                    if before == cheap or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert cheap.total == full.total
                assert cheap.queued == full.queued
                assert cheap.waiting == full.by_state["waiting"] - full.queued
                assert cheap.running == full.by_state["running"]
                assert cheap.originals == full.originals

            check()
            held = [_claim(c, f"w{i}") for i in range(6)]
            check()
            for i, a in enumerate(held):
                path = f"/api/trials/{a['trial_id']}/finish"
                body = {"worker_id": f"w{i}", "state": "complete", "value": 1.0 * i}
                if i % 2:  # a failure is re-queued as a waiting retry
                    body = {"worker_id": f"w{i}", "state": "failed", "reason": "boom"}
                assert c.post(path, json=body).status_code == 200
                check()
            while (got := _claim(c, "rest")) is not None:
                finish = {"worker_id": "rest", "state": "complete", "value": 0.5}
                c.post(f"/api/trials/{got['trial_id']}/finish", json=finish)
            check()
    finally:
        db.dispose()
