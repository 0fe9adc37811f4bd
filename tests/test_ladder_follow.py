"""Follow rungs through a real server (SQLite and PostgreSQL): a ladder's ``follow.rungs`` are
not started at creation; once every rung is complete the server adds them, each box centred on
the joint fit's prediction at its point (the ladder's own box, and why, when there is no fit).
A scripted httpx client plays the worker with the planted objective of ``planted_axes``
(width: η* ∝ w^-½, steps: η* ∝ S^-½).

The release must be idempotent and race-safe (two server processes on one database add the
rungs once), held while the ladder is cancelled, and bad follow rungs are a 422 naming the
field with nothing created."""

from __future__ import annotations

import math
import os
import random
import subprocess
import threading
import uuid
from typing import Any

import httpx
import pytest
from conftest import lionsweep_command
from planted_axes import BASE, NOISE, claim, objective, run_all, spec

L_RUNGS = [{"width": w, "train_steps": 100} for w in (64, 128, 256)] + [
    {"width": 64, "train_steps": s} for s in (200, 400)
]
"""The L through the corner: a line along width and one along the training length."""
CORNER = {"width": 256, "train_steps": 400}
"""The far corner: it follows the fit."""


@pytest.fixture
def task(client: httpx.Client) -> str:
    """A fresh task name, announced with its declarations by the scripted worker."""
    name = f"f{uuid.uuid4().hex[:10]}"
    assert claim(client, name) is None
    return name


def follow_spec(task: str, n_trials: int, **follow: Any) -> dict[str, Any]:
    """The L ladder of ``task`` with the far corner as a follow rung."""
    return spec(task, L_RUNGS, n_trials, follow={"rungs": [CORNER], **follow})


def finish(client: httpx.Client, got: dict[str, Any]) -> None:
    """Finish claimed trial ``got`` with the planted objective and its seed's noise."""
    point = {
        "width": got["task"]["params"].get("width", BASE["width"]),
        "train_steps": got["task"]["params"].get("train_steps", BASE["train_steps"]),
        "batch_size": BASE["batch_size"],
    }
    value = objective(got["params"], point) + NOISE * random.Random(got["seed"]).gauss(0, 1)
    r = client.post(
        f"/api/trials/{got['trial_id']}/finish", json={"state": "complete", "value": value}
    )
    assert r.status_code == 200, r.text


def run_n(client: httpx.Client, task: str, n: int) -> None:
    """Claim and finish exactly ``n`` trials of ``task``."""
    for _ in range(n):
        got = claim(client, task)
        assert got is not None
        finish(client, got)


def ladder(client: httpx.Client, lid: int) -> dict[str, Any]:
    """The ladder's GET view."""
    r = client.get(f"/api/ladders/{lid}")
    assert r.status_code == 200, r.text
    return r.json()


def released(client: httpx.Client, lid: int, wait_for: Any) -> dict[str, Any]:
    """The ladder's view once its follow rung is added (waits for the background release)."""
    return wait_for(
        lambda: (lad := ladder(client, lid))["pending"] == [] and lad,
        timeout=30,
        what="the follow rung's release",
    )


def test_follow_rungs_wait_for_the_rungs_then_search_around_the_fit(client, task, wait_for) -> None:
    body, key = follow_spec(task, 24, span=3), {"Idempotency-Key": uuid.uuid4().hex}
    r = client.post("/api/ladders", json=body, headers=key)
    assert r.status_code == 201, r.text
    lad = r.json()
    lid = lad["id"]
    assert len(lad["rungs"]) == 5
    assert lad["pending"] == [{"width": 256.0, "train_steps": 400.0}]
    assert lad["pending_note"].startswith("1 rung waits for the fit: added once the 5")
    assert lad["spec"]["ladder"]["follow"]["rungs"] == [CORNER]
    assert lad["progress"] == 0.0

    run_n(client, task, 24 * 5 - 1)
    lad = ladder(client, lid)
    assert len(lad["rungs"]) == 5 and lad["pending"] and lad["status"] == "running"
    run_n(client, task, 1)  # the last trial of the last rung: the release follows its commit

    lad = released(client, lid, wait_for)
    assert len(lad["rungs"]) == 6 and lad["pending_note"] == ""
    assert lad["spec"]["ladder"]["follow"]["rungs"] == []
    assert lad["spec"]["ladder"]["rungs"][-1] == CORNER
    [new] = [g for g in lad["rungs"] if g["point"] == {"width": 256.0, "train_steps": 400.0}]
    assert new["status"] == "running" and new["finished"] == 0
    pred = client.get(f"/api/ladders/{lid}/rule", params={"width": 256, "steps": 400}).json()[
        "prediction"
    ]
    space = client.get(f"/api/sweeps/{new['sweep_id']}").json()["spec"]["space"]
    lr_reach = max(3, pred["lr"] / pred["lr_ci"][0], pred["lr_ci"][1] / pred["lr"])
    assert math.isclose(space["lr"]["low"] * lr_reach, pred["lr"]) and space["lr"]["log"]
    assert math.isclose(space["lr"]["high"] / lr_reach, pred["lr"])
    if pred["weight_decay_moved"]:
        wd, (lo, hi) = pred["weight_decay"], pred["weight_decay_ci"]
        assert math.isclose(space["weight_decay"]["low"] * max(3, wd / lo, hi / wd), wd)
    # a retry of the creating request (same key, same body) still finds the ladder, though
    # its spec has changed since (the rung moved from follow.rungs to rungs)
    again = client.post("/api/ladders", json=body, headers=key)
    assert again.status_code == 200 and again.json()["id"] == lid, again.text
    other = client.post("/api/ladders", json={**body, "n_trials": 25}, headers=key)
    assert other.status_code == 409
    [record] = lad["followed"]
    assert record["box"] == "fit" and record["point"] == CORNER
    assert math.isclose(record["lr"], pred["lr"])
    assert record["note"].startswith("centred on the joint fit's prediction")

    assert run_all(client, task) == 24
    lad = ladder(client, lid)
    assert lad["status"] == "complete" and lad["progress"] == 1.0
    assert len(client.get(f"/api/ladders/{lid}").json()["rungs"]) == 6


