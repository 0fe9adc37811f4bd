"""The sweep page's finish, in a real browser against a real server.

A scripted httpx client plays the worker over the REST protocol, so the trials (and the one a
worker hands back on shutdown) are known: charts show a placeholder until plotly.js has
loaded and "no data yet" without data; the best config's kwargs read rounded, with the exact
values a hover or a copy away; a parameter searched over choices (beta2) gets a categorical
axis, log axes one tick format; a handed-back trial reads "handed back", is counted apart and
the progress bar adds up; optuna-dashboard under /optuna shows no control it would refuse.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

PLOTS = ("plot-map", "plot-history", "plot-importances", "plot-parallel")
PLOTLY_URL = re.compile(r".*/static/vendor/plotly-[^/]+\.min\.js$")


def spec(task: str, name: str, n_trials: int) -> dict[str, Any]:
    """A random-sampler sweep whose beta2 is searched over two choices."""
    return {
        "name": name,
        "task": {"name": task, "params": {}},
        "space": {
            "lr": {"low": 1e-5, "high": 1e-2, "log": True},
            "weight_decay": {"low": 1e-3, "high": 3.0, "log": True},
            "beta1": 0.9,
            "beta2": {"choices": [0.98, 0.99]},
        },
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": n_trials,
        "max_retries": 1,
        "reevaluate": "off",
        "enqueue": [{"beta2": 0.98}, {"beta2": 0.99}],
    }


def objective(params: dict[str, Any]) -> float:
    """A smooth bowl in (ln lr, ln weight decay)."""
    x = math.log(params["lr"] / 1e-3)
    y = math.log(params["weight_decay"] / 0.1)
    return 0.01 + 0.02 * x * x + 0.01 * y * y + 0.001 * x * y


@pytest.fixture(scope="module")
def scripted(module_live_server: Any, make_sqlite_url: Any) -> SimpleNamespace:
    """A server with a finished sweep of 6 trials, the first handed back once on a worker's
    shutdown (re-queued, then run: 7 trials in all), and a sweep whose task no worker runs."""
    server = module_live_server(make_sqlite_url())
    task = f"s{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/api/sweeps", json=spec(task, "scripted", 6))
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        claim = {"worker_id": "w1", "tasks": [task]}
        handed_back = None
        while (got := client.post("/api/trials/claim", json=claim)).status_code == 200:
            trial = got.json()
            if handed_back is None:
                handed_back = trial["trial_number"]
                finish = {"state": "failed", "reason": "worker shutdown", "handed_back": True}
            else:
                finish = {"state": "complete", "value": objective(trial["params"])}
            r = client.post(f"/api/trials/{trial['trial_id']}/finish", json=finish)
            assert r.status_code == 200, r.text
        assert got.status_code == 204, got.text
        r = client.post("/api/sweeps", json=spec("nobody-runs-this", "empty", 3))
        assert r.status_code == 201, r.text
        empty_id = r.json()["id"]
        sweep = client.get(f"/api/sweeps/{sweep_id}").json()
        best = client.get(f"/api/sweeps/{sweep_id}/best").json()
    assert sweep["status"] == "complete", sweep
    assert sweep["counts"]["handed_back"] == 1 and sweep["counts"]["failed"] == 0, sweep
    return SimpleNamespace(
        url=server.url,
        sweep_id=sweep_id,
        sweep=sweep,
        best=best,
        handed_back=handed_back,
        empty_id=empty_id,
    )


def open_sweep(page: Any, url: str) -> None:
    """Open a sweep page and wait for every chart."""
    page.goto(url)
    for plot in PLOTS:
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)


@pytest.mark.browser
def test_charts_show_a_placeholder_until_plotly_has_loaded(scripted: Any, page: Any) -> None:
    held: list[Any] = []
    page.route(PLOTLY_URL, lambda route: held.append(route))
    page.goto(f"{scripted.url}/sweeps/{scripted.sweep_id}", wait_until="domcontentloaded")
    page.locator("#best-body").wait_for(timeout=15_000)
    # The numbers are there while plotly.js is still on its way; each chart says it is coming.
    assert held, "plotly.js was not requested"
    for plot in PLOTS:
        placeholder = page.locator(f"#{plot} > .placeholder")
        assert placeholder.is_visible(), plot
        assert placeholder.inner_text() == "loading charts…"
        assert page.locator(f"#{plot} .main-svg").count() == 0
    complete = scripted.sweep["counts"]["complete"]
    assert page.locator('[data-count="complete"]').inner_text() == str(complete)
    held[0].continue_()
    for plot in PLOTS:
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)
    assert page.locator(".plot > .placeholder >> visible=true").count() == 0
    assert page.errors == []


@pytest.mark.browser
def test_a_sweep_without_data_says_so_in_every_chart(scripted: Any, page: Any) -> None:
    open_sweep(page, f"{scripted.url}/sweeps/{scripted.empty_id}")
    for plot in PLOTS:
        page.locator(f"#{plot} .annotation").first.wait_for(timeout=15_000)
        text = page.locator(f"#{plot} .annotation").first.text_content() or ""
        assert text.startswith("no data yet"), (plot, text)
        assert page.locator(f"#{plot} .xtick").count() == 0, f"{plot} draws empty axes"
    assert "waiting for a worker" in page.locator("#sweep-meta").inner_text()
    assert page.errors == []


def significant_digits(x: float) -> int:
    """How many significant digits ``x`` is written with (its shortest repr)."""
    mantissa = repr(abs(x)).split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa.rstrip("0")) or 1


@pytest.mark.browser
def test_best_config_reads_rounded_with_the_exact_values_to_hand(scripted: Any, page: Any) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=scripted.url)
    open_sweep(page, f"{scripted.url}/sweeps/{scripted.sweep_id}")
    exact = scripted.best["best"]["optimizer_kwargs"]
    assert significant_digits(exact["lr"]) > 4, "the sampler's lr should need rounding"
    code = page.locator("#best-code")
    shown = json.loads(code.inner_text())
    assert shown["lr"] == pytest.approx(exact["lr"], rel=1e-3)
    assert shown["weight_decay"] == pytest.approx(exact["weight_decay"], rel=1e-3)
    assert shown["betas"] == pytest.approx(exact["betas"], rel=1e-3)
    for value in (shown["lr"], shown["weight_decay"], *shown["betas"]):
        assert significant_digits(value) <= 4, code.inner_text()
    # The exact values: the code's title, and what the button copies.
    assert json.loads(code.get_attribute("title") or "") == exact
    page.locator("#copy-best").click()
    page.locator("#copy-done").wait_for(timeout=5_000)
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == exact
    # The best config is marked in the table of trials too.
    number = scripted.best["best"]["trial_number"]
    best_rows = page.locator('#trials tbody tr[data-best="1"]')
    assert best_rows.count() == 1
    assert best_rows.get_attribute("data-trial") == str(number)
    assert "best" in best_rows.locator("td").first.inner_text()
    assert page.locator("#best-trial").inner_text() == f"#{number}"
    assert page.errors == []


def tick_texts(page: Any, plot: str, axis: str) -> list[str]:
    """The tick labels plotly drew on an axis of a chart."""
    return page.locator(f"#{plot} .{axis}tick text").all_text_contents()


@pytest.mark.browser
def test_choices_get_a_categorical_axis_and_log_axes_one_tick_format(
    scripted: Any, page: Any
) -> None:
    open_sweep(page, f"{scripted.url}/sweeps/{scripted.sweep_id}")
    dims = page.evaluate(
        "Array.from(document.getElementById('plot-parallel').data[0].dimensions).map(d => ({"
        " label: d.label, values: Array.from(d.values), ticktext: d.ticktext || null }))"
    )
    beta2 = next(d for d in dims if d["label"] == "beta2")
    assert beta2["ticktext"] == ["0.98", "0.99"]
    assert set(beta2["values"]) == {0, 1}
    lr = next(d for d in dims if d["label"].startswith("lr"))
    assert lr["label"] == "lr (log scale)" and lr["ticktext"], lr
    # The map's log axes: round ticks written one way on both axes, never with SI prefixes.
    labels = tick_texts(page, "plot-map", "x") + tick_texts(page, "plot-map", "y")
    assert len(labels) >= 6, labels
    exponent = [bool(re.fullmatch(r"\d+(\.\d+)?e-?\d+", t)) for t in labels]
    plain = [bool(re.fullmatch(r"\d+(\.\d+)?", t)) for t in labels]
    assert all(exponent) or all(plain), labels
    assert not any(re.search(r"[μmkMG]$", t) for t in labels), labels


@pytest.mark.browser
def test_iso_line_labels_lie_inside_the_map(scripted: Any, page: Any) -> None:
    open_sweep(page, f"{scripted.url}/sweeps/{scripted.sweep_id}")
    boxes = page.evaluate(
        "(() => { const gd = document.getElementById('plot-map');"
        " const area = gd.querySelector('.cartesianlayer .subplot.xy .bg, .bglayer .bg')"
        "   .getBoundingClientRect();"
        " const labels = Array.from(gd.querySelectorAll('.scatterlayer .textpoint text'))"
        "   .filter(t => t.textContent.startsWith('ηλ='));"
        " return { area: [area.left, area.top, area.right, area.bottom],"
        "   labels: labels.map(t => { const r = t.getBoundingClientRect();"
        "     return [t.textContent, r.left, r.top, r.right, r.bottom]; }) }; })()"
    )
    left, top, right, bottom = boxes["area"]
    assert len(boxes["labels"]) >= 2, boxes
    for text, x0, y0, x1, y1 in boxes["labels"]:
        assert left - 1 <= x0 and x1 <= right + 1 and top - 1 <= y0 and y1 <= bottom + 1, (
            text,
            (x0, y0, x1, y1),
            boxes["area"],
        )


@pytest.mark.browser
def test_a_handed_back_trial_reads_handed_back_and_the_bar_adds_up(
    scripted: Any, page: Any
) -> None:
    open_sweep(page, f"{scripted.url}/sweeps/{scripted.sweep_id}")
    row = page.locator(f'#trials tbody tr[data-trial="{scripted.handed_back}"]')
    assert row.get_attribute("data-handed-back") == "1"
    state = row.locator(".state")
    assert state.inner_text() == "handed back"
    assert "failed" not in (state.get_attribute("class") or "").split()
    assert page.locator("#trials .state.failed").count() == 0
    # Per state (imported trials, none here, are an "of which" count beside them).
    counts = {k: v for k, v in scripted.sweep["counts"].items() if k != "imported"}
    shown = {
        key: int(page.locator(f'[data-count="{key}"]').inner_text())
        for key in ("complete", "pruned", "failed", "running", "waiting", "handed_back")
    }
    assert shown == counts
    assert shown["handed_back"] == 1 and shown["failed"] == 0
    # The bar's parts: one segment per non-zero state, adding up to every trial it counts.
    segs = page.eval_on_selector_all(
        "#progress .bar .seg",
        "segs => segs.map(s => [s.dataset.part, Number(s.dataset.n),"
        " s.getBoundingClientRect().width])",
    )
    parts = ("complete", "pruned", "failed", "handed_back", "running")
    assert {p: n for p, n, _ in segs} == {p: counts[p] for p in parts if counts[p]}
    counted = sum(counts[p] for p in parts)
    width = page.locator("#progress .bar").bounding_box()["width"]
    share = sum(w for _, _, w in segs) / width
    assert share == pytest.approx(counted / max(counted, scripted.sweep["n_trials"]), abs=0.02)
    assert "handed back 1" in (page.locator("#progress .bar").get_attribute("title") or "")
    # On the map it is a handed-back point, not a failure.
    on_map = page.evaluate(
        "Object.fromEntries(Array.from(document.getElementById('plot-map').data)"
        ".filter(t => t.name).map(t => [t.name, (t.x || []).length]))"
    )
    assert on_map["handed back"] == 1 and on_map["failed"] == 0, on_map
    assert page.errors == []


@pytest.mark.browser
def test_optuna_views_show_no_control_they_would_refuse(scripted: Any, page: Any) -> None:
    page.goto(f"{scripted.url}/optuna/dashboard")
    studies = httpx.get(f"{scripted.url}/optuna/api/studies", timeout=10).json()
    study_id, name = next(
        (s["study_id"], s["study_name"])
        for s in studies["study_summaries"]
        if s["study_name"].endswith(f"-{scripted.sweep_id}")
    )
    page.get_by_text(name, exact=False).first.wait_for(timeout=20_000)
    assert page.get_by_role("button", name="Reload").is_visible()  # reading is still there
    for hidden in (
        page.get_by_role("button", name="Create", exact=True, include_hidden=True),
        page.locator('[aria-label="delete study"]'),
        page.locator('[aria-label="rename study"]'),
    ):
        assert hidden.count() >= 1, "optuna-dashboard changed: the control is gone"
        assert not any(hidden.nth(i).is_visible() for i in range(hidden.count()))
    with pytest.raises(Exception, match="not visible|Timeout"):
        page.locator('[aria-label="delete study"]').first.click(timeout=1_000)

    for view in ("note", "trials"):
        page.goto(f"{scripted.url}/optuna/dashboard/studies/{study_id}/{view}")
        edit = page.locator('button:has(svg[data-testid="EditIcon"])')
        edit.first.wait_for(state="attached", timeout=20_000)
        assert not any(edit.nth(i).is_visible() for i in range(edit.count())), view
    assert page.errors == []
