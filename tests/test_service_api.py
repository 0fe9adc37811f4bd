"""End-to-end REST tests through a real uvicorn server, on SQLite and on PostgreSQL.

A scripted httpx client plays the worker. Each test uses its own task name so the
tests sharing a server never claim each other's trials.
"""

from __future__ import annotations

import math
import uuid

import httpx
import optuna
import pytest
from conftest import rdb_storage, study_names

from optim.scaling import from_adamw, lr_and_decay


def task_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def submit(client: httpx.Client, **spec) -> dict:
    r = client.post("/api/sweeps", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def claim(client: httpx.Client, task: str, worker: str = "w0") -> dict | None:
    r = client.post("/api/trials/claim", json={"worker_id": worker, "tasks": [task]})
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def objective(p: dict) -> float:
    """A bowl in log(lr·wd) with a little lr preference: lower is better."""
    return (math.log10(p["lr"] * p["weight_decay"]) + 5.0) ** 2 + 0.1 * abs(math.log10(p["lr"]) + 4)


def test_submit_claim_report_finish_best_and_scaling_rule(client, server):
    task = task_name()
    sweep = submit(
        client,
        name="e2e",
        task={"name": task, "params": {"dim": 3}},
        space={
            "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
            "beta1": 0.9,
            "beta2": {"choices": [0.98, 0.99]},
        },
        sampler={"name": "random", "seed": 7},
        pruner={"name": "none"},
        n_trials=30,
    )
    assert sweep["status"] == "running" and sweep["counts"]["waiting"] == 0
    reported: dict[int, tuple[dict, float]] = {}
    while (a := claim(client, task)) is not None:
        p = a["params"]
        assert a["task"] == {"name": task, "params": {"dim": 3}}
        assert p["optimizer"] == "lion" and p["beta1"] == 0.9 and p["beta2"] in (0.98, 0.99)
        assert 1e-5 <= p["lr"] <= 1e-3 and 1e-3 <= p["weight_decay"] <= 10.0
        value = objective(p)
        for step in (1, 2, 3):
            r = client.post(
                f"/api/trials/{a['trial_id']}/report",
                json={"step": step, "value": value + 1 / step, "metrics": {"acc": step / 3}},
            )
            assert r.json() == {"action": "continue"}
        r = client.post(
            f"/api/trials/{a['trial_id']}/finish",
            json={"state": "complete", "value": value, "config": {"steps": 3}},
        )
        assert r.json() == {"trial_id": a["trial_id"], "state": "complete", "requeued": False}
        reported[a["trial_number"]] = (p, value)
    assert sorted(reported) == list(range(30))

    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete" and got["progress"] == 1.0 and got["finished"] == 30
    assert got["counts"] == {
        "complete": 30,
        "pruned": 0,
        "failed": 0,
        "running": 0,
        "waiting": 0,
        "handed_back": 0,
        "imported": 0,
    }
    best_number = min(reported, key=lambda n: reported[n][1])
    assert got["best"]["trial_number"] == best_number

    best = client.get(f"/api/sweeps/{sweep['id']}/best", params={"k": 3}).json()
    ranked = sorted(reported, key=lambda n: reported[n][1])[:3]
    assert [c["trial_number"] for c in best["top"]] == ranked
    p, value = reported[best_number]
    assert best["best"]["value"] == pytest.approx(value)
    assert best["best"]["optimizer"] == "lion"
    assert best["best"]["optimizer_kwargs"] == {
        "lr": pytest.approx(p["lr"]),
        "betas": [0.9, p["beta2"]],
        "weight_decay": pytest.approx(p["weight_decay"]),
    }
    assert best["best"]["warmup_steps"] is None and best["best"]["batch_size"] is None

    rule = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule")
    assert rule.status_code == 200, rule.text
    fit = rule.json()
    left_out = {"pruned": 0, "failed": 0, "running": 0, "diverged": 0, "other": 0}
    assert fit["n"] == 30 and fit["left_out"] == left_out
    assert fit["best"]["trial_number"] == best_number
    # The planted bowl is a valley of slope -1 through lr·wd = 1e-5.
    assert fit["verdict"] == "valley", fit["reason"]
    assert fit["slope_ci"][0] <= -1 <= fit["slope_ci"][1]
    assert fit["product_ci"][0] <= 1e-5 * 1.2 and fit["product_ci"][1] >= 1e-5 / 1.2

    trial = client.get(f"/api/sweeps/{sweep['id']}/trials/{best_number}").json()
    assert trial["state"] == "complete" and trial["worker_id"] == "w0"
    assert trial["intermediate_values"] == {str(s): pytest.approx(value + 1 / s) for s in (1, 2, 3)}
    assert trial["metrics"] == {"acc": 1.0} and trial["config"] == {"steps": 3}
    assert trial["duration_seconds"] >= 0

    imp = client.get(f"/api/sweeps/{sweep['id']}/importances")
    assert imp.status_code == 200 and set(imp.json()["importances"]) == {
        "lr",
        "weight_decay",
        "beta2",
    }

    # The study is a plain Optuna study in the same database.
    study = optuna.load_study(
        study_name=got["study_name"], storage=rdb_storage(server.database_url)
    )
    assert len(study.trials) == 30 and study.best_value == pytest.approx(value)
    assert claim(client, task) is None


def test_best_fills_unswept_warmup_and_batch_size_from_the_config_used(client):
    task = task_name()
    sweep = submit(client, name="used", task={"name": task}, n_trials=2)
    used = {"warmup_steps": 7, "batch_size": 32, "lr": 1e-4}
    for value, config in ((1.0, used), (2.0, {})):
        a = claim(client, task)
        body = {"state": "complete", "value": value, "config": config}
        assert client.post(f"/api/trials/{a['trial_id']}/finish", json=body).status_code == 200
    top = client.get(f"/api/sweeps/{sweep['id']}/best").json()["top"]
    assert (top[0]["warmup_steps"], top[0]["batch_size"]) == (7, 32)
    assert (top[1]["warmup_steps"], top[1]["batch_size"]) == (None, None)
    assert "warmup_steps" not in top[0]["params"]


def test_too_few_trials_give_clear_409s(client):
    task = task_name()
    sweep = submit(client, name="few", task={"name": task}, n_trials=3, pruner={"name": "none"})
    r = client.get(f"/api/sweeps/{sweep['id']}/best")
    assert r.status_code == 409 and "no complete trial" in r.json()["detail"]
    r = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule")
    assert r.status_code == 409 and "no complete Lion trial" in r.json()["detail"]
    a = claim(client, task)
    client.post(f"/api/trials/{a['trial_id']}/finish", json={"state": "complete", "value": 1.0})
    rule = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule").json()
    assert rule["verdict"] == "insufficient" and "needs at least" in rule["reason"]
    assert rule["slope"] is None and rule["product"] is None and rule["valley"] == []
    assert client.get(f"/api/sweeps/{sweep['id']}/importances").status_code == 409


def test_enqueued_configs_come_first_with_adamw_conversion(client):
    task = task_name()
    sweep = submit(
        client,
        name="enq",
        task={"name": task},
        n_trials=4,
        enqueue=[
            {"lr": 1e-4, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99},
            {"from_adamw": {"lr": 3e-4, "weight_decay": 0.01}},
        ],
    )
    assert sweep["counts"]["waiting"] == 2
    first, second = claim(client, task), claim(client, task)
    assert first["trial_number"] == 0 and second["trial_number"] == 1
    assert first["params"]["lr"] == pytest.approx(1e-4)
    assert first["params"]["weight_decay"] == pytest.approx(0.1)
    assert first["params"]["beta1"] == pytest.approx(0.9) and first["params"]["beta2"] == 0.99
    lr, wd = from_adamw(3e-4, 0.01)
    assert second["params"]["lr"] == pytest.approx(lr)
    assert second["params"]["weight_decay"] == pytest.approx(wd)


def test_baseline_adds_an_adamw_arm(client):
    task = task_name()
    submit(
        client,
        name="base",
        task={"name": task},
        n_trials=12,
        baseline="adamw",
        sampler={"name": "random", "seed": 1},
        enqueue=[{"optimizer": "adamw", "lr": 3e-4}],
    )
    seen = []
    while (a := claim(client, task)) is not None:
        seen.append(a["params"]["optimizer"])
    assert seen[0] == "adamw" and set(seen) == {"lion", "adamw"}


def test_idempotency_key_returns_the_first_sweep(client):
    spec = {"name": f"idem-{uuid.uuid4().hex[:6]}", "task": {"name": task_name()}, "n_trials": 2}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r1 = client.post("/api/sweeps", json=spec, headers=key)
    r2 = client.post("/api/sweeps", json=spec, headers=key)
    assert r1.status_code == 201 and r2.status_code == 200
    assert r1.json()["id"] == r2.json()["id"] and r2.headers["location"] == r1.headers["location"]
    items = client.get("/api/sweeps", params={"limit": 1000}).json()["items"]
    assert [s["name"] for s in items].count(spec["name"]) == 1
    r3 = client.post("/api/sweeps", json={**spec, "n_trials": 3}, headers=key)
    assert r3.status_code == 409 and "Idempotency-Key" in r3.json()["detail"]


def test_progress_plans_no_more_re_runs_than_there_are_configs(client):
    """A 2-trial sweep re-runs at most its 2 configs: 3 seeds each makes 8 trials in all, not
    the 11 that top_k 3 would give (its progress bar showed 0/11)."""
    task = task_name()
    sweep = submit(
        client,
        name="tiny",
        task={"name": task},
        n_trials=2,
        reevaluate={"top_k": 3, "seeds": 3},
    )
    a = claim(client, task)
    client.post(f"/api/trials/{a['trial_id']}/finish", json={"state": "complete", "value": 1.0})
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["reevaluation"]["status"] == "pending", got["reevaluation"]
    assert got["reevaluation"]["trials"] == 6, got["reevaluation"]  # planned: 2 configs × 3
    assert got["progress"] == pytest.approx(1 / 8), got


def test_yaml_body_is_accepted(client):
    task = task_name()
    body = f"""
name: from-yaml
task: {{name: {task}, params: {{depth: 2}}}}
space:
  lr: {{low: 1.0e-5, high: 1.0e-3, log: true}}
  beta1: 0.9
  warmup_steps: {{low: 0, high: 100, step: 10}}
  batch_size: {{choices: [64, 128]}}
sampler: {{name: tpe, seed: 0}}
n_trials: 2
"""
    r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["task"] == {"name": task, "params": {"depth": 2}}
    a = claim(client, task)
    assert a["params"]["warmup_steps"] % 10 == 0 and a["params"]["batch_size"] in (64, 128)
    assert isinstance(a["params"]["batch_size"], int)


def test_yaml_reads_exponents_as_numbers_and_dates_as_text(client):
    """YAML 1.1 reads ``1e-5`` (no dot) as a string, ``off`` as false and ``2026-01-01`` as a
    date; a config means the number and the words."""
    task = task_name()
    body = f"""
name: 2026-01-01
reevaluate: off
task: {{name: {task}}}
space:
  lr: {{low: 1e-5, high: 1E-3, log: true}}
  weight_decay: {{low: -2e0, high: 3e-1}}
n_trials: 2
"""
    r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "weight_decay" in r.text, r.text  # read as -2.0: a number
    body = body.replace("-2e0", "1e-2")
    r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "2026-01-01"
    assert r.json()["spec"]["reevaluate"]["mode"] == "off"
    space = r.json()["spec"]["space"]
    assert (space["lr"]["low"], space["lr"]["high"]) == (1e-5, 1e-3), space
    assert (space["weight_decay"]["low"], space["weight_decay"]["high"]) == (1e-2, 0.3), space


def test_pruning_and_trial_state_rules(client):
    task = task_name()
    sweep = submit(
        client,
        name="prune",
        task={"name": task},
        n_trials=3,
        pruner={"name": "median", "n_startup_trials": 1},
    )
    good = claim(client, task)
    for step in range(1, 4):
        client.post(f"/api/trials/{good['trial_id']}/report", json={"step": step, "value": 0.1})
    client.post(f"/api/trials/{good['trial_id']}/finish", json={"state": "complete", "value": 0.1})

    bad = claim(client, task)
    url = f"/api/trials/{bad['trial_id']}"
    assert client.post(f"{url}/heartbeat", json={}).json() == {"action": "continue"}
    r = client.post(f"{url}/report", json={"step": 1, "value": 5.0})
    assert r.json() == {"action": "prune"}
    assert client.post(f"{url}/report", json={"step": 1, "value": 5.0}).status_code == 200
    # The heartbeat relays it (a worker running a program learns of the program's prune).
    assert client.post(f"{url}/heartbeat", json={}).json() == {"action": "prune"}
    r = client.post(f"{url}/finish", json={"state": "pruned"})
    assert r.json() == {"trial_id": bad["trial_id"], "state": "pruned", "requeued": False}
    # Retrying the same finish is harmless; a different end is a conflict.
    assert client.post(f"{url}/finish", json={"state": "pruned"}).status_code == 200
    r = client.post(f"{url}/finish", json={"state": "complete", "value": 1.0})
    assert r.status_code == 409
    assert client.post(f"{url}/report", json={"step": 2, "value": 1.0}).status_code == 409
    assert client.post(f"{url}/heartbeat", json={}).status_code == 409
    trial = client.get(f"/api/sweeps/{sweep['id']}/trials/{bad['trial_number']}").json()
    assert trial["state"] == "pruned" and trial["value"] == pytest.approx(5.0)
    assert client.post("/api/trials/999999/finish", json={"state": "pruned"}).status_code == 404
    assert client.post("/api/trials/999999/report", json={"step": 1, "value": 1}).status_code == 404


def test_report_writes_nothing_unless_the_trial_is_running_in_a_sweep(client, server):
    storage = rdb_storage(server.database_url)
    try:
        # A trial of a plain Optuna study in the same database: not a sweep's.
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE])
        tid = storage.create_new_trial(study_id)
        body = {"step": 1, "value": 0.5, "metrics": {"acc": 0.9}}
        r = client.post(f"/api/trials/{tid}/report", json=body)
        assert r.status_code == 404 and "does not belong to a sweep" in r.json()["detail"]
        t = storage.get_trial(tid)
        assert t.intermediate_values == {} and t.user_attrs == {}
    finally:
        storage.engine.dispose()


