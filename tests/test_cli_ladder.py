"""``lionsweep ladder …`` against a real server, run as the real ``lionsweep`` executable.

A scripted worker plays the rungs over the REST protocol (as in ``test_service_ladders``):
its task declares ``width`` as its width param, and its objective has a planted width rule
(η* ∝ w^-½, λ* ∝ w^½), so ``ladder rule`` has exponents, rules and a prediction to show and
``ladder confirm`` has a rule to run. Output is read at 80 columns; every refusal must be one
``error:`` line and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import LiveServer, lionsweep_command
from planted_ladder import claim, ladder_spec, run_all

from lionsweep.cli import estimate_text, fmt, interval_text

TASK = "cli-ladder"
WIDTHS = [64, 128, 256]
SPEC = ladder_spec(TASK, "cli ladder")


def finish_all(url: str, task: str = TASK) -> int:
    """Finish every trial of ``task`` with the planted objective; returns how many."""
    with httpx.Client(base_url=url, timeout=60) as client:
        return run_all(client, task)


def lionsweep(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``lionsweep *args`` against ``server`` (found through LIONSWEEP_SERVER), 80 wide."""
    env = {k: v for k, v in os.environ.items() if k not in ("LIONSWEEP_TOKEN", "FORCE_COLOR")}
    env.update(COLUMNS="80", NO_COLOR="1", LIONSWEEP_SERVER=server.url)
    return subprocess.run(
        [*lionsweep_command(), *args], capture_output=True, text=True, env=env, timeout=60
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have succeeded."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single ``error:`` line of a refused command (nothing else, no traceback)."""
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == "", done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space (wrapped lines joined)."""
    return " ".join(text.split())


def assert_short_numbers(out: str) -> None:
    """Every decimal number in ``out`` has at most 4 significant digits (no full floats)."""
    for number in re.findall(r"\d*\.\d+", out):
        assert len(number.replace(".", "").lstrip("0")) <= 4, (number, out)


def ladder_count(server: LiveServer) -> int:
    """How many ladders the server holds."""
    return httpx.get(f"{server.url}/api/ladders").json()["total"]


@pytest.fixture(scope="module")
def ladder_server(module_live_server, make_sqlite_url) -> LiveServer:
    """One real server for the module, with the fake worker's task announced."""
    server = module_live_server(make_sqlite_url())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert claim(client, TASK) is None
    return server


@pytest.fixture(scope="module")
def ladder(ladder_server: LiveServer, tmp_path_factory) -> dict[str, Any]:
    """A ladder submitted from a YAML file with ``lionsweep ladder submit``, every rung run
    to completion: its id and the submit command's output."""
    path = tmp_path_factory.mktemp("ladder") / "ladder.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = ok(lionsweep(ladder_server, "ladder", "submit", str(path)))
    found = re.search(r"Submitted ladder (\d+)", out)
    assert found, out
    assert finish_all(ladder_server.url) == len(WIDTHS) * SPEC["n_trials"]
    return {"id": int(found.group(1)), "submit": out}


def get(server: LiveServer, path: str, **params: Any) -> Any:
    """GET ``path`` of ``server`` as JSON."""
    r = httpx.get(f"{server.url}{path}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_submit_prints_the_ladder_and_one_line_per_rung(ladder, ladder_server) -> None:
    got = get(ladder_server, f"/api/ladders/{ladder['id']}")
    lines = [line for line in ladder["submit"].splitlines() if line.strip()]
    assert lines[0].startswith(f"Submitted ladder {ladder['id']} (cli ladder, 3 rungs of 36")
    assert len(lines) == 1 + len(WIDTHS), ladder["submit"]
    for line, rung in zip(lines[1:], got["rungs"], strict=True):
        assert f"width={fmt(rung['width'])}: sweep {rung['sweep_id']}" in line, line


def test_status_lists_ladders_and_shows_one_ladders_sweeps(ladder, ladder_server) -> None:
    listing = ok(lionsweep(ladder_server, "ladder", "status"))
    assert "Ladders (" in listing
    row = next(line for line in listing.splitlines() if "cli ladder" in line)
    assert "64, 128, 256" in row and "complete" in row and "108/108" in row, listing

    detail = ok(lionsweep(ladder_server, "ladder", "status", str(ladder["id"])))
    assert f"ladder {ladder['id']} (cli ladder): complete" in detail, detail
    for rung in get(ladder_server, f"/api/ladders/{ladder['id']}")["rungs"]:
        row = f"│ {fmt(rung['width'])} │ {rung['sweep_id']} │ rung │ complete │ 36/36 │ 100% │"
        assert row in flat(detail), (row, detail)
    missing = lionsweep(ladder_server, "ladder", "status", "999999")
    assert refused(missing) == "error: ladder 999999 not found"


def test_rule_shows_the_verdict_rungs_exponents_and_rules(ladder, ladder_server) -> None:
    fit = get(ladder_server, f"/api/ladders/{ladder['id']}/rule")
    assert fit["verdict"] in ("rule_identified", "indistinguishable"), fit["reason"]
    out = ok(lionsweep(ladder_server, "ladder", "rule", str(ladder["id"])))
    lines = [line.rstrip() for line in out.splitlines()]
    assert max(len(line) for line in lines) <= 80, out
    assert lines[0] == f"ladder {ladder['id']}: verdict {fit['verdict']}"
    for title in ("Rungs' optima (90% CI)", "Width exponents", "Candidate rules"):
        assert title in lines, (title, out)  # a title on one line of its own, not wrapped
    text = flat(out)
    assert flat(fit["reason"]) in text
    for rung in fit["rungs"]:
        row = f"{fmt(rung['width'])} │ valley │ {fmt(rung['lr'])} │ {fmt(rung['weight_decay'])}"
        assert row in text, (row, out)
        assert interval_text(rung["lr_ci"]) in text and "lr, wd, value" in text
    for key in ("lr_exponent", "wd_exponent", "product_exponent"):
        assert f"{fmt(fit[key])} │ {interval_text(fit[key + '_ci'])}" in text, (key, out)
    best = next(s for s in fit["rules"] if s["name"] == fit["best_rule"])
    assert f"│ {best['name']} * │ {fmt(best['lr_exponent'])} │ {fmt(best['wd_exponent'])}" in text
    assert f"{fmt(best['chi2'])} │ {best['dof']} │ {fmt(best['p_value'])}" in text
    for score in fit["rules"]:
        assert f"│ {score['name']} " in text
    assert_short_numbers(out)
    assert "Prediction at" not in out  # only with --width


def test_rule_json_is_the_servers_answer(ladder, ladder_server) -> None:
    done = lionsweep(ladder_server, "ladder", "rule", str(ladder["id"]), "--width", "512", "--json")
    answer = json.loads(ok(done))
    assert answer == get(ladder_server, f"/api/ladders/{ladder['id']}/rule", width=512)
    assert answer["prediction"]["width"] == 512


def test_rule_with_a_width_shows_the_prediction(ladder, ladder_server) -> None:
    fit = get(ladder_server, f"/api/ladders/{ladder['id']}/rule", width=1024)
    pred = fit["prediction"]
    out = ok(lionsweep(ladder_server, "ladder", "rule", str(ladder["id"]), "--width", "1024"))
    assert "Prediction at width=1024" in [line.rstrip() for line in out.splitlines()], out
    assert_short_numbers(out)
    text = flat(out)
    assert f"lr │ {estimate_text(pred['lr'], pred['lr_ci'])}" in text, out
    wd = estimate_text(pred["weight_decay"], pred["weight_decay_ci"])
    assert f"weight decay │ {wd}" in text, out
    assert "weight decay moved │ yes" in text
    assert f"objective │ {estimate_text(pred['value'], pred['value_ci'])}" in text, out
    assert flat(pred["note"]) in text and "extrapolated ×4" in text
    bad = lionsweep(ladder_server, "ladder", "rule", str(ladder["id"]), "--width", "-1")
    assert refused(bad).startswith("error: --width: ")


def test_confirm_runs_the_prediction_and_rule_shows_the_outcome(ladder, ladder_server) -> None:
    lid = str(ladder["id"])
    at_rung = lionsweep(ladder_server, "ladder", "confirm", lid, "--width", "128")
    assert refused(at_rung) == "error: --width: width 128 is a rung of the ladder already"
    one_seed = lionsweep(ladder_server, "ladder", "confirm", lid, "--width", "1024", "--seeds", "1")
    assert refused(one_seed).startswith("error: --seeds: ")

    out = ok(lionsweep(ladder_server, "ladder", "confirm", lid, "--width", "1024", "--seeds", "2"))
    [conf] = get(ladder_server, f"/api/ladders/{lid}")["confirmations"]
    assert f"Confirming ladder {lid} at width=1024: sweep {conf['sweep_id']}" in flat(out), out
    assert "2 seeds each (4 trials)" in flat(out)
    again = lionsweep(ladder_server, "ladder", "confirm", lid, "--width", "1024")
    assert "already confirmed at width 1024" in refused(again)

    pending = flat(ok(lionsweep(ladder_server, "ladder", "rule", lid)))
    assert f"sweep {conf['sweep_id']} running: verdict pending" in pending
    assert finish_all(ladder_server.url) == 4

    fit = get(ladder_server, f"/api/ladders/{lid}/rule")
    [c] = fit["confirmations"]
    assert c["verdict"] not in ("pending", "unmeasured"), c
    out = ok(lionsweep(ladder_server, "ladder", "rule", lid))
    assert "Confirmation at width=1024" in [line.rstrip() for line in out.splitlines()], out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80, out
    assert_short_numbers(out)
    text = flat(out)
    assert f"sweep {c['sweep_id']} complete: verdict {c['verdict']}" in text
    transferred = c["transferred"]
    assert f"predicted │ {fmt(c['predicted']['lr'])} │" in text
    assert f"transferred │ {fmt(transferred['lr'])} │ {fmt(transferred['weight_decay'])} │ 2 │" in (
        text
    )
    for value in (
        fmt(c["predicted"]["value"]),
        interval_text(c["predicted"]["value_ci"]),
        fmt(transferred["mean"]),
        fmt(c["untransferred"]["mean"]),
        fmt(c["difference"]),
        interval_text(c["difference_ci"]),
    ):
        assert value in text, (value, out)
    assert flat(c["note"]) in text
    assert f"untransferred: {c['untransferred']['source']}, unmoved" in text
    status = ok(lionsweep(ladder_server, "ladder", "status", lid))
    assert f"│ 1024 │ {c['sweep_id']} │ confirm │ complete │ 4/4 │ 100% │" in flat(status), status


def test_confirm_is_refused_until_the_rungs_are_complete_cancel_resume_delete(
    ladder_server, tmp_path: Path
) -> None:
    spec = {**SPEC, "name": "unrun", "task": {"name": "cli-ladder-unrun", "params": {}}}
    spec["n_trials"] = 24
    with httpx.Client(base_url=ladder_server.url, timeout=30) as client:
        assert claim(client, "cli-ladder-unrun") is None
    path = tmp_path / "ladder.json"
    path.write_text(json.dumps(spec))
    before = ladder_count(ladder_server)
    first = ok(lionsweep(ladder_server, "ladder", "submit", str(path), "--idempotency-key", "k1"))
    again = ok(lionsweep(ladder_server, "ladder", "submit", str(path), "--idempotency-key", "k1"))
    lid = re.search(r"Submitted ladder (\d+)", first).group(1)
    assert f"Submitted ladder {lid} " in again
    assert ladder_count(ladder_server) == before + 1
    rungs = get(ladder_server, f"/api/ladders/{lid}")["rungs"]

    early = lionsweep(ladder_server, "ladder", "confirm", lid, "--width", "512")
    line = refused(early)
    assert f"rung width=64 (sweep {rungs[0]['sweep_id']}) is running (0/24 finished)" in line
    assert "needs every rung complete" in line
    rule = flat(ok(lionsweep(ladder_server, "ladder", "rule", lid, "--width", "512")))
    assert "verdict insufficient" in rule and "no complete Lion trial yet" in rule
    assert "no prediction at width=512" in rule

    cancelled = ok(lionsweep(ladder_server, "ladder", "cancel", lid))
    assert cancelled.strip() == f"ladder {lid} cancelled: 3 cancelled"
    resumed = ok(lionsweep(ladder_server, "ladder", "resume", lid))
    assert resumed.strip() == f"ladder {lid} running: 3 running"
    deleted = ok(lionsweep(ladder_server, "ladder", "delete", lid))
    assert f"deleted ladder {lid}" in deleted
    assert httpx.get(f"{ladder_server.url}/api/ladders/{lid}").status_code == 404
    for rung in rungs:
        assert httpx.get(f"{ladder_server.url}/api/sweeps/{rung['sweep_id']}").status_code == 404
    assert ladder_count(ladder_server) == before
    gone = lionsweep(ladder_server, "ladder", "delete", lid)
    assert refused(gone) == f"error: ladder {lid} not found"


def test_a_bad_ladder_is_one_line_naming_the_field_and_writes_nothing(
    ladder_server, tmp_path: Path
) -> None:
    before = ladder_count(ladder_server), get(ladder_server, "/api/sweeps")["total"]
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({**SPEC, "ladder": {"param": "width", "widths": [64, 128]}}))
    line = refused(lionsweep(ladder_server, "ladder", "submit", str(two)))
    assert line.startswith("error: ladder.widths: a ladder needs at least 3 widths"), line

    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({k: v for k, v in SPEC.items() if k != "ladder"}))
    assert refused(lionsweep(ladder_server, "ladder", "submit", str(plain))) == (
        "error: ladder: Field required"
    )
    line = refused(lionsweep(ladder_server, "submit", str(two)), code=2)
    assert "`lionsweep ladder submit`" in line
    assert (ladder_count(ladder_server), get(ladder_server, "/api/sweeps")["total"]) == before
