"""The lr × weight-decay answer on the data real sweeps produce, through a real server: a
divergence cliff, a one-at-a-time ablation on ×2 grids, weight decay 0 and linear ranges,
nuisance parameters with no effect, no repeated seeds, a maximised metric, and pruned
trials under the default pruner. Each planted sweep has a known answer; for each: no optimum
outside the trials' region, none at or past the lr where training diverges, no negative
predicted loss, and the right verdict. Plus the verdict function's table."""

from __future__ import annotations

import math
import random

import httpx
import pytest
from test_service_answers import submit, task_name

from service.verdict import VERDICTS, FitStats, decide, min_trials

LN = math.log


def run_all(client: httpx.Client, task: str, objective, curve=None) -> int:
    """Claim and finish every trial. ``objective(params, seed)`` gives a value, the string
    "diverged" (pruned with that reason, as the harness does) or a value to report as
    complete. With ``curve(final, step)`` the trial reports a learning curve at steps
    1, 3, 9, 27 and stops when the pruner says so."""
    n = 0
    while True:
        r = client.post("/api/trials/claim", json={"worker_id": "w", "tasks": [task]})
        if r.status_code == 204:
            return n
        assert r.status_code == 200, r.text
        a = r.json()
        n += 1
        value = objective(a["params"], a["seed"])
        url = f"/api/trials/{a['trial_id']}"
        if value == "diverged":
            body = {"state": "pruned", "reason": "diverged"}
        else:
            body = {"state": "complete", "value": value}
            for step in (1, 3, 9, 27) if curve else ():
                v = curve(value, step)
                got = client.post(f"{url}/report", json={"step": step, "value": v})
                assert got.status_code == 200, got.text
                if got.json()["action"] == "prune":
                    body = {"state": "pruned", "value": v}
                    break
        assert client.post(f"{url}/finish", json=body).status_code == 200


def rule_of(client: httpx.Client, sweep: dict) -> dict:
    r = client.get(f"/api/sweeps/{sweep['id']}/scaling-rule")
    assert r.status_code == 200, r.text
    return r.json()


def assert_honest(rule: dict, loss: bool = True) -> None:
    """What must hold for every answer: inside the support, below the stability edge, no
    negative loss, and nothing shown that the verdict rules out."""
    opt, sup, stab = rule["optimum"], rule["support"], rule["stability"]
    edge = stab["lr_diverged_min"] if stab else None
    if opt is not None:
        if opt["lr"] is not None:
            assert sup["lr"][0] <= opt["lr"] <= sup["lr"][1] * (1 + 1e-9), rule
            assert all(
                sup["lr"][0] * (1 - 1e-9) <= v <= sup["lr"][1] * (1 + 1e-9) for v in opt["lr_ci"]
            )
            if edge is not None:
                assert opt["lr"] < edge and opt["lr_ci"][1] < edge
        if opt["weight_decay"] is not None:
            lo, hi = sup["weight_decay"]
            assert lo * (1 - 1e-9) <= opt["weight_decay"] <= hi * (1 + 1e-9), rule
        if loss and opt["value"] is not None:
            assert opt["value"] >= 0 and opt["value_ci"][0] >= 0
    for p in rule["valley"]:
        assert sup["lr"][0] * (1 - 1e-9) <= p["lr"] <= sup["lr"][1] * (1 + 1e-9)
        assert edge is None or p["lr"] < edge
    if rule["verdict"] != "valley":
        assert rule["valley"] == [] and rule["slope"] is None and rule["product"] is None
    if rule["verdict"] in ("insufficient", "boundary"):
        assert opt is None
    if rule["verdict"] == "lr_only":
        assert opt["weight_decay"] is None and opt["lr"] is not None
    if rule["verdict"] == "wd_only":
        assert opt["lr"] is None and opt["weight_decay"] is not None


# -- one-at-a-time ablation ----------------------------------------------------------------

