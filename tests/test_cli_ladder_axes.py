"""``lionsweep ladder …`` on a ladder over three axes (width, training steps, batch size),
against a real server, run as the real ``lionsweep`` executable at 80 columns.

The scripted worker of :mod:`planted_axes` plants one named rule per axis (width ``sqrt``,
steps ``tau_tokens``, batch ``wd_linear``). What a user must see: the design with each rung's
point, per axis its exponents with intervals, the rules tested with their p-values and which
is best, the notes; a prediction at ``--width --steps --batch-size`` with each axis's reach;
``confirm`` with the same flags; nothing cut at 80 columns.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import httpx
import pytest
import yaml
from conftest import LiveServer
from planted_axes import RUNGS, axes_spec, claim, run_all
from test_cli_ladder import flat, lionsweep, ok, refused

from lionsweep.cli import estimate_text, fmt, interval_text
from lionsweep.cli.render import print_confirmation
from worker.cli import console

TASK = "cli-axes"
POINT = {"width": 512, "train_steps": 800, "batch_size": 256}
FLAGS = ["--width", "512", "--steps", "800", "--batch-size", "256"]


def lines_of(out: str) -> list[str]:
    """The lines of an output, trailing blanks dropped."""
    return [line.rstrip() for line in out.splitlines()]


def assert_fits_80(out: str) -> None:
    """No line wider than 80 columns."""
    widest = max(lines_of(out), key=len)
    assert len(widest) <= 80, (widest, out)


def get(server: LiveServer, path: str, **params: Any) -> Any:
    """GET ``path`` of ``server`` as JSON."""
    r = httpx.get(f"{server.url}{path}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def axes_server(module_live_server, make_sqlite_url) -> LiveServer:
    """One real server for the module, with the scripted worker's task announced."""
    server = module_live_server(make_sqlite_url())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert claim(client, TASK) is None
    return server


@pytest.fixture(scope="module")
def ladder(axes_server: LiveServer, tmp_path_factory) -> dict[str, Any]:
    """The 3-axis ladder submitted from YAML with ``lionsweep ladder submit``, every rung run:
    its id and the submit command's output."""
    path = tmp_path_factory.mktemp("axes") / "ladder.yaml"
    path.write_text(yaml.safe_dump(axes_spec(TASK, "cli axes"), sort_keys=False))
    out = ok(lionsweep(axes_server, "ladder", "submit", str(path)))
    found = re.search(r"Submitted ladder (\d+)", out)
    assert found, out
    with httpx.Client(base_url=axes_server.url, timeout=60) as client:
        assert run_all(client, TASK) == 24 * len(RUNGS)
    return {"id": int(found.group(1)), "submit": out}


@pytest.mark.slow
def test_submit_and_status_name_every_rung_by_its_point(ladder, axes_server) -> None:
    lid = ladder["id"]
    got = get(axes_server, f"/api/ladders/{lid}")
    submit = flat(ladder["submit"])
    for rung in got["rungs"]:
        p = rung["point"]
        line = (
            f"width={fmt(p['width'])}, train_steps={fmt(p['train_steps'])}, "
            f"batch_size={fmt(p['batch_size'])}: sweep {rung['sweep_id']}"
        )
        assert line in submit, (line, ladder["submit"])

    detail = ok(lionsweep(axes_server, "ladder", "status", str(lid)))
    assert_fits_80(detail)
    text = flat(detail)
    assert "axes width (width), train_steps (steps), batch_size (batch)" in text, detail
    for rung in got["rungs"]:
        p = rung["point"]
        row = (
            f"│ {fmt(p['width'])} │ {fmt(p['train_steps'])} │ {fmt(p['batch_size'])} │ "
            f"{rung['sweep_id']} │ rung │ complete │ 24/24 │"
        )
        assert row in text, (row, detail)
    listing = ok(lionsweep(axes_server, "ladder", "status"))
    assert_fits_80(listing)
    # the cell wraps at spaces in its column: read the column's lines together
    column = [line.split("│")[4].strip() for line in listing.splitlines() if line.startswith("│")]
    assert " ".join(c for c in column if c) == "7 rungs over width, train_steps, batch_size"


