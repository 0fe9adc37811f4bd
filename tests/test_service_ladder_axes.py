"""Ladders over width, training length and batch size through a real server (SQLite and
PostgreSQL). A scripted httpx client plays the worker; it declares ``width`` (role width) and
``train_steps`` (role steps), and the batch axis is the harness's ``batch_size``. Its
objective plants a known rule per axis:

- width: η* ∝ w^-½, λ* ∝ w^½ (the ``sqrt`` rule);
- steps: η* ∝ S^-½, λ* ∝ S^-½, so η*·λ* ∝ 1/S (``tau_tokens``: τ = 1/(ηλ) ∝ S);
- batch: η* unmoved, λ* ∝ B (``wd_linear``).

The ladder must recover every exponent with intervals holding the planted values, name each
axis's rule, predict lr and weight decay at a point 2× beyond the ladder on every axis with
intervals holding the truth, say which axes it extrapolated, confirm there, and refuse bad
designs and targets naming the field."""

from __future__ import annotations

import math
import random
import uuid

import httpx
import pytest
from planted_axes import EXPONENTS, NOISE, RUNGS, claim, objective, optimum, run_all, spec

TARGET = {"width": 512, "train_steps": 800, "batch_size": 256}
"""2× beyond the ladder on every axis."""


@pytest.fixture
def task(client: httpx.Client) -> str:
    """A fresh task name, announced with its declarations by the scripted worker."""
    name = f"x{uuid.uuid4().hex[:10]}"
    assert claim(client, name) is None
    return name


def near(ci: list[float], value: float) -> bool:
    """``value`` inside the 90% interval widened by half its width on each side: each check
    here is one draw (the intervals' coverage over many ladders is tested in
    test_ladder_joint.py), so a planted value just outside one interval is no failure."""
    half = (ci[1] - ci[0]) / 2
    return ci[0] - half <= value <= ci[1] + half


