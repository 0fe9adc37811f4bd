"""The ladder page of a ladder over three axes (width, training steps, batch size), in a real
browser against a real server.

The scripted worker of :mod:`planted_axes` plants one named rule per axis; the ladder runs to
completion and is confirmed 2× beyond it on every axis. Debian's Chromium, driven by
Playwright, then reads what a user sees: one panel per axis (the rungs on that axis's line,
the joint fit's line through its own prediction with its band, every named rule), the design
table, the prediction form and the confirmation, with nothing wider than an 800 px window.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from planted_axes import RUNGS, axes_spec, claim, run_all
from test_dashboard_ladder import sig3

TARGET = {"width": 512, "steps": 800, "batch_size": 256}
SEEDS = 3
RULES = {
    "width": {"sqrt", "mup", "mup_sqrt"},
    "train_steps": {"tau_tokens", "tau_steps"},
    "batch_size": {"wd_linear", "fixed"},
}


@pytest.fixture(scope="module")
def axes(module_live_server: Any, make_sqlite_url: Any) -> SimpleNamespace:
    """One server holding a complete 3-axis ladder confirmed at ``TARGET``."""
    server = module_live_server(make_sqlite_url())
    with httpx.Client(base_url=server.url, timeout=60) as client:
        task = f"a{uuid.uuid4().hex[:8]}"
        assert claim(client, task) is None
        r = client.post("/api/ladders", json=axes_spec(task, "three axes"))
        assert r.status_code == 201, r.text
        lid = r.json()["id"]
        assert run_all(client, task) == 24 * len(RUNGS)
        r = client.post(f"/api/ladders/{lid}/confirm", json={**TARGET, "seeds": SEEDS})
        assert r.status_code == 201, r.text
        assert run_all(client, task) == 2 * SEEDS
        rule = client.get(f"/api/ladders/{lid}/rule", params=TARGET).json()
        ladder = client.get(f"/api/ladders/{lid}").json()
    assert rule["verdict"] == "rule_identified", rule["reason"]
    return SimpleNamespace(url=server.url, id=lid, rule=rule, ladder=ladder)


def api(axes: SimpleNamespace, **params: Any) -> dict[str, Any]:
    """The ladder's rule answer at ``params``."""
    r = httpx.get(f"{axes.url}/api/ladders/{axes.id}/rule", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def open_page(page: Any, axes: SimpleNamespace, query: str = "") -> None:
    """Open the ladder's page and wait for its verdict and every panel's chart; console
    warnings (a failed refresh) count as errors."""
    page.on("console", lambda m: m.type == "warning" and page.errors.append(m.text))
    page.goto(f"{axes.url}/ladders/{axes.id}{query}")
    page.locator('#verdict[data-verdict="rule_identified"]').wait_for(timeout=20_000)
    for i in range(3):
        page.locator(f"#plot-axis-{i} .main-svg").first.wait_for(timeout=20_000)


def traces(page: Any, plot: str) -> list[dict[str, Any]]:
    """Kind, row (η*, λ* or η*·λ*), rule and points of each trace of a panel's chart."""
    return page.evaluate(
        "id => Array.from(document.getElementById(id).data).map(t => ({"
        " name: t.name || '', kind: (t.meta && t.meta.kind) || '',"
        " row: (t.meta && t.meta.row) || '',"
        " rule: (t.meta && t.meta.rule) || '', best: Boolean(t.meta && t.meta.best),"
        " x: Array.from(t.x || []), y: Array.from(t.y || []) }))",
        plot,
    )


def slope(trace: dict[str, Any]) -> float:
    """The log-log slope of a drawn line."""
    x, y = trace["x"], trace["y"]
    return math.log(y[-1] / y[0]) / math.log(x[-1] / x[0])


@pytest.mark.slow
@pytest.mark.browser
def test_one_panel_per_axis_with_its_rungs_fit_band_and_rules(
    axes: SimpleNamespace, page: Any, tmp_path: Path
) -> None:
    open_page(page, axes)
    rule, fits = axes.rule, {f["sweep_id"]: f for f in axes.rule["rungs"]}
    panels = page.locator(".axis-panel")
    assert panels.count() == len(rule["axes"]) == 3
    assert page.locator("#width-plots").is_hidden() and page.locator("#rules-card").is_hidden()
    corner = {"width": 64, "train_steps": 100, "batch_size": 32}
    for i, axis in enumerate(rule["axes"]):
        name = axis["param"]
        panel = page.locator(f'.axis-panel[data-axis="{name}"]')
        assert panel.locator("h2").inner_text().startswith(f"Along {name}")
        stats = panel.locator("dl.stats").inner_text()
        for key in ("lr_exponent", "wd_exponent", "product_exponent"):
            assert f"{fmt3(axis[key])} (90% CI " in stats, (key, stats)
        drawn = traces(page, f"plot-axis-{i}")
        kinds = {(t["kind"], t["row"]) for t in drawn}
        # only the rungs on this axis's line (the others at the shared corner), with their
        # own optima
        line = sorted(
            (r for r in RUNGS if all(r[o] == corner[o] for o in corner if o != name)),
            key=lambda r: r[name],
        )
        on_line = [
            s
            for r in line
            for s, f in fits.items()
            if f["point"] == {k: float(v) for k, v in r.items()}
        ]
        rungs = [t for t in drawn if t["kind"] == "rung"]
        assert len(rungs) == 3, kinds  # one per row: η*, λ*, η*·λ*
        assert sorted(rungs[0]["x"]) == [r[name] for r in line]
        assert sorted(rungs[0]["y"]) == pytest.approx(sorted(fits[s]["lr"] for s in on_line))
        assert sorted(rungs[1]["y"]) == pytest.approx(
            sorted(fits[s]["weight_decay"] for s in on_line)
        )
        # the joint fit's line: its slope the axis's exponent, through its own prediction at the
        # line's centre (the geometric mean of its values, the other axes at the corner)
        fit_lines = [t for t in drawn if t["kind"] == "fit"]
        assert len(fit_lines) == 3
        for t, key in zip(
            fit_lines, ("lr_exponent", "wd_exponent", "product_exponent"), strict=True
        ):
            assert slope(t) == pytest.approx(axis[key], rel=1e-6, abs=1e-9)
        centre = math.exp(sum(math.log(r[name]) for r in line) / 3)
        role_field = {"width": "width", "steps": "steps", "batch": "batch_size"}
        at = {role_field[a["role"]]: corner[a["param"]] for a in rule["axes"]}
        at[role_field[axis["role"]]] = centre
        anchor = api(axes, **at)["prediction"]
        x0, y0 = fit_lines[0]["x"][0], fit_lines[0]["y"][0]
        assert y0 * (centre / x0) ** axis["lr_exponent"] == pytest.approx(anchor["lr"], rel=1e-6)
        bands = [t for t in drawn if t["kind"] == "band"]
        assert len(bands) == 3
        # every named rule of the axis's role drawn dashed, and listed with its p-value
        drawn_rules = {t["rule"] for t in drawn if t["kind"] == "rule"}
        assert drawn_rules == RULES[name] == {r["name"] for r in axis["rules"]}
        legend = " ".join(page.locator(f"#plot-axis-{i} .legend .legendtext").all_text_contents())
        for r in axis["rules"]:
            assert r["name"] in legend
        rows = panel.locator("table.axis-rules tbody tr")
        assert rows.count() == len(axis["rules"])
        best = panel.locator("table.axis-rules tbody tr.best")
        assert best.get_attribute("data-rule") == axis["best_rule"]
        for r in axis["rules"]:
            row = panel.locator(f'table.axis-rules tr[data-rule="{r["name"]}"]').inner_text()
            assert ("yes" if r["consistent"] else "no") in row
            assert ("≈ 0" if r["p_value"] == 0 else fmt3(r["p_value"])) in row, (r, row)
        assert axis["rule_note"] in panel.inner_text()
    # the steps rules fix only η·λ: drawn on that row alone
    steps = traces(page, "plot-axis-1")
    assert {t["row"] for t in steps if t["kind"] == "rule"} == {"product"}
    assert page.errors == []
    shot = Path(os.environ.get("LIONSWEEP_AXES_SCREENSHOT") or tmp_path / "axes.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000


@pytest.mark.browser
def test_design_table_prediction_form_and_confirmation(axes: SimpleNamespace, page: Any) -> None:
    open_page(page, axes)
    rule = axes.rule
    # the design: every rung's point, status, trials and own optimum, and the panels it is on
    rows = page.locator("#rungs tbody tr")
    assert rows.count() == len(RUNGS)
    for fit in rule["rungs"]:
        row = page.locator(f'#rungs tbody tr[data-sweep-id="{fit["sweep_id"]}"]')
        cells = row.locator("td").all_inner_texts()
        assert cells[:3] == [
            str(int(fit["point"][a])) for a in ("width", "train_steps", "batch_size")
        ]
        text = row.inner_text()
        assert "complete" in text and "24 / 24 trials" in text
        assert fmt3(fit["weight_decay"]) in text
        assert fmt3(fit["lr"]) in text, (fit["lr"], text)
    corner = page.locator("#rungs tbody tr[data-sweep-id]").filter(
        has_text="width, train_steps, batch_size"
    )
    assert corner.count() == 1

    # the prediction: at the confirmation's point at first, every axis 2× beyond the rungs
    pred = rule["prediction"]
    shown = page.locator("#prediction").inner_text()
    assert f"{fmt3(pred['lr'])} (90% CI" in shown and fmt3(pred["weight_decay"]) in shown
    reach = page.locator("#reach tbody tr")
    assert reach.count() == 3
    for r in reach.all():
        assert r.get_attribute("data-extrapolated") == "1"
        assert "extrapolated ×2.00" in r.inner_text()
    assert "extrapolated along" not in page.locator("#content").inner_text()  # said once
    for field, value in {"width": 100, "steps": 150, "batch_size": 50}.items():
        page.locator(f'#predict-form input[name="{field}"]').fill(str(value))
    page.locator("#predict-form button").click()
    inner = api(axes, width=100, steps=150, batch_size=50)["prediction"]
    page.locator("#prediction", has_text=fmt3(inner["lr"])).wait_for(timeout=10_000)
    assert fmt3(inner["weight_decay"]) in page.locator("#prediction").inner_text()
    assert [r.get_attribute("data-extrapolated") for r in reach.all()] == ["0", "0", "0"]
    assert "inside the rungs' 100–400" in page.locator("#reach").inner_text()
    assert "width=100&steps=150&batch_size=50" in page.url
    # a point on the batch axis's line (the others at the corner): that panel marks it
    for field, value in {"width": 64, "steps": 100, "batch_size": 256}.items():
        page.locator(f'#predict-form input[name="{field}"]').fill(str(value))
    page.locator("#predict-form button").click()
    on_line = api(axes, width=64, steps=100, batch_size=256)["prediction"]
    page.locator("#prediction", has_text=fmt3(on_line["lr"])).wait_for(timeout=10_000)
    page.wait_for_function(
        "() => document.getElementById('plot-axis-2').data.some(t => t.meta?.kind === 'prediction')"
    )
    marks = [t for t in traces(page, "plot-axis-2") if t["kind"] == "prediction"]
    assert [(t["row"], t["x"]) for t in marks][:2] == [("lr", [256]), ("weight_decay", [256])]
    assert marks[0]["y"] == [pytest.approx(on_line["lr"])]
    for i in (0, 1):
        assert not [t for t in traces(page, f"plot-axis-{i}") if t["kind"] == "prediction"]
    assert page.errors == []
    page.locator('#predict-form input[name="steps"]').fill("1e12")
    page.locator("#predict-form button").click()
    page.locator("#predict-error", has_text="within a factor").wait_for(timeout=10_000)
    # the browser logs the refused request itself; nothing else went wrong
    assert len(page.errors) == 1 and "status of 422" in page.errors[0], page.errors
    page.errors.clear()

    # the confirmation: its point, its arms with means and intervals, the verdict
    [c] = rule["confirmations"]
    row = page.locator(f'#confirmations tbody tr[data-sweep-id="{c["sweep_id"]}"]')
    text = row.inner_text()
    assert "width = 512, train_steps = 800, batch_size = 256" in text
    assert row.get_attribute("data-verdict") == c["verdict"]
    for arm in ("transferred", "untransferred"):
        assert fmt3(c[arm]["mean"]) in text and f"{SEEDS} seeds" in text
    assert fmt3(c["difference"]) in text
    note = page.locator(f'#confirmations tr[data-note-for="{c["sweep_id"]}"]').inner_text()
    assert note == c["note"]
    assert page.errors == []


@pytest.mark.browser
def test_nothing_wider_than_an_800_px_window_and_no_note_twice(
    axes: SimpleNamespace, page: Any
) -> None:
    page.set_viewport_size({"width": 800, "height": 900})
    open_page(page, axes)
    wide = page.evaluate(
        "() => [document.documentElement, ...document.querySelectorAll('#content .card, "
        ".table-scroll')].filter(n => n.offsetParent !== null || n === document.documentElement)"
        ".filter(n => n.scrollWidth > n.clientWidth + 1).map(n => n.id || n.className)"
    )
    assert wide == [], wide
    body = page.locator("#content").inner_text()
    for axis in axes.rule["axes"]:
        assert body.count(axis["rule_note"]) == 1, axis["rule_note"]
    assert body.count(axes.rule["confirmations"][0]["note"]) == 1
    assert page.errors == []


def fmt3(x: float) -> str:
    """``x`` as the page writes it: 3 significant digits (exponent form below 1e-3), a true
    minus sign in front."""
    if x != 0 and abs(x) < 1e-3:
        mantissa, exponent = f"{x:.2e}".split("e")
        return (
            f"{mantissa}e{int(exponent)}".replace("-", "−", 1)
            if x < 0
            else f"{mantissa}e{int(exponent)}"
        )
    return sig3(x)


@pytest.mark.browser
def test_a_confirmations_further_arms_show_when_the_server_sends_them(
    axes: SimpleNamespace, page: Any
) -> None:
    """``confirmations[].arms`` (arms beyond the two): a column of their own, and a trace."""
    extra = {
        "lr": 3.1e-4,
        "weight_decay": 0.0456,
        "n": 2,
        "mean": 0.777,
        "ci": [0.701, 0.853],
        "values": [0.75, 0.8],
        "source": "the mup rule at this point",
    }

    def with_arms(route: Any) -> None:
        answer = route.fetch().json()
        for c in answer["confirmations"]:
            c["arms"] = [extra]
        route.fulfill(json=answer)

    page.route("**/api/ladders/*/rule*", with_arms)
    open_page(page, axes)
    page.locator("#confirmations tbody tr[data-verdict]").wait_for(timeout=15_000)
    heads = page.locator("#confirm-head th").all_inner_texts()
    assert [h.lower() for h in heads] == [
        "point",
        "sweep",
        "status",
        "transferred arm",
        "untransferred arm",
        "other arms",
        "difference (90% ci)",
        "verdict",
    ]
    text = page.locator("#confirmations tbody tr[data-verdict]").inner_text()
    assert "arm 1: 0.777 (90% CI 0.701–0.853), 2 seeds" in " ".join(text.split())
    assert "the mup rule at this point" in text
    drawn = {t["name"]: t for t in traces(page, "plot-confirm") if t["name"]}
    assert drawn["other arms"]["x"] == [pytest.approx(0.777)]
    assert page.errors == []


def test_a_confirmations_own_sweep_at_its_point_shows_its_verdict_and_best(
    axes: SimpleNamespace, page: Any
) -> None:
    """``confirmations[].target`` (confirm with sweep_trials): a line under the confirmation
    linking the sweep, with its verdict and note, and its best config drawn as a trace."""
    best = {
        "lr": 2.2e-4,
        "weight_decay": 0.031,
        "n": 2,
        "mean": 0.612,
        "ci": [0.55, 0.674],
        "values": [0.6, 0.624],
        "source": "the best of sweep 99's 16 trials, valued on fresh seeds",
    }
    target = {
        "sweep_id": 99,
        "status": "complete",
        "n_trials": 16,
        "finished": 25,
        "best": best,
        "lr": None,
        "lr_ci": None,
        "weight_decay": None,
        "weight_decay_ci": None,
        "prediction_inside": None,
        "difference": 0.01,
        "difference_ci": [-0.05, 0.07],
        "noise_sd": 0.04,
        "verdict": "confirmed",
        "note": "the prediction is 0.01 worse than the point's own sweep's best: confirmed",
    }

    def with_target(route: Any) -> None:
        answer = route.fetch().json()
        for c in answer["confirmations"]:
            c["target"] = target
        route.fulfill(json=answer)

    page.route("**/api/ladders/*/rule*", with_target)
    open_page(page, axes)
    [c] = axes.rule["confirmations"]
    line = page.locator(f'#confirmations tr[data-note-for="{c["sweep_id"]}"] .target-note')
    line.wait_for(timeout=15_000)
    assert line.get_attribute("data-target-verdict") == "confirmed"
    text = " ".join(line.inner_text().split())
    assert text.startswith("The point's own sweep #99 (25 runs finished, complete): confirmed")
    assert target["note"] in text
    assert line.locator("a").get_attribute("href") == "/sweeps/99"
    drawn = {t["name"]: t for t in traces(page, "plot-confirm") if t["name"]}
    assert drawn["own sweep's best"]["x"] == [pytest.approx(0.612)]
    assert page.errors == []
