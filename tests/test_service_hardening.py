"""Hostile input against a real server: every case is a clear 4xx that writes nothing.

Found by an adversarial run: seeds and numbers beyond what the samplers and SQL take, data
nested or sized to break later reads, cross-site form posts and DNS rebinding in open mode,
read-token leaks, non-finite floats, NUL characters, silently coerced input, and a health
check that stayed green through a database outage.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import datetime

import httpx
import pytest
from conftest import get_free_port, study_names
from sqlalchemy import create_engine, make_url, text

from service.auth import create_token
from service.settings import Settings

JSON = {"Content-Type": "application/json"}


def task_name() -> str:
    return f"h{uuid.uuid4().hex[:10]}"


def spec(**changes) -> dict:
    return {"name": "hard", "task": {"name": task_name()}, "n_trials": 4, **changes}


def written(client: httpx.Client, server) -> tuple[int, int]:
    """(sweeps listed, Optuna studies): must not change after a refused request."""
    total = client.get("/api/sweeps").json()["total"]
    return total, len(study_names(server.database_url))


def assert_422(r: httpx.Response, loc: list, rule: str) -> None:
    """A 422 in FastAPI's shape naming ``loc`` (after "body"/"query"/...) and the rule."""
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["loc"][1 : 1 + len(loc)] == loc and rule in e["msg"] for e in errors), errors


def running_trial(client: httpx.Client) -> tuple[str, dict]:
    """A fresh sweep's claimed trial: (its URL prefix, the assignment)."""
    task = task_name()
    assert client.post("/api/sweeps", json=spec(task={"name": task})).status_code == 201
    r = client.post("/api/trials/claim", json={"worker_id": "hw", "tasks": [task]})
    assert r.status_code == 200, r.text
    return f"/api/trials/{r.json()['trial_id']}", r.json()


