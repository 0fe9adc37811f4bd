"""The dashboard's "best" is /best's best config: the index shows its seed mean and seed count,
the sweep page its held-out seed mean, and the optimization history labels the per-trial line
as single runs and marks the best config's seed mean with its 90% interval. A real browser
against a real server; a scripted httpx client plays the worker."""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import httpx
import pytest


def js_fmt(value: float) -> str:
    """The dashboard's ``fmt``: 4 significant digits."""
    return f"{float(f'{value:.4g}')!r}".removesuffix(".0")


@pytest.fixture(scope="module")
def rerun(module_live_server: Any, make_sqlite_url: Any) -> Any:
    """A finished sweep whose top 2 configs were re-run with 3 fresh seeds each."""
    server = module_live_server(make_sqlite_url())
    task = f"d{uuid.uuid4().hex[:8]}"
    rng = random.Random(4)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(
            "/api/sweeps",
            json={
                "name": "best-everywhere",
                "task": {"name": task},
                "space": {
                    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
                    "weight_decay": {"low": 1e-3, "high": 1.0, "log": True},
                },
                "sampler": {"name": "random", "seed": 2},
                "pruner": {"name": "none"},
                "n_trials": 6,
                "reevaluate": {"top_k": 2, "seeds": 3},
            },
        )
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        body = {"worker_id": "w", "tasks": [task]}
        while (got := c.post("/api/trials/claim", json=body)).status_code == 200:
            a = got.json()
            value = 1.0 + math.log(a["params"]["lr"] / 1e-3) ** 2 + rng.gauss(0, 0.2)
            done = {"state": "complete", "value": value}
            assert c.post(f"/api/trials/{a['trial_id']}/finish", json=done).status_code == 200
        best = c.get(f"/api/sweeps/{sweep_id}/best").json()["best"]
        sweep = c.get(f"/api/sweeps/{sweep_id}").json()
    assert sweep["status"] == "complete" and best["n_seeds"] == 2
    assert sweep["best"]["best_single_value"] < best["mean"]  # a lucky run exists
    return server, sweep_id, best, sweep


@pytest.mark.browser
def test_index_and_sweep_page_show_the_seed_mean_best_with_its_seeds(rerun, page) -> None:
    server, sweep_id, best, sweep = rerun
    page.goto(server.url)
    cell = page.locator(f'tr[data-sweep-id="{sweep_id}"] .best-mean')
    cell.wait_for(timeout=15_000)
    assert cell.inner_text() == f"{js_fmt(best['mean'])} · 2 seeds"
    title = cell.get_attribute("title")
    assert f"trial {best['trial_number']}: mean of 2 seeds, 90% CI" in title
    assert f"best single run {js_fmt(sweep['best']['best_single_value'])}" in title
    assert "BEST (SEED MEAN)" in page.locator("#sweeps thead").inner_text().upper()

    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.locator("#plot-history .main-svg").first.wait_for(timeout=15_000)
    page.wait_for_function(
        "Array.from(document.getElementById('plot-history').data || []).length === 3"
    )
    assert page.locator("#best-trial").inner_text() == f"#{best['trial_number']}"
    assert "2 seeds that took no part in ranking it" in page.locator("#best-seeds").inner_text()
    traces = page.evaluate(
        "Array.from(document.getElementById('plot-history').data)"
        ".map(t => ({name: t.name, y: Array.from(t.y), err: t.error_y && t.error_y.array}))"
    )
    names = [t["name"] for t in traces]
    assert "lowest single value so far" in names and "best so far" not in names
    star = traces[2]
    assert star["name"] == f"best config (trial {best['trial_number']}): mean of 2 seeds"
    assert star["y"] == [pytest.approx(best["mean"])]
    assert star["err"] == [pytest.approx(best["ci"][1] - best["mean"])]
    assert page.errors == []
