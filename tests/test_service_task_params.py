"""A sweep's task params are checked against what workers declared for the task."""

from __future__ import annotations

import httpx

DECLARED = {
    "quadratic": {
        "dim": {"type": "int", "low": 1, "high": 65536, "choices": None, "default": 32},
        "step_delay": {"type": "float", "low": 0.0, "high": 1.0, "choices": None, "default": 0},
        "model": {"type": "str", "low": None, "high": None, "choices": ["a", "b"], "default": "a"},
    }
}


def submit(c: httpx.Client, task: str, params: dict) -> httpx.Response:
    return c.post("/api/sweeps", json={"name": "p", "task": {"name": task, "params": params}})


def test_task_params_are_checked_against_the_workers_declarations(sqlite_url, live_server):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        # Before any worker declared the task, its params cannot be checked: accepted.
        assert submit(c, "quadratic", {"step_delay": 120}).status_code == 201
        claim = {"worker_id": "w", "tasks": ["quadratic"], "task_params": DECLARED}
        assert c.post("/api/trials/claim", json=claim).status_code in (200, 204)
        before = c.get("/api/sweeps").json()["total"]
        for params, name, rule in [
            ({"step_delay": 120}, "step_delay", "must be <= 1.0"),
            ({"dim": 10**9}, "dim", "must be <= 65536"),
            ({"dim": "3"}, "dim", "must be of type int"),
            ({"dim": True}, "dim", "must be of type int"),
            ({"model": "c"}, "model", "must be one of"),
            ({"colour": 1}, "colour", "accepts no param 'colour'"),
        ]:
            r = submit(c, "quadratic", params)
            assert r.status_code == 422, (params, r.text)
            err = r.json()["detail"][0]
            assert err["loc"] == ["body", "task", "params", name] and rule in err["msg"], err
        assert c.get("/api/sweeps").json()["total"] == before
        ok = submit(c, "quadratic", {"dim": 8, "step_delay": 0.5, "model": "b"})
        assert ok.status_code == 201, ok.text
        assert submit(c, "undeclared", {"anything": 1}).status_code == 201
