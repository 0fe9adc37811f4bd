"""Imported runs in the sweep page's trials table, in a real browser against a real server:
each imported trial is tagged (its source in the tag's title) and a diverged one says so,
while trials a worker ran carry neither tag."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

CSV = """lr,weight_decay,seed,value,state
0.001,0.1,0,0.50,complete
0.002,0.1,0,0.45,complete
0.008,0.1,0,7.8,diverged
"""


@pytest.mark.browser
def test_imported_and_diverged_trials_are_tagged(
    module_live_server: Any, make_sqlite_url: Any, page: Any
) -> None:
    server = module_live_server(make_sqlite_url())
    spec = {
        "name": "imported",
        "task": {"name": "quadratic"},
        "n_trials": 1,
        "reevaluate": "off",
        "space": {
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "weight_decay": {"low": 1e-2, "high": 1.0, "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
    }
    with httpx.Client(base_url=server.url, timeout=30) as c:
        sweep = c.post("/api/sweeps", json=spec).json()["id"]
        body = {"format": "csv", "text": CSV, "source": "runs.csv"}
        r = c.post(f"/api/sweeps/{sweep}/trials:import", json=body)
        assert r.status_code == 200, r.text
        a = c.post("/api/trials/claim", json={"worker_id": "w", "tasks": ["quadratic"]}).json()
        done = {"state": "complete", "value": 0.7}
        assert c.post(f"/api/trials/{a['trial_id']}/finish", json=done).status_code == 200

    page.goto(f"{server.url}/sweeps/{sweep}")
    page.locator("#trials tbody tr[data-trial='3']").wait_for(timeout=15_000)
    imported = page.locator("#trials tbody tr[data-imported='1']")
    assert imported.count() == 3
    tag = page.locator("#trials tbody tr[data-trial='0'] .tag.imported")
    assert tag.inner_text() == "imported"
    assert tag.get_attribute("title") == "imported: runs.csv row 2"
    assert page.locator("#trials tbody tr[data-trial='2'] .tag.diverged").count() == 1
    own = page.locator("#trials tbody tr[data-trial='3']")
    assert own.locator(".tag.imported").count() == 0 and own.get_attribute("data-imported") is None
    assert page.errors == []
