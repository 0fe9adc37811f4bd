"""The sweep page's best card says Lion vs AdamW for a sweep with a baseline arm (and nothing
for one without), in a real browser against a real server; a scripted httpx client plays the
worker with the planted arms of tests/test_service_arms.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from test_service_arms import OPTIMA, planted, run_sweep


@pytest.fixture(scope="module")
def sweeps(module_live_server: Any, make_sqlite_url: Any) -> SimpleNamespace:
    """A baseline sweep where AdamW is better by 0.25, and a sweep without a baseline."""
    server = module_live_server(make_sqlite_url())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        arms = run_sweep(
            client,
            planted(0.25, 0.0),
            baseline="adamw",
            sampler={"name": "random", "seed": 3},
            n_trials=4,
            enqueue=OPTIMA,
            reevaluate={"top_k": 1, "seeds": 3},
        )
        plain = run_sweep(client, planted(0.0, 0.0), n_trials=3, reevaluate="off")
        answer = client.get(f"/api/sweeps/{arms}/arms").json()
    assert answer["verdict"] == "adamw_better", answer["reason"]
    return SimpleNamespace(url=server.url, arms=arms, plain=plain, answer=answer)


@pytest.mark.browser
def test_best_card_shows_the_arms_verdict(sweeps: Any, page: Any) -> None:
    page.goto(f"{sweeps.url}/sweeps/{sweeps.arms}")
    box = page.locator("#best-card #arms-verdict")
    box.wait_for(state="visible", timeout=15_000)
    assert box.get_attribute("data-verdict") == "adamw_better"
    text = page.locator("#arms-verdict-text").inner_text()
    assert text.startswith("AdamW better by ") and "(90% CI " in text, text
    detail = page.locator("#arms-verdict-detail").inner_text()
    assert detail.startswith("Lion 0.") and " · AdamW " in detail, detail
    assert "lr AdamW/Lion 5.00×, paper 3–10×" in detail, detail
    assert "weight decay AdamW/Lion 0.200×, paper 0.1–0.33×" in detail, detail
    assert page.errors == []

    page.goto(f"{sweeps.url}/sweeps/{sweeps.plain}")
    page.locator("#best-body").wait_for(timeout=15_000)
    assert not page.locator("#arms-verdict").is_visible()
    assert page.errors == []