def test_rule_shows_each_axis_its_exponents_rules_and_note(ladder, axes_server) -> None:
    lid = ladder["id"]
    fit = get(axes_server, f"/api/ladders/{lid}/rule")
    assert fit["verdict"] == "rule_identified", fit["reason"]
    out = ok(lionsweep(axes_server, "ladder", "rule", str(lid)))
    assert_fits_80(out)
    lines, text = lines_of(out), flat(out)
    assert lines[0] == f"ladder {lid}: verdict rule_identified"
    assert flat(fit["reason"]) in text
    # the design: every rung's point, status, trials, verdict; then its own optimum
    for title in ("Design: the rungs", "Rungs' own optima (90% CI)"):
        assert title in lines, (title, out)
    for rung in fit["rungs"]:
        p = rung["point"]
        row = (
            f"│ {fmt(p['width'])} │ {fmt(p['train_steps'])} │ {fmt(p['batch_size'])} │ "
            f"{rung['sweep_id']} │ complete │ {rung['n']} │ {rung['verdict']} │"
        )
        assert row in text, (row, out)
        optimum = (
            f"│ {rung['sweep_id']} │ {fmt(rung['lr'])} │ {interval_text(rung['lr_ci'])} │ "
            f"{fmt(rung['weight_decay'])} │ {interval_text(rung['weight_decay_ci'])} │"
        )
        assert optimum in text, (optimum, out)
    # per axis: its exponents with intervals, every rule with its p-value, the best marked
    best = {"width": "sqrt", "train_steps": "tau_tokens", "batch_size": "wd_linear"}
    for axis in fit["axes"]:
        assert f"Axis {axis['param']} ({axis['role']}): exponents" in lines, (axis, out)
        assert f"Axis {axis['param']}: named rules" in lines, (axis, out)
        for name, key in (
            ("lr", "lr_exponent"),
            ("weight decay", "wd_exponent"),
            ("product lr·wd", "product_exponent"),
            ("timescale 1/(lr·wd)", "timescale_exponent"),
        ):
            row = f"│ {name} │ {fmt(axis[key])} │ {interval_text(axis[key + '_ci'])} │"
            assert row in text, (row, out)
        for rule in axis["rules"]:
            mark = " *" if rule["name"] == axis["best_rule"] else ""
            row = (
                f"│ {rule['name']}{mark} │ {_fixes(rule)} │ {fmt(rule['chi2'])} │ {rule['dof']} │ "
                f"{fmt(rule['p_value'])} │"
            )
            assert row in text, (row, out)
        assert axis["best_rule"] == best[axis["param"]]
        assert f"best rule: {axis['best_rule']}" in lines
        assert flat(axis["rule_note"]) in text
    assert flat(fit["axes_note"]) in text
    assert "Prediction at" not in out  # only with the flags


def _fixes(rule: dict[str, Any]) -> str:
    """The fixed exponents as the rules table writes them."""
    names = {"lr_exponent": "lr", "wd_exponent": "wd", "product_exponent": "lr·wd"}
    return ", ".join(f"{n} {fmt(float(rule[k]))}" for k, n in names.items() if rule[k] is not None)


def test_rule_with_steps_and_batch_size_flags_predicts_and_says_how_far(
    ladder, axes_server
) -> None:
    lid = str(ladder["id"])
    pred = get(axes_server, f"/api/ladders/{lid}/rule", width=512, steps=800, batch_size=256)[
        "prediction"
    ]
    out = ok(lionsweep(axes_server, "ladder", "rule", lid, *FLAGS))
    assert_fits_80(out)
    lines, text = lines_of(out), flat(out)
    assert "Prediction at width=512, train_steps=800, batch_size=256" in lines, out
    assert f"│ lr │ {estimate_text(pred['lr'], pred['lr_ci'])} │" in text, out
    wd = estimate_text(pred["weight_decay"], pred["weight_decay_ci"])
    assert f"│ weight decay │ {wd} │" in text, out
    for reach, span in zip(pred["reach"], ("64–256", "100–400", "32–128"), strict=True):
        row = (
            f"│ {reach['param']} {fmt(reach['value'])} │ extrapolated ×2 beyond the rungs' {span} │"
        )
        assert row in text, (row, out)
    assert "extrapolated along" not in out  # the reach rows say it, once

    inside = flat(
        ok(
            lionsweep(
                axes_server,
                "ladder",
                "rule",
                lid,
                "--width",
                "100",
                "--steps",
                "150",
                "--batch-size",
                "50",
            )
        )
    )
    assert (
        "│ steps 150 │" not in inside
        and "│ train_steps 150 │ inside the rungs' 100–400 │" in inside
    )

    raw = json.loads(ok(lionsweep(axes_server, "ladder", "rule", lid, *FLAGS, "--json")))
    assert raw == get(axes_server, f"/api/ladders/{lid}/rule", width=512, steps=800, batch_size=256)
    assert raw["prediction"]["point"] == {k: float(v) for k, v in POINT.items()}

    missing = lionsweep(axes_server, "ladder", "rule", lid, "--width", "512", "--steps", "800")
    assert refused(missing).startswith("error: --batch-size: give --batch-size too: ")
    far = lionsweep(
        axes_server,
        "ladder",
        "rule",
        lid,
        "--width",
        "512",
        "--steps",
        "1e12",
        "--batch-size",
        "256",
    )
    assert refused(far).startswith("error: --steps: ")


