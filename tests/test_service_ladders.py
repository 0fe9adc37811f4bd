"""Width ladders through a real server on SQLite and PostgreSQL. A scripted httpx client
plays the worker over the REST protocol; its objective has a planted width rule
(η* ∝ w^-½, λ* ∝ w^½, so η*·λ* is constant), with noise drawn from the trial's seed. The
ladder must recover that rule with intervals containing the planted exponents, predict the
next width, and confirm the prediction there; bad input changes nothing."""

from __future__ import annotations

import math
import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from planted_ladder import NOISE, PRODUCT, claim, ladder_spec, lr_star, run_all

LN = math.log


@pytest.fixture
def task(client: httpx.Client) -> str:
    """A fresh task name, announced (with its width param) by the fake worker."""
    name = f"l{uuid.uuid4().hex[:10]}"
    assert claim(client, name) is None
    return name


def counts(client: httpx.Client) -> tuple[int, int]:
    return (
        client.get("/api/ladders").json()["total"],
        client.get("/api/sweeps").json()["total"],
    )


@pytest.mark.slow
def test_a_ladder_recovers_the_planted_rule_predicts_and_confirms(client, task) -> None:
    r = client.post("/api/ladders", json=ladder_spec(task))
    assert r.status_code == 201, r.text
    ladder = r.json()
    assert r.headers["Location"] == f"/api/ladders/{ladder['id']}"
    assert [g["width"] for g in ladder["rungs"]] == [64, 128, 256]
    assert ladder["status"] == "running" and ladder["confirmations"] == []
    for rung in ladder["rungs"]:
        sweep = client.get(f"/api/sweeps/{rung['sweep_id']}").json()
        assert sweep["ladder_id"] == ladder["id"] and sweep["ladder_role"] == "rung"
        assert sweep["task"]["params"] == {"depth": 2, "width": rung["width"]}
        assert sweep["spec"]["space"]["lr"] == {"low": 1e-5, "high": 1e-1, "log": True}

    r = client.post(f"/api/ladders/{ladder['id']}/confirm", json={"width": 1024})
    assert r.status_code == 409
    assert "rung width=64" in r.json()["detail"] and "0/36 finished" in r.json()["detail"]

    assert run_all(client, task) == 3 * 36
    ladder = client.get(f"/api/ladders/{ladder['id']}").json()
    assert ladder["status"] == "complete" and ladder["progress"] == 1.0

    rule = client.get(f"/api/ladders/{ladder['id']}/rule", params={"width": 1024}).json()
    assert [g["verdict"] for g in rule["rungs"]] == ["valley"] * 3
    assert all(g["used"] == ["lr", "weight_decay", "value"] for g in rule["rungs"])
    lo, hi = rule["lr_exponent_ci"]
    assert lo <= -0.5 <= hi and hi - lo < 0.6, rule
    lo, hi = rule["wd_exponent_ci"]
    assert lo <= 0.5 <= hi and hi - lo < 0.6, rule
    lo, hi = rule["product_exponent_ci"]
    assert lo <= 0.0 <= hi
    assert rule["complete"] is True
    # The joint fit of all 108 trials: the planted exponents, more tightly than the lines
    # through the rungs' own optima.
    [axis] = rule["axes"]
    assert axis["param"] == "width" and axis["role"] == "width"
    for name, planted in (("lr", -0.5), ("wd", 0.5), ("product", 0.0)):
        lo, hi = axis[f"{name}_exponent_ci"]
        assert lo <= planted <= hi, (name, axis)
    for name in ("lr", "wd"):
        joint, lines = axis[f"{name}_exponent_ci"], rule[f"{name}_exponent_ci"]
        assert joint[1] - joint[0] < lines[1] - lines[0], (name, joint, lines)
    assert axis["timescale_exponent"] == pytest.approx(-axis["product_exponent"])
    assert "108 trials in 3 rungs" in rule["axes_note"]
    scores = {s["name"]: s for s in rule["rules"]}
    assert set(scores) == {"sqrt", "mup", "mup_sqrt"}
    assert scores["sqrt"]["relative_likelihood"] == 1.0 and scores["sqrt"]["consistent"]
    assert rule["best_rule"] == "sqrt"
    assert rule["verdict"] in ("rule_identified", "indistinguishable"), rule["reason"]
    pred = rule["prediction"]
    assert pred["width"] == 1024 and pred["weight_decay_moved"] is True
    assert pred["lr_ci"][0] <= lr_star(1024) <= pred["lr_ci"][1]
    assert pred["weight_decay_ci"][0] <= PRODUCT / lr_star(1024) <= pred["weight_decay_ci"][1]
    assert "extrapolated ×4" in pred["note"]

    def post_confirm(_: int) -> httpx.Response:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as c:
            body = {"width": 1024, "seeds": 8, "sweep_trials": 8}
            return c.post(f"/api/ladders/{ladder['id']}/confirm", json=body)

    with ThreadPoolExecutor(4) as pool:  # at once: one confirmation, the rest refused
        answers = list(pool.map(post_confirm, range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], answers
    r = next(a for a in answers if a.status_code == 201)
    assert all("already confirmed" in a.text for a in answers if a.status_code == 409)
    # the confirmation and its sweep at the point, once: the refused requests made neither
    confirm, own = sorted(r.json()["confirmations"], key=lambda c: c["role"])
    assert confirm["width"] == 1024 and confirm["role"] == "confirm"
    assert own["width"] == 1024 and own["role"] == "target" and own["n_trials"] == 8
    # fresh training seeds: from the confirmation sweep's own id, not a fixed sampler seed
    confirm_spec = client.get(f"/api/sweeps/{confirm['sweep_id']}").json()["spec"]
    assert confirm_spec["sampler"].get("seed") is None
    assert r.json()["status"] == "running"

    pending = client.get(f"/api/ladders/{ladder['id']}/rule").json()["confirmations"][0]
    assert pending["verdict"] == "pending"
    # 8 seeds an arm (fresh ones, whichever they are); the point's own sweep: 8 trials and
    # its top 3 configs re-run 8 times each
    assert run_all(client, task) == 16 + 8 + 3 * 8

    rule2 = client.get(f"/api/ladders/{ladder['id']}/rule").json()
    assert rule2["lr_exponent"] == rule["lr_exponent"]  # confirmations do not enter the fit
    [c] = rule2["confirmations"]
    assert c["status"] == "complete" and c["transferred"]["n"] == 8
    assert c["untransferred"]["n"] == 8
    assert c["transferred"]["lr"] == pytest.approx(pred["lr"])
    best256 = rule["rungs"][-1]
    assert c["untransferred"]["lr"] != c["transferred"]["lr"]
    assert 1e-5 <= best256["lr"] <= 1e-1
    # The untransferred config keeps the widest rung's lr, about 2x the width-1024 optimum;
    # the planted penalty of that (0.25·ln(2)² = 0.12) is well above the noise.
    assert c["verdict"] == "transfer_better", c
    assert c["difference"] < 0 and c["difference_ci"][1] < 0
    assert c["predicted"]["value_ci"] is not None
    assert isinstance(c["within_prediction"], bool)
    # the planted rule holds at 1024: the prediction is within the noise of what a sweep of
    # that width's own finds (or better)
    own = c["target"]
    assert own["status"] == "complete" and own["best"]["n"] >= 2, own
    assert own["verdict"] == "confirmed", own["note"]
    assert client.get(f"/api/ladders/{ladder['id']}").json()["status"] == "complete"


def test_lr_only_rungs_give_an_lr_exponent_and_leave_weight_decay_unmoved(client, task) -> None:
    spec = ladder_spec(task)
    spec["n_trials"] = 24
    spec["space"]["weight_decay"] = {"low": 1e-3, "high": 1e-2, "log": True}
    r = client.post("/api/ladders", json=spec)
    assert r.status_code == 201, r.text
    lid = r.json()["id"]

    def lr_only_run() -> None:
        while (got := claim(client, task)) is not None:
            w = got["task"]["params"]["width"]
            x = LN(got["params"]["lr"] / lr_star(w, -1.0))
            value = x**2 + NOISE * random.Random(got["seed"]).gauss(0, 1)
            client.post(
                f"/api/trials/{got['trial_id']}/finish", json={"state": "complete", "value": value}
            ).raise_for_status()

    lr_only_run()
    rule = client.get(f"/api/ladders/{lid}/rule", params={"width": 512}).json()
    assert [g["verdict"] for g in rule["rungs"]] == ["lr_only"] * 3
    assert all(g["used"] == ["lr", "value"] for g in rule["rungs"])
    assert rule["lr_exponent_ci"][0] <= -1.0 <= rule["lr_exponent_ci"][1]
    assert rule["wd_exponent"] is None and rule["product_exponent"] is None
    assert rule["verdict"] == "indistinguishable"
    assert "compared on the lr alone" in rule["reason"]
    pred = rule["prediction"]
    assert pred["weight_decay_moved"] is False and pred["weight_decay_ci"] is None
    assert "unmoved" in pred["note"]
    # The joint fit shows no weight-decay exponent either: weight decay does not move this
    # objective (or, when its F-test errs, its optimum is not pinned and no exponent is shown).
    for axis in rule["axes"]:
        assert axis["wd_exponent"] is None and axis["product_exponent"] is None, rule["axes_note"]
        assert axis["lr_exponent_ci"][0] <= -1.0 <= axis["lr_exponent_ci"][1]
    assert "weight decay" in rule["axes_note"]


def test_degenerate_widths_are_refused_naming_the_field_and_the_rule(client, task) -> None:
    spec = ladder_spec(task)
    spec["n_trials"] = 24
    lid = client.post("/api/ladders", json=spec).json()["id"]
    run_all(client, task)
    assert client.get(f"/api/ladders/{lid}/rule", params={"width": 1024}).status_code == 200
    far = "within a factor of 1e+06 of the rungs' widths (64 to 256)"
    for width, rule in [
        ("5e-324", far),  # the smallest subnormal: width / reference underflows to 0
        ("1e-310", far),
        ("1e308", far),
        ("6e-5", far),
        ("3e8", far),
        ("0", "greater than 0"),
        ("-1", "greater than 0"),
        ("inf", "finite number"),
        ("nan", "finite number"),
    ]:
        r = client.get(f"/api/ladders/{lid}/rule", params={"width": width})
        assert r.status_code == 422, (width, r.text)
        [err] = r.json()["detail"]
        assert err["loc"] == ["query", "width"] and rule in err["msg"], (width, err)
    for width in (6.4e-5 * 1.001, 2.56e8 / 1.001):  # just inside: a prediction, all finite
        r = client.get(f"/api/ladders/{lid}/rule", params={"width": width})
        assert r.status_code == 200, (width, r.text)
        pred = r.json()["prediction"]
        assert pred["lr"] > 0 and "extrapolated" in pred["note"], pred


def test_a_scaled_box_moves_each_rung_by_the_rule(client, task) -> None:
    spec = ladder_spec(task, scale_box="mup")
    spec["enqueue"] = [{"lr": 1e-3, "weight_decay": 0.01}]
    r = client.post("/api/ladders", json=spec)
    assert r.status_code == 201, r.text
    rungs = r.json()["rungs"]
    top = client.get(f"/api/sweeps/{rungs[-1]['sweep_id']}").json()["spec"]
    assert top["space"]["lr"]["low"] == pytest.approx(1e-5 / 4)
    assert top["space"]["weight_decay"]["high"] == pytest.approx(40.0)
    assert top["enqueue"][0]["lr"] == pytest.approx(2.5e-4)
    assert top["enqueue"][0]["weight_decay"] == pytest.approx(0.04)
    assert client.delete(f"/api/ladders/{r.json()['id']}").status_code == 204
    for rung in rungs:
        assert client.get(f"/api/sweeps/{rung['sweep_id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "loc", "rule"),
    [
        ({"widths": [64, 128]}, ["body", "ladder", "widths"], "at least 3 widths"),
        ({"widths": [64, 128, 64]}, ["body", "ladder", "widths"], "distinct"),
        ({"widths": [64, 0, 128]}, ["body", "ladder", "widths"], "> 0"),
        ({"widths": [64, -8, 128]}, ["body", "ladder", "widths"], "> 0"),
        ({"widths": [64, 128, 4]}, ["body", "ladder", "widths", 0], "width must be >= 8"),
        ({"widths": [64, 128, 96.5]}, ["body", "ladder", "widths", 1], "of type int"),
        ({"param": "depth"}, ["body", "ladder", "param"], "does not declare 'depth' as its width"),
        ({"param": "nope"}, ["body", "ladder", "param"], "its width param is 'width'"),
    ],
)
def test_bad_ladders_are_refused_naming_the_field_and_write_nothing(
    client, task, change, loc, rule
) -> None:
    before = counts(client)
    spec = ladder_spec(task)
    spec["ladder"].update(change)
    r = client.post("/api/ladders", json=spec)
    assert r.status_code == 422, r.text
    [err] = [e for e in r.json()["detail"] if e["loc"][: len(loc)] == loc]
    assert rule in err["msg"], err
    assert counts(client) == before


def test_a_ladder_of_an_unannounced_task_or_setting_the_width_itself_is_refused(
    client, task
) -> None:
    before = counts(client)
    r = client.post("/api/ladders", json=ladder_spec(f"x{uuid.uuid4().hex[:8]}"))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "ladder", "param"]
    assert "no worker has announced" in r.json()["detail"][0]["msg"]
    spec = ladder_spec(task)
    spec["task"]["params"]["width"] = 32
    r = client.post("/api/ladders", json=spec)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "task", "params", "width"]
    assert counts(client) == before