@pytest.mark.slow
def test_three_axes_recover_each_rule_predict_beyond_and_confirm(client, task) -> None:
    r = client.post("/api/ladders", json=spec(task, RUNGS))
    assert r.status_code == 201, r.text
    lad = r.json()
    assert [(a["param"], a["role"]) for a in lad["axes"]] == [
        ("width", "width"),
        ("train_steps", "steps"),
        ("batch_size", "batch"),
    ]
    assert lad["spec"]["ladder"]["roles"] == {
        "width": "width",
        "train_steps": "steps",
        "batch_size": "batch",
    }
    assert sorted(tuple(r["point"].values()) for r in lad["rungs"]) == sorted(
        tuple(float(v) for v in r.values()) for r in RUNGS
    )
    sweep = client.get(f"/api/sweeps/{lad['rungs'][-1]['sweep_id']}").json()
    assert sweep["spec"]["task"]["params"]["train_steps"] in (100, 200, 400)
    assert sweep["spec"]["space"]["batch_size"]["value"] in (32, 64, 128)
    assert run_all(client, task) == 24 * len(RUNGS)

    rule = client.get(f"/api/ladders/{lad['id']}/rule").json()
    assert rule["complete"] and rule["verdict"] == "rule_identified", rule["reason"]
    assert rule["lr_exponent"] is None and rule["rules"] == []  # one-axis fields: not here
    axes = {a["param"]: a for a in rule["axes"]}
    for name, (a, b) in EXPONENTS.items():
        axis = axes[name]
        assert near(axis["lr_exponent_ci"], a), (name, axis)
        assert near(axis["wd_exponent_ci"], b), (name, axis)
        assert near(axis["product_exponent_ci"], a + b), (name, axis)
        assert near(axis["timescale_exponent_ci"], -(a + b)), (name, axis)
        shift = 1.0 if name == "batch_size" else 0.0
        assert axis["timescale_examples_exponent"] == axis["timescale_exponent"] + shift
        assert axis["lr_exponent_ci"][1] - axis["lr_exponent_ci"][0] < 0.3, (name, axis)
    assert axes["width"]["best_rule"] == "sqrt"
    assert axes["train_steps"]["best_rule"] == "tau_tokens"
    assert axes["batch_size"]["best_rule"] == "wd_linear"
    assert {r["name"] for r in axes["width"]["rules"]} == {"sqrt", "mup", "mup_sqrt"}
    assert not next(r for r in axes["width"]["rules"] if r["name"] == "mup")["consistent"]
    assert axes["batch_size"]["values"] == [32.0, 64.0, 128.0]
    assert len(rule["rungs"]) == 7 and all(f["point"] for f in rule["rungs"])

    query = {"width": 512, "steps": 800, "batch_size": 256}
    pred = client.get(f"/api/ladders/{lad['id']}/rule", params=query).json()["prediction"]
    lr, wd = optimum(TARGET)
    assert near([math.log(v) for v in pred["lr_ci"]], math.log(lr)), (pred, lr)
    assert near([math.log(v) for v in pred["weight_decay_ci"]], math.log(wd)), (pred, wd)
    assert pred["weight_decay_moved"] and pred["width"] == 512
    assert pred["point"] == {"width": 512.0, "train_steps": 800.0, "batch_size": 256.0}
    assert {r["param"]: (r["extrapolated"], r["factor"]) for r in pred["reach"]} == {
        "width": (True, 2.0),
        "train_steps": (True, 2.0),
        "batch_size": (True, 2.0),
    }
    assert "extrapolated along width ×2" in pred["note"]
    inner = client.get(
        f"/api/ladders/{lad['id']}/rule", params={"width": 100, "steps": 150, "batch_size": 50}
    ).json()["prediction"]
    assert not any(r["extrapolated"] for r in inner["reach"])
    assert inner["note"] == "interpolated between the rungs"

    r = client.post(
        f"/api/ladders/{lad['id']}/confirm",
        json={"width": 512, "steps": 800, "batch_size": 256, "seeds": 3, "rules": True},
    )
    assert r.status_code == 201, r.text
    [conf] = r.json()["confirmations"]
    [arms] = client.get(f"/api/ladders/{lad['id']}/rule").json()["confirmations"]
    assert arms["status"] == "running" and arms["verdict"] == "pending"
    rule_arms = {a["source"].split(" rule ")[0].removeprefix("the "): a for a in arms["arms"]}
    # the identified rules' arms coincide with the prediction (within 2%) and are left out;
    # every rule the data reject gets an arm
    assert {"mup", "mup_sqrt", "tau_steps", "fixed"} <= set(rule_arms), arms["arms"]
    assert len(arms["arms"]) <= 7
    assert conf["point"] == {"width": 512.0, "train_steps": 800.0, "batch_size": 256.0}
    confirm = client.get(f"/api/sweeps/{conf['sweep_id']}").json()["spec"]
    assert confirm["task"]["params"]["train_steps"] == 800
    assert confirm["space"]["batch_size"]["value"] == 256
    again = client.post(
        f"/api/ladders/{lad['id']}/confirm", json={"width": 512, "steps": 800, "batch_size": 256}
    )
    assert again.status_code == 409 and "already confirmed" in again.text
    assert run_all(client, task) == 3 * (2 + len(arms["arms"]))
    [out] = client.get(f"/api/ladders/{lad['id']}/rule").json()["confirmations"]
    assert out["status"] == "complete"
    assert out["transferred"]["n"] == 3 and out["untransferred"]["n"] == 3
    assert all(a["n"] == 3 for a in out["arms"]) and len(out["arms"]) == len(arms["arms"])
    # the rejected rules' predictions do worse than the fitted one
    mup = next(a for a in out["arms"] if a["source"].startswith("the mup rule"))
    assert mup["mean"] > out["transferred"]["mean"]
    # the prediction is the planted optimum (to its interval); the nearest rung's optimum,
    # unmoved, is 2× off on three axes: worse by far more than the noise
    assert out["verdict"] == "transfer_better", out["note"]
    assert (
        "nearest rung" in out["untransferred"]["source"]
        or "rung sweep" in out["untransferred"]["source"]
    )


