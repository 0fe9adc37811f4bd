"""Lion against its AdamW baseline arm (GET /api/sweeps/{id}/arms), through a real server on
SQLite and PostgreSQL: planted sweeps where AdamW is clearly better, Lion clearly better, and
the two tie, a sweep without a baseline and ones that cannot measure the difference. A
scripted httpx client plays the worker; each arm's objective is a tilted bowl in (ln lr,
ln weight decay) around a planted optimum, plus a planted offset and seed noise."""

from __future__ import annotations

import math
import random
import uuid

import httpx
import pytest

LN = math.log
SD = 0.03
LION_OPT = {"lr": 3e-4, "weight_decay": 1.0}
ADAMW_OPT = {"lr": 1.5e-3, "weight_decay": 0.2}  # lr 5× larger, weight decay 5× smaller
SPACE = {
    "lr": {"low": 1e-5, "high": 1e-1, "log": True},
    "weight_decay": {"low": 1e-3, "high": 100.0, "log": True},
    "beta1": 0.9,
    "beta2": 0.99,
}


def bowl(p: dict, opt: dict) -> float:
    """A valley of slope −1 (lr·weight decay constant) with its optimum at ``opt``."""
    u, v = LN(p["lr"] / opt["lr"]), LN(p["weight_decay"] / opt["weight_decay"])
    return 0.3 * (u + v) ** 2 + 0.1 * u * u


def planted(lion_offset: float, adamw_offset: float):
    def objective(p: dict) -> float:
        if p["optimizer"] == "adamw":
            return adamw_offset + bowl(p, ADAMW_OPT)
        return lion_offset + bowl(p, LION_OPT)

    return objective


def run_sweep(client: httpx.Client, planted_value, **spec) -> int:
    """Submit a sweep and finish every trial it hands out; returns its id."""
    task = f"a{uuid.uuid4().hex[:10]}"
    body = {"name": "arms", "task": {"name": task}, "space": SPACE, "pruner": {"name": "none"}}
    r = client.post("/api/sweeps", json={**body, **spec})
    assert r.status_code == 201, r.text
    finish_all(client, task, planted_value)
    return r.json()["id"]


def finish_all(client: httpx.Client, task: str, planted_value) -> None:
    """Finish every trial of ``task`` the server hands out, valued by ``planted_value``."""
    while True:
        r = client.post("/api/trials/claim", json={"worker_id": "w", "tasks": [task]})
        if r.status_code == 204:
            return
        a = r.json()
        value = planted_value(a["params"]) + SD * random.Random(a["seed"]).gauss(0.0, 1.0)
        r = client.post(
            f"/api/trials/{a['trial_id']}/finish", json={"state": "complete", "value": value}
        )
        assert r.status_code == 200, r.text


OPTIMA = [{**LION_OPT, "optimizer": "lion"}, {**ADAMW_OPT, "optimizer": "adamw"}]


def test_adamw_clearly_better_with_each_arms_optimum_and_the_papers_ratios(client) -> None:
    sweep = run_sweep(
        client,
        planted(0.25, 0.0),
        baseline="adamw",
        sampler={"name": "random", "seed": 7},
        n_trials=90,
        enqueue=OPTIMA,
        reevaluate={"top_k": 2, "seeds": 3},
    )
    arms = client.get(f"/api/sweeps/{sweep}/arms").json()
    assert arms["baseline"] == "adamw"
    assert arms["verdict"] == "adamw_better", arms["reason"]
    assert "AdamW's best config beats Lion's" in arms["reason"]
    lo, hi = arms["difference_ci"]
    assert lo <= 0.25 <= hi and lo > 0
    lion, adamw = arms["lion"], arms["adamw"]
    assert arms["difference"] == pytest.approx(lion["best"]["mean"] - adamw["best"]["mean"])
    for arm, opt in ((lion, LION_OPT), (adamw, ADAMW_OPT)):
        best = arm["best"]
        assert best["optimizer"] == arm["optimizer"] and best["confirmed"]
        assert best["n_seeds"] == 2 and best["ci"][0] < best["mean"] < best["ci"][1]
        assert arm["noise_source"] == "arm" and arm["noise_df"] == 4
        assert arm["fit_verdict"] == "valley", arm["fit_reason"]
        assert arm["lr_source"] == arm["weight_decay_source"] == "fit"
        assert arm["lr_ci"][0] <= arm["lr"] <= arm["lr_ci"][1]
        assert arm["lr"] == pytest.approx(opt["lr"], rel=0.1)
        assert arm["weight_decay"] == pytest.approx(opt["weight_decay"], rel=0.1)
    assert "2 runs that took no part in ranking it" in arms["selection_note"]
    lr, wd = arms["lr_ratio"], arms["weight_decay_ratio"]
    assert lr["value"] == pytest.approx(adamw["lr"] / lion["lr"])
    assert lr["value"] == pytest.approx(5, rel=0.15) and lr["expected"] == [3, 10]
    assert lr["ci"][0] <= lr["value"] <= lr["ci"][1]
    assert wd["value"] == pytest.approx(0.2, rel=0.15)
    assert wd["ci"][0] <= wd["value"] <= wd["ci"][1]
    assert wd["expected"] == pytest.approx([0.1, 1 / 3])
    assert lr["agreement"] == wd["agreement"] == "agrees", (lr["note"], wd["note"])
    # The rule (the Lion arm's fit) is the same estimator on the same trials.
    rule = client.get(f"/api/sweeps/{sweep}/scaling-rule").json()
    assert rule["optimum"]["lr"] == pytest.approx(lion["lr"])
    assert rule["optimum"]["weight_decay"] == pytest.approx(lion["weight_decay"])