def test_confirm_refusals_and_rung_sweeps_belong_to_their_ladder(client, task) -> None:
    r = client.post("/api/ladders", json=ladder_spec(task))
    lid, rungs = r.json()["id"], r.json()["rungs"]
    before = counts(client)
    for body, status, text in [
        ({"width": 128}, 422, "a rung of the ladder already"),
        ({"width": 0}, 422, "width must be a finite number > 0"),
        ({"width": 1e9}, 422, "width must be <= 65536"),
        ({"width": 512, "seeds": 1}, 422, "greater than or equal to 2"),
        ({"width": 512}, 409, "needs every rung complete"),
    ]:
        r = client.post(f"/api/ladders/{lid}/confirm", json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.text, (body, r.text)
    assert client.post("/api/ladders/999999/confirm", json={"width": 512}).status_code == 404
    r = client.delete(f"/api/sweeps/{rungs[0]['sweep_id']}")
    assert r.status_code == 409 and f"ladder {lid}" in r.json()["detail"]
    assert counts(client) == before
    cancelled = client.post(f"/api/ladders/{lid}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert {g["status"] for g in cancelled["rungs"]} == {"cancelled"}
    assert claim(client, task) is None
    assert client.post(f"/api/ladders/{lid}/resume").json()["status"] == "running"
    assert client.delete(f"/api/ladders/{lid}").status_code == 204
    assert client.get(f"/api/ladders/{lid}").status_code == 404
    assert counts(client) == (before[0] - 1, before[1] - 3)


def test_ladders_accept_yaml_and_idempotency_keys(client, task) -> None:
    import yaml

    body = yaml.safe_dump(ladder_spec(task))
    headers = {"Content-Type": "application/yaml", "Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/api/ladders", content=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/api/ladders", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    listed = client.get("/api/ladders").json()
    assert first.json()["id"] in [lad["id"] for lad in listed["items"]]
    client.delete(f"/api/ladders/{first.json()['id']}")