def test_confirm_takes_every_axis_and_rule_shows_the_outcome(ladder, axes_server) -> None:
    lid = str(ladder["id"])
    nothing = lionsweep(axes_server, "ladder", "confirm", lid)
    assert refused(nothing) == (
        "error: give the point to confirm at: --width, --steps and/or --batch-size"
    )
    partial = lionsweep(axes_server, "ladder", "confirm", lid, "--width", "512", "--steps", "800")
    assert refused(partial).startswith("error: --batch-size: give --batch-size too")
    at_rung = lionsweep(
        axes_server,
        "ladder",
        "confirm",
        lid,
        "--width",
        "64",
        "--steps",
        "200",
        "--batch-size",
        "32",
    )
    assert "is a rung of the ladder already" in refused(at_rung)

    out = ok(lionsweep(axes_server, "ladder", "confirm", lid, *FLAGS, "--seeds", "2"))
    [conf] = get(axes_server, f"/api/ladders/{lid}")["confirmations"]
    assert conf["point"] == {k: float(v) for k, v in POINT.items()}
    assert (
        f"Confirming ladder {lid} at width=512, train_steps=800, batch_size=256: sweep "
        f"{conf['sweep_id']} runs the predicted lr and weight decay beside the nearest rung's"
    ) in flat(out), out
    assert "2 seeds each (4 trials)" in flat(out)
    with httpx.Client(base_url=axes_server.url, timeout=60) as client:
        assert run_all(client, TASK) == 4

    fit = get(axes_server, f"/api/ladders/{lid}/rule")
    [c] = fit["confirmations"]
    out = ok(lionsweep(axes_server, "ladder", "rule", lid))
    assert_fits_80(out)
    lines, text = lines_of(out), flat(out)
    assert "Confirmation at width=512, train_steps=800, batch_size=256" in lines, out
    assert f"sweep {c['sweep_id']} complete: verdict {c['verdict']}" in text
    t = c["transferred"]
    assert (
        f"│ transferred │ {fmt(t['lr'])} │ {fmt(t['weight_decay'])} │ 2 │ {fmt(t['mean'])}" in text
    )
    for value in (interval_text(t["ci"]), fmt(c["untransferred"]["mean"]), fmt(c["difference"])):
        assert value in text, (value, out)
    assert flat(c["note"]) in text
    status = flat(ok(lionsweep(axes_server, "ladder", "status", lid)))
    assert f"│ 512 │ 800 │ 256 │ {c['sweep_id']} │ confirm │ complete │ 4/4 │" in status


def test_confirm_with_a_sweep_at_the_point_prints_it_and_its_verdict(ladder, axes_server):
    lid = str(ladder["id"])
    flags = ["--width", "1024", "--steps", "800", "--batch-size", "256"]
    few = lionsweep(axes_server, "ladder", "confirm", lid, *flags, "--sweep-trials", "3")
    assert "sweep_trials" in refused(few)
    # Confirmed first without one; the point's own sweep is added by a second confirm.
    first = flat(ok(lionsweep(axes_server, "ladder", "confirm", lid, *flags, "--seeds", "2")))
    assert f"Confirming ladder {lid} at " in first and "searches the point itself" not in first
    out = ok(
        lionsweep(
            axes_server, "ladder", "confirm", lid, *flags, "--seeds", "2", "--sweep-trials", "8"
        )
    )
    lad = get(axes_server, f"/api/ladders/{lid}")
    [own] = [c for c in lad["confirmations"] if c["role"] == "target"]
    assert own["point"] == {"width": 1024.0, "train_steps": 800.0, "batch_size": 256.0}
    assert "Confirming" not in flat(out), out
    assert (
        f"added to ladder {lid}'s confirmation: sweep {own['sweep_id']} searches the point "
        "itself (width=1024, train_steps=800, batch_size=256; 8 trials, its top 3 configs "
        "re-run with 2 fresh seeds)"
    ) in flat(out), out
    again = lionsweep(axes_server, "ladder", "confirm", lid, *flags, "--sweep-trials", "8")
    assert "the point's own sweep" in refused(again), again
    with httpx.Client(base_url=axes_server.url, timeout=60) as client:
        assert run_all(client, TASK) >= 8 + 3 * 2
    fit = get(axes_server, f"/api/ladders/{lid}/rule")
    [c] = [c for c in fit["confirmations"] if c["point"]["width"] == 1024.0]
    target = c["target"]
    assert target["sweep_id"] == own["sweep_id"] and target["verdict"] != "pending"
    out = ok(lionsweep(axes_server, "ladder", "rule", lid))
    assert_fits_80(out)
    text = flat(out)
    assert f"the point's own sweep {own['sweep_id']} (14 runs finished, complete)" in text, out
    assert f"against it: verdict {target['verdict']}" in text
    assert flat(target["note"]) in text
    status = flat(ok(lionsweep(axes_server, "ladder", "status", lid)))
    assert f"│ 1024 │ 800 │ 256 │ {own['sweep_id']} │ target │ complete │ 8/8 │" in status, status