def test_bad_designs_and_targets_are_refused_naming_the_field(client, task) -> None:
    before = client.get("/api/ladders").json()["total"]
    line = [{"train_steps": s} for s in (100, 200, 400)]
    for rungs, extra, loc, text in [
        (
            [{"width": w, "train_steps": s} for w, s in ((64, 100), (128, 100), (256, 200))],
            {},
            ["body", "ladder", "rungs"],
            "axis 'train_steps' has 2 distinct values",
        ),
        (
            [{"depth": d} for d in (1, 2, 3)],
            {},
            ["body", "ladder", "rungs", 0, "depth"],
            "'depth' is not a scale axis of task",
        ),
        (
            [{"nope": d} for d in (1, 2, 3)],
            {},
            ["body", "ladder", "rungs", 0, "nope"],
            "does not declare it",
        ),
        (line + line[:1], {}, ["body", "ladder", "rungs"], "are the same point"),
        (line, {"scale_box": "sqrt"}, ["body", "ladder", "scale_box"], "no width axis"),
        (line, {"roles": {"train_steps": "batch"}}, ["body", "ladder", "roles"], "declares"),
        (
            [{"train_steps": s} for s in (100, 200, 1e9)],
            {},
            ["body", "ladder", "rungs", 2, "train_steps"],
            "train_steps must be <=",
        ),
        (
            [{"batch_size": b} for b in (16, 32, 48.5)],
            {},
            ["body", "ladder", "rungs", 2, "batch_size"],
            "whole number",
        ),
    ]:
        r = client.post("/api/ladders", json=spec(task, rungs, **extra))
        assert r.status_code == 422, (rungs, r.text)
        [err] = [e for e in r.json()["detail"] if e["loc"][: len(loc)] == loc] or [None]
        assert err is not None and text in err["msg"], (rungs, r.json())
    both = spec(task, line)
    both["ladder"].update(param="width", widths=[64, 128, 256])
    r = client.post("/api/ladders", json=both)
    assert r.status_code == 422 and "not both" in r.text
    steps_set = spec(task, line)
    steps_set["task"]["params"]["train_steps"] = 5
    r = client.post("/api/ladders", json=steps_set)
    assert r.status_code == 422 and "set per rung by ladder.rungs" in r.text
    assert client.get("/api/ladders").json()["total"] == before

    cross = [{"train_steps": s, "batch_size": b} for s, b in ((100, 32), (200, 32), (400, 32))]
    cross += [{"train_steps": 100, "batch_size": b} for b in (64, 128)]
    r = client.post("/api/ladders", json=spec(task, cross, n_trials=4))
    assert r.status_code == 201, r.text
    lid = r.json()["id"]
    for params, field, text in [
        ({"steps": 800}, "batch_size", "give batch_size too"),
        ({"width": 64, "steps": 800, "batch_size": 64}, "width", "has no width axis"),
        ({"steps": 1e12, "batch_size": 64}, "steps", "within a factor of 1e+06"),
    ]:
        r = client.get(f"/api/ladders/{lid}/rule", params=params)
        assert r.status_code == 422, (params, r.text)
        assert any(e["loc"] == ["query", field] and text in e["msg"] for e in r.json()["detail"]), (
            params,
            r.json(),
        )
    r = client.post(f"/api/ladders/{lid}/confirm", json={"steps": 200, "batch_size": 32})
    assert r.status_code == 422 and "is a rung of the ladder already" in r.text, r.text
    r = client.post(f"/api/ladders/{lid}/confirm", json={"steps": 800})
    assert r.status_code == 422 and "give batch_size too" in r.text
    r = client.post(f"/api/ladders/{lid}/confirm", json={"steps": 800, "batch_size": 64})
    assert r.status_code == 409 and "needs every rung complete" in r.text


