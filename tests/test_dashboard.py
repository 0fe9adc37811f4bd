"""The dashboard: pages, bundled plotly.js, read-only optuna-dashboard, and a real browser.

The first tests mount the dashboard on a bare FastAPI app (its own contract:
``mount_dashboard(app, settings)``). The browser tests drive Debian's Chromium through
Playwright against a real ``lionsweep serve`` with real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lionsweep.server_cli import DEMO_SPEC
from service.dashboard import mount_dashboard, plotly_js_path, plotly_version
from service.dashboard.optuna_mount import patched_bundle
from service.settings import Settings


@pytest.fixture
def optuna_db(tmp_path: Path) -> str:
    """An SQLite Optuna storage holding one finished study."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="quad")
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 0.5) ** 2, n_trials=5)
    return url


@pytest.fixture
def client(optuna_db: str) -> TestClient:
    """A bare app with only the dashboard mounted."""
    app = FastAPI()
    mount_dashboard(app, Settings(database_url=optuna_db))
    return TestClient(app)


def test_pages_are_html_shells_loading_local_scripts(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert 'src="/static/list.js"' in index.text
    page = client.get("/sweeps/7")
    assert page.status_code == 200
    assert f'src="/static/vendor/plotly-{plotly_version()}.min.js"' in page.text
    assert 'src="/static/sweep.js"' in page.text
    assert "cdn" not in (index.text + page.text).lower()
    for asset in ("api.js", "list.js", "sweep.js", "plots.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200, asset
    assert client.get("/sweeps/not-a-number").status_code == 422


def test_plotly_js_comes_from_the_plotly_package_with_a_long_cache(client: TestClient) -> None:
    answer = client.get(f"/static/vendor/plotly-{plotly_version()}.min.js")
    assert answer.status_code == 200
    assert answer.content == plotly_js_path().read_bytes()
    assert "max-age=31536000" in answer.headers["cache-control"]
    assert "javascript" in answer.headers["content-type"]
    assert client.get("/static/vendor/plotly-0.0.1.min.js").status_code == 404


def test_optuna_dashboard_is_mounted_read_only_under_optuna(client: TestClient) -> None:
    root = client.get("/optuna", follow_redirects=False)
    assert root.status_code in (302, 307)
    shell = client.get("/optuna/dashboard")
    assert shell.status_code == 200
    assert 'src="/optuna/static/bundle.js"' in shell.text
    # The controls that would write are hidden (tests/test_dashboard_polish.py looks in a browser).
    assert '<style id="lionsweep-read-only">' in shell.text and "delete study" in shell.text
    bundle = client.get("/optuna/static/bundle.js")
    assert bundle.status_code == 200
    assert "${this.baseURL}/optuna/api" in bundle.text
    assert 'url_prefix:"/optuna/dashboard"' in bundle.text
    assert bundle.text == patched_bundle()
    studies = client.get("/optuna/api/studies").json()["study_summaries"]
    assert [s["study_name"] for s in studies] == ["quad"]
    deleted = client.delete(f"/optuna/api/studies/{studies[0]['study_id']}")
    assert deleted.status_code == 405
    assert client.post("/optuna/api/studies", json={"study_name": "x"}).status_code == 405
    assert len(client.get("/optuna/api/studies").json()["study_summaries"]) == 1


def test_read_token_setting_marks_pages_and_guards_optuna(optuna_db: str) -> None:
    app = FastAPI()
    mount_dashboard(app, Settings(database_url=optuna_db, require_read_token=True))
    client = TestClient(app)
    assert 'content="required"' in client.get("/").text
    # This bare app has no /api to vouch for any token: every token is refused.
    assert client.get("/optuna/api/studies").status_code == 401
    assert (
        client.get("/optuna/api/studies", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )


# -- a real browser on a real server with a real worker ---------------------------------------

DEMO = {
    **DEMO_SPEC,
    "name": "browser-demo",
    "pruner": {"name": "median", "n_startup_trials": 6, "n_warmup_steps": 500},
    "n_trials": 24,
}
PLOTS = ("plot-map", "plot-history", "plot-importances", "plot-parallel")


def lionsweep_command() -> list[str]:
    """The ``lionsweep`` script of this interpreter."""
    script = Path(sys.executable).with_name("lionsweep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lionsweep.server_cli"]


@pytest.fixture(scope="module")
def running(module_live_server: Any, make_sqlite_url: Any, tmp_path_factory: Any) -> Iterator[Any]:
    """A server, one CPU worker, and a submitted demo sweep (id in ``.sweep_id``)."""
    server = module_live_server(make_sqlite_url())
    created = httpx.post(f"{server.url}/api/sweeps", json=DEMO, timeout=10)
    assert created.status_code == 201, created.text
    server.sweep_id = created.json()["id"]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [*lionsweep_command(), "worker", "--server", server.url, "--device", "cpu"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield server
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(5)


def sweep(server: Any, sweep_id: int) -> dict[str, Any]:
    """The sweep as the API reports it."""
    return httpx.get(f"{server.url}/api/sweeps/{sweep_id}", timeout=10).json()


def settled(server: Any, sweep_id: int) -> bool:
    """Whether a sweep is complete and its re-evaluation (if any) is over."""
    if sweep(server, sweep_id)["status"] != "complete":
        return False
    answer = httpx.get(f"{server.url}/api/sweeps/{sweep_id}/best", timeout=30)
    if answer.status_code != 200:
        return True
    return answer.json()["reevaluation"]["status"] not in ("pending", "queued")


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.browser
def test_sweeps_list_shows_new_sweeps_and_live_counts_without_reload(
    running: Any, page: Any
) -> None:
    page.goto(running.url + "/")
    row = page.locator(f'tr[data-sweep-id="{running.sweep_id}"]')
    row.wait_for(timeout=15_000)
    assert "browser-demo" in row.inner_text()
    page.evaluate("window.__sameDocument = 42")
    before = row.locator(".bar em").inner_text()

    added = httpx.post(
        f"{running.url}/api/sweeps",
        json={**DEMO, "name": "added-later", "n_trials": 3, "reevaluate": "off"},
    )
    assert added.status_code == 201
    added_id = added.json()["id"]
    added_row = page.locator(f'tr[data-sweep-id="{added_id}"]')
    added_row.wait_for(timeout=10_000)
    # Its counts climb to 3 / 3 through polling alone (the marker below proves no reload).
    page.wait_for_function(
        "id => { const em = document.querySelector(`tr[data-sweep-id='${id}'] .bar em`);"
        " return em && em.textContent.startsWith('3 / 3'); }",
        arg=added_id,
        timeout=180_000,  # the worker takes the demo sweep's trials first
    )
    page.wait_for_function(
        "([id, before]) => {"
        " const em = document.querySelector(`tr[data-sweep-id='${id}'] .bar em`);"
        " return em && em.textContent !== before; }",
        arg=[running.sweep_id, before],
        timeout=60_000,
    )
    assert page.evaluate("window.__sameDocument") == 42, "the page reloaded"
    assert page.errors == []


@pytest.mark.browser
def test_sweep_page_renders_every_plot_and_updates_in_place(running: Any, page: Any) -> None:
    wait_until(lambda: sweep(running, running.sweep_id)["counts"]["complete"] >= 1, 60, "a trial")
    page.goto(f"{running.url}/sweeps/{running.sweep_id}")
    for plot in PLOTS:
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)
    page.evaluate("window.__sameDocument = 42")
    start = int(page.locator('[data-count="complete"]').inner_text())
    page.wait_for_function(
        "n => Number(document.querySelector('[data-count=\"complete\"]').textContent) > n"
        " || document.querySelector('#eta').textContent.includes('complete')",
        arg=start,
        timeout=90_000,
    )
    rows = page.locator("#trials tbody tr").count()
    assert rows >= start + 1
    assert page.evaluate("window.__sameDocument") == 42, "the page reloaded"
    assert page.locator("#best-body").is_visible()
    kwargs = json.loads(page.locator("#best-code").inner_text())
    assert set(kwargs) >= {"lr", "betas", "weight_decay"}
    assert page.errors == []


def check_best_panel(page: Any, server: Any, sweep_id: int) -> dict[str, Any]:
    """The best config panel shows /best's answer: the seed mean with the number of seeds and
    its 90% interval (or that the noise is unmeasured), the note, and the tied configs marked."""
    best = httpx.get(f"{server.url}/api/sweeps/{sweep_id}/best?k=5", timeout=30).json()
    b = best["best"]
    seeds = page.locator("#best-seeds").inner_text()
    assert f"{b['n_seeds']} seed{'' if b['n_seeds'] == 1 else 's'}" in seeds, seeds
    assert ("90% CI" in seeds) == (b["ci"] is not None), seeds
    if b["ci"] is None:
        assert "noise not measured" in seeds
    assert best["note"] in page.locator("#best-note").inner_text()
    assert page.locator("#best-reeval").inner_text().startswith("Re-evaluat")
    assert page.locator("#top-table tbody tr").count() == len(best["top"])
    marked = page.eval_on_selector_all(
        "#top-table tbody tr[data-tied='1']", "rows => rows.map(r => Number(r.dataset.trial))"
    )
    assert set(marked) == set(best["tied"]) & {c["trial_number"] for c in best["top"]}
    return best


@pytest.mark.browser
def test_finished_demo_sweep_page_and_screenshot(running: Any, page: Any, tmp_path: Path) -> None:
    wait_until(lambda: settled(running, running.sweep_id), 150, "the sweep")
    page.goto(f"{running.url}/sweeps/{running.sweep_id}")
    for plot in PLOTS:
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)
    page.wait_for_function("document.querySelector('#eta').textContent.includes('complete')")
    # The lr × wd map: coloured trials, iso-lines of η·λ; the rule's verdict beside it.
    names = page.evaluate(
        "Array.from(document.getElementById('plot-map').data).map(t => t.name || '')"
    )
    assert "complete" in names and "η·λ = const" in names
    assert not any(n.startswith("fit:") for n in names), "the old fitted line is gone"
    fit = httpx.get(f"{running.url}/api/sweeps/{running.sweep_id}/scaling-rule", timeout=30)
    assert fit.status_code == 200, fit.text
    rule = fit.json()
    verdict = page.locator(f'#rule-verdict[data-verdict="{rule["verdict"]}"]')
    verdict.wait_for(timeout=10_000)
    assert rule["verdict"] in verdict.inner_text()
    assert rule["reason"] in page.locator("#rule-reason").inner_text()
    assert f"{rule['n']}" in page.locator("#rule-stats").inner_text()
    check_best_panel(page, running, running.sweep_id)
    assert page.locator("#plot-importances .main-svg").count() >= 1
    # A finished sweep's progress bar is full: its segments span the whole bar.
    filled = page.evaluate(
        "(() => { const bar = document.querySelector('#progress .bar');"
        " const segs = Array.from(bar.querySelectorAll('.seg'));"
        " return segs.reduce((a, s) => a + s.getBoundingClientRect().width, 0)"
        " / bar.getBoundingClientRect().width; })()"
    )
    assert filled == pytest.approx(1.0, abs=0.02)
    assert page.errors == []
    shot = Path(os.environ.get("LIONSWEEP_SCREENSHOT") or tmp_path / "dashboard.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.browser
def test_baseline_sweep_shows_lion_and_adamw_side_by_side(running: Any, page: Any) -> None:
    spec = {
        **DEMO,
        "name": "with-baseline",
        "n_trials": 8,
        "baseline": "adamw",
        "reevaluate": "off",
    }
    created = httpx.post(f"{running.url}/api/sweeps", json=spec)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    wait_until(lambda: sweep(running, sweep_id)["status"] == "complete", 120, "baseline sweep")
    page.goto(f"{running.url}/sweeps/{sweep_id}")
    page.locator("#plot-arms-box .main-svg").first.wait_for(timeout=15_000)
    assert page.locator("#arms-card").is_visible()
    arms = page.locator("#arms-table tbody tr").all_inner_texts()
    assert [a.split()[0] for a in arms] == ["lion", "adamw"]
    assert page.errors == []


@pytest.mark.browser
def test_read_token_pages_show_nothing_without_a_token(
    live_server: Any, sqlite_url: str, browser: Any
) -> None:
    token = "read-test-token"
    server = live_server(
        sqlite_url,
        env={"LIONSWEEP_REQUIRE_READ_TOKEN": "true", "LIONSWEEP_BOOTSTRAP_TOKEN": token},
    )
    auth = {"Authorization": f"Bearer {token}"}
    created = httpx.post(f"{server.url}/api/sweeps", json=DEMO, headers=auth)
    assert created.status_code == 201, created.text

    context = browser.new_context()
    tab = context.new_page()
    tab.goto(server.url + "/")
    tab.locator("#notice").wait_for(timeout=10_000)
    assert "read token" in tab.locator("#notice").inner_text()
    assert not tab.locator("#content").is_visible()
    assert tab.locator("tr[data-sweep-id]").count() == 0
    assert tab.goto(server.url + "/optuna/api/studies").status == 401

    # The token travels in the fragment, which the browser never sends to the server.
    tab.goto(f"{server.url}/#token={token}")
    tab.locator(f'tr[data-sweep-id="{created.json()["id"]}"]').wait_for(timeout=10_000)
    assert "token=" not in tab.url
    tab.goto(f"{server.url}/sweeps/{created.json()['id']}")
    tab.locator("#plot-map .main-svg").first.wait_for(timeout=15_000)
    answer = tab.goto(server.url + "/optuna/api/studies")
    assert answer.status == 200
    assert len(answer.json()["study_summaries"]) == 1
    context.close()
    assert token not in server.log(), "the read token reached the server's log"


@pytest.mark.browser
def test_diverged_trials_are_marked_on_the_map_and_in_the_table(running: Any, page: Any) -> None:
    spec = {
        **DEMO,
        "name": "diverging",
        "task": {"name": "quadratic", "params": {"nan_at_step": 3}},
        "pruner": {"name": "none"},
        "n_trials": 3,
        "reevaluate": "off",
    }
    created = httpx.post(f"{running.url}/api/sweeps", json=spec)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    wait_until(lambda: sweep(running, sweep_id)["status"] == "complete", 120, "diverging sweep")
    page.goto(f"{running.url}/sweeps/{sweep_id}")
    page.locator("#plot-map .main-svg").first.wait_for(timeout=15_000)
    page.locator('#trials tbody tr[data-trial="2"]').wait_for(timeout=10_000)
    counts = page.evaluate(
        "Object.fromEntries(Array.from(document.getElementById('plot-map').data)"
        ".filter(t => t.name).map(t => [t.name, (t.x || []).length]))"
    )
    assert counts["diverged"] == 3, counts
    assert counts["complete"] == 0, counts
    reasons = page.locator("#trials tbody tr td:nth-child(10)").all_inner_texts()
    assert reasons == ["diverged"] * 3
    # No complete Lion trial: no rule to show (the API would answer 409), and no band.
    assert "no rule yet" in page.locator("#rule-verdict").inner_text()
    assert "no complete Lion trial" in page.locator("#rule-reason").inner_text()
    assert page.errors == []


@pytest.mark.browser
def test_worker_reasons_and_spec_names_show_literally_in_plots(
    live_server: Any, sqlite_url: str, page: Any
) -> None:
    """Plotly reads text as limited HTML: a reason or metric name must never become markup."""
    server = live_server(sqlite_url)
    spec = {
        **DEMO,
        "name": "markup",
        "objective": {"metric": "<i>loss</i>", "direction": "minimize"},
    }
    created = httpx.post(f"{server.url}/api/sweeps", json=spec, timeout=10)
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    claim = {"worker_id": "markup-test", "tasks": ["quadratic"]}
    trial = httpx.post(f"{server.url}/api/trials/claim", json=claim, timeout=10).json()
    reason = '<b>x</b> <a href="https://example.com">link</a>'
    finished = httpx.post(
        f"{server.url}/api/trials/{trial['trial_id']}/finish",
        json={"state": "pruned", "value": None, "metrics": {}, "config": {}, "reason": reason},
        timeout=10,
    )
    assert finished.status_code == 200, finished.text
    # A complete trial too: the history draws its axes (titled by the metric) only with data.
    other = httpx.post(f"{server.url}/api/trials/claim", json=claim, timeout=10).json()
    finished = httpx.post(
        f"{server.url}/api/trials/{other['trial_id']}/finish",
        json={"state": "complete", "value": 0.5},
        timeout=10,
    )
    assert finished.status_code == 200, finished.text

    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.locator('#trials tbody tr[data-trial="0"]').wait_for(timeout=15_000)
    page.locator("#plot-map .main-svg").first.wait_for(timeout=15_000)
    page.locator("#plot-history .g-ytitle").wait_for(timeout=15_000)
    assert page.locator("#plot-history .g-ytitle").text_content() == "<i>loss</i>"
    # Hover the pruned point and read the label plotly draws.
    page.evaluate(
        "(() => { const gd = document.getElementById('plot-map');"
        " const n = gd.data.findIndex(t => t.name === 'pruned');"
        " window.Plotly.Fx.hover(gd, [{curveNumber: n, pointNumber: 0}]); })()"
    )
    label = page.locator("#plot-map .hoverlayer .hovertext")
    label.wait_for(timeout=5_000)
    assert reason in label.text_content()
    assert label.locator("a").count() == 0
    assert label.locator("tspan[style*='bold']").count() == 0
    assert reason in page.locator('#trials tbody tr[data-trial="0"]').inner_text()
    assert page.errors == []


# -- the rule's verdict on the map, on planted surfaces whose answer is known ------------------


def planted_spec(surface: str) -> dict[str, Any]:
    """A sweep of the ``planted`` task: a valley along η·λ = 2e-5, or a surface of lr only.

    The sampler's seed fixes every trial's config and noise, the re-runs' too (the top 2 with
    2 fresh seeds each: the noise gets measured), so the data, hence the verdict, is the same
    on every run (seed 2 gives the planted answers; some others do not, on this small a
    sample). The valley's box starts at weight decay 1e-2 so that no trial falls below the
    product the optimizer can apply at all (η·λ under about 3e-8 applies no decay, which the
    task floors at a value of about 3,400).
    """
    return {
        "name": f"planted-{surface}",
        "task": {"name": "planted", "params": {"surface": surface, "noise": 0.05}},
        "space": {
            "lr": {"low": 1e-5, "high": 1e-2, "log": True},
            "weight_decay": {
                "low": 1e-2 if surface == "valley" else 1e-3,
                "high": 10.0,
                "log": True,
            },
            "beta1": 0.9,
            "beta2": 0.99,
        },
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": {"name": "random", "seed": 2},
        "pruner": {"name": "none"},
        "n_trials": 36,
        "reevaluate": {"top_k": 2, "seeds": 2},
    }


@pytest.fixture(scope="module")
def planted(running: Any, tmp_path_factory: Any) -> Iterator[dict[str, int]]:
    """The two planted sweeps, submitted together, with a second worker to share them."""
    ids = {}
    for surface in ("valley", "lr_only"):
        created = httpx.post(f"{running.url}/api/sweeps", json=planted_spec(surface), timeout=10)
        assert created.status_code == 201, created.text
        ids[surface] = created.json()["id"]
    log = tmp_path_factory.mktemp("worker2") / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [*lionsweep_command(), "worker", "--server", running.url, "--device", "cpu"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield ids
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(5)


def map_traces(page: Any) -> list[dict[str, Any]]:
    """Name, fill and points of every trace of the lr × weight-decay map."""
    return page.evaluate(
        "Array.from(document.getElementById('plot-map').data).map(t => ({"
        " name: t.name || '', fill: t.fill || 'none', x: Array.from(t.x || []),"
        " y: Array.from(t.y || []), symbol: (t.marker && t.marker.symbol) || '' }))"
    )


def open_rule(server: Any, page: Any, sweep_id: int) -> dict[str, Any]:
    """Wait for the sweep to settle, open its page at the rendered verdict; the rule's answer."""
    wait_until(lambda: settled(server, sweep_id), 120, f"planted sweep {sweep_id}")
    rule = httpx.get(f"{server.url}/api/sweeps/{sweep_id}/scaling-rule", timeout=30)
    assert rule.status_code == 200, rule.text
    page.goto(f"{server.url}/sweeps/{sweep_id}")
    page.locator(f'#rule-verdict[data-verdict="{rule.json()["verdict"]}"]').wait_for(timeout=15_000)
    page.locator("#plot-map .main-svg").first.wait_for(timeout=15_000)
    return rule.json()


@pytest.mark.browser
def test_valley_verdict_draws_the_band_the_optimum_and_the_best_config(
    running: Any, planted: dict[str, int], page: Any, tmp_path: Path
) -> None:
    rule = open_rule(running, page, planted["valley"])
    assert rule["verdict"] == "valley", rule["reason"]
    traces = map_traces(page)
    bands = [t for t in traces if t["fill"] != "none"]
    assert [t["name"] for t in bands] == ["valley (90% band)"]
    # The band runs along the valley: λ_hi left to right, then λ_lo back.
    valley = sorted(rule["valley"], key=lambda v: v["lr"])
    assert bands[0]["x"][: len(valley)] == pytest.approx([v["lr"] for v in valley])
    assert bands[0]["y"][: len(valley)] == pytest.approx([v["weight_decay_hi"] for v in valley])
    centre = [t for t in traces if t["name"].startswith("valley λ*")]
    assert len(centre) == 1 and centre[0]["y"] == pytest.approx([v["weight_decay"] for v in valley])
    star = next(t for t in traces if t["name"] == "best config")
    assert star["symbol"] == "star"
    assert (star["x"][0], star["y"][0]) == pytest.approx(
        (rule["best"]["lr"], rule["best"]["weight_decay"])
    )
    if rule["optimum"] is not None:
        cross = next(t for t in traces if t["name"] == "fitted optimum")
        assert cross["x"] == pytest.approx([rule["optimum"]["lr"]])
    legend = page.locator("#plot-map .legend").text_content() or ""
    assert "valley (90% band)" in legend and "best config" in legend
    stats = page.locator("#rule-stats").inner_text()
    assert "slope" in stats and "90% CI" in stats and "η·λ" in stats
    assert rule["reason"] in page.locator("#rule-reason").inner_text()
    # Its best config was re-run with fresh seeds: a seed mean with a 90% interval.
    best = check_best_panel(page, running, planted["valley"])
    assert best["best"]["ci"] is not None and "90% CI" in page.locator("#best-seeds").inner_text()
    assert page.errors == []
    shot = os.environ.get("LIONSWEEP_SCREENSHOT_DIR")
    page.screenshot(path=str(Path(shot or tmp_path) / "planted-valley.png"), full_page=True)


@pytest.mark.browser
def test_other_verdicts_draw_no_band_and_say_why(
    running: Any, planted: dict[str, int], page: Any, tmp_path: Path
) -> None:
    rule = open_rule(running, page, planted["lr_only"])
    assert rule["verdict"] == "lr_only", rule["reason"]
    traces = map_traces(page)
    assert [t["name"] for t in traces if t["fill"] != "none"] == []
    assert not any(t["name"].startswith("valley") for t in traces)
    assert any(t["name"] == "best config" for t in traces)
    assert "lr_only" in page.locator("#rule-verdict").inner_text()
    assert rule["reason"] in page.locator("#rule-reason").inner_text()
    note = page.locator("#rule-note").inner_text()
    # Said once: the verdict is the badge, the note under the map says only that no band is drawn.
    assert note.startswith("No valley drawn.") and rule["reason"] not in note
    assert "lr_only" not in note and page.locator("#plot-map .annotation").count() == 0
    assert page.errors == []
    shot = os.environ.get("LIONSWEEP_SCREENSHOT_DIR")
    page.screenshot(path=str(Path(shot or tmp_path) / "planted-lr-only.png"), full_page=True)