def test_bad_follow_rungs_are_refused_naming_the_field(client, task) -> None:
    before = client.get("/api/ladders").json()["total"]
    two_each = [
        {"width": 64, "train_steps": 100},
        {"width": 128, "train_steps": 100},
        {"width": 64, "train_steps": 200},
    ]
    cases = [
        (
            spec(task, L_RUNGS, 4, follow={"rungs": [{"width": 512}]}),
            ["body", "ladder", "follow"],
            "follow.rungs[0] names width: a rung of this ladder names train_steps, width",
        ),
        (
            spec(task, L_RUNGS, 4, follow={"rungs": [CORNER, {"width": 64, "train_steps": 200}]}),
            ["body", "ladder", "follow"],
            "follow.rungs[1] {'width': 64, 'train_steps': 200} is a rung of the ladder already",
        ),
        (
            spec(task, L_RUNGS, 4, follow={"rungs": [CORNER, CORNER]}),
            ["body", "ladder", "follow", "rungs"],
            "are the same point",
        ),
        (
            spec(task, L_RUNGS, 4, follow={"rungs": [{"width": 10**6, "train_steps": 400}]}),
            ["body", "ladder", "follow", "rungs", 0, "width"],
            "<=",
        ),
        (
            spec(task, two_each, 4, follow={"rungs": [{"width": 256, "train_steps": 400}]}),
            ["body", "ladder", "rungs"],
            "at least 3",
        ),
        (
            spec(task, L_RUNGS, 4, follow={"rungs": [CORNER], "span": 1}),
            ["body", "ladder", "follow", "span"],
            "1.5",
        ),
        (
            spec(
                task,
                L_RUNGS,
                4,
                follow={"rungs": [CORNER], "released": [{"point": CORNER, "box": "fit"}]},
            ),
            ["body", "ladder", "follow", "released"],
            "filled in by the server",
        ),
    ]
    for body, loc, text in cases:
        r = client.post("/api/ladders", json=body)
        assert r.status_code == 422, (body["ladder"], r.text)
        assert any(e["loc"][: len(loc)] == loc and text in e["msg"] for e in r.json()["detail"]), (
            r.json()
        )
    too_many = [{"width": 8 * (k + 1), "train_steps": 100 + k % 3} for k in range(14)]
    far = [{"width": 8 * (k + 1), "train_steps": 400} for k in range(3)]
    r = client.post("/api/ladders", json=spec(task, too_many, 4, follow={"rungs": far}))
    assert r.status_code == 422 and "at most 16 rungs, follow rungs included" in r.text, r.text
    assert client.get("/api/ladders").json()["total"] == before

    # a rung waiting to follow cannot be added by hand as well
    lid = client.post("/api/ladders", json=follow_spec(task, 4)).json()["id"]
    r = client.post(f"/api/ladders/{lid}/rungs", json={"rungs": [CORNER], "box": "ladder"})
    assert r.status_code == 422 and "is a follow rung already" in r.text, r.text
    assert len(ladder(client, lid)["rungs"]) == 5
    assert client.delete(f"/api/ladders/{lid}").status_code == 204


