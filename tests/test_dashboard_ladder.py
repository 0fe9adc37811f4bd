"""The ladder page of the dashboard, in a real browser against a real server.

A scripted httpx client plays the worker over the REST protocol (as in
tests/test_service_ladders.py): its objective has a planted width rule (η* ∝ w^-½, λ* ∝ w^½).
One ladder runs to completion and is confirmed at a wider width; a second has one rung whose
objective ignores the weight decay (its λ* is not used by the fit); a third has no trial yet.
Debian's Chromium, driven by Playwright, then reads the pages: the two log-log charts, the
verdict, the rules, the confirmation, the index's ladder list and the rung's link back.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from planted_ladder import claim, ladder_spec, run_all

from service.dashboard import mount_dashboard, plotly_version
from service.settings import Settings

WIDTHS = [64, 128, 256]
CONFIRM_WIDTH = 1024
# Seeds per arm of the confirmation: the planted gap between the arms (about 0.12) against seed
# noise 0.05 is found whichever seeds the confirmation draws (it draws fresh ones each time).
SEEDS = 8


def submit(client: httpx.Client, task: str, name: str) -> dict[str, Any]:
    """Announce ``task`` and submit a ladder of it; the ladder as created."""
    assert claim(client, task) is None
    r = client.post("/api/ladders", json=ladder_spec(task, name))
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def ladders(module_live_server: Any, make_sqlite_url: Any) -> SimpleNamespace:
    """One server holding three ladders: ``done`` (complete and confirmed at 1024), ``mixed``
    (complete; its widest rung's λ* is not identified) and ``empty`` (no trial yet)."""
    server = module_live_server(make_sqlite_url())
    with httpx.Client(base_url=server.url, timeout=60) as client:
        task = f"l{uuid.uuid4().hex[:8]}"
        done = submit(client, task, "planted ladder")
        assert run_all(client, task) == 3 * 36
        r = client.post(
            f"/api/ladders/{done['id']}/confirm", json={"width": CONFIRM_WIDTH, "seeds": SEEDS}
        )
        assert r.status_code == 201, r.text
        assert run_all(client, task) == 2 * SEEDS

        mixed_task = f"m{uuid.uuid4().hex[:8]}"
        mixed = submit(client, mixed_task, "mixed ladder")
        assert run_all(client, mixed_task, lr_only_at=256) == 3 * 36

        empty = submit(client, f"e{uuid.uuid4().hex[:8]}", "empty ladder")
        rule = client.get(f"/api/ladders/{done['id']}/rule", params={"width": CONFIRM_WIDTH}).json()
        mixed_rule = client.get(f"/api/ladders/{mixed['id']}/rule").json()
        done = client.get(f"/api/ladders/{done['id']}").json()
    assert done["status"] == "complete" and rule["best_rule"] == "sqrt", rule["reason"]
    assert rule["confirmations"][0]["status"] == "complete"
    assert [g["used"] for g in mixed_rule["rungs"]][-1] == ["lr", "value"], mixed_rule["rungs"]
    return SimpleNamespace(
        url=server.url,
        done=done,
        rule=rule,
        mixed=mixed,
        mixed_rule=mixed_rule,
        empty=empty,
    )


def sig3(x: float) -> str:
    """``x`` as the page writes it (3 significant digits, trailing zeros kept, a true minus);
    for values of magnitude in [0.001, 100) only, where that is plain notation."""
    assert 1e-3 <= abs(x) < 100, x
    return f"{x:#.3g}".rstrip(".").replace("-", "−")


def traces(page: Any, plot: str) -> list[dict[str, Any]]:
    """Name, kind, points, marker symbol, line width and error bars of each trace of a plot."""
    return page.evaluate(
        "id => Array.from(document.getElementById(id).data).map(t => ({"
        " name: t.name || '', kind: (t.meta && t.meta.kind) || '',"
        " rule: (t.meta && t.meta.rule) || '',"
        " best: Boolean(t.meta && t.meta.best), x: Array.from(t.x || []), y: Array.from(t.y || []),"
        " symbol: (t.marker && t.marker.symbol) || '', width: (t.line && t.line.width) || 0,"
        " plus: t.error_y ? Array.from(t.error_y.array) : null,"
        " minus: t.error_y ? Array.from(t.error_y.arrayminus) : null }))",
        plot,
    )


def tick_labels(page: Any, plot: str, axis: str) -> list[str]:
    """The tick labels plotly drew on one axis of a plot."""
    return page.locator(f"#{plot} .{axis}tick text").all_text_contents()


def open_ladder(page: Any, url: str, ladder_id: int, verdict: str) -> None:
    """Open a ladder's page and wait for its verdict and both charts."""
    page.goto(f"{url}/ladders/{ladder_id}")
    page.locator(f'#verdict[data-verdict="{verdict}"]').wait_for(timeout=15_000)
    for plot in ("plot-lr", "plot-wd"):
        page.locator(f"#{plot} .main-svg").first.wait_for(timeout=15_000)


def hover_text(page: Any, plot: str, kind: str) -> str:
    """Hover the first point of the trace of ``kind`` and return the label plotly draws."""
    page.evaluate(
        "([id, kind]) => { const gd = document.getElementById(id);"
        " const n = gd.data.findIndex(t => t.meta && t.meta.kind === kind);"
        " window.Plotly.Fx.hover(gd, [{curveNumber: n, pointNumber: 0}]); }",
        [plot, kind],
    )
    label = page.locator(f"#{plot} .hoverlayer .hovertext")
    label.wait_for(timeout=5_000)
    return label.text_content() or ""


# -- the page shell, without a browser --------------------------------------------------------


def test_ladder_page_is_an_html_shell_loading_local_scripts(sqlite_url: str) -> None:
    """The ladder page is a static shell loading plotly.js and ladder.js from this server."""
    app = FastAPI()
    mount_dashboard(app, Settings(database_url=sqlite_url))
    client = TestClient(app)
    page = client.get("/ladders/3")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'src="/static/vendor/plotly-{plotly_version()}.min.js"' in page.text
    assert 'src="/static/ladder.js"' in page.text
    assert "cdn" not in page.text.lower()
    assert client.get("/static/ladder.js").status_code == 200
    assert client.get("/ladders/not-a-number").status_code == 422


# -- a real browser --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
def test_finished_ladder_draws_rungs_rules_fit_prediction_and_confirmation(
    ladders: SimpleNamespace, page: Any, tmp_path: Path
) -> None:
    """A finished, confirmed ladder: rungs, verdict, both charts, rules, prediction, outcome."""
    rule, lid = ladders.rule, ladders.done["id"]
    open_ladder(page, ladders.url, lid, rule["verdict"])
    page.locator("#confirmations tbody tr[data-verdict]").wait_for(timeout=15_000)
    assert page.locator("#ladder-name").inner_text() == "planted ladder"
    assert page.locator("#ladder-status").inner_text() == "complete"

    # The rungs, each linking to its sweep, with its optimum.
    rows = page.locator("#rungs tbody tr")
    assert rows.count() == 3
    for row, fit in zip(rows.all(), rule["rungs"], strict=True):
        link = row.locator(f'a[href="/sweeps/{fit["sweep_id"]}"]')
        assert link.count() == 1
        assert sig3(fit["weight_decay"]) in row.inner_text()

    # The verdict, its reason and the exponents with their intervals.
    assert rule["verdict"] in page.locator("#verdict").inner_text()
    assert page.locator("#reason").inner_text() == rule["reason"]
    stats = page.locator("#exponents").inner_text()
    assert f"{sig3(rule['lr_exponent'])} (90% CI " in stats
    assert f"{sig3(rule['wd_exponent'])} (90% CI " in stats
    assert "sqrt: η ∝ w^−½" in stats

    # Each chart: one marker per rung with its 90% interval, every rule's line (the best one
    # emphasised), the free fit and the prediction at the confirmation's width.
    for plot, key, ci in (
        ("plot-lr", "lr", "lr_ci"),
        ("plot-wd", "weight_decay", "weight_decay_ci"),
    ):
        drawn = traces(page, plot)
        rungs = [t for t in drawn if t["kind"] in ("rung", "unused")]
        assert [t["kind"] for t in rungs] == ["rung"]
        assert rungs[0]["x"] == WIDTHS
        assert rungs[0]["y"] == pytest.approx([g[key] for g in rule["rungs"]])
        his = [y + p for y, p in zip(rungs[0]["y"], rungs[0]["plus"], strict=True)]
        assert his == pytest.approx([g[ci][1] for g in rule["rungs"]])
        lines = {t["rule"]: t for t in drawn if t["kind"] == "rule"}
        assert set(lines) == {"sqrt", "mup", "mup_sqrt"}
        assert lines["sqrt"]["best"] and "best" in lines["sqrt"]["name"]
        assert lines["sqrt"]["width"] > max(lines["mup"]["width"], lines["mup_sqrt"]["width"])
        assert [t["kind"] for t in drawn].count("fit") == 1
        [pred] = [t for t in drawn if t["kind"] == "prediction"]
        assert pred["x"] == [CONFIRM_WIDTH]
        assert pred["y"] == pytest.approx([rule["prediction"][key]])
        assert [t["x"] for t in drawn if t["kind"] == "untransferred"] == [[CONFIRM_WIDTH]]
        # Log axes, ticks in one format: the widths on x, round values on y.
        assert tick_labels(page, plot, "x") == ["64", "128", "256", "1024"]
        ys = tick_labels(page, plot, "y")
        assert len(ys) >= 3, ys
        plain = [bool(re.fullmatch(r"\d+(\.\d+)?", t)) for t in ys]
        power = [bool(re.fullmatch(r"\d(\.\d+)?e-?\d+", t)) for t in ys]
        assert all(plain) or all(power), ys
    assert "prediction" in hover_text(page, "plot-lr", "prediction")

    # The rules table: every candidate, the best marked, and the free fit's exponents.
    ranked = [r["name"] for r in sorted(rule["rules"], key=lambda r: r["chi2"])]
    shown = page.eval_on_selector_all(
        "#rules tbody tr", "rows => rows.map(r => [r.dataset.rule, r.className])"
    )
    assert [name for name, _ in shown] == [*ranked, "free"]
    assert dict(shown)[rule["best_rule"]] == "best"
    free = page.locator('#rules tbody tr[data-rule="free"]').inner_text()
    assert sig3(rule["lr_exponent"]) in free and sig3(rule["wd_exponent"]) in free
    sqrt = page.locator('#rules tbody tr[data-rule="sqrt"]').inner_text()
    assert "−0.5" in sqrt and "yes" in sqrt

    # The prediction at the confirmation's width, and the confirmation's outcome.
    assert f"width = {CONFIRM_WIDTH}" in page.locator("#prediction-width").inner_text()
    assert rule["prediction"]["note"] in page.locator("#prediction-note").inner_text()
    [c] = rule["confirmations"]
    row = page.locator(f'#confirmations tbody tr[data-sweep-id="{c["sweep_id"]}"]')
    assert row.get_attribute("data-verdict") == c["verdict"] == "transfer_better"
    text = row.inner_text()
    assert sig3(c["transferred"]["mean"]) in text and sig3(c["untransferred"]["mean"]) in text
    assert sig3(c["difference"]) in text and "transfer better" in text
    assert sig3(c["predicted"]["value_ci"][1]) in text
    assert f"{SEEDS} seeds" in text and c["untransferred"]["source"] in text
    note = page.locator(f'#confirmations tr[data-note-for="{c["sweep_id"]}"]').inner_text()
    assert note == c["note"]
    confirm = {t["name"]: t for t in traces(page, "plot-confirm") if t["name"]}
    assert confirm["transferred"]["x"] == pytest.approx([c["transferred"]["mean"]])
    assert len(confirm["seeds"]["x"]) == 2 * SEEDS
    assert page.errors == []
    shot = Path(os.environ.get("LIONSWEEP_LADDER_SCREENSHOT") or tmp_path / "ladder.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.Plotly.Fx.unhover(document.getElementById('plot-lr'))")
    page.locator("#plot-lr .hoverlayer .hovertext").wait_for(state="detached", timeout=5_000)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000


@pytest.mark.browser
def test_a_width_in_the_address_moves_the_prediction(ladders: SimpleNamespace, page: Any) -> None:
    """``?width=`` on the page's address predicts there (and the axis shows that width)."""
    lid = ladders.done["id"]
    page.goto(f"{ladders.url}/ladders/{lid}?width=4096")
    page.locator("#prediction-width", has_text="4096").wait_for(timeout=15_000)
    page.locator("#plot-lr .main-svg").first.wait_for(timeout=15_000)
    pred = next(t for t in traces(page, "plot-lr") if t["kind"] == "prediction")
    assert sorted(pred["x"]) == [CONFIRM_WIDTH, 4096]
    assert "4096" in tick_labels(page, "plot-lr", "x")
    assert "extrapolated ×16" in page.locator("#prediction-note").inner_text()
    assert page.errors == []


@pytest.mark.browser
def test_a_rung_estimate_the_fit_did_not_use_is_drawn_apart_and_says_why(
    ladders: SimpleNamespace, page: Any
) -> None:
    """A rung whose λ* the fit left out is an open grey marker whose hover says why."""
    rule = ladders.mixed_rule
    open_ladder(page, ladders.url, ladders.mixed["id"], rule["verdict"])
    # η*: every rung used. λ*: the lr_only rung is drawn open, and no line is fitted.
    lr = traces(page, "plot-lr")
    assert [t["x"] for t in lr if t["kind"] == "rung"] == [WIDTHS]
    assert not [t for t in lr if t["kind"] == "unused"]
    wd = traces(page, "plot-wd")
    [unused] = [t for t in wd if t["kind"] == "unused"]
    [used] = [t for t in wd if t["kind"] == "rung"]
    assert unused["x"] == [256] and used["x"] == [64, 128]
    assert unused["symbol"] == "circle-open" and used["symbol"] == "circle"
    assert not [t for t in wd if t["kind"] in ("rule", "fit")]
    assert "no line fitted" in page.locator("#plot-wd .annotation").text_content()
    label = hover_text(page, "plot-wd", "unused")
    assert "not used in the fit" in label and "lr_only" in label
    assert "not fitted" in page.locator("#exponents").inner_text()
    row = page.locator('#rungs tbody tr[data-width="256"]')
    assert row.locator("td").last.inner_text() == "η*"
    assert page.errors == []


@pytest.mark.browser
def test_a_ladder_without_trials_shows_placeholders_not_empty_axes(
    ladders: SimpleNamespace, page: Any
) -> None:
    """No data: the charts say "loading…", then "no data yet", never empty axes."""
    # While the rule is on its way the charts say "loading…"; then "no data yet".
    held: list[Any] = []
    released = False

    def hold(route: Any) -> None:
        """Keep the rule's answer back until the placeholders have been seen."""
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/ladders/*/rule*", hold)
    page.goto(f"{ladders.url}/ladders/{ladders.empty['id']}")
    page.locator("#ladder-name", has_text="empty ladder").wait_for(timeout=15_000)
    for plot in ("plot-lr", "plot-wd"):
        page.locator(f"#{plot} .annotation-text", has_text="loading…").wait_for(timeout=10_000)
        assert page.locator(f"#{plot} .xtick").count() == 0
    assert held, "the page asked for the rule"
    released = True
    for route in held:
        route.continue_()
    for plot in ("plot-lr", "plot-wd"):
        message = page.locator(f"#{plot} .annotation-text", has_text="no data yet")
        message.wait_for(timeout=15_000)
        assert message.text_content() == "no data yet: rungs still running"
        assert page.locator(f"#{plot} .xtick").count() == 0
    assert page.locator("#verdict").get_attribute("data-verdict") == "insufficient"
    assert page.locator("#rules").is_hidden()
    assert "No rule scored yet" in page.locator("#rules-empty").inner_text()
    assert "None yet" in page.locator("#confirm-empty").inner_text()
    assert page.locator("#rungs tbody tr").count() == 3
    assert page.errors == []


@pytest.mark.browser
def test_index_lists_ladders_and_links_to_them(ladders: SimpleNamespace, page: Any) -> None:
    """The index lists each ladder with its status, rungs and progress, linking to its page."""
    page.goto(ladders.url + "/")
    row = page.locator(f'tr[data-ladder-id="{ladders.done["id"]}"]')
    row.wait_for(timeout=15_000)
    text = row.inner_text()
    assert "planted ladder" in text and "complete" in text
    assert "3/3 complete · 1 confirmation" in text and "108 / 108 trials" in text
    empty = page.locator(f'tr[data-ladder-id="{ladders.empty["id"]}"]').inner_text()
    assert "0/3 complete" in empty and "running" in empty
    assert page.locator("#ladders tbody tr").count() == 3
    # A rung in the sweeps list is tagged with its ladder.
    rung = ladders.done["rungs"][0]["sweep_id"]
    tag = page.locator(f'tr[data-sweep-id="{rung}"] a.tag.ladder')
    assert tag.get_attribute("href") == f"/ladders/{ladders.done['id']}"
    row.locator(f'a[href="/ladders/{ladders.done["id"]}"]').click()
    page.locator("#ladder-name", has_text="planted ladder").wait_for(timeout=15_000)
    assert page.errors == []


@pytest.mark.browser
def test_rung_and_confirmation_sweep_pages_link_back_to_their_ladder(
    ladders: SimpleNamespace, page: Any
) -> None:
    """A rung's and a confirmation's sweep page link back to the ladder."""
    lid = ladders.done["id"]
    rung = ladders.done["rungs"][1]["sweep_id"]
    page.goto(f"{ladders.url}/sweeps/{rung}")
    link = page.locator("#ladder-link")
    link.wait_for(state="visible", timeout=15_000)
    assert link.get_attribute("href") == f"/ladders/{lid}"
    assert "a rung" in link.inner_text()
    confirm = ladders.done["confirmations"][0]["sweep_id"]
    page.goto(f"{ladders.url}/sweeps/{confirm}")
    page.locator("#ladder-link", has_text="a confirmation").wait_for(timeout=15_000)
    page.locator("#ladder-link").click()
    page.locator(f'#verdict[data-verdict="{ladders.rule["verdict"]}"]').wait_for(timeout=15_000)
    assert page.url.endswith(f"/ladders/{lid}")
    assert page.errors == []


@pytest.mark.browser
def test_unknown_ladder_and_missing_read_token_say_so(
    live_server: Any, sqlite_url: str, browser: Any
) -> None:
    """Without a read token the page asks for one; with it, an unknown ladder is named."""
    token = "ladder-read-token"
    server = live_server(
        sqlite_url,
        env={"LIONSWEEP_REQUIRE_READ_TOKEN": "true", "LIONSWEEP_BOOTSTRAP_TOKEN": token},
    )
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(f"{server.url}/ladders/5")
    tab.locator("#notice", has_text="read token").wait_for(timeout=15_000)
    assert not tab.locator("#content").is_visible()
    tab.goto(f"{server.url}/ladders/6#token={token}")
    tab.locator("#notice", has_text="Ladder 6 does not exist").wait_for(timeout=15_000)
    assert "token=" not in tab.url
    context.close()
    assert token not in server.log(), "the read token reached the server's log"


@pytest.mark.browser
def test_nothing_wider_than_an_800_px_window(ladders: SimpleNamespace, page: Any) -> None:
    """At 800 px the one-axis ladder page, its cards and tables fit: no sideways scrolling."""
    page.set_viewport_size({"width": 800, "height": 900})
    open_ladder(page, ladders.url, ladders.done["id"], ladders.rule["verdict"])
    wide = page.evaluate(
        "() => [document.documentElement, ...document.querySelectorAll('#content .card, "
        ".table-scroll')].filter(n => n.offsetParent !== null || n === document.documentElement)"
        ".filter(n => n.scrollWidth > n.clientWidth + 1)"
        ".map(n => `${n.id || n.className} ${n.scrollWidth}>${n.clientWidth}`)"
    )
    assert wide == [], wide
    assert page.errors == []