@pytest.mark.slow
def test_a_weight_decay_the_data_leave_open_is_said_and_confirmed_per_candidate(
    client, task
) -> None:
    rungs = [{"width": w, "train_steps": 100} for w in (64, 128, 256)]
    rungs += [{"width": 64, "train_steps": s} for s in (200, 400)]
    # (the F-test that weight decay moves the objective errs in 1 case in 20 by design, as it
    # did on sampler seed 3's trials here: those trials would test the refusal instead)
    body = spec(task, rungs)
    body["sampler"]["seed"] = 4
    r = client.post("/api/ladders", json=body)
    assert r.status_code == 201, r.text
    lid = r.json()["id"]
    assert run_all(client, task, lr_only=True) == 24 * len(rungs)
    rule = client.get(f"/api/ladders/{lid}/rule").json()
    axes = {a["param"]: a for a in rule["axes"]}
    assert set(axes) == {"width", "train_steps"}, rule["axes_note"]
    assert all(a["wd_exponent"] is None and a["lr_exponent"] is not None for a in axes.values())
    assert near(axes["width"]["lr_exponent_ci"], -0.5), axes["width"]
    assert near(axes["train_steps"]["lr_exponent_ci"], -0.5), axes["train_steps"]
    assert "do not pin the weight decay" in rule["reason"], rule["reason"]
    assert "weight decay does not move the objective" in rule["axes_note"]
    pred = client.get(f"/api/ladders/{lid}/rule", params={"width": 512, "steps": 800}).json()[
        "prediction"
    ]
    assert not pred["weight_decay_moved"] and pred["weight_decay_ci"] is None
    assert "do not pin the weight decay" in pred["note"]
    lr_star = optimum({**TARGET, "batch_size": 32})[0]
    assert near([math.log(v) for v in pred["lr_ci"]], math.log(lr_star)), pred
    r = client.post(f"/api/ladders/{lid}/confirm", json={"width": 512, "steps": 800})
    assert r.status_code == 201, r.text
    [conf] = client.get(f"/api/ladders/{lid}/rule").json()["confirmations"]
    assert 1 <= len(conf["arms"]) <= 2
    assert all("leave the weight decay open" in a["source"] for a in conf["arms"])
    assert all(math.isclose(a["lr"], pred["lr"]) for a in conf["arms"])
    assert {a["weight_decay"] for a in conf["arms"]} != {pred["weight_decay"]}


@pytest.mark.parametrize(("shift", "verdict"), [(1.0, "confirmed"), (8.0, "target_better")])
def test_a_small_sweep_at_the_target_checks_the_prediction_within_its_noise(
    client, task, shift, verdict
) -> None:
    """confirm with sweep_trials runs a sweep of the point's own beside the arms: where the
    planted rule holds at the target the prediction is within the seed noise of that sweep's
    best; where the optimum lr there is 8× off the rule, the point's own sweep finds better."""
    rungs = [{"width": w, "train_steps": 100} for w in (64, 128, 256)]
    rungs += [{"width": 64, "train_steps": s} for s in (200, 400)]
    r = client.post("/api/ladders", json=spec(task, rungs))
    assert r.status_code == 201, r.text
    lid = r.json()["id"]
    assert run_all(client, task) == 24 * len(rungs)
    point = {"width": 512, "steps": 800}
    pred = client.get(f"/api/ladders/{lid}/rule", params=point).json()["prediction"]
    if shift != 1.0:  # the confirmation first; the point's own sweep added to it later
        r = client.post(f"/api/ladders/{lid}/confirm", json=point)
        assert r.status_code == 201, r.text
        assert [c["role"] for c in r.json()["confirmations"]] == ["confirm"]
        again = client.post(f"/api/ladders/{lid}/confirm", json=point)
        assert again.status_code == 409 and "give sweep_trials" in again.text
    r = client.post(f"/api/ladders/{lid}/confirm", json={**point, "sweep_trials": 8})
    assert r.status_code == 201, r.text
    roles = {c["role"]: c for c in r.json()["confirmations"]}
    assert sorted(c["role"] for c in r.json()["confirmations"]) == ["confirm", "target"]
    target = client.get(f"/api/sweeps/{roles['target']['sweep_id']}").json()
    assert target["ladder_role"] == "target" and target["n_trials"] == 8
    tspec = target["spec"]
    assert tspec["task"]["params"]["width"] == 512
    assert tspec["task"]["params"]["train_steps"] == 800
    assert tspec["reevaluate"] == {"mode": "on", "top_k": 3, "seeds": 3}
    lr_box = tspec["space"]["lr"]
    assert lr_box["low"] <= pred["lr"] / 10 * 1.0001 and lr_box["high"] >= pred["lr"] * 9.999
    [conf] = client.get(f"/api/ladders/{lid}/rule").json()["confirmations"]
    assert conf["target"]["verdict"] == "pending"
    assert conf["target"]["sweep_id"] == target["id"]
    arms = 3 * (2 + len(conf["arms"]))
    assert run_all(client, task, lr_shift=shift) == 8 + 3 * 3 + arms
    [conf] = client.get(f"/api/ladders/{lid}/rule").json()["confirmations"]
    got = conf["target"]
    assert got["status"] == "complete" and got["finished"] == 8 + 9
    assert got["best"]["n"] >= 1 and "fresh seeds" in got["best"]["source"]
    assert got["verdict"] == verdict, got["note"]
    assert got["noise_sd"] == pytest.approx(NOISE, rel=0.6)
    if shift == 1.0:
        assert got["difference"] <= got["noise_sd"]
    else:
        assert got["difference_ci"][0] > 0
        assert got["best"]["mean"] < conf["transferred"]["mean"] - 0.5
    r = client.post(f"/api/ladders/{lid}/confirm", json={**point, "sweep_trials": 8})
    assert r.status_code == 409 and "the point's own sweep" in r.text


