"""Every sweep-spec rule: 422 naming the field and the rule, 413 for oversize bodies,
and in every case nothing written (no sweep row, no Optuna study)."""

from __future__ import annotations

import httpx
import pytest
from conftest import study_names

CAP = 500
BASE = {"name": "v", "task": {"name": "quadratic"}, "n_trials": 4}


@pytest.fixture(scope="module")
def server(module_live_server, make_sqlite_url):
    return module_live_server(
        make_sqlite_url(),
        env={"LIONSWEEP_MAX_TRIALS_CAP": str(CAP), "LIONSWEEP_MAX_BODY_BYTES": "65536"},
    )


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def written(client: httpx.Client, server) -> tuple[int, int]:
    """(sweeps listed, Optuna studies) — must not change after a rejected submission."""
    total = client.get("/api/sweeps").json()["total"]
    return total, len(study_names(server.database_url))


CASES = [
    # (spec changes, loc of the field, words of the rule)
    (
        {"space": {"lr": {"low": 0, "high": 1e-3, "log": True}}},
        ["space", "lr"],
        "log range needs low > 0",
    ),
    (
        {"space": {"weight_decay": {"low": -1, "high": 1, "log": True}}},
        ["space", "weight_decay"],
        "low > 0",
    ),
    (
        {"space": {"weight_decay": {"low": 0.5, "high": 0.1}}},
        ["space", "weight_decay"],
        "low must be <= high",
    ),
    ({"space": {"beta1": 1.0}}, ["space", "beta1"], "beta1 must be in [0, 1)"),
    (
        {"space": {"beta1": {"low": -0.1, "high": 0.9}}},
        ["space", "beta1"],
        "beta1 must be in [0, 1)",
    ),
    ({"space": {"beta2": {"choices": [0.99, 1.5]}}}, ["space", "beta2"], "beta2 must be in [0, 1)"),
    ({"space": {"lr": -1e-3}}, ["space", "lr"], "lr must be > 0"),
    (
        {"space": {"warmup_steps": {"low": 0, "high": 10.5}}},
        ["space", "warmup_steps"],
        "must be an integer",
    ),
    (
        {"space": {"batch_size": {"choices": [0, 64]}}},
        ["space", "batch_size"],
        "batch_size must be >= 1",
    ),
    ({"space": {"lr": {"low": 1e-5}}}, ["space", "lr"], "needs both low and high"),
    (
        {"space": {"lr": {"low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}}},
        ["space", "lr"],
        "cannot have a step",
    ),
    ({"space": {"beta2": {"choices": []}}}, ["space", "beta2", "choices"], "at least 1"),
    ({"n_trials": 0}, ["n_trials"], "greater than or equal to 1"),
    ({"n_trials": CAP + 1}, ["n_trials"], f"n_trials must be <= {CAP}"),
    ({"max_retries": -1}, ["max_retries"], "greater than or equal to 0"),
    ({"sampler": {"name": "bayes"}}, ["sampler", "name"], "'tpe'"),
    ({"pruner": {"name": "asha"}}, ["pruner", "name"], "'hyperband'"),
    (
        {"objective": {"metric": "loss", "direction": "down"}},
        ["objective", "direction"],
        "'minimize'",
    ),
    (
        {"sampler": {"name": "grid"}},
        ["space", "lr"],
        "grid sampler cannot search a continuous range",
    ),
    (
        {
            "sampler": {"name": "grid"},
            "n_trials": 5,
            "space": {
                "lr": {"choices": [1e-4, 3e-4]},
                "weight_decay": 0.1,
                "beta1": 0.9,
                "beta2": 0.99,
            },
        },
        ["n_trials"],
        "grid's 2 points",
    ),
    (
        {"space": {"beta1": {"low": 0.85, "high": 0.95, "step": 0.03}}},
        ["space", "beta1"],
        "step must divide high - low",
    ),
    (
        {"space": {"warmup_steps": {"low": 0, "high": 100, "step": 30}}},
        ["space", "warmup_steps"],
        "step must divide high - low",
    ),
    (
        {
            "sampler": {"name": "grid"},
            "space": {
                "lr": 1e-4,
                "weight_decay": 0.1,
                "beta1": 0.9,
                "beta2": 0.99,
                "warmup_steps": {"low": 0, "high": 2_999_999, "step": 1},
            },
        },
        ["space"],
        "the grid has 3000000 points; a grid sweep may have at most 100000",
    ),
    ({"enqueue": [{"lr": 5e-2}]}, ["enqueue", 0, "lr"], "must be within [1e-05, 0.001]"),
    (
        {"enqueue": [{"from_adamw": {"lr": 3e-2, "weight_decay": 0.1}}]},
        ["enqueue", 0, "lr"],
        "must be within",
    ),
    (
        {"enqueue": [{"from_adamw": {"lr": 3e-4, "weight_decay": 0.1}, "lr": 1e-4}]},
        ["enqueue", 0],
        "either from_adamw",
    ),
    ({"enqueue": [{"optimizer": "adamw"}]}, ["enqueue", 0, "optimizer"], "needs baseline: adamw"),
    ({"enqueue": [{"lr": 1e-4}] * 5}, ["enqueue"], "more enqueued configs than n_trials"),
    (
        {"enqueue": [{"beta1": 0.95}], "space": {"beta1": 0.9}},
        ["enqueue", 0, "beta1"],
        "fixed value 0.9",
    ),
    ({"enqueue": [{"warmup_steps": 10}]}, ["enqueue", 0, "warmup_steps"], "not swept"),
    ({"baseline": "sgd"}, ["baseline"], "'adamw'"),
    ({"task": {"name": "bad name!"}}, ["task", "name"], "pattern"),
    ({"task": None}, ["task"], "valid dictionary"),
    ({"colour": "red"}, ["colour"], "Extra inputs are not permitted"),
    ({"space": {"momentum": 0.9}}, ["space", "momentum"], "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(
    ("change", "loc", "rule"), CASES, ids=[" ".join(map(str, c[1])) for c in CASES]
)
def test_invalid_spec_is_422_naming_field_and_rule(client, server, change, loc, rule):
    before = written(client, server)
    spec = {**BASE, **change}
    r = client.post("/api/sweeps", json=spec)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    match = [e for e in errors if e["loc"][1 : 1 + len(loc)] == loc and rule in e["msg"]]
    assert match, errors
    assert errors[0]["loc"][0] == "body"
    assert written(client, server) == before


def test_missing_required_fields(client, server):
    before = written(client, server)
    r = client.post("/api/sweeps", json={"n_trials": 2})
    assert r.status_code == 422
    missing = {tuple(e["loc"]) for e in r.json()["detail"] if e["type"] == "missing"}
    assert {("body", "name"), ("body", "task")} <= missing
    assert written(client, server) == before


def test_invalid_yaml_is_422(client, server):
    before = written(client, server)
    r = client.post(
        "/api/sweeps", content=b"name: [unclosed", headers={"Content-Type": "text/yaml"}
    )
    assert r.status_code == 422 and "invalid YAML" in r.json()["detail"][0]["msg"]
    r = client.post(
        "/api/sweeps",
        content=b"name: y\ntask: {name: quadratic}\nn_trials: 0\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "n_trials"]
    assert written(client, server) == before


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"name: y\ntask: {name: quadratic}\n  n_trials: 3\n", "line 3, column 3: "),
        (b"name: y\ntask:\n  name: [quadratic\nn_trials: 3\n", "line 4, column 9: "),
        (b"name: y\nname: z\ntask: {name: quadratic}\n", "line 2, column 1: duplicate key"),
    ],
)
def test_invalid_yaml_names_the_line_and_column_on_one_line(client, server, body, where):
    before = written(client, server)
    r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["msg"].startswith(f"invalid YAML: {where}"), error
    assert "\n" not in error["msg"] and "<byte string>" not in error["msg"], error
    assert written(client, server) == before


def test_a_task_name_an_edit_or_two_from_an_announced_one_is_refused(client, server):
    claim = {"worker_id": "spell", "tasks": ["quadratic", "lc", "digits"]}
    assert client.post("/api/trials/claim", json=claim).status_code in (200, 204)
    before = written(client, server)
    for typo, meant in [
        ("quadratc", "quadratic"),  # a letter left out
        ("quadartic", "quadratic"),  # two letters swapped
        ("qudratc", "quadratic"),  # two edits
        ("Quadratic", "quadratic"),  # the case
        ("digit", "digits"),
    ]:
        r = client.post("/api/sweeps", json={**BASE, "task": {"name": typo}})
        assert r.status_code == 422, (typo, r.text)
        (error,) = r.json()["detail"]
        assert error["loc"] == ["body", "task", "name"], error
        assert error["msg"].endswith(f"did you mean {meant!r}?"), error
    assert written(client, server) == before
    # Anything else no worker announced is accepted and waits, with its note: a new task, a
    # short name one letter from a short announced one, three edits from one.
    for other in ("my-own-training", "lb", "quadratic-v2", "digitsxyz"):
        r = client.post("/api/sweeps", json={**BASE, "name": other, "task": {"name": other}})
        assert r.status_code == 201, (other, r.text)
        sweep = r.json()
        assert sweep["warnings"] == [f"no worker has announced task {other!r} yet"], sweep
        assert sweep["activity"] == f"waiting for a worker with task {other!r}", sweep
        assert client.delete(f"/api/sweeps/{sweep['id']}").status_code == 204


def test_oversize_body_is_413(client, server):
    before = written(client, server)
    spec = {**BASE, "task": {"name": "quadratic", "params": {"blob": "x" * 70_000}}}
    r = client.post("/api/sweeps", json=spec)
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit still applies while streaming
        yield b'{"name": "v", "task": {"name": "quadratic", "params": {"blob": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}}}'

    r = client.post("/api/sweeps", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert written(client, server) == before


def test_worker_protocol_bodies_are_validated(client):
    assert client.post("/api/trials/claim", json={"worker_id": "w"}).status_code == 422
    assert client.post("/api/trials/claim", json={"worker_id": "w", "tasks": []}).status_code == 422
    r = client.post("/api/trials/1/report", json={"step": -1, "value": 1.0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "step"]
    r = client.post("/api/trials/1/finish", json={"state": "complete"})
    assert r.status_code == 422 and "complete trial needs a finite value" in r.text
    r = client.post("/api/trials/1/finish", json={"state": "exploded"})
    assert r.status_code == 422


def test_yaml_anchors_and_aliases_are_refused_quickly(client, server):
    before = written(client, server)
    # "Billion laughs": 9 levels of 9 aliases; naively converted to JSON it is gigabytes.
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = ("\n".join(lines) + "\nname: bomb\ntask: {name: quadratic}\n").encode()
    assert len(bomb) < 1000
    for body in (bomb, b"name: &n x\ntask: {name: quadratic}\n"):
        r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 422, r.text[:500]
        assert "anchors and aliases" in r.json()["detail"][0]["msg"]
        assert r.elapsed.total_seconds() < 2
    assert written(client, server) == before


def test_yaml_that_grows_past_the_limit_as_json_is_413(client, server):
    before = written(client, server)
    # ``~`` (2 bytes with its comma) becomes ``null, `` (6 bytes): under the limit as YAML,
    # over it as JSON.
    body = b"name: big\ntask: {name: quadratic, params: {x: [" + b"~," * 30_000 + b"~]}}\n"
    assert len(body) < 65536
    r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]
    assert written(client, server) == before


def test_yaml_is_converted_only_for_sweep_submissions(client):
    r = client.post(
        "/api/trials/claim",
        content=b"worker_id: w\ntasks: [quadratic]\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_a_grid_of_a_billion_points_is_refused_at_once(client, server):
    before = written(client, server)
    space = {"lr": {"choices": [1e-4, 3e-4]}, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99}
    space["warmup_steps"] = {"low": 0, "high": 10**9, "step": 1}
    r = client.post("/api/sweeps", json={**BASE, "sampler": {"name": "grid"}, "space": space})
    assert r.status_code == 422 and "at most 100000" in r.json()["detail"][0]["msg"]
    assert r.elapsed.total_seconds() < 2
    assert written(client, server) == before


def test_edit_distance_counts_a_swap_as_one_edit():
    from service.spec import edit_distance

    cases = [
        ("quadratic", "quadratic", 0),
        ("quadratc", "quadratic", 1),
        ("quadartic", "quadratic", 1),
    ]
    cases += [("", "ab", 2), ("kitten", "sitting", 3), ("ca", "abc", 3)]
    for a, b, edits in cases:
        assert edit_distance(a, b) == edits == edit_distance(b, a), (a, b)