def test_a_confirmations_further_arms_are_printed_when_the_server_sends_them() -> None:
    arm = {
        "lr": 1e-3,
        "weight_decay": 0.02,
        "n": 2,
        "mean": 0.5,
        "ci": [0.4, 0.6],
        "values": [0.45, 0.55],
    }
    conf = {
        "width": 512.0,
        "point": {"width": 512.0, "train_steps": 800.0},
        "sweep_id": 9,
        "status": "complete",
        "predicted": None,
        "transferred": {**arm, "source": "the ladder's prediction"},
        "untransferred": {**arm, "mean": 0.9, "ci": [0.8, 1.0], "source": "rung sweep 3"},
        "arms": [{**arm, "lr": 3e-4, "mean": 0.7, "ci": [0.65, 0.75], "source": "the sqrt rule"}],
        "difference": -0.4,
        "difference_ci": [-0.5, -0.3],
        "verdict": "transfer_better",
        "note": "better",
    }
    ladder = {
        "param": "width",
        "rungs": [{"width": 64.0, "point": {"width": 64.0, "train_steps": 1}}],
    }
    with console.capture() as got:
        print_confirmation(conf, ladder)
    text = flat(got.get())
    assert "Confirmation at width=512, train_steps=800" in text
    assert "│ arm 1 │ 0.0003 │ 0.02 │ 2 │ 0.7 │" in text and "│ 0.65–0.75 │" in text, got.get()
    assert "arm 1: the sqrt rule" in text
    without = {k: v for k, v in conf.items() if k != "arms"}
    with console.capture() as got:
        print_confirmation(without, ladder)
    assert "arm 1" not in got.get()


@pytest.mark.slow
def test_extend_and_from_sweeps_make_rungs_from_the_command_line(ladder, axes_server) -> None:
    lid = str(ladder["id"])
    bad = lionsweep(axes_server, "ladder", "extend", lid, "--rung", "width")
    assert refused(bad) == "error: --rung: expected name=value, not 'width'"
    out = ok(
        lionsweep(
            axes_server,
            "ladder",
            "extend",
            lid,
            "--rung",
            "width=512,train_steps=100,batch_size=32",
            "--span",
            "4",
        )
    )
    after = get(axes_server, f"/api/ladders/{lid}")
    new = max(after["rungs"], key=lambda r: r["sweep_id"])
    assert f"Added 1 rungs to ladder {lid}:" in out
    assert f"sweep {new['sweep_id']}" in out and new["point"]["width"] == 512
    space = get(axes_server, f"/api/sweeps/{new['sweep_id']}")["spec"]["space"]
    assert math.isclose(space["lr"]["high"] / space["lr"]["low"], 16)

    ids = []
    with httpx.Client(base_url=axes_server.url, timeout=60) as client:
        assert run_all(client, TASK) == 24
        for width in (64, 128, 256):
            body = axes_spec(TASK, f"runs {width}", n_trials=1)
            del body["ladder"]
            body["task"]["params"]["width"] = width
            r = client.post("/api/sweeps", json=body)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    missing = lionsweep(
        axes_server, "ladder", "from-sweeps", "--axis", "width=width", *map(str, ids[:2]), "999"
    )
    assert "sweep 999 not found" in refused(missing)
    out = ok(
        lionsweep(axes_server, "ladder", "from-sweeps", "--axis", "width=width", *map(str, ids))
    )
    made = re.search(r"Made ladder (\d+) of 3 sweeps", out)
    assert made, out
    adopted = get(axes_server, f"/api/ladders/{made.group(1)}")
    assert sorted(r["sweep_id"] for r in adopted["rungs"]) == ids
    assert adopted["axes"] == [{"param": "width", "role": "width"}]