def test_a_confirmation_sweep_needs_eight_trials(client, task) -> None:
    rungs = [{"width": w, "train_steps": 100} for w in (64, 128, 256)]
    rungs += [{"width": 64, "train_steps": s} for s in (200, 400)]
    lid = client.post("/api/ladders", json=spec(task, rungs, n_trials=12)).json()["id"]
    run_all(client, task)
    before = client.get("/api/sweeps").json()["total"]
    r = client.post(
        f"/api/ladders/{lid}/confirm", json={"width": 512, "steps": 800, "sweep_trials": 4}
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "sweep_trials", r.text
    assert client.get("/api/sweeps").json()["total"] == before


def test_a_ladder_of_imported_sweeps_fits_without_running_anything(client, task) -> None:
    """Runs made elsewhere at several widths and lengths: imported into one sweep per size,
    the sweeps become a ladder and the joint fit recovers the planted exponents."""
    rng = random.Random(7)
    points = [(64, 100), (128, 100), (256, 100), (64, 200), (64, 400)]
    ids = []
    for width, steps in points:
        body = spec(task, [])
        del body["ladder"]
        body.update(name=f"runs {width} {steps}", n_trials=1)
        body["task"]["params"].update(width=width, train_steps=steps)
        r = client.post("/api/sweeps", json=body)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert client.post(f"/api/sweeps/{sid}/cancel").status_code == 200
        rows = []
        for _ in range(30):
            params = {
                "lr": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))),
                "weight_decay": math.exp(rng.uniform(math.log(1e-4), math.log(10.0))),
            }
            point = {"width": width, "train_steps": steps, "batch_size": 32}
            value = objective(params, point) + NOISE * rng.gauss(0, 1)
            rows.append({**params, "value": value})
        r = client.post(f"/api/sweeps/{sid}/trials:import", json={"rows": rows, "source": "x"})
        assert r.status_code == 200, r.text
        ids.append(sid)
    before = client.get("/api/ladders").json()["total"]
    axes = {"width": "width", "train_steps": "steps"}
    for body, status, loc, text in [
        ({"sweeps": [*ids[:2], 10**6], "axes": axes}, 422, ["body", "sweeps", 2], "not found"),
        ({"sweeps": ids, "axes": {"nope": "width"}}, 422, ["body", "sweeps", 0], "no positive"),
        ({"sweeps": ids[:3], "axes": axes}, 422, ["body", "sweeps"], "1 distinct value"),
        ({"sweeps": ids, "axes": {"width": "width", "x": "width"}}, 422, ["body", "axes"], "role"),
    ]:
        r = client.post("/api/ladders/from-sweeps", json={"name": "imported", **body})
        assert r.status_code == status, (body, r.text)
        assert any(e["loc"][: len(loc)] == loc and text in e["msg"] for e in r.json()["detail"]), (
            r.json()
        )
    assert client.get("/api/ladders").json()["total"] == before
    r = client.post(
        "/api/ladders/from-sweeps", json={"name": "imported", "sweeps": ids, "axes": axes}
    )
    assert r.status_code == 201, r.text
    lad = r.json()
    assert [(a["param"], a["role"]) for a in lad["axes"]] == [
        ("width", "width"),
        ("train_steps", "steps"),
    ]
    assert sorted(r["sweep_id"] for r in lad["rungs"]) == sorted(ids)
    again = client.post(
        "/api/ladders/from-sweeps", json={"name": "again", "sweeps": ids, "axes": axes}
    )
    assert again.status_code == 409 and "already" in again.text
    rule = client.get(f"/api/ladders/{lad['id']}/rule").json()
    got = {a["param"]: a for a in rule["axes"]}
    assert set(got) == {"width", "train_steps"}, rule["axes_note"]
    for name in got:
        a, b = EXPONENTS[name]
        assert near(got[name]["lr_exponent_ci"], a), got[name]
        assert near(got[name]["wd_exponent_ci"], b), got[name]
    assert "150 trials in 5 rungs" in rule["axes_note"]