@pytest.mark.parametrize(
    ("offsets", "direction", "verdict", "planted_diff"),
    [
        ((0.0, 0.25), "minimize", "lion_better", -0.25),
        ((0.0, 0.0), "minimize", "tied", 0.0),
        ((0.0, 0.25), "maximize", "lion_better", 0.25),  # the objective negated: higher is better
    ],
)
def test_lion_better_and_tied(client, offsets, direction, verdict, planted_diff) -> None:
    sign = 1 if direction == "minimize" else -1
    sweep = run_sweep(
        client,
        lambda p: sign * planted(*offsets)(p),
        objective={"metric": "m", "direction": direction},
        baseline="adamw",
        sampler={"name": "random", "seed": 3},
        n_trials=12,
        enqueue=OPTIMA,
        reevaluate={"top_k": 1, "seeds": 4},
    )
    arms = client.get(f"/api/sweeps/{sweep}/arms").json()
    assert arms["verdict"] == verdict, arms["reason"]
    lo, hi = arms["difference_ci"]
    assert lo <= planted_diff <= hi
    if verdict == "tied":
        assert "cannot be told apart" in arms["reason"]
    else:
        assert max(sign * lo, sign * hi) < 0
        assert "Lion's best config beats AdamW's" in arms["reason"]
    # Too few trials per arm for a fit: each arm's best config stands in, without interval.
    for arm in ("lion", "adamw"):
        assert arms[arm]["fit_verdict"] == "insufficient"
        assert arms[arm]["lr_source"] == "best_config" and arms[arm]["lr_ci"] is None
    lr = arms["lr_ratio"]
    assert lr["value"] == pytest.approx(5) and lr["ci"] is None and lr["agreement"] == "unclear"
    assert "pins no optimum lr" in lr["note"]
    assert arms["weight_decay_ratio"]["value"] == pytest.approx(0.2)


def test_without_a_baseline_or_a_measurable_difference_it_says_so(client) -> None:
    assert client.get("/api/sweeps/999999/arms").status_code == 404
    objective = planted(0.0, 0.0)
    task = f"a{uuid.uuid4().hex[:10]}"
    r = client.post("/api/sweeps", json={"name": "none", "task": {"name": task}, "space": SPACE})
    waiting = r.json()["id"]
    r = client.get(f"/api/sweeps/{waiting}/arms")
    assert r.status_code == 409 and "no complete trial" in r.json()["detail"]

    plain = run_sweep(client, objective, n_trials=3, reevaluate="off")
    arms = client.get(f"/api/sweeps/{plain}/arms").json()
    assert arms["verdict"] == "not_measured" and arms["baseline"] is None
    assert "add baseline: adamw" in arms["reason"] and arms["difference"] is None

    # Only Lion configs ran: the AdamW arm is empty.
    lion_only = run_sweep(
        client, objective, baseline="adamw", n_trials=2, enqueue=OPTIMA[:1] * 2, reevaluate="off"
    )
    arms = client.get(f"/api/sweeps/{lion_only}/arms").json()
    assert arms["verdict"] == "not_measured" and "AdamW arm has no complete trial" in arms["reason"]
    assert arms["adamw"]["best"] is None and arms["adamw"]["n_trials"] == 0
    assert arms["lion"]["n_trials"] == 2 and arms["difference_ci"] is None

    # One seed per config: no noise, so no interval and no verdict.
    single = run_sweep(
        client, objective, baseline="adamw", n_trials=2, enqueue=OPTIMA, reevaluate="off"
    )
    arms = client.get(f"/api/sweeps/{single}/arms").json()
    assert arms["verdict"] == "not_measured" and "seed noise is not measured" in arms["reason"]
    assert arms["difference"] is not None and arms["difference_ci"] is None
    assert arms["lion"]["best"]["ci"] is None and arms["lion"]["noise_source"] == "none"
    assert "biased towards looking good" in arms["selection_note"]


def test_arms_needs_a_read_token_where_reads_do(live_server, sqlite_url) -> None:
    token = "arms-read-token"
    server = live_server(
        sqlite_url, env={"LIONSWEEP_REQUIRE_READ_TOKEN": "true", "LIONSWEEP_BOOTSTRAP_TOKEN": token}
    )
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        sweep = run_sweep(c, planted(0.0, 0.0), n_trials=1, reevaluate="off")
        assert c.get(f"/api/sweeps/{sweep}/arms").json()["verdict"] == "not_measured"
    assert httpx.get(f"{server.url}/api/sweeps/{sweep}/arms").status_code == 401
