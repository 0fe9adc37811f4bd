"""The sweep page stays readable with messy trials, in a real browser against a real server.

One sweep holds 12 imported runs on a bowl, one imported run marked diverged (value 1e30),
one imported "complete" run with the same absurd value, a trial that failed and was retried,
and the re-evaluations of the best config: the colour scales span the runs that trained and
the diverged run is drawn apart; every parallel-coordinate axis holds its lines; re-runs are
tagged in the trials table; at 800 px the page does not scroll sideways; the progress card is
not a tall empty box; the map states its verdict once; and neither the sweep page nor /redoc
asks anything of another host.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

HUGE = 1e30


def bowl(lr: float, wd: float) -> float:
    """A smooth bowl in (ln lr, ln weight decay), between about 0.4 and 1."""
    return 0.4 + 0.05 * math.log(lr / 1e-3) ** 2 + 0.03 * math.log(wd / 0.1) ** 2


@pytest.fixture(scope="module")
def messy(module_live_server: Any, make_sqlite_url: Any) -> SimpleNamespace:
    """A finished sweep with imported, diverged, absurd, retried and re-evaluated trials."""
    server = module_live_server(make_sqlite_url())
    task = f"r{uuid.uuid4().hex[:8]}"
    spec = {
        "name": "messy",
        "task": {"name": task},
        "space": {
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "weight_decay": {"low": 1e-2, "high": 1.0, "log": True},
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": {"name": "random", "seed": 1},
        "pruner": {"name": "none"},
        "n_trials": 3,
        "max_retries": 1,
        "reevaluate": {"top_k": 1, "seeds": 2},
    }
    rng = random.Random(0)
    rows = []
    for _ in range(12):
        lr, wd = 10 ** rng.uniform(-4, -2), 10 ** rng.uniform(-2, 0)
        rows.append({"lr": lr, "weight_decay": wd, "value": bowl(lr, wd), "state": "complete"})
    diverged = {"lr": 0.009, "weight_decay": 0.5, "value": HUGE, "state": "diverged"}
    absurd = {"lr": 0.008, "weight_decay": 0.05, "value": HUGE, "state": "complete"}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/api/sweeps", json=spec)
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        body = {"format": "rows", "rows": [*rows, diverged, absurd], "source": "runs.csv"}
        r = c.post(f"/api/sweeps/{sweep_id}/trials:import", json=body)
        assert r.status_code == 200, r.text
        failed_once = False
        claim = {"worker_id": "w1", "tasks": [task]}
        while (got := c.post("/api/trials/claim", json=claim)).status_code == 200:
            a = got.json()
            if not failed_once:
                failed_once = True
                finish = {"state": "failed", "reason": "CUDA out of memory"}
            else:
                p = a["params"]
                finish = {"state": "complete", "value": bowl(p["lr"], p["weight_decay"])}
            r = c.post(f"/api/trials/{a['trial_id']}/finish", json=finish)
            assert r.status_code == 200, r.text
        assert got.status_code == 204, got.text
        sweep = c.get(f"/api/sweeps/{sweep_id}").json()
        trials = c.get(f"/api/sweeps/{sweep_id}/trials", params={"limit": 500}).json()["items"]
        rule = c.get(f"/api/sweeps/{sweep_id}/scaling-rule").json()
    assert sweep["status"] == "complete", sweep
    by_value = {t["number"]: t for t in trials}
    retries = [t for t in trials if t["retry_of"] is not None]
    reevals = [t for t in trials if t["reevaluation_of"] is not None]
    assert retries and reevals, trials
    marked = [t for t in trials if t["diverged"]]
    assert len(marked) == 1 and marked[0]["value"] == HUGE
    trained = [t["value"] for t in trials if t["value"] is not None and t["value"] < HUGE]
    return SimpleNamespace(
        url=server.url,
        page=f"{server.url}/sweeps/{sweep_id}",
        trials=by_value,
        retries=retries,
        reevals=reevals,
        diverged=marked[0],
        trained=trained,
        rule=rule,
    )


def open_sweep(page: Any, url: str) -> None:
    """Open a sweep page and wait for its map, parallel coordinates and trials."""
    page.goto(url)
    for plot in ("plot-map", "plot-parallel"):
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)
    page.locator("#trials tbody tr").first.wait_for(timeout=15_000)


@pytest.mark.browser
def test_colour_scales_span_the_trained_runs_and_diverged_ones_are_drawn_apart(
    messy: Any, page: Any
) -> None:
    open_sweep(page, messy.page)
    top = max(messy.trained)
    # The map: the colour range plotly used (log10 units when it says so) ends near the worst
    # run that trained, nowhere near 1e30; the diverged run has its own marker and legend entry.
    marker = page.evaluate(
        "(() => { const t = document.getElementById('plot-map')._fullData"
        ".find(d => d.name === 'complete'); return { cmin: t.marker.cmin, cmax: t.marker.cmax,"
        " title: t.marker.colorbar.title.text }; })()"
    )
    log = marker["title"].startswith("log10")
    hi = 10 ** marker["cmax"] if log else marker["cmax"]
    assert hi <= top * 1.001, marker
    assert hi >= sorted(messy.trained)[len(messy.trained) // 2], marker
    diverged = page.evaluate(
        "(() => { const t = document.getElementById('plot-map')._fullData"
        ".find(d => d.name === 'diverged'); return t && { x: Array.from(t.x),"
        " customdata: Array.from(t.customdata), symbol: t.marker.symbol,"
        " legend: t.showlegend }; })()"
    )
    assert diverged is not None
    assert messy.diverged["number"] in diverged["customdata"]
    assert diverged["symbol"] != "circle" and diverged["legend"] is True
    assert "diverged" in page.locator("#plot-map .legendtext").all_text_contents()
    # Parallel coordinates: the same for its line colours; the diverged line gets the
    # "diverged" end of the colour bar.
    line = page.evaluate(
        "(() => { const l = document.getElementById('plot-parallel')._fullData[0].line;"
        " return { cmin: l.cmin, cmax: l.cmax, ticktext: l.colorbar.ticktext || [],"
        " color: Array.from(l.color) }; })()"
    )
    assert line["cmax"] < 10, line  # 1e30 (or its log10, 30) would sit here without the clip
    assert "diverged" in line["ticktext"], line
    assert sum(c == line["cmax"] for c in line["color"]) == 1, line
    assert page.errors == []


@pytest.mark.browser
def test_parallel_coordinate_axes_hold_their_lines(messy: Any, page: Any) -> None:
    open_sweep(page, messy.page)
    dims = page.evaluate(
        "Array.from(document.getElementById('plot-parallel')._fullData[0].dimensions)"
        ".map(d => ({ label: d.label, values: Array.from(d.values), range: d.range,"
        " tickvals: d.tickvals ? Array.from(d.tickvals) : null }))"
    )
    assert len(dims) >= 3, dims
    for d in dims:
        lo, hi = min(d["values"]), max(d["values"])
        r0, r1 = d["range"]
        eps = 1e-9 * max(1.0, abs(r1 - r0))
        assert r0 - eps <= lo and hi <= r1 + eps, d
        # plotly draws an axis with ticks from its lowest tick to its highest: those must be
        # the range's ends, or lines run past the drawn axis.
        assert d["tickvals"], d
        assert min(d["tickvals"]) == pytest.approx(r0) and max(d["tickvals"]) == pytest.approx(r1)
    # And as drawn: every axis line is as long as the others (the full plot height).
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('#plot-parallel .axis .domain'))"
        ".map(p => p.getBoundingClientRect().height)"
    )
    assert len(heights) == len(dims) and max(heights) - min(heights) < 1.5, heights
    assert page.errors == []


@pytest.mark.browser
def test_retries_and_reevaluations_are_marked_in_the_trials_table(messy: Any, page: Any) -> None:
    open_sweep(page, messy.page)
    for t in messy.retries:
        row = page.locator(f'#trials tbody tr[data-trial="{t["number"]}"]')
        assert row.get_attribute("data-retry-of") == str(t["retry_of"])
        assert f"retry of #{t['retry_of']}" in row.locator(".tag.rerun").first.inner_text()
    for t in messy.reevals:
        row = page.locator(f'#trials tbody tr[data-trial="{t["number"]}"]')
        assert row.get_attribute("data-reevaluation-of") == str(t["reevaluation_of"])
        tags = " ".join(row.locator(".tag.rerun").all_inner_texts())
        assert f"re-eval of #{t['reevaluation_of']}" in tags
    first_runs = [
        n for n, t in messy.trials.items() if t["retry_of"] is None and t["reevaluation_of"] is None
    ]
    assert page.locator(f'#trials tbody tr[data-trial="{first_runs[0]}"] .tag.rerun').count() == 0
    n_reruns = len({t["number"] for t in messy.retries + messy.reevals})
    assert page.locator("#trials tbody tr .tag.rerun").count() >= n_reruns
    assert page.errors == []


@pytest.mark.browser
def test_no_sideways_page_scroll_at_800_px(messy: Any, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 800, "height": 900})
    try:
        page = context.new_page()
        open_sweep(page, messy.page)
        page.locator("#plot-history .main-svg").first.wait_for(timeout=15_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 800
        # The wide table scrolls inside its own box instead.
        box = page.locator("#trials").locator("xpath=..")
        assert box.evaluate("b => b.scrollWidth > b.clientWidth"), "the table fits: test is moot"
    finally:
        context.close()


@pytest.mark.browser
def test_the_progress_card_is_compact_and_says_more_than_counts(messy: Any, page: Any) -> None:
    open_sweep(page, messy.page)
    card = page.locator("#status-card")
    page.locator('[data-count="complete"]').wait_for(timeout=15_000)
    gap = card.evaluate(
        "c => { const kids = Array.from(c.children).filter(k => k.getBoundingClientRect().height);"
        " return c.getBoundingClientRect().bottom"
        " - Math.max(...kids.map(k => k.getBoundingClientRect().bottom)); }"
    )
    assert gap < 40, f"{gap:.0f} px of empty card under its content"
    facts = page.locator("#facts")
    facts.locator('[data-fact="reruns"]').wait_for(timeout=15_000)
    text = facts.inner_text()
    assert "retry" in text and "re-evaluation" in text and "diverged" in text, text
    assert page.errors == []


@pytest.mark.browser
def test_the_map_states_its_verdict_once(messy: Any, page: Any) -> None:
    verdict = messy.rule.get("verdict")
    assert verdict and verdict != "valley", messy.rule
    open_sweep(page, messy.page)
    page.locator(f'#rule-verdict[data-verdict="{verdict}"]').wait_for(timeout=15_000)
    page.locator("#rule-note", has_text="No valley drawn").wait_for(timeout=15_000)
    # Everything the card shows, the text inside the map's SVG included.
    text = page.locator("#rule-card").evaluate("c => c.textContent")
    assert len(re.findall(rf"\b{verdict}\b", text)) == 1, text
    assert len(re.findall("no valley drawn", text, flags=re.IGNORECASE)) == 1, text
    assert page.errors == []


def same_origin(url: str, server_url: str) -> bool:
    """Whether ``url`` (a blob: URL by the origin it names) is on the server's origin."""
    if url.startswith("blob:"):
        url = url[len("blob:") :]
    if url.startswith("data:"):
        return True
    a, b = urlsplit(url), urlsplit(server_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


@pytest.mark.browser
def test_the_sweep_page_and_redoc_ask_nothing_of_another_host(messy: Any, page: Any) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    # Anything bound elsewhere is also stopped, so that a miss cannot hang on the network.
    page.route(
        "**/*",
        lambda r: r.continue_() if same_origin(r.request.url, messy.url) else r.abort(),
    )
    open_sweep(page, messy.page)
    page.locator("#plot-history .main-svg").first.wait_for(timeout=15_000)
    page.goto(f"{messy.url}/redoc")
    page.locator("h1", has_text="lionsweep").first.wait_for(timeout=20_000)
    logo = page.locator('img[alt="redocly logo"]')
    if logo.count():
        page.wait_for_function(
            "() => { const i = document.querySelector('img[alt=\"redocly logo\"]');"
            " return !i || (i.complete && i.naturalWidth > 0); }",
            timeout=10_000,
        )
    page.wait_for_load_state("networkidle")
    assert any("/redoc" in u for u in requested) and any("/sweeps/" in u for u in requested)
    elsewhere = [u for u in requested if not same_origin(u, messy.url)]
    assert elsewhere == []
