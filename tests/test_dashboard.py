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

from service.cli import DEMO_SPEC
from service.dashboard import mount_dashboard, plotly_js_path, plotly_version
from service.dashboard.optuna_mount import patched_bundle
from service.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"


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
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        why = "Debian's Chromium is not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(why + " — mandatory because CI=true")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


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


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page whose console errors and uncaught exceptions are collected in ``.errors``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.on("pageerror", lambda e: tab.errors.append(f"uncaught: {e}"))
    yield tab
    context.close()


def sweep(server: Any, sweep_id: int) -> dict[str, Any]:
    """The sweep as the API reports it."""
    return httpx.get(f"{server.url}/api/sweeps/{sweep_id}", timeout=10).json()


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


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
        f"{running.url}/api/sweeps", json={**DEMO, "name": "added-later", "n_trials": 3}
    )
    assert added.status_code == 201
    added_id = added.json()["id"]
    added_row = page.locator(f'tr[data-sweep-id="{added_id}"]')
    added_row.wait_for(timeout=10_000)
    # Its counts climb to 3 / 3 through polling alone (the marker below proves no reload).
    page.wait_for_function(
        "id => { const em = document.querySelector(`tr[data-sweep-id='${id}'] .bar em`);"
        " return em && em.textContent === '3 / 3'; }",
        arg=added_id,
        timeout=90_000,
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


@pytest.mark.browser
def test_finished_demo_sweep_page_and_screenshot(running: Any, page: Any, tmp_path: Path) -> None:
    wait_until(lambda: sweep(running, running.sweep_id)["status"] == "complete", 150, "the sweep")
    page.goto(f"{running.url}/sweeps/{running.sweep_id}")
    for plot in PLOTS:
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)
    page.wait_for_function("document.querySelector('#eta').textContent.includes('complete')")
    # The lr × wd map: coloured trials, iso-lines of η·λ, and (with enough trials) the fit.
    names = page.evaluate(
        "Array.from(document.getElementById('plot-map').data).map(t => t.name || '')"
    )
    assert "complete" in names and "η·λ = const" in names
    fit = httpx.get(f"{running.url}/api/sweeps/{running.sweep_id}/scaling-rule")
    if fit.status_code == 200:
        assert any(n.startswith("fit: λ ∝ η^") for n in names)
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


@pytest.mark.browser
def test_baseline_sweep_shows_lion_and_adamw_side_by_side(running: Any, page: Any) -> None:
    spec = {**DEMO, "name": "with-baseline", "n_trials": 8, "baseline": "adamw"}
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