BASE = {
    "lr": 1e-3,
    "weight_decay": 0.4,
    "beta1": 0.9,
    "beta2": 0.99,
    "warmup_steps": 1000,
    "batch_size": 256,
}
GRIDS = {
    "lr": [5e-4, 2e-3, 4e-3, 8e-3],
    "weight_decay": [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "beta1": [0.95, 0.98],
    "beta2": [0.98, 0.995],
    "warmup_steps": [500, 2000],
    "batch_size": [128, 512],
}


def ablation(client: httpx.Client, objective) -> dict:
    task = task_name()
    configs = [dict(BASE)] + [{**BASE, k: v} for k, vs in GRIDS.items() for v in vs]
    space = {k: {"choices": sorted({BASE[k], *vs})} for k, vs in GRIDS.items()}
    sweep = submit(
        client,
        name="ablation",
        task={"name": task},
        space=space,
        sampler={"name": "random", "seed": 1},
        pruner={"name": "none"},
        n_trials=len(configs),
        reevaluate="off",
        enqueue=configs,
    )
    assert run_all(client, task, objective) == len(configs) == 23
    return sweep


def lm_loss(p: dict, seed: int) -> float | str:
    """A 130M-model-like table: loss 3.55 at lr 1.4e-3, weight decay 0.6; lr ≥ 4e-3
    diverges (one run reports the loss of an untrained model, one is stopped by the harness)."""
    if p["lr"] >= 4e-3:
        return "diverged" if p["lr"] > 5e-3 else 7.8
    noise = 0.004 * random.Random(seed).gauss(0.0, 1.0)
    return 3.549 + 0.08 * LN(p["lr"] / 1.4e-3) ** 2 + 0.3 * (p["weight_decay"] - 0.6) ** 2 + noise


def test_one_at_a_time_ablation_gives_per_axis_optima_below_the_divergence(client) -> None:
    rule = rule_of(client, ablation(client, lm_loss))
    assert_honest(rule)
    assert rule["design"] == "one_at_a_time", rule["design_note"]
    assert rule["verdict"] == "per_axis", rule["reason"]
    assert "not identifiable" in rule["reason"] and "2-D block" in rule["reason"]
    opt = rule["optimum"]
    assert 1e-3 <= opt["lr"] <= 2e-3, opt
    assert opt["weight_decay"] == pytest.approx(0.6, abs=0.08), opt
    # No trial ran at both axes' optima: the additive prediction there is shown only when it
    # does not beat every run by more than its interval.
    if opt["value"] is None:
        assert "no predicted objective" in rule["reason"]
    else:
        assert opt["value"] == pytest.approx(3.549, abs=0.03)
    stab = rule["stability"]
    assert stab["lr_diverged_min"] == pytest.approx(4e-3) and stab["n_diverged"] == 2
    assert stab["lr_stable_max"] == pytest.approx(2e-3)
    assert rule["left_out"]["diverged"] == 2 and rule["n"] == 21
    assert rule["weight_decay_scale"] == "linear"
    # Betas, warmup and batch have no effect: none enters the model.
    assert rule["terms"] == [], rule["terms"]
    assert rule["noise_source"].startswith("fit residuals")
    assert rule["no_decay"] is not None and rule["no_decay"]["difference"] > 0


def test_optimum_pushed_against_the_cliff_says_so_and_gives_no_number(client) -> None:
    def loss(p: dict, seed: int) -> float | str:  # the best lr would be 6e-3, past the cliff
        if p["lr"] >= 4e-3:
            return 7.8
        noise = 0.004 * random.Random(seed).gauss(0.0, 1.0)
        return 3.5 + 0.08 * LN(p["lr"] / 6e-3) ** 2 + 0.3 * (p["weight_decay"] - 0.6) ** 2 + noise

    rule = rule_of(client, ablation(client, loss))
    assert_honest(rule)
    assert rule["verdict"] == "boundary", rule["reason"]
    assert "lr_stability" in rule["boundary_edges"]
    assert "just below where training diverges: lr ≤ 0.002" in rule["reason"]


# -- random designs ------------------------------------------------------------------------


def random_sweep(client: httpx.Client, loss, n: int, space: dict, **extra) -> dict:
    task = task_name()
    curve = extra.pop("curve", None)
    sweep = submit(
        client,
        name="messy",
        task={"name": task},
        space=space,
        sampler={"name": "random", "seed": extra.pop("seed", 7)},
        pruner=extra.pop("pruner", {"name": "none"}),
        n_trials=n,
        reevaluate="off",
        **extra,
    )
    run_all(client, task, loss, curve)
    return sweep


LOG_SPACE = {
    "lr": {"low": 1e-5, "high": 1e-1, "log": True},
    "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
    "beta1": 0.9,
    "beta2": 0.99,
}


def bowl(p: dict, seed: int, sd: float = 0.02) -> float:
    noise = sd * random.Random(seed).gauss(0.0, 1.0)
    return (
        3.5
        + 0.01 * LN(p["lr"] * p["weight_decay"] / 2e-5) ** 2
        + 0.02 * LN(p["lr"] / 1e-3) ** 2
        + noise
    )


def test_divergence_cliff_in_a_random_sweep_caps_every_answer(client) -> None:
    def loss(p: dict, seed: int) -> float | str:
        return 7.8 + 0.01 * random.Random(seed).random() if p["lr"] > 3e-3 else bowl(p, seed)

    sweep = random_sweep(client, loss, 40, LOG_SPACE)
    rule = rule_of(client, sweep)
    assert_honest(rule)
    stab = rule["stability"]
    assert stab is not None and 3e-3 < stab["lr_diverged_min"] < 2e-2
    assert stab["lr_stable_max"] <= 3e-3
    assert rule["left_out"]["diverged"] == stab["n_diverged"] > 5
    assert rule["verdict"] in ("valley", "per_axis"), rule["reason"]
    assert rule["optimum"]["lr_ci"][0] <= 1e-3 <= rule["optimum"]["lr_ci"][1] * 1.5


def test_nuisance_parameters_without_effect_do_not_starve_17_trials(client) -> None:
    space = {
        **LOG_SPACE,
        "beta1": {"choices": [0.9, 0.95]},
        "beta2": {"choices": [0.98, 0.99, 0.995]},
        "warmup_steps": {"choices": [0, 100, 500, 1000]},
        "batch_size": {"choices": [32, 64, 128]},
    }
    rule = rule_of(client, random_sweep(client, lambda p, s: bowl(p, s, 0.01), 17, space))
    assert_honest(rule)
    assert rule["n"] == 17, (rule["left_out"], rule["notes"])
    assert rule["verdict"] != "insufficient", rule["reason"]
    assert len(rule["terms"]) <= 1, rule["terms"]
    assert rule["n_coef"] <= (rule["n"] - 2) / 2
    assert rule["noise_source"].startswith("fit residuals")


def test_weight_decay_zero_and_a_linear_range_enter_the_fit(client) -> None:
    space = {**LOG_SPACE, "weight_decay": {"low": 0.0, "high": 2.0}}
    zeros = [{"lr": lr, "weight_decay": 0.0} for lr in (3e-4, 1e-3, 3e-3)]

    def loss(p: dict, seed: int) -> float:
        noise = 0.01 * random.Random(seed).gauss(0.0, 1.0)
        return 3.5 + 0.05 * LN(p["lr"] / 1e-3) ** 2 + 0.2 * (p["weight_decay"] - 0.5) ** 2 + noise

    rule = rule_of(client, random_sweep(client, loss, 36, space, enqueue=zeros))
    assert_honest(rule)
    assert rule["n"] == 36 and rule["left_out"]["other"] == 0
    assert rule["verdict"] in ("per_axis", "valley"), rule["reason"]
    assert 0.2 <= rule["optimum"]["weight_decay"] <= 1.0
    nd = rule["no_decay"]
    assert nd is not None and nd["n"] == 3 and "no decay" in nd["note"]
    assert nd["difference_ci"][0] > 0, nd  # 0.2·0.25 = 0.05 worse than the optimum


def test_a_maximised_metric_with_chance_level_divergence(client) -> None:
    def accuracy(p: dict, seed: int) -> float:
        if p["lr"] > 3e-3:
            return 0.1 + 0.005 * random.Random(seed).random()  # chance: the run diverged
        return 0.97 - (bowl(p, seed, 0.005) - 3.5) / 10

    rule = rule_of(
        client,
        random_sweep(
            client, accuracy, 40, LOG_SPACE, objective={"metric": "acc", "direction": "maximize"}
        ),
    )
    assert_honest(rule, loss=False)
    assert rule["stability"] is not None and rule["stability"]["lr_diverged_min"] > 3e-3
    assert rule["verdict"] in ("valley", "per_axis"), rule["reason"]
    opt = rule["optimum"]
    assert opt["value"] is None or opt["value"] <= 0.975 + 0.01
    assert rule["best"]["value"] > 0.9


def test_default_pruner_sweep_of_30_trials_reaches_a_verdict(client) -> None:
    # Learning curves whose ranking holds from the first report on, under the default
    # (Hyperband) pruner: pruned trials enter with an imputed final value.
    def curve(final: float, step: int) -> float:
        return final + 2.0 / step

    rule = rule_of(
        client,
        random_sweep(
            client,
            lambda p, s: bowl(p, s, 0.01),
            30,
            LOG_SPACE,
            pruner={"name": "hyperband"},
            budget={"max_steps": 27},
            curve=curve,
        ),
    )
    assert_honest(rule)
    pruned = rule["n_imputed"] + rule["left_out"]["pruned"]
    assert pruned >= 5, rule["left_out"]
    assert rule["n_imputed"] >= pruned - 2 and rule["n"] == 30 - rule["left_out"]["pruned"]
    assert rule["verdict"] != "insufficient", rule["reason"]


# -- the verdict's table -------------------------------------------------------------------

SLOPE = (-1.0, -1.2, -0.8)
WALLS = {"low": "shown", "high": "shown"}


@pytest.mark.parametrize(
    ("stats", "verdict", "shown", "says"),
    [
        (FitStats(n=10, n_coef=6), "insufficient", set(), "needs at least 14"),
        (FitStats(n=30, n_coef=6, p_lr=0.5, p_wd=0.7), "insufficient", set(), "neither"),
        (
            FitStats(n=30, n_coef=6, p_lr=0.001, p_wd=0.001, slope=SLOPE, walls=WALLS),
            "valley",
            {"lr", "weight_decay", "value", "slope", "valley"},
            "slope -1.00",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.001, p_wd=0.001, slope=(-1, -3, 0.5), walls=WALLS),
            "per_axis",
            {"lr", "weight_decay", "value"},
            "includes 0",
        ),
        (
            FitStats(
                n=30, n_coef=6, p_lr=0.001, p_wd=0.001, slope=SLOPE, walls=WALLS, value_refused="x"
            ),
            "valley",
            {"lr", "weight_decay", "slope", "valley"},
            "no predicted objective",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.001, p_wd=0.001, slope=SLOPE, walls={"low": "flat"}),
            "boundary",
            set(),
            "weight_decay_low",
        ),
        (
            FitStats(n=21, n_coef=5, design="one_at_a_time", additive=True, p_lr=0.01, p_wd=0.01),
            "per_axis",
            {"lr", "weight_decay", "value"},
            "not identifiable",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.001, p_wd=0.4),
            "lr_only",
            {"lr", "value"},
            "does not move",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.4, p_wd=0.001),
            "wd_only",
            {"weight_decay", "value"},
            "lr does not",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.001, p_wd=0.4, lr_edge="lr_high", edge_share=0.95),
            "boundary",
            set(),
            "higher lr",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.4, p_wd=0.4, lr_edge="lr_high", edge_share=0.95),
            "insufficient",
            set(),
            "neither",
        ),
        (
            FitStats(
                n=30,
                n_coef=5,
                additive=True,
                design="one_at_a_time",
                p_lr=0.001,
                p_wd=0.01,
                lr_edge="lr_stability",
                edge_share=0.9,
                lr_stable_max=2e-3,
                lr_diverged_min=4e-3,
            ),
            "boundary",
            set(),
            "lr ≤ 0.002",
        ),
        (
            FitStats(n=30, n_coef=6, p_lr=0.001, p_wd=0.4, value_refused="too low"),
            "lr_only",
            {"lr"},
            "too low",
        ),
        (
            FitStats(
                n=30,
                n_coef=6,
                p_lr=0.001,
                p_wd=0.4,
                lr_edge="lr_high",
                edge_share=0.9,
                hull_edges=frozenset({"lr_high"}),
            ),
            "boundary",
            set(),
            "border of the region the trials cover, on its high-lr side (lr_high), though not "
            "at the highest lr tried",
        ),
        (
            FitStats(n=8, n_coef=5, n_trials=17),
            "insufficient",
            set(),
            "8 distinct configs fitted (17 trials)",
        ),
        (
            FitStats(
                n=30,
                n_coef=6,
                p_lr=0.001,
                p_wd=0.4,
                lr_edge="lr_low",
                edge_share=0.8,
                edge_contradicted="every trial near that edge is worse",
            ),
            "insufficient",
            set(),
            "the quadratic does not describe these trials",
        ),
    ],
)
def test_the_verdict_table(stats: FitStats, verdict: str, shown: set, says: str) -> None:
    d = decide(stats)
    assert d.verdict == verdict and d.verdict in VERDICTS, d
    assert set(d.show) == shown, d
    assert says in d.reason, d.reason
    # One story: no slope or valley without a valley, no axis a verdict calls irrelevant.
    if d.verdict != "valley":
        assert not {"slope", "valley"} & d.show
    if d.verdict == "lr_only":
        assert "weight_decay" not in d.show
    if d.verdict == "wd_only":
        assert "lr" not in d.show


def test_model_size_rule() -> None:
    assert [min_trials(p) for p in (5, 6, 7)] == [12, 14, 16]