def test_added_rungs_search_around_the_fit_and_join_it(client, task) -> None:
    rungs = [{"width": w, "train_steps": 100} for w in (64, 128, 256)]
    rungs += [{"width": 64, "train_steps": s} for s in (200, 400)]
    r = client.post("/api/ladders", json=spec(task, rungs))
    assert r.status_code == 201, r.text
    lid = r.json()["id"]
    early = client.post(
        f"/api/ladders/{lid}/rungs", json={"rungs": [{"width": 512, "train_steps": 100}]}
    )
    assert early.status_code == 409 and "no fit to centre a box on" in early.text
    assert run_all(client, task) == 24 * len(rungs)
    before = client.get(f"/api/ladders/{lid}").json()
    for body, loc, text in [
        ({"rungs": [{"width": 64, "train_steps": 200}]}, ["body", "rungs", 0], "is a rung already"),
        ({"rungs": [{"width": 512}]}, ["body", "rungs", 0], "names width, train_steps"),
        ({"rungs": [{"width": 10**6, "train_steps": 100}]}, ["body", "rungs", 0, "width"], "<="),
        ({"rungs": [{"width": 512, "train_steps": 100}], "span": 1}, ["body", "span"], "1.5"),
    ]:
        r = client.post(f"/api/ladders/{lid}/rungs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(e["loc"][: len(loc)] == loc and text in e["msg"] for e in r.json()["detail"]), (
            r.json()
        )
    assert client.get(f"/api/ladders/{lid}").json() == before
    target = {"width": 512, "train_steps": 100}
    pred = client.get(f"/api/ladders/{lid}/rule", params={"width": 512, "steps": 100}).json()[
        "prediction"
    ]
    r = client.post(f"/api/ladders/{lid}/rungs", json={"rungs": [target], "span": 4})
    assert r.status_code == 201, r.text
    lad = r.json()
    assert len(lad["rungs"]) == 6 and lad["spec"]["ladder"]["rungs"][-1] == target
    [new] = [g for g in lad["rungs"] if g["point"] == {k: float(v) for k, v in target.items()}]
    space = client.get(f"/api/sweeps/{new['sweep_id']}").json()["spec"]["space"]
    lr, wd = optimum({**target, "batch_size": 32})
    # span 4 each way, or as far as the prediction's 90% interval reaches
    lr_reach = max(4, pred["lr"] / pred["lr_ci"][0], pred["lr_ci"][1] / pred["lr"])
    wd_ci = pred["weight_decay_ci"]
    wd_reach = max(4, pred["weight_decay"] / wd_ci[0], wd_ci[1] / pred["weight_decay"])
    assert math.isclose(space["lr"]["low"] * lr_reach, pred["lr"]) and space["lr"]["log"]
    assert math.isclose(space["weight_decay"]["high"] / wd_reach, pred["weight_decay"])
    assert space["weight_decay"]["low"] <= wd_ci[0] and space["weight_decay"]["high"] >= wd_ci[1]
    assert space["lr"]["low"] < lr < space["lr"]["high"]
    assert space["weight_decay"]["low"] < wd < space["weight_decay"]["high"]
    assert run_all(client, task) == 24
    rule = client.get(f"/api/ladders/{lid}/rule").json()
    assert len(rule["rungs"]) == 6 and "144 trials in 6 rungs" in rule["axes_note"]
    width = next(a for a in rule["axes"] if a["param"] == "width")
    assert width["values"] == [64.0, 128.0, 256.0, 512.0]
    assert near(width["lr_exponent_ci"], -0.5) and near(width["wd_exponent_ci"], 0.5)