def test_cancel_stops_workers_and_resume_requeues(client):
    task = task_name()
    sweep = submit(client, name="cancel", task={"name": task}, n_trials=2, max_retries=1)
    a = claim(client, task)
    url = f"/api/trials/{a['trial_id']}"
    assert client.post(f"{url}/heartbeat", json={}).json() == {"action": "continue"}
    r = client.post(f"/api/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.post(f"{url}/report", json={"step": 1, "value": 1.0}).json() == {"action": "stop"}
    assert client.post(f"{url}/heartbeat", json={}).json() == {"action": "stop"}
    assert claim(client, task) is None
    r = client.post(f"{url}/finish", json={"state": "failed", "reason": "worker shutdown"})
    assert r.json() == {"trial_id": a["trial_id"], "state": "failed", "requeued": True}
    assert client.post(f"{url}/finish", json={"state": "failed"}).json()["requeued"] is True

    assert client.post(f"/api/sweeps/{sweep['id']}/resume").json()["status"] == "running"
    again = claim(client, task, worker="w1")
    assert again["params"] == a["params"] and again["trial_number"] != a["trial_number"]
    retry = client.get(f"/api/sweeps/{sweep['id']}/trials/{again['trial_number']}").json()
    assert retry["retry_of"] == a["trial_number"] and retry["worker_id"] == "w1"
    old = client.get(f"/api/sweeps/{sweep['id']}/trials/{a['trial_number']}").json()
    assert old["state"] == "failed" and old["reason"] == "worker shutdown"
    # Handed back, not a failure: the trial says so, as the sweep's counts do.
    assert old["handed_back"] is True and retry["handed_back"] is False
    counts = client.get(f"/api/sweeps/{sweep['id']}").json()["counts"]
    assert counts["handed_back"] == 1 and counts["failed"] == 0, counts


def test_trials_stopped_by_a_cancel_run_again_on_resume_without_using_a_retry(client):
    task = task_name()
    sweep = submit(client, name="cancel0", task={"name": task}, n_trials=1, max_retries=0)
    a = claim(client, task)
    client.post(f"/api/sweeps/{sweep['id']}/cancel")
    r = client.post(
        f"/api/trials/{a['trial_id']}/finish",
        json={"state": "failed", "reason": "stopped by server"},
    )
    assert r.json()["requeued"] is True
    assert client.post(f"/api/sweeps/{sweep['id']}/resume").json()["status"] == "running"
    b = claim(client, task)
    assert b["params"] == a["params"]
    # The stop used no retry: with max_retries=0 a real failure now is final.
    r = client.post(f"/api/trials/{b['trial_id']}/finish", json={"state": "failed"})
    assert r.json()["requeued"] is False
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete" and got["finished"] == 1
    # the stopped trial was handed back (re-queued), not failed
    assert got["counts"]["failed"] == 1 and got["counts"]["handed_back"] == 1

    # With a retry left, the stop keeps it for a real failure after resume.
    sweep = submit(client, name="cancel1", task={"name": task}, n_trials=1, max_retries=1)
    a = claim(client, task)
    client.post(f"/api/sweeps/{sweep['id']}/cancel")
    client.post(f"/api/trials/{a['trial_id']}/finish", json={"state": "failed"})
    client.post(f"/api/sweeps/{sweep['id']}/resume")
    b = claim(client, task)
    r = client.post(f"/api/trials/{b['trial_id']}/finish", json={"state": "failed"})
    assert r.json()["requeued"] is True
    c = claim(client, task)
    assert c["params"] == a["params"]
    client.post(f"/api/trials/{c['trial_id']}/finish", json={"state": "complete", "value": 1.0})
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete" and got["counts"]["complete"] == 1


def test_grid_sweep_visits_every_point_once(client):
    task = task_name()
    space = {
        "lr": {"choices": [1e-4, 3e-4]},
        "weight_decay": 0.1,
        "beta1": {"low": 0.85, "high": 0.95, "step": 0.05},
        "beta2": 0.99,
    }
    spec = {"space": space, "sampler": {"name": "grid", "seed": 3}, "n_trials": 6}
    submit(client, name="grid", task={"name": task}, **spec)
    seen = {
        (a["params"]["lr"], a["params"]["beta1"]) for a in iter(lambda: claim(client, task), None)
    }
    assert seen == {(lr, b1) for lr in (1e-4, 3e-4) for b1 in (0.85, 0.9, 0.95)}


def test_failures_exhaust_retries_and_the_sweep_completes(client):
    task = task_name()
    sweep = submit(client, name="retry", task={"name": task}, n_trials=1, max_retries=1)
    a = claim(client, task)
    r = client.post(f"/api/trials/{a['trial_id']}/finish", json={"state": "failed", "reason": "x"})
    assert r.json()["requeued"] is True
    b = claim(client, task)
    assert b["params"] == a["params"]
    r = client.post(f"/api/trials/{b['trial_id']}/finish", json={"state": "failed", "reason": "y"})
    assert r.json()["requeued"] is False
    assert claim(client, task) is None
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete" and got["counts"]["failed"] == 2 and got["finished"] == 1
    page = client.get(f"/api/sweeps/{sweep['id']}/trials", params={"state": "failed"}).json()
    assert page["total"] == 2 and [t["reason"] for t in page["items"]] == ["x", "y"]


def test_listing_pagination_and_404s(client):
    task = task_name()
    ids = [
        submit(client, name=f"list-{i}", task={"name": task}, n_trials=5)["id"] for i in range(3)
    ]
    page = client.get("/api/sweeps", params={"limit": 2, "offset": 0}).json()
    assert page["limit"] == 2 and len(page["items"]) == 2 and page["total"] >= 3
    assert page["items"][0]["id"] == ids[-1]  # newest first
    running = client.get("/api/sweeps", params={"status": "running", "limit": 1000}).json()
    assert set(ids) <= {s["id"] for s in running["items"]}
    for _ in range(3):
        claim(client, task)
    trials = client.get(f"/api/sweeps/{ids[0]}/trials", params={"limit": 2}).json()
    assert trials["total"] == 3 and [t["number"] for t in trials["items"]] == [0, 1]
    assert trials["items"][0]["state"] == "running"
    assert client.get("/api/sweeps/987654").status_code == 404
    assert client.get(f"/api/sweeps/{ids[0]}/trials/99").status_code == 404
    assert client.get("/api/sweeps", params={"limit": 0}).status_code == 422


def test_delete_removes_the_sweep_and_its_study(client, server):
    sweep = submit(client, name="del", task={"name": task_name()}, n_trials=2)
    assert client.delete(f"/api/sweeps/{sweep['id']}").status_code == 204
    assert client.get(f"/api/sweeps/{sweep['id']}").status_code == 404
    assert sweep["study_name"] not in study_names(server.database_url)
    assert client.delete(f"/api/sweeps/{sweep['id']}").status_code == 404


def test_unannounced_task_is_accepted_but_flagged(client):
    task = task_name()
    sweep = submit(client, name="flag", task={"name": task}, n_trials=1)
    assert sweep["task_announced"] is False and task in sweep["warnings"][0]
    client.post("/api/trials/claim", json={"worker_id": "announcer", "tasks": [task, "other"]})
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["task_announced"] is True and got["warnings"] == []


def test_analytic_scaling_rule(client):
    r = client.get("/api/scaling-rule", params={"width": 768, "alpha0": 1.11e-3}).json()
    lr, wd = lr_and_decay(width=768, alpha0=1.11e-3)
    assert r["lr"] == pytest.approx(lr) and r["weight_decay"] == pytest.approx(wd)
    assert r["sigma"] == pytest.approx(768**-0.5) and r["product"] == pytest.approx(lr * wd)
    r = client.get("/api/scaling-rule", params={"sigma": 0.05}).json()
    assert r["lr"] == pytest.approx(lr_and_decay(sigma=0.05)[0])
    r = client.get(
        "/api/scaling-rule", params={"adamw_lr": 3e-4, "adamw_weight_decay": 0.1, "factor": 3}
    ).json()
    assert (r["lr"], r["weight_decay"]) == pytest.approx(from_adamw(3e-4, 0.1, factor=3))
    assert client.get("/api/scaling-rule").status_code == 422
    assert client.get("/api/scaling-rule", params={"width": -1}).status_code == 422
    assert client.get("/api/scaling-rule", params={"adamw_lr": 1e-3}).status_code == 422


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"width": 768, "sigma": 0.1}, "sigma", "not both"),
        ({"width": "inf"}, "width", "finite"),
        ({"sigma": "nan"}, "sigma", "finite"),
        ({"adamw_lr": "inf", "adamw_weight_decay": 0.1}, "adamw_lr", "finite"),
        ({"adamw_lr": 1e-3, "adamw_weight_decay": "inf"}, "adamw_weight_decay", "finite"),
        ({"adamw_lr": 1e300, "adamw_weight_decay": 1e300, "factor": 1e-300}, "factor", "range"),
        ({"adamw_lr": 3e-4, "adamw_weight_decay": 0.1, "width": 768}, "width", "width rule"),
        ({"adamw_lr": 3e-4, "adamw_weight_decay": 0.1, "alpha0": 5}, "alpha0", "one rule"),
        ({"width": 768, "factor": 3}, "factor", "AdamW conversion"),
    ],
)
def test_analytic_scaling_rule_rejects_bad_inputs_with_422(client, params, field, rule):
    r = client.get("/api/scaling-rule", params=params)
    assert r.status_code == 422, r.text
    assert any(e["loc"] == ["query", field] and rule in e["msg"] for e in r.json()["detail"])