def test_release_is_idempotent_across_server_processes(
    client, task, server, live_server, wait_for
) -> None:
    r = client.post("/api/ladders", json=follow_spec(task, 8, held=True))
    assert r.status_code == 201, r.text
    lid = r.json()["id"]
    assert run_all(client, task) == 8 * 5
    lad = ladder(client, lid)  # held: every rung is complete, yet nothing is added
    assert len(lad["rungs"]) == 5 and lad["pending"] and lad["status"] == "cancelled"
    assert "held while the ladder is cancelled" in lad["pending_note"]

    other = live_server(server.database_url)
    answers: list[httpx.Response] = []

    def resume(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            answers.append(c.post(f"/api/ladders/{lid}/resume"))

    threads = [threading.Thread(target=resume, args=(u,)) for u in (server.url, other.url)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    lad = released(client, lid, wait_for)
    assert len(lad["rungs"]) == 6 and len(lad["followed"]) == 1
    # 40 trials in 5 rungs are too few for the joint fit: the ladder's own box, and why
    [record] = lad["followed"]
    assert record["box"] == "ladder" and "the joint fit needs 42 or more" in record["note"]
    space = client.get(f"/api/sweeps/{lad['rungs'][-1]['sweep_id']}").json()["spec"]["space"]
    assert space["lr"] == {"low": 1e-5, "high": 1e-1, "log": True}

    # resuming again (on either server) adds nothing
    for url in (server.url, other.url):
        assert httpx.post(f"{url}/api/ladders/{lid}/resume", timeout=60).status_code == 200
    assert len(ladder(client, lid)["rungs"]) == 6
    assert run_all(client, task) == 8
    assert ladder(client, lid)["status"] == "complete"


def test_a_cancelled_ladder_holds_its_follow_rungs_until_resumed(
    client, task, server, wait_for
) -> None:
    lid = client.post("/api/ladders", json=follow_spec(task, 8)).json()["id"]
    run_n(client, task, 8 * 5 - 1)
    last = claim(client, task)
    assert last is not None
    r = client.post(f"/api/ladders/{lid}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["ladder"]["follow"]["held"] is True
    finish(client, last)  # the last trial ends, but its rung stays cancelled
    assert claim(client, task) is None
    lad = ladder(client, lid)
    assert len(lad["rungs"]) == 5 and lad["status"] == "cancelled" and lad["pending"]
    env = {k: v for k, v in os.environ.items() if k not in ("LIONSWEEP_TOKEN", "FORCE_COLOR")}
    env.update(COLUMNS="200", NO_COLOR="1", LIONSWEEP_SERVER=server.url)
    shown = subprocess.run(
        [*lionsweep_command(), "ladder", "status", str(lid)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "1 rung waits for the fit: held while the ladder is cancelled" in shown.stdout
    assert "(width=256, train_steps=400)" in shown.stdout

    r = client.post(f"/api/ladders/{lid}/resume")
    assert r.status_code == 200, r.text
    lad = released(client, lid, wait_for)
    assert len(lad["rungs"]) == 6 and lad["spec"]["ladder"]["follow"]["held"] is False
    assert run_all(client, task) == 8
    assert ladder(client, lid)["status"] == "complete"


def test_a_box_around_a_prediction_holds_its_interval():
    """A box centred on a prediction reaches ``span`` each way, further where the prediction's
    90% interval does (a weight decay the rungs leave open is searched across its interval),
    and never past ``BOX_SPREAD_MAX``."""
    from service import schemas
    from service.ladder_spec import BOX_SPREAD_MAX, fit_box

    rung = schemas.SweepSpec.model_validate(
        {
            "name": "r",
            "task": {"name": "t"},
            "space": {
                "lr": {"low": 1e-4, "high": 1e-1, "log": True},
                "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
            },
        }
    )

    def box(lr_ci: list[float], wd_ci: list[float]) -> tuple[float, float, float, float]:
        pred = schemas.LadderPrediction(
            width=None,
            lr=1e-3,
            lr_ci=lr_ci,
            weight_decay=0.1,
            weight_decay_ci=wd_ci,
            weight_decay_moved=True,
            value=None,
            value_ci=None,
            note="",
        )
        space = fit_box(rung, pred, 3.0).space
        return space.lr.low, space.lr.high, space.weight_decay.low, space.weight_decay.high

    lo, hi, wlo, whi = box([5e-4, 2e-3], [0.05, 0.2])  # both intervals inside ÷/× 3
    assert math.isclose(lo, 1e-3 / 3) and math.isclose(hi, 3e-3)
    assert math.isclose(wlo, 0.1 / 3) and math.isclose(whi, 0.3)
    lo, hi, wlo, whi = box([5e-4, 2e-3], [0.01, 0.8])  # λ open: ×10 down, ×8 up
    assert math.isclose(lo, 1e-3 / 3) and math.isclose(hi, 3e-3)
    assert math.isclose(wlo, 0.01) and math.isclose(whi, 1.0)
    lo, hi, _, _ = box([1e-9, 2e-3], [0.05, 0.2])  # an interval beyond the cap
    assert math.isclose(lo, 1e-3 / BOX_SPREAD_MAX) and math.isclose(hi, 1e-3 * BOX_SPREAD_MAX)
