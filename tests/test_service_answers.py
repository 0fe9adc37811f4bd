"""The answers a sweep gives, through a real server on SQLite and PostgreSQL: the leading
configs re-run with fresh seeds, /best ranked by seed means with intervals and ties, the
lr × weight-decay verdicts on planted sweeps, the transfer to another width, and searching
along the valley (lr_wd_product). A scripted httpx client plays the worker; its objective
is planted, with noise drawn from the trial's seed."""

from __future__ import annotations

import math
import random
import statistics
import uuid

import httpx
import pytest
from scipy import stats

LN = math.log


def task_name() -> str:
    return f"a{uuid.uuid4().hex[:10]}"


def submit(client: httpx.Client, **spec) -> dict:
    r = client.post("/api/sweeps", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def claim(client: httpx.Client, task: str, worker: str = "w", **extra) -> dict | None:
    r = client.post("/api/trials/claim", json={"worker_id": worker, "tasks": [task], **extra})
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return r.json()


def noise(a: dict, sd: float) -> float:
    """Seed noise: the same for the same trial seed, fresh for a fresh one."""
    return sd * random.Random(a["seed"]).gauss(0.0, 1.0)


def valley(p: dict) -> float:
    return (LN(p["lr"] * p["weight_decay"] / 2e-5)) ** 2


def lr_only(p: dict) -> float:
    return (LN(p["lr"] / 1e-3)) ** 2


def run_all(client: httpx.Client, task: str, objective, sd: float, report=None) -> list[dict]:
    """Claim and finish every trial there is; returns the assignments with their values."""
    done = []
    while (a := claim(client, task)) is not None:
        value = objective(a["params"]) + noise(a, sd)
        if report is not None:
            r = client.post(
                f"/api/trials/{a['trial_id']}/report", json={"step": 1, "value": report(a, value)}
            )
            assert r.status_code == 200, r.text
            a["action"] = r.json()["action"]
        r = client.post(
            f"/api/trials/{a['trial_id']}/finish", json={"state": "complete", "value": value}
        )
        assert r.status_code == 200, r.text
        done.append({**a, "value": value})
    return done


PLANTED_SPACE = {
    "lr": {"low": 1e-5, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
    "beta1": 0.9,
    "beta2": 0.99,
}


def test_leaders_are_rerun_with_fresh_seeds_and_best_ranks_by_their_mean(client) -> None:
    task = task_name()
    sweep = submit(
        client,
        name="re",
        task={"name": task},
        space=PLANTED_SPACE,
        sampler={"name": "random", "seed": 3},
        pruner={"name": "median", "n_startup_trials": 0},
        n_trials=8,
        reevaluate={"top_k": 2, "seeds": 3},
    )
    assert sweep["reevaluation"]["status"] == "pending"
    first = run_all(client, task, valley, 0.3)
    # Every own trial was handed out first; the re-runs were queued when the last finished.
    originals = [a for a in first if a["trial_number"] < 8]
    reruns = [a for a in first if a["trial_number"] >= 8]
    assert len(originals) == 8 and len(reruns) == 6
    leaders = sorted(originals, key=lambda a: a["value"])[:2]
    for leader in leaders:
        mine = [a for a in reruns if a["params"] == leader["params"]]
        assert len(mine) == 3
        seeds = {a["seed"] for a in mine} | {leader["seed"]}
        assert len(seeds) == 4, "each re-run has a fresh seed"
        for a in mine:
            t = client.get(f"/api/sweeps/{sweep['id']}/trials/{a['trial_number']}").json()
            assert t["reevaluation_of"] == leader["trial_number"]
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete" and got["progress"] == 1.0 and got["finished"] == 8
    assert got["counts"]["complete"] == 14
    assert got["reevaluation"] == {
        "status": "done",
        "top_k": 2,
        "seeds": 3,
        "trials": 6,
        "finished": 6,
        "reason": None,
    }

    best = client.get(f"/api/sweeps/{sweep['id']}/best", params={"k": 4}).json()
    groups = {
        leader["trial_number"]: sorted(
            (a for a in reruns if a["params"] == leader["params"]), key=lambda a: a["trial_number"]
        )
        for leader in leaders
    }
    fresh = {n: [a["value"] for a in runs] for n, runs in groups.items()}
    pooled = math.sqrt(sum(statistics.variance(v) * 2 for v in fresh.values()) / 4)
    assert best["noise_sd"] == pytest.approx(pooled) and best["noise_df"] == 4
    # Ranked on the selecting run and the first fresh seed; valued on the other two.
    own = {a["trial_number"]: a["value"] for a in leaders}
    rank = {n: (own[n] + v[0]) / 2 for n, v in fresh.items()}
    held = {n: statistics.mean(v[1:]) for n, v in fresh.items()}
    winner = min(rank, key=rank.get)
    b = best["best"]
    assert b["trial_number"] == winner and b["confirmed"] and b["held_out"]
    assert b["n_seeds"] == 2 and b["ranked_on"] == [winner, groups[winner][0]["trial_number"]]
    assert b["rank_value"] == pytest.approx(rank[winner])
    assert b["mean"] == pytest.approx(held[winner]) and b["value"] == b["mean"]
    assert b["values"] == pytest.approx(fresh[winner][1:])
    assert b["trial_numbers"] == [a["trial_number"] for a in groups[winner][1:]]
    assert b["selection_value"] == pytest.approx(own[winner])
    half = stats.t.ppf(0.95, 4) * pooled / math.sqrt(2)
    assert b["ci"] == pytest.approx([held[winner] - half, held[winner] + half])
    assert [c["held_out"] for c in best["top"]] == [True, True, False, False]
    assert [c["confirmed"] for c in best["top"]] == [True, True, False, False]
    assert all(c["n_seeds"] == 1 and c["ci"] is not None for c in best["top"][2:])
    assert winner in best["tied"]
    assert "took no part in ranking it" in best["note"] and "winner" in best["method"]
    # The sweep's own view shows the same config, valued the same way.
    listed = client.get(f"/api/sweeps/{sweep['id']}").json()["best"]
    assert listed["trial_number"] == winner and listed["value"] == pytest.approx(b["mean"])
    assert listed["n_seeds"] == 2 and listed["ci"] == pytest.approx(b["ci"])
    single = min(first, key=lambda a: a["value"])
    assert listed["best_single_value"] == pytest.approx(single["value"])
    assert listed["best_single_trial_number"] == single["trial_number"]


def test_reruns_are_never_pruned(client) -> None:
    task = task_name()
    submit(
        client,
        name="np",
        task={"name": task},
        space=PLANTED_SPACE,
        sampler={"name": "random", "seed": 4},
        pruner={"name": "median", "n_startup_trials": 0},
        n_trials=4,
        reevaluate={"top_k": 1, "seeds": 2},
    )
    # Every report of a re-run is far worse than the median: the pruner would stop it.
    done = run_all(
        client, task, valley, 0.1, report=lambda a, v: 1e6 if a["trial_number"] >= 4 else v
    )
    assert [a["action"] for a in done if a["trial_number"] >= 4] == ["continue", "continue"]


def test_configs_within_noise_are_reported_as_tied(client) -> None:
    task = task_name()
    configs = [
        {"lr": 1e-3, "weight_decay": 0.02},  # on the valley floor
        {"lr": 2e-4, "weight_decay": 0.1},  # on it too
        {"lr": 1e-3, "weight_decay": 5.0},  # far up its wall
    ]
    sweep = submit(
        client,
        name="tie",
        task={"name": task},
        space=PLANTED_SPACE,
        n_trials=3,
        enqueue=configs,
        reevaluate={"top_k": 3, "seeds": 3},
    )
    run_all(client, task, valley, 0.2)
    best = client.get(f"/api/sweeps/{sweep['id']}/best").json()
    assert sorted(best["tied"]) == [0, 1], best
    assert "cannot be told apart" in best["note"]
    assert best["top"][2]["trial_number"] == 2


def test_unmeasured_noise_is_said_plainly(client) -> None:
    task = task_name()
    sweep = submit(
        client, name="off", task={"name": task}, space=PLANTED_SPACE, n_trials=3, reevaluate="off"
    )
    run_all(client, task, valley, 0.2)
    best = client.get(f"/api/sweeps/{sweep['id']}/best").json()
    assert best["noise_sd"] is None and best["noise_df"] == 0 and best["best"]["ci"] is None
    assert "not measured" in best["note"] and best["reevaluation"]["status"] == "off"


def test_auto_reevaluation_is_skipped_with_its_reason_when_the_server_says_so(client) -> None:
    # The test servers run with LIONSWEEP_REEVALUATE_AUTO_SECONDS=0.
    task = task_name()
    sweep = submit(client, name="auto", task={"name": task}, space=PLANTED_SPACE, n_trials=2)
    assert sweep["spec"]["reevaluate"] == {"mode": "auto", "top_k": 3, "seeds": 3}
    assert len(run_all(client, task, valley, 0.1)) == 2
    got = client.get(f"/api/sweeps/{sweep['id']}").json()
    assert got["status"] == "complete"
    assert got["reevaluation"]["status"] == "skipped"
    assert "reevaluate_auto_seconds" in got["reevaluation"]["reason"]


def planted_sweep(client: httpx.Client, objective, seed: int, n: int = 36, **extra) -> dict:
    task = extra.pop("task", None) or task_name()
    sweep = submit(
        client,
        name="planted",
        task={"name": task, **extra.pop("task_extra", {})},
        space=extra.pop("space", PLANTED_SPACE),
        sampler={"name": "random", "seed": seed},
        pruner={"name": "none"},
        n_trials=n,
        reevaluate="off",
        **extra,
    )
    run_all(client, task, objective, 0.1)
    return sweep


def test_planted_valley_gives_a_valley_with_intervals(client) -> None:
    sweep = planted_sweep(client, valley, seed=11)
    rule = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule").json()
    assert rule["verdict"] == "valley", rule["reason"]
    lo, hi = rule["slope_ci"]
    assert lo <= -1 <= hi and hi < 0
    assert rule["product_ci"][0] <= 2e-5 <= rule["product_ci"][1] * 1.05
    assert rule["alpha0"] == pytest.approx(math.sqrt(2 * rule["product"]))
    assert rule["n"] == 36 and rule["valley"] and rule["box"]["weight_decay"] == [1e-3, 10.0]
    opt = rule["optimum"]
    assert opt["lr_ci"][0] <= opt["lr"] <= opt["lr_ci"][1]
    assert opt["lr"] * opt["weight_decay"] == pytest.approx(rule["product"])


def test_planted_lr_only_sweep_says_weight_decay_does_not_matter(client) -> None:
    sweep = planted_sweep(client, lr_only, seed=12)
    rule = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule").json()
    assert rule["verdict"] == "lr_only", rule["reason"]
    assert rule["product"] is None and rule["valley"] == [] and rule["slope"] is None
    assert rule["optimum"]["lr_ci"][0] <= 1e-3 <= rule["optimum"]["lr_ci"][1]


DECLARED = {"d": {"type": "int", "low": 1, "high": 100000, "default": 64, "width": True}}


def test_transfer_starts_from_the_sweeps_own_width_and_optimum(client) -> None:
    task = task_name()
    # A worker declares the task's params, its width among them.
    assert claim(client, task, worker="declaring", task_params={task: DECLARED}) is None
    sweep = planted_sweep(client, valley, seed=11, task=task, task_extra={"params": {"d": 128}})
    url = f"/api/sweeps/{sweep['id']}/scaling-rule"
    own = client.get(url, params={"width": 128}).json()
    assert own["width"] == 128 and own["width_param"] == "d" and own["verdict"] == "valley"
    t = own["transfer"]
    assert t["from_width"] == 128 and t["moved"] == ["lr", "weight_decay"]
    assert t["lr"] == pytest.approx(own["optimum"]["lr"], rel=1e-12)
    assert t["weight_decay"] == pytest.approx(own["optimum"]["weight_decay"], rel=1e-12)
    for rule, (a, b) in {"sqrt": (-0.5, 0.5), "mup": (-1, 1), "mup_sqrt": (-1, 0.5)}.items():
        t = client.get(url, params={"width": 512, "width_rule": rule}).json()["transfer"]
        assert t["lr"] == pytest.approx(own["optimum"]["lr"] * 4**a)
        assert t["weight_decay"] == pytest.approx(own["optimum"]["weight_decay"] * 4**b)
        assert t["width_rule"] == rule and "ladder" in t["note"]


def test_transfer_of_a_non_valley_moves_only_the_lr_and_says_why(client) -> None:
    sweep = planted_sweep(client, lr_only, seed=12)
    url = f"/api/sweeps/{sweep['id']}/scaling-rule"
    r = client.get(url, params={"width": 256})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "from_width"]
    rule = client.get(url, params={"width": 256, "from_width": 64}).json()
    t = rule["transfer"]
    assert rule["verdict"] == "lr_only" and t["moved"] == ["lr"]
    assert t["lr"] == pytest.approx(rule["optimum"]["lr"] / 2)
    assert t["weight_decay"] == pytest.approx(rule["best"]["weight_decay"])
    assert "only the lr moved" in t["note"] and "lr_only" in t["note"]
    for bad in ({"width": 0}, {"width": 256, "width_rule": "cubic"}, {"width": "nan"}):
        assert client.get(url, params=bad).status_code == 422


def test_searching_along_the_valley_reports_lr_and_weight_decay(client) -> None:
    task = task_name()
    space = {
        "lr": {"low": 1e-5, "high": 1e-2, "log": True},
        "lr_wd_product": {"low": 1e-7, "high": 1e-3, "log": True},
        "beta1": 0.9,
        "beta2": 0.99,
    }
    sweep = submit(
        client,
        name="along",
        task={"name": task},
        space=space,
        sampler={"name": "random", "seed": 5},
        pruner={"name": "none"},
        n_trials=30,
        reevaluate="off",
        enqueue=[{"lr": 1e-3, "weight_decay": 0.02}],
    )
    assert "weight_decay" not in sweep["spec"]["space"]
    first = claim(client, task)
    assert first["params"]["lr_wd_product"] == pytest.approx(2e-5)
    assert first["params"]["weight_decay"] == pytest.approx(0.02)
    value = valley(first["params"])
    body = {"state": "complete", "value": value}
    assert client.post(f"/api/trials/{first['trial_id']}/finish", json=body).status_code == 200
    rest = run_all(client, task, valley, 0.1)
    for a in rest:
        p = a["params"]
        assert p["weight_decay"] == pytest.approx(p["lr_wd_product"] / p["lr"])
    trials = client.get(f"/api/sweeps/{sweep['id']}/trials", params={"limit": 100}).json()
    assert all("weight_decay" in t["params"] for t in trials["items"])
    best = client.get(f"/api/sweeps/{sweep['id']}/best").json()["best"]
    kw = best["optimizer_kwargs"]
    assert kw["weight_decay"] == pytest.approx(best["params"]["lr_wd_product"] / kw["lr"])
    rule = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule").json()
    assert rule["verdict"] == "valley", rule["reason"]
    assert rule["box"]["lr_wd_product"] == [1e-7, 1e-3]
    assert abs(rule["slope"] + 1) < 0.05 and rule["slope_ci"][1] < 0


@pytest.mark.parametrize(
    ("patch", "loc", "rule"),
    [
        (
            {"space": {"weight_decay": 0.1, "lr_wd_product": {"low": 1e-6, "high": 1e-4}}},
            ["body", "space"],
            "either weight_decay or lr_wd_product",
        ),
        ({"space": {"lr_wd_product": 0}}, ["body", "space", "lr_wd_product"], "must be > 0"),
        (
            {"reevaluate": {"top_k": 0}},
            ["body", "reevaluate", "top_k"],
            "greater than or equal to 1",
        ),
        (
            {"reevaluate": {"seeds": 1}},
            ["body", "reevaluate", "seeds"],
            "greater than or equal to 2",
        ),
        ({"reevaluate": "sometimes"}, ["body", "reevaluate"], "'auto', 'off' or {top_k, seeds}"),
        (
            {
                "space": {"lr_wd_product": {"low": 1e-6, "high": 1e-4, "log": True}},
                "enqueue": [{"weight_decay": 0.1}],
            },
            ["body", "enqueue", 0, "weight_decay"],
            "needs its lr",
        ),
        (
            {"enqueue": [{"lr": 1e-4, "lr_wd_product": 1e-6}]},
            ["body", "enqueue", 0, "lr_wd_product"],
            "not swept",
        ),
        (
            {"enqueue": [{"weight_decay": 0.1, "lr_wd_product": 1e-6}]},
            ["body", "enqueue", 0],
            "either lr_wd_product or weight_decay",
        ),
    ],
)
def test_new_spec_fields_are_validated_and_nothing_is_written(client, patch, loc, rule) -> None:
    before = client.get("/api/sweeps").json()["total"]
    spec = {"name": "bad", "task": {"name": task_name()}, **patch}
    r = client.post("/api/sweeps", json=spec)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"] == loc and rule in e["msg"] for e in errors), errors
    assert client.get("/api/sweeps").json()["total"] == before