def test_ids_beyond_sql_integer_are_422_and_the_largest_is_404(client):
    too_big, largest = str(2**31), str(2**31 - 1)
    huge = "99999999999999999999"
    for path in ("/api/sweeps/{}", "/api/sweeps/{}/trials", "/api/sweeps/{}/best"):
        for big in (too_big, huge):
            r = client.get(path.format(big))
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "sweep_id"]
        assert client.get(path.format(largest)).status_code == 404
    assert client.get("/api/sweeps/-1").status_code == 422
    task = task_name()
    sweep = submit(client, name="ids", task={"name": task}, n_trials=1)
    r = client.get(f"/api/sweeps/{sweep['id']}/trials/{huge}")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "number"]
    assert client.get(f"/api/sweeps/{sweep['id']}/trials/{largest}").status_code == 404
    for verb in ("report", "finish", "heartbeat"):
        body = {"report": {"step": 1, "value": 1.0}, "finish": {"state": "pruned"}}.get(verb, {})
        r = client.post(f"/api/trials/{huge}/{verb}", json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "trial_id"]
        assert client.post(f"/api/trials/{largest}/{verb}", json=body).status_code == 404
    for verb in ("cancel", "resume"):
        assert client.post(f"/api/sweeps/{huge}/{verb}").status_code == 422
    assert client.delete(f"/api/sweeps/{huge}").status_code == 422


def test_metrics_docs_and_health(client):
    client.post("/api/trials/claim", json={"worker_id": "m", "tasks": [task_name()]})
    text = client.get("/metrics").text
    assert "lionsweep_sweeps{" in text and "lionsweep_trials{" in text
    # Every state is exported, 0 included (whatever this server's sweeps hold so far).
    for state in ("complete", "pruned", "failed", "running", "waiting"):
        assert f'lionsweep_trials{{state="{state}"}}' in text, state
    assert 'lionsweep_sweeps{status="cancelled"}' in text
    assert 'lionsweep_claim_seconds_count{outcome="empty"}' in text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/trials/claim" in paths and "/api/sweeps/{sweep_id}/best" in paths
    assert client.get("/healthz").json() == {"status": "ok"}