def nested(depth: int) -> dict:
    """``{"a": {"a": ... 1}}`` with ``depth`` objects."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


# ---- 1. seeds and numeric fields --------------------------------------------------------

NUMBERS = [
    ({"sampler": {"name": "grid", "seed": -1}}, ["sampler", "seed"], "greater than or equal to 0"),
    ({"sampler": {"name": "grid", "seed": 2**32}}, ["sampler", "seed"], "less than 4294967296"),
    ({"sampler": {"name": "qmc", "seed": -1}}, ["sampler", "seed"], "greater than or equal to 0"),
    ({"sampler": {"name": "qmc", "seed": 2**64}}, ["sampler", "seed"], "less than 4294967296"),
    ({"n_trials": 2**31}, ["n_trials"], "less than or equal to 2147483647"),
    ({"budget": {"max_steps": 2**31}}, ["budget", "max_steps"], "less than or equal to"),
    ({"pruner": {"name": "hyperband", "min_resource": 2**40}}, ["pruner", "min_resource"], "less"),
    ({"pruner": {"name": "median", "n_warmup_steps": 2**31}}, ["pruner", "n_warmup_steps"], "less"),
    ({"pruner": {"name": "median", "n_startup_trials": 2**63}}, ["pruner"], "less"),
    ({"pruner": {"reduction_factor": 10**6}}, ["pruner", "reduction_factor"], "less"),
    (
        {"pruner": {"name": "hyperband", "min_resource": 100, "max_resource": 10}},
        ["pruner"],
        "min_resource must be <= max_resource",
    ),
    (
        {"space": {"warmup_steps": {"low": 0, "high": 2**40}}},
        ["space", "warmup_steps"],
        "must be <= 2147483647",
    ),
    ({"space": {"beta2": {"choices": [0.9] * 1001}}}, ["space", "beta2", "choices"], "at most"),
    (
        {"space": {"beta1": {"low": 0.8, "high": 0.9, "step": 1e309}}},
        ["space", "beta1", "step"],
        "finite",
    ),
]


@pytest.mark.parametrize(
    ("change", "loc", "rule"), NUMBERS, ids=[json.dumps(c[0])[:60] for c in NUMBERS]
)
def test_numbers_beyond_what_samplers_and_sql_take_are_422(client, server, change, loc, rule):
    before = written(client, server)
    body = json.dumps(spec(**change))  # (allows the Infinity of 1e309)
    assert_422(client.post("/api/sweeps", content=body, headers=JSON), loc, rule)
    assert written(client, server) == before


def test_the_largest_seed_works_for_every_sampler(client):
    for sampler in ("grid", "qmc", "tpe"):
        task = task_name()
        space = {"lr": {"choices": [1e-4, 3e-4]}, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99}
        body = spec(
            task={"name": task},
            sampler={"name": sampler, "seed": 2**32 - 1},
            n_trials=2,
            space=space,
        )
        assert client.post("/api/sweeps", json=body).status_code == 201
        r = client.post("/api/trials/claim", json={"worker_id": "seed", "tasks": [task]})
        assert r.status_code == 200, (sampler, r.text)


# ---- 2. depth and size ------------------------------------------------------------------


def test_deep_or_large_metrics_and_configs_are_refused_and_reads_keep_working(client, server):
    url, a = running_trial(client)
    for body, loc, rule in [
        ({"step": 1, "value": 1.0, "metrics": nested(700)}, [], "nests deeper than 32"),
        ({"step": 1, "value": 1.0, "metrics": nested(20)}, ["metrics"], "deeper than 16"),
        ({"step": 1, "value": 1.0, "metrics": {"x": "y" * 70_000}}, ["metrics"], "at most"),
    ]:
        data = json.dumps(body).encode()  # 700 deep: httpx's own encoder would recurse too far
        r = client.post(f"{url}/report", content=data, headers=JSON)
        assert r.status_code == 422, r.text[:300]
        assert any(
            rule in e["msg"] and e["loc"][1 : 1 + len(loc)] == loc for e in r.json()["detail"]
        )
    finish = {"state": "complete", "value": 1.0, "config": nested(17)}
    assert_422(client.post(f"{url}/finish", json=finish), ["config"], "deeper than 16")
    trial = client.get(f"/api/sweeps/{a['sweep_id']}/trials/{a['trial_number']}")
    assert trial.status_code == 200 and trial.json()["state"] == "running"
    assert trial.json()["metrics"] == {} and trial.json()["intermediate_values"] == {}
    before = written(client, server)
    params = {"name": task_name(), "params": {"p": nested(16)}}
    assert_422(client.post("/api/sweeps", json=spec(task=params)), ["task", "params"], "16")
    assert written(client, server) == before
    ok = {"step": 1, "value": 1.0, "metrics": nested(15)}
    assert client.post(f"{url}/report", json=ok).status_code == 200


def test_deep_or_large_yaml_is_refused_quickly(client, server):
    before = written(client, server)
    yaml_headers = {"Content-Type": "application/yaml"}
    deep = b"name: deep\ntask: {name: quadratic, params: {x: " + b"[" * 900 + b"]" * 900 + b"}}\n"
    r = client.post("/api/sweeps", content=deep, headers=yaml_headers)
    assert r.status_code == 422 and "deeper than 32" in r.json()["detail"][0]["msg"], r.text
    big = b"name: big\ntask: {name: quadratic}\n" + b"# padding padding padding\n" * 16_000
    assert len(big) > 400_000
    t0 = time.monotonic()
    r = client.post("/api/sweeps", content=big, headers=yaml_headers)
    assert r.status_code == 413 and "YAML body may be at most 65536 bytes" in r.text
    assert time.monotonic() - t0 < 2
    assert written(client, server) == before


# ---- 3. cross-site requests and DNS rebinding in open mode -----------------------------


def test_cross_site_posts_and_foreign_hosts_are_refused(client, server):
    sweep = client.post("/api/sweeps", json=spec()).json()
    cancel = f"/api/sweeps/{sweep['id']}/cancel"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    evil = {"Origin": "http://evil.example"}
    assert client.post(cancel, content=b"a=1", headers={**form, **evil}).status_code == 403
    for headers, body in [
        (form, b"a=1"),
        ({"Content-Type": "text/plain"}, b"{}"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, b""),
        ({}, b"{}"),  # a body with no type
    ]:
        r = client.post(cancel, content=body, headers=headers)
        assert r.status_code == 415 and "application/json" in r.json()["detail"], r.text
    r = client.post("/api/sweeps", content=json.dumps(spec()), headers={**JSON, **evil})
    assert r.status_code == 403
    r = client.delete(f"/api/sweeps/{sweep['id']}", headers={"Origin": "null"})
    assert r.status_code == 403
    assert client.get(f"/api/sweeps/{sweep['id']}").json()["status"] == "running"
    # The dashboard's own origin, the CLI and the worker (no Origin) still work.
    same = {"Origin": server.url}
    assert client.post(cancel, headers=same).json()["status"] == "cancelled"
    resume = f"/api/sweeps/{sweep['id']}/resume"
    assert client.post(resume, headers=JSON).json()["status"] == "running"
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends Host: evil.example.
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.nip.io"):
        r = client.get("/api/sweeps", headers={"Host": host})
        assert r.status_code == 400 and "LIONSWEEP_ALLOWED_HOSTS" in r.text
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "[::1]", "LOCALHOST"):
        assert client.get("/api/sweeps", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_setting(sqlite_url, live_server):
    server = live_server(
        sqlite_url, env={"LIONSWEEP_ALLOWED_HOSTS": "sweeps.example, Other.Example"}
    )
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for host in ("sweeps.example", "sweeps.example:8000", "other.example", "localhost"):
            assert c.get("/api/sweeps", headers={"Host": host}).status_code == 200, host
        assert c.get("/api/sweeps", headers={"Host": "evil.example"}).status_code == 400
        origin = {"Origin": "https://sweeps.example", "Host": "127.0.0.1"}  # behind a proxy
        assert c.post("/api/sweeps", json=spec(), headers=origin).status_code == 201


# ---- 4. read tokens guard /metrics and the API docs -------------------------------------


def test_required_read_token_guards_metrics_and_docs(sqlite_url, live_server):
    token = create_token(Settings(database_url=sqlite_url), scopes=["read"], name="scraper")
    server = live_server(sqlite_url, env={"LIONSWEEP_REQUIRE_READ_TOKEN": "true"})
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            assert c.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/healthz").status_code == 200


# ---- 5. plain 500s that are now 4xx -----------------------------------------------------


def test_an_empty_idempotency_key_is_422_and_stores_nothing(client, server):
    before = written(client, server)
    for _ in range(2):
        r = client.post("/api/sweeps", json=spec(), headers={"Idempotency-Key": ""})
        assert_422(r, ["idempotency-key"], "at least 1 character")
    assert written(client, server) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_floats_are_422_naming_the_field(client, server, literal):
    before = written(client, server)
    body = '{"name": "x", "task": {"name": "q"}, "space": {"lr": V}}'.replace("V", literal)
    assert_422(client.post("/api/sweeps", content=body, headers=JSON), ["space", "lr"], "finite")
    body = '{"name": "x", "task": {"name": "q", "params": {"p": V}}}'.replace("V", literal)
    r = client.post("/api/sweeps", content=body, headers=JSON)
    assert_422(r, ["task", "params", "p"], "finite")
    assert written(client, server) == before
    url, _ = running_trial(client)
    body = '{"step": 1, "value": V}'.replace("V", literal)
    r = client.post(f"{url}/report", content=body, headers=JSON)
    assert_422(r, ["value"], "finite")
    body = '{"state": "complete", "value": V}'.replace("V", literal)
    assert_422(client.post(f"{url}/finish", content=body, headers=JSON), ["value"], "finite")
    assert client.post(f"{url}/finish", json={"state": "complete", "value": 1.0}).status_code == 200


def test_non_finite_yaml_and_overflowing_conversions_are_422(client, server):
    before = written(client, server)
    body = b"name: y\ntask: {name: quadratic}\nspace: {lr: .inf}\n"
    r = client.post("/api/sweeps", content=body, headers={"Content-Type": "application/yaml"})
    assert_422(r, ["space", "lr"], "finite")
    enqueue = [{"from_adamw": {"lr": 1e300, "weight_decay": 0.1, "factor": 1e-300}}]
    r = client.post("/api/sweeps", json=spec(enqueue=enqueue))
    assert_422(r, ["enqueue", 0, "from_adamw"], "beyond float range")
    assert written(client, server) == before


def test_the_validation_handler_encodes_non_finite_inputs():
    from service.http_errors import finite_safe

    errors = [{"input": float("nan"), "ctx": {"le": float("inf")}, "loc": ("body", -1.0)}]
    assert json.dumps(finite_safe(errors), allow_nan=False) == (
        '[{"input": "NaN", "ctx": {"le": "Infinity"}, "loc": ["body", -1.0]}]'
    )


def test_integers_beyond_sql_are_422(client):
    url, _ = running_trial(client)
    for step in (2**31, 2**63, 2**64):
        r = client.post(f"{url}/report", json={"step": step, "value": 1.0})
        assert_422(r, ["step"], "less than or equal to 2147483647")
    assert client.post(f"{url}/report", json={"step": 2**31 - 1, "value": 1.0}).status_code == 200
    for offset in (2**31, 2**63):
        assert_422(client.get("/api/sweeps", params={"offset": offset}), ["offset"], "less")


def test_nul_characters_are_422(client, server):
    before = written(client, server)
    assert_422(client.post("/api/sweeps", json=spec(name="a\x00b")), ["name"], "NUL")
    assert_422(
        client.post("/api/sweeps", json=spec(task={"name": "q", "params": {"k\x00": 1}})),
        ["task", "params"],
        "NUL",
    )
    objective = {"metric": "loss\x00"}
    assert_422(client.post("/api/sweeps", json=spec(objective=objective)), ["objective"], "NUL")
    assert written(client, server) == before
    for claim, loc in [
        ({"worker_id": "w\x00", "tasks": ["t"]}, ["worker_id"]),
        ({"worker_id": "w", "tasks": ["t\x00"]}, ["tasks", 0]),
        ({"worker_id": "w", "tasks": ["t"], "request_id": "r\x00"}, ["request_id"]),
        ({"worker_id": "w", "device": "cpu\x00", "tasks": ["t"]}, ["device"]),
    ]:
        assert_422(client.post("/api/trials/claim", json=claim), loc, "")
    url, _ = running_trial(client)
    r = client.post(f"{url}/finish", json={"state": "failed", "reason": "boom\x00"})
    assert_422(r, ["reason"], "NUL")
    r = client.post(f"{url}/report", json={"step": 1, "value": 1.0, "metrics": {"m": "a\x00"}})
    assert_422(r, ["metrics"], "NUL")
    assert client.post(f"{url}/finish", json={"state": "failed", "reason": "ok"}).status_code == 200


def escaped(client: httpx.Client, path: str, body: dict) -> httpx.Response:
    """POST ``body`` as ASCII JSON, so a lone surrogate travels as its escape (httpx's own
    encoder writes UTF-8, which cannot carry one)."""
    return client.post(path, content=json.dumps(body), headers=JSON)


def test_lone_surrogates_are_422_and_the_trials_stay_readable(client, server):
    """A lone surrogate (a JSON escape such as \\ud800 that is not half of a pair) can be
    stored by no database and sent in no answer: the gate refuses it where it is, anywhere in
    a body (a 422 that quoted it failed to encode: a 500)."""
    before = written(client, server)
    r = escaped(client, "/api/sweeps", spec(name="lone \ud800"))
    assert_422(r, ["name"], "lone surrogate")
    yaml_body = b'name: "y\\ud800"\ntask: {name: quadratic}\n'
    r = client.post("/api/sweeps", content=yaml_body, headers={"Content-Type": "application/yaml"})
    assert_422(r, [], "invalid Unicode")  # YAML's own parser refuses the escape
    assert written(client, server) == before
    claim = {"worker_id": "w\udfff", "tasks": ["t"]}
    assert_422(escaped(client, "/api/trials/claim", claim), ["worker_id"], "lone surrogate")
    url, a = running_trial(client)
    for path, body, loc in [
        ("finish", {"state": "failed", "reason": "boom \udfff"}, ["reason"]),
        ("finish", {"state": "complete", "value": 1.0, "config": {"x": "\ud800"}}, ["config", "x"]),
        ("report", {"step": 1, "value": 1.0, "metrics": {"k": "v\udfff"}}, ["metrics", "k"]),
        ("report", {"step": 1, "value": 1.0, "metrics": {"k\ud800": 1}}, ["metrics"]),
    ]:
        assert_422(escaped(client, f"{url}/{path}", body), loc, "lone surrogate")
    csv = "lr,weight_decay,value,\ud800\n1e-4,0.1,0.3,1\n"
    r = escaped(
        client, f"/api/sweeps/{a['sweep_id']}/trials:import", {"format": "csv", "text": csv}
    )
    assert_422(r, ["text"], "lone surrogate")
    assert client.post(f"{url}/finish", json={"state": "failed", "reason": "ok"}).status_code == 200
    trials = client.get(f"/api/sweeps/{a['sweep_id']}/trials")
    assert trials.status_code == 200 and "failed" in [t["state"] for t in trials.json()["items"]]


def test_values_near_float_limits_get_a_rule_that_says_why_not_a_500(client):
    """Finite values as large as 1e308 (a worker's or an import's) made the least-squares
    solver fail to converge: the rule was a 500 from then on."""
    task = task_name()
    space = {"beta1": 0.9, "beta2": 0.99}
    r = client.post("/api/sweeps", json=spec(task={"name": task}, n_trials=20, space=space))
    sweep = r.json()["id"]
    rows = [
        {"lr": lr, "weight_decay": wd, "value": v}
        for lr, wd, v in [
            (3.46e-4, 1.03e-3, 1e308),
            (1.7e-5, 8.35e-3, -1e308),
            (1.76e-5, 0.242, 1e308),
            (3.85e-5, 0.161, -1e308),
            (3.23e-5, 2.38e-3, 1e308),
            (6.24e-4, 0.916, 1e308),
            (2.17e-4, 1.43e-2, -1e308),
            (1.96e-5, 1.72e-3, 5.0),
            (8.05e-4, 1.09e-3, 6.0),
            (8.0e-4, 0.507, 7.0),
            (8.61e-5, 1.85e-3, 1e300),
            (1.08e-4, 0.441, -1e300),
        ]
    ]
    r = client.post(f"/api/sweeps/{sweep}/trials:import", json={"rows": rows})
    assert r.status_code == 200, r.text
    for query in ({}, {"width": 768, "from_width": 64}):
        r = client.get(f"/api/sweeps/{sweep}/scaling-rule", params=query)
        assert r.status_code == 200, r.text
        rule = r.json()
        assert rule["verdict"] == "insufficient", rule
        assert "cannot be fitted" in rule["reason"] and "1e+308" in rule["reason"], rule


def test_one_diverged_run_at_1e308_counts_as_diverged_and_the_rest_is_fitted(client):
    """A real sweep's messy case: 20 runs on a planted valley, one of which blew up to 1e308
    (finite): it counts as diverged, and the other 19 still give a fitted answer."""
    import random as rnd

    task = task_name()
    space = {"beta1": 0.9, "beta2": 0.99}
    r = client.post("/api/sweeps", json=spec(task={"name": task}, n_trials=20, space=space))
    sweep = r.json()["id"]
    rng = rnd.Random(3)
    rows = []
    for i in range(20):
        lr, wd = 10 ** rng.uniform(-5, -3), 10 ** rng.uniform(-3, 0)
        value = 1e308 if i == 7 else math.log(lr * wd / 2e-5) ** 2 + rng.gauss(0, 0.1)
        rows.append({"lr": lr, "weight_decay": wd, "value": value})
    r = client.post(f"/api/sweeps/{sweep}/trials:import", json={"rows": rows})
    assert r.status_code == 200, r.text
    rule = client.get(f"/api/sweeps/{sweep}/scaling-rule").json()
    assert rule["verdict"] != "insufficient", rule
    assert rule["left_out"]["diverged"] == 1 and rule["n"] == 19, rule


def test_optuna_static_files_need_no_accept_encoding(server):
    path = "/optuna/static/bundle.js.LICENSE.txt"
    with httpx.Client(base_url=server.url, timeout=30) as c:
        del c.headers["Accept-Encoding"]
        r = c.get(path)
        assert "accept-encoding" not in r.request.headers
    assert r.status_code == 200 and r.text


# ---- 6. smaller ------------------------------------------------------------------------


def test_trial_times_carry_a_time_zone(client):
    url, a = running_trial(client)
    client.post(f"{url}/finish", json={"state": "complete", "value": 1.0})
    trial = client.get(f"/api/sweeps/{a['sweep_id']}/trials/{a['trial_number']}").json()
    for key in ("datetime_start", "datetime_complete"):
        stamp = datetime.fromisoformat(trial[key])
        assert stamp.tzinfo is not None, trial[key]
        assert abs((stamp - datetime.now().astimezone()).total_seconds()) < 600


def test_405_lists_every_allowed_method(client):
    r = client.put("/api/sweeps")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    r = client.patch("/api/sweeps/1")
    assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"


LOOSE = [
    ({"n_trials": True}, ["n_trials"]),
    ({"n_trials": "5"}, ["n_trials"]),
    ({"n_trials": 5.0}, ["n_trials"]),
    ({"max_retries": "1"}, ["max_retries"]),
    ({"space": {"beta1": {"low": "0.8", "high": 0.9}}}, ["space", "beta1", "low"]),
    ({"space": {"lr": {"low": 1e-5, "high": 1e-3, "log": 1}}}, ["space", "lr", "log"]),
    ({"sampler": {"name": "tpe", "seed": "7"}}, ["sampler", "seed"]),
]


@pytest.mark.parametrize(("change", "loc"), LOOSE, ids=[json.dumps(c[0]) for c in LOOSE])
def test_loose_input_is_not_coerced(client, server, change, loc):
    before = written(client, server)
    assert_422(client.post("/api/sweeps", json=spec(**change)), loc, "valid")
    assert written(client, server) == before


def test_loose_worker_input_and_duplicate_keys_are_refused(client, server):
    url, _ = running_trial(client)
    assert_422(client.post(f"{url}/report", json={"step": "3", "value": 1.0}), ["step"], "integer")
    assert_422(client.post(f"{url}/report", json={"step": 3.0, "value": 1.0}), ["step"], "integer")
    r = client.post(f"{url}/report", content=b'{"step": 1, "step": 2, "value": 1.0}', headers=JSON)
    assert_422(r, [], "duplicate key 'step'")
    before = written(client, server)
    body = b'{"name": "a", "task": {"name": "q", "name": "r"}}'
    r = client.post("/api/sweeps", content=body, headers=JSON)
    assert_422(r, ["task"], "duplicate key 'name'")
    yaml_body = b"name: a\ntask: {name: quadratic}\nn_trials: 2\nn_trials: 3\n"
    r = client.post("/api/sweeps", content=yaml_body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "duplicate key 'n_trials'" in r.json()["detail"][0]["msg"]
    assert written(client, server) == before


def test_a_repeated_idempotency_key_answers_200_with_the_first_sweep(client):
    body, key = spec(), {"Idempotency-Key": uuid.uuid4().hex}
    first = client.post("/api/sweeps", json=body, headers=key)
    again = client.post("/api/sweeps", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]


@pytest.mark.postgres
def test_healthz_is_503_while_the_database_is_down(
    make_postgres_db, postgres_admin_url, live_server
):
    url = make_postgres_db()
    server = live_server(url)
    name = make_url(url).database
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")

    def outage(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not on)}'))
            if on:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )

    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            outage(True)
            r = c.get("/healthz")
            assert r.status_code == 503 and "database" in r.json()["detail"], r.text
            # The API says "retry" (503, which workers retry) instead of failing with a 500.
            for path in ("/api/sweeps", "/api/sweeps/1"):
                r = c.get(path)
                assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            r = c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["t"]})
            assert r.status_code == 503, r.text
            outage(False)
            assert c.get("/healthz").json() == {"status": "ok"}
    finally:
        outage(False)
        admin.dispose()
        server.stop()
        make_postgres_db.drop(url)


def test_a_server_bound_to_another_loopback_address_answers_to_it(sqlite_url, live_server):
    # The bound address is one of the names served.
    port = get_free_port("127.0.0.2")
    server = live_server(sqlite_url, host="127.0.0.2", port=port)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/api/sweeps").status_code == 200
        assert c.get("/api/sweeps", headers={"Host": "evil.example"}).status_code == 400


def test_host_rule_for_each_kind_of_bind():
    from service.http_gate import HostRule

    loopback = HostRule(Settings(host="127.0.0.1"))
    assert [loopback.host_ok(h) for h in ("localhost:8000", "[::1]:80", "10.0.0.5")] == [
        True,
        True,
        False,
    ]
    assert loopback.host_ok(None)  # HTTP/1.0 sends no Host
    wildcard = HostRule(Settings(host="0.0.0.0"))  # compose: names unknown, tokens required
    assert wildcard.host_ok("api:8000") and wildcard.host_ok("anything.example")
    named = HostRule(Settings(host="0.0.0.0", allowed_hosts="api,gpu1.example.org"))
    assert named.host_ok("api:8000") and named.host_ok("GPU1.example.org.")
    assert named.host_ok("10.0.0.5:8000") and named.host_ok("[fe80::1]:8000")  # not rebindable
    assert not named.host_ok("evil.example")
    assert named.origin_ok("https://gpu1.example.org", "10.0.0.5:8000")
    assert not named.origin_ok("http://evil.example", "10.0.0.5:8000")
    assert HostRule(Settings(allowed_hosts="*")).host_ok("evil.example")
    with pytest.raises(ValueError, match="bare host names"):
        Settings(allowed_hosts="http://sweeps.example")


def test_claims_carry_checked_task_param_declarations(client):
    task = task_name()
    declared = {task: {"steps": {"type": "int", "low": 1, "high": 100, "default": 10}}}
    claim = {"worker_id": "decl", "tasks": [task], "task_params": declared}
    assert client.post("/api/trials/claim", json=claim).status_code == 204
    r = client.post("/api/sweeps", json=spec(task={"name": task, "params": {"steps": 1000}}))
    assert_422(r, ["task", "params", "steps"], "<= 100")
    bad = {task: {"steps": {"type": "int", "low": "1"}}}
    r = client.post("/api/trials/claim", json={**claim, "task_params": bad})
    assert_422(r, ["task_params"], "['steps']['low']")
