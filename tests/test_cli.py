"""The ``lionsweep`` CLI: one-line errors and exit codes, rules, examples, and a real server.

Commands run through the real entry point: ``CliRunner`` for the ones that need no server,
subprocesses for the embedded mode (``lionsweep up``), which starts its own server and workers.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import wait_for
from typer.testing import CliRunner

import lionsweep
from lionsweep.cli import app, fmt, kwargs_line
from lionsweep.server_cli import DEMO_SPEC
from optim import scaling
from service.schemas import SweepSpec
from worker.cli import error_lines
from worker.supervisor import gpu_slots

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def unused_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(output: str) -> str:
    """The output must be exactly one ``error:`` line and no traceback."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    return lines[0]


def test_rule_for_a_width_matches_the_scaling_module() -> None:
    result = runner.invoke(app, ["rule", "--width", "768", "--alpha0", "1.11e-3"])
    assert result.exit_code == 0, result.output
    lr, wd = scaling.lr_and_decay(width=768, alpha0=1.11e-3)
    assert f"{lr:.4g}" in result.output
    assert f"{wd:.4g}" in result.output


def test_table_titles_stay_on_one_line() -> None:
    from rich.console import Console

    from lionsweep.cli import new_table

    title = "Rungs' optima (90% CI) of a ladder with a long name"
    table = new_table(title)
    table.add_column("w")
    table.add_row("64")
    console = Console(width=80, record=True)
    console.print(table)
    assert title in console.export_text()


def test_rule_from_adamw() -> None:
    result = runner.invoke(app, ["rule", "--adamw-lr", "3e-4", "--adamw-wd", "0.1"])
    assert result.exit_code == 0, result.output
    lr, wd = scaling.from_adamw(3e-4, 0.1)
    assert f"{lr:.4g}" in result.output and f"{wd:.4g}" in result.output


def test_rule_needs_a_mode_and_says_so() -> None:
    result = runner.invoke(app, ["rule"])
    assert result.exit_code == 2
    assert "--width" in one_error_line(result.output)
    bad = runner.invoke(app, ["rule", "--width", "-3"])
    assert bad.exit_code == 2
    one_error_line(bad.output)
    both = runner.invoke(app, ["rule", "--adamw-lr", "3e-4", "--adamw-wd", "0.1", "--width", "768"])
    assert both.exit_code == 2 and "--width belongs to the width rule" in one_error_line(
        both.output
    )


def test_unreachable_server_is_one_line_and_exit_2() -> None:
    server = f"http://127.0.0.1:{unused_port()}"
    for args in (["status"], ["status", "3"], ["best", "3"], ["rule", "--sweep", "3"]):
        result = runner.invoke(app, [*args, "--server", server])
        assert result.exit_code == 2, (args, result.output)
        assert "cannot reach the lionsweep server" in one_error_line(result.output)
    spec = ROOT / "examples" / "demo.yaml"
    result = runner.invoke(app, ["submit", str(spec), "--server", server])
    assert result.exit_code == 2
    one_error_line(result.output)


def test_a_server_that_is_not_lionsweep_or_no_url_is_one_line_and_exit_2(
    live_server, sqlite_url
) -> None:
    """An HTML page from another program on the port (the whole page was printed), the API's
    path given as the server, and an address without http:// each get one line that says so."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        for args in (["status"], ["status", "3"], ["best", "3"]):
            result = runner.invoke(app, [*args, "--server", other])
            assert result.exit_code == 2, (args, result.output)
            line = one_error_line(result.output)
            assert f"no lionsweep server answers at {other}: it answered HTTP" in line, line
            assert "text/html" in line and "<" not in line, line
        with pytest.raises(lionsweep.ServerUnreachable, match="no lionsweep server answers"):
            next(iter(lionsweep.trials(sweep=1, server=other, token="")))
    finally:
        httpd.shutdown()
        httpd.server_close()
    server = live_server(sqlite_url)
    result = runner.invoke(app, ["status", "--server", server.url + "/api"])
    assert result.exit_code == 2 and "without /api" in one_error_line(result.output), result.output
    result = runner.invoke(app, ["status", "--server", server.url.removeprefix("http://")])
    assert result.exit_code == 2, result.output
    assert "missing the http://" in one_error_line(result.output), result.output


def test_unreadable_spec_files(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "cannot read" in one_error_line(missing.output)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ntask:\n  name: [unclosed\n")
    result = runner.invoke(app, ["submit", str(broken)])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "broken.yaml is not valid YAML: line 4, column 1: " in line, line
    assert "(while parsing a flow sequence at line 3, column 9)" in line, line
    indented = tmp_path / "indented.yaml"
    indented.write_text("name: x\n  task: 3\n")
    result = runner.invoke(app, ["submit", str(indented)])
    assert "is not valid YAML: line 2, column 7: mapping values" in one_error_line(result.output)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "x",\n "task": }')
    result = runner.invoke(app, ["ladder", "submit", str(bad_json)])
    assert result.exit_code == 2
    assert "bad.json is not valid JSON: line 2, column 10: " in one_error_line(result.output)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    result = runner.invoke(app, ["submit", str(listing)])
    assert result.exit_code == 2
    assert "mapping" in one_error_line(result.output)


def test_a_spec_over_the_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    entry = "  - {lr: 1.0e-3, weight_decay: 0.1}\n"
    big.write_text("name: big\ntask: {name: quadratic}\nn_trials: 4\nenqueue:\n" + entry * 300_000)
    size = big.stat().st_size
    server = f"http://127.0.0.1:{unused_port()}"  # never asked: the file is refused first
    for command in (["submit"], ["ladder", "submit"]):
        started = time.monotonic()
        result = runner.invoke(app, [*command, str(big), "--server", server])
        took = time.monotonic() - started
        assert result.exit_code == 2, result.output
        line = one_error_line(result.output)
        assert f"big.yaml is {size} bytes; a sweep spec may be at most 65536 bytes" in line
        assert took < 2, f"{command}: {took:.1f} s to refuse a {size}-byte spec"
    from lionsweep.cli import SPEC_MAX_BYTES
    from service.http_gate import YAML_MAX_BYTES

    assert SPEC_MAX_BYTES == YAML_MAX_BYTES  # the server's cap on a YAML body


def test_validation_details_become_one_line_per_field() -> None:
    detail = [
        {"loc": ["body", "space", "lr", "low"], "msg": "Value error, log range needs low > 0"},
        {"loc": ["body", "n_trials"], "msg": "Input should be greater than or equal to 1"},
    ]
    assert error_lines(detail) == [
        "space.lr.low: log range needs low > 0",
        "n_trials: Input should be greater than or equal to 1",
    ]
    assert error_lines("sweep 9 not found") == ["sweep 9 not found"]


@pytest.mark.parametrize("name", ["demo.yaml", "charlm-width.yaml"])
def test_examples_are_valid_sweep_specs(name: str) -> None:
    spec = SweepSpec.model_validate(yaml.safe_load((ROOT / "examples" / name).read_text()))
    assert spec.n_trials > 0


def test_built_in_demo_is_examples_demo_yaml() -> None:
    from_file = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    assert json.loads(json.dumps(DEMO_SPEC)) == from_file


def test_rule_defaults_are_the_scaling_modules() -> None:
    result = runner.invoke(app, ["rule", "--help"])
    assert result.exit_code == 0
    assert f"{scaling.ADAMW_TO_LION_FACTOR}" in result.output
    assert f"{scaling.ALPHA0}" in result.output


# -- GPUs for `up` and `worker --gpus` ----------------------------------------------------------


@pytest.mark.parametrize(
    ("visible", "slots"),
    [
        ("0,1", ["0", "1"]),
        (" 2, 3", ["2", "3"]),
        ("1,-1,2", ["1"]),
        ("", []),
        ("GPU-5e1f", ["GPU-5e1f"]),
    ],
)
def test_all_gpus_are_the_visible_ones(
    monkeypatch: pytest.MonkeyPatch, visible: str, slots: list[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu_slots("all") == slots


def test_gpu_lists_are_distinct_indices() -> None:
    assert gpu_slots("0, 2") == ["0", "2"]
    for bad in ("0,zero", "1,1", "-1"):
        with pytest.raises(ValueError, match="--gpus"):
            gpu_slots(bad)


# -- a worker-only install: no server packages -------------------------------------------------

SERVER_PACKAGES = (
    *("fastapi", "sqlalchemy", "optuna", "alembic", "uvicorn", "service", "pydantic_settings"),
    *("psycopg", "optuna_dashboard", "a2wsgi", "cmaes", "plotly", "prometheus_client"),
)
REFUSE_SERVER_PACKAGES = textwrap.dedent(
    f"""
    import sys

    class RefuseServerPackages:
        \"\"\"Import nothing of the server: as if only the base install were there.\"\"\"

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {SERVER_PACKAGES!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (refused)", name=name)
            return None

    sys.meta_path.insert(0, RefuseServerPackages())
    """
)


def without_server(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that cannot import any server package."""
    return subprocess.run(
        [sys.executable, "-c", REFUSE_SERVER_PACKAGES + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def lionsweep_without_server(*args: str) -> subprocess.CompletedProcess:
    """``lionsweep *args`` in an interpreter that cannot import any server package."""
    return without_server(
        f"from lionsweep.cli import app; app({list(args)!r}, prog_name='lionsweep')"
    )


def test_the_worker_imports_no_server_package() -> None:
    done = without_server(
        f"""
        import worker.agent, worker.client, worker.harness, worker.cli, worker.supervisor
        loaded = sorted({{m.partition(".")[0] for m in sys.modules}} & set({SERVER_PACKAGES!r}))
        assert not loaded, loaded
        print("imported")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_worker_and_client_commands_run_without_the_server_packages() -> None:
    help_run = lionsweep_without_server("worker", "--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "Usage: lionsweep worker" in help_run.stdout and "--gpus" in help_run.stdout
    listing = lionsweep_without_server("--help")
    assert listing.returncode == 0, listing.stderr
    assert "submit" in listing.stdout and "lionsweep[server]" in listing.stdout
    spec = str(ROOT / "examples" / "demo.yaml")
    server = f"http://127.0.0.1:{unused_port()}"
    submit = lionsweep_without_server("submit", spec, "--server", server)
    assert submit.returncode == 2, submit.stderr
    assert "cannot reach the lionsweep server" in one_error_line(submit.stderr)
    rule = lionsweep_without_server("rule", "--adamw-lr", "3e-4", "--adamw-wd", "0.1")
    assert rule.returncode == 0, rule.stderr


@pytest.mark.parametrize("command", [["serve"], ["up", "--demo"], ["db", "upgrade"], ["token"]])
def test_a_server_command_without_the_server_packages_says_what_to_install(
    command: list[str],
) -> None:
    done = lionsweep_without_server(*command)
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert f"lionsweep {command[0]}" in line and "pip install 'lionsweep[server]'" in line
    assert done.stdout == ""


# -- the embedded mode, as a real subprocess --------------------------------------------------


def lionsweep_command() -> list[str]:
    """The installed ``lionsweep`` script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("lionsweep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lionsweep"]


def processes_mentioning(needle: str) -> list[str]:
    """Command lines of live processes that contain ``needle``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(cmdline)
    return found


def demo_sweeps(base: str) -> list[dict]:
    """The sweeps named ``demo`` on the server."""
    items = httpx.get(f"{base}/api/sweeps", timeout=5).json()["items"]
    return [s for s in items if s["name"] == "demo"]


def stop_with_sigint(proc: subprocess.Popen) -> str:
    """Ctrl-C the ``up`` process; return its output once it has exited."""
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"lionsweep up did not stop on SIGINT:\n{out}")
    return out


@pytest.mark.slow
def test_up_demo_runs_stops_on_ctrl_c_and_resumes(tmp_path: Path) -> None:
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    command = [*lionsweep_command(), "up", "--demo", "--port", str(port), "--workers", "1"]

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    first = start()
    try:
        sweep = wait_for(
            lambda: next((s for s in demo_sweeps(base) if s["finished"] >= 2), None),
            timeout=120,
            what="the demo sweep to finish two trials",
        )
    finally:
        out = stop_with_sigint(first)
    assert first.returncode == 0, out
    assert f"Dashboard: {base}/" in out
    assert f"{base}/sweeps/{sweep['id']}" in out
    assert "Traceback" not in out
    assert (tmp_path / "lionsweep.db").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/healthz", timeout=2)
    assert processes_mentioning(f"--port {port}") == []
    assert processes_mentioning(f"127.0.0.1:{port}") == []
    # The workers handed their trials back: nothing is left RUNNING in Optuna's tables.
    import optuna

    study = optuna.load_study(
        study_name=sweep["study_name"], storage=f"sqlite:///{tmp_path / 'lionsweep.db'}"
    )
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert optuna.trial.TrialState.RUNNING not in states, states
    # A trial stopped by the shutdown is handed back (re-queued), never a failure.
    stopped = [t for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    assert all(t.system_attrs.get("lionsweep:handed_back") for t in stopped), stopped

    second = start()
    try:
        resumed = wait_for(
            lambda: next(
                (
                    s
                    for s in demo_sweeps(base)
                    if s["finished"] > sweep["finished"] or s["status"] == "complete"
                ),
                None,
            ),
            timeout=120,
            what="the resumed demo sweep to make progress",
        )
        assert [s["id"] for s in demo_sweeps(base)] == [sweep["id"]]  # not submitted twice
    finally:
        out = stop_with_sigint(second)
    assert second.returncode == 0, out
    assert resumed["id"] == sweep["id"]
    assert resumed["finished"] >= sweep["finished"]
    assert resumed["counts"]["failed"] == 0, resumed["counts"]
    assert processes_mentioning(f"--port {port}") == []


def readme_output(command: str) -> list[str]:
    """The lines README.md shows under ``$ lionsweep <command>``, up to the end of its block."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"$ lionsweep {command}") + 1
    return lines[start : lines.index("```", start)]


@pytest.mark.slow
def test_readme_shows_what_the_demo_prints_at_80_columns(tmp_path: Path) -> None:
    """README's ``best`` and ``rule`` outputs are the demo's, as the CLI prints them now.

    The demo is deterministic with one CPU worker (TPE with a fixed seed, the quadratic task's
    seeded runs); a failure here means README quotes another version's output: re-take it
    from ``lionsweep up --demo`` (and docs/dashboard.png with bench/demo_screenshot.py)."""
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIONSWEEP_")}
    env.update(CUDA_VISIBLE_DEVICES="", COLUMNS="80", LINES="50")
    up = subprocess.Popen(
        [*lionsweep_command(), "up", "--demo", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: any(s["status"] == "complete" for s in demo_sweeps(base)),
            timeout=300,
            what="the demo sweep to complete",
        )
        for command in ("best 1 --k 3", "rule --sweep 1"):
            done = subprocess.run(
                [*lionsweep_command(), *command.split(), "--server", base],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            printed = [line.rstrip() for line in done.stdout.splitlines()]
            assert printed == readme_output(command), done.stdout
    finally:
        stop_with_sigint(up)


# -- against a real server (and a real worker) ------------------------------------------------

SMALL = {
    "name": "cli-small",
    "task": {"name": "quadratic", "params": {}},
    "space": {"lr": {"low": 1e-4, "high": 3e-2, "log": True}},
    "sampler": {"name": "random", "seed": 1},
    "pruner": {"name": "none"},
    "n_trials": 4,
}


def write_spec(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    """Write ``spec`` as YAML and return its path."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def test_invalid_spec_prints_one_line_per_field_and_writes_nothing(
    live_server, sqlite_url: str, tmp_path: Path
) -> None:
    server = live_server(sqlite_url)
    bad = {**SMALL, "n_trials": 0, "space": {"lr": {"low": -1.0, "high": 1e-3, "log": True}}}
    result = runner.invoke(app, ["submit", str(write_spec(tmp_path, bad)), "--server", server.url])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output
    assert all(line.startswith("error: ") for line in lines), lines
    assert any(line.startswith("error: n_trials: ") for line in lines), lines
    assert any(line.startswith("error: space.lr") for line in lines), lines
    assert httpx.get(f"{server.url}/api/sweeps").json()["total"] == 0


def test_submit_status_best_rule_on_a_live_server(
    live_server, sqlite_url: str, tmp_path: Path
) -> None:
    server = live_server(sqlite_url)
    spec = write_spec(tmp_path, SMALL)
    result = runner.invoke(
        app, ["submit", str(spec), "--server", server.url, "--idempotency-key", "k1"]
    )
    assert result.exit_code == 0, result.output
    assert f"{server.url}/sweeps/1" in result.output
    again = runner.invoke(
        app, ["submit", str(spec), "--server", server.url, "--idempotency-key", "k1"]
    )
    assert again.exit_code == 0, again.output
    assert httpx.get(f"{server.url}/api/sweeps").json()["total"] == 1

    listing = runner.invoke(app, ["status", "--server", server.url])
    assert listing.exit_code == 0 and "cli-small" in listing.output
    assert "…" not in listing.output and "c/p/f/r: complete/pruned/failed/running" in listing.output
    one = runner.invoke(app, ["status", "1", "--server", server.url])
    assert one.exit_code == 0 and "running" in one.output
    missing = runner.invoke(app, ["status", "99", "--server", server.url])
    assert missing.exit_code == 1
    one_error_line(missing.output)
    no_best = runner.invoke(app, ["best", "1", "--server", server.url])
    assert no_best.exit_code == 1
    assert "no complete trial" in one_error_line(no_best.output)
    no_rule = runner.invoke(app, ["rule", "--sweep", "1", "--server", server.url])
    assert no_rule.exit_code == 1
    assert "no complete Lion trial" in one_error_line(no_rule.output)


def test_sweep_lifecycle_from_the_cli_and_the_waiting_state(
    live_server, sqlite_url: str, tmp_path: Path
) -> None:
    server = live_server(sqlite_url)
    spec = {**SMALL, "task": {"name": "nobody-runs-this", "params": {}}, "reevaluate": "off"}
    assert runner.invoke(app, ["submit", str(write_spec(tmp_path, spec)), "--server", server.url])
    waiting = runner.invoke(app, ["status", "1", "--server", server.url])
    assert waiting.exit_code == 0, waiting.output
    assert "waiting for a worker with task 'nobody-runs-this'" in waiting.output
    listing = runner.invoke(app, ["status", "--server", server.url])
    assert "no worker yet" in listing.output

    # A worker appears, takes a trial and hands it back on shutdown: re-queued, not a failure.
    with httpx.Client(base_url=server.url, timeout=30) as c:
        body = {"worker_id": "w1", "tasks": ["nobody-runs-this"]}
        got = c.post("/api/trials/claim", json=body).json()
        sweep = c.get("/api/sweeps/1").json()
        assert sweep["activity"] == "running"
        finish = {
            "worker_id": "w1",
            "state": "failed",
            "reason": "worker shutdown",
            "handed_back": True,
        }
        r = c.post(f"/api/trials/{got['trial_id']}/finish", json=finish)
        assert r.status_code == 200 and r.json()["requeued"] is True
        counts = c.get("/api/sweeps/1").json()["counts"]
        assert counts["failed"] == 0 and counts["handed_back"] == 1, counts
        # Handing back uses up no retry (max_retries defaults to 2), up to HAND_BACK_LIMIT
        # (3) times per config; a fourth hand-back counts as a failure and uses a retry.
        for _ in range(2):
            got = c.post("/api/trials/claim", json=body).json()
            r = c.post(f"/api/trials/{got['trial_id']}/finish", json=finish)
            assert r.json()["requeued"] is True
        counts = c.get("/api/sweeps/1").json()["counts"]
        assert counts["failed"] == 0 and counts["handed_back"] == 3 and counts["waiting"] == 1
        got = c.post("/api/trials/claim", json=body).json()
        r = c.post(f"/api/trials/{got['trial_id']}/finish", json=finish)
        assert r.json()["requeued"] is True
        counts = c.get("/api/sweeps/1").json()["counts"]
        assert counts["failed"] == 1 and counts["handed_back"] == 3 and counts["waiting"] == 1
        # Without the field, "worker shutdown" is just a reason: an ordinary failure.
        got = c.post("/api/trials/claim", json=body).json()
        plain = {k: v for k, v in finish.items() if k != "handed_back"}
        r = c.post(f"/api/trials/{got['trial_id']}/finish", json=plain)
        assert r.json()["requeued"] is True  # its second retry
        counts = c.get("/api/sweeps/1").json()["counts"]
        assert counts["failed"] == 2 and counts["handed_back"] == 3 and counts["waiting"] == 1

    cancelled = runner.invoke(app, ["cancel", "1", "--server", server.url])
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.output.startswith("sweep 1 cancelled: ")
    assert runner.invoke(app, ["status", "1", "--server", server.url]).output.count("cancelled")
    resumed = runner.invoke(app, ["resume", "1", "--server", server.url])
    assert resumed.exit_code == 0 and resumed.output.startswith("sweep 1 running: "), resumed.output
    deleted = runner.invoke(app, ["delete", "1", "--server", server.url])
    assert deleted.exit_code == 0, deleted.output
    assert httpx.get(f"{server.url}/api/sweeps").json()["total"] == 0
    for command in ("cancel", "resume", "delete", "status"):
        gone = runner.invoke(app, [command, "1", "--server", server.url])
        assert gone.exit_code == 1, (command, gone.output)
        assert "not found" in one_error_line(gone.output)
    offline = runner.invoke(app, ["cancel", "1", "--server", f"http://127.0.0.1:{unused_port()}"])
    assert offline.exit_code == 2
    one_error_line(offline.output)


def _planted_sweep(
    url: str, objective, declared: dict | None = None, task: str = "planted-cli"
) -> int:
    """A 30-trial sweep finished by a scripted worker with a planted objective."""
    with httpx.Client(base_url=url, timeout=30) as c:
        if declared:
            body = {"worker_id": "decl", "tasks": [task], "task_params": {task: declared}}
            assert c.post("/api/trials/claim", json=body).status_code == 204
        spec = {
            "name": "planted",
            "task": {"name": task, "params": {"d": 256} if declared else {}},
            "space": {
                "lr": {"low": 1e-5, "high": 1e-2, "log": True},
                "weight_decay": {"low": 1e-3, "high": 10.0, "log": True},
                "beta1": 0.9,
                "beta2": 0.99,
            },
            "sampler": {"name": "random", "seed": 11},
            "pruner": {"name": "none"},
            "n_trials": 30,
            "reevaluate": "off",
        }
        sweep = c.post("/api/sweeps", json=spec).json()
        while (
            r := c.post("/api/trials/claim", json={"worker_id": "w", "tasks": [task]})
        ).status_code == 200:
            a = r.json()
            value = objective(a["params"]) + random.Random(a["seed"]).gauss(0, 0.1)
            body = {"state": "complete", "value": value}
            assert c.post(f"/api/trials/{a['trial_id']}/finish", json=body).status_code == 200
    return sweep["id"]


@pytest.mark.slow
def test_rule_of_a_sweep_shows_the_verdict_intervals_and_transfer(live_server, sqlite_url) -> None:
    server = live_server(sqlite_url)
    declared = {"d": {"type": "int", "low": 1, "high": 4096, "default": 64, "width": True}}
    sweep = _planted_sweep(
        server.url, lambda p: math.log(p["lr"] * p["weight_decay"] / 2e-5) ** 2, declared
    )
    fit = httpx.get(f"{server.url}/api/sweeps/{sweep}/scaling-rule").json()
    assert fit["verdict"] == "valley"
    own = runner.invoke(
        app,
        ["rule", "--sweep", str(sweep), "--width", "256", "--server", server.url],
        terminal_width=200,
    )
    assert own.exit_code == 0, own.output
    assert "verdict valley" in own.output and "90% CI" in own.output
    moved = f"lr {fmt(fit['optimum']['lr'])}, weight decay {fmt(fit['optimum']['weight_decay'])}"
    assert moved in " ".join(own.output.split()), own.output
    as_json = runner.invoke(
        app,
        [
            "rule",
            "--sweep",
            str(sweep),
            "--width",
            "1024",
            "--width-rule",
            "mup",
            "--json",
            "--server",
            server.url,
        ],
    )
    t = json.loads(as_json.output)["transfer"]
    assert t["lr"] == pytest.approx(fit["optimum"]["lr"] / 4)

    flat = _planted_sweep(server.url, lambda p: math.log(p["lr"] / 1e-3) ** 2, task="flat-cli")
    no_width = runner.invoke(
        app, ["rule", "--sweep", str(flat), "--width", "512", "--server", server.url]
    )
    assert no_width.exit_code == 1, no_width.output
    line = one_error_line(no_width.output)
    assert line.startswith("error: --from-width: task 'flat-cli' declares no width"), line
    assert line.endswith("give --from-width") and "from_width" not in line, line
    bad_rule = ["--width", "512", "--from-width", "128", "--width-rule", "linear"]
    wrong = runner.invoke(app, ["rule", "--sweep", str(flat), *bad_rule, "--server", server.url])
    assert one_error_line(wrong.output).startswith("error: --width-rule: "), wrong.output
    too_many = runner.invoke(app, ["best", str(flat), "--k", "101", "--server", server.url])
    assert too_many.exit_code == 1, too_many.output
    assert one_error_line(too_many.output).startswith("error: --k: "), too_many.output
    out = runner.invoke(
        app,
        [
            "rule",
            "--sweep",
            str(flat),
            "--width",
            "512",
            "--from-width",
            "128",
            "--server",
            server.url,
        ],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "verdict lr_only" in text and "only the lr moved" in text
    assert "no lr–weight-decay trade-off is drawn or moved" in text


@pytest.mark.slow
def test_submit_follow_shows_progress_then_the_best_config(
    live_server, sqlite_url: str, tmp_path: Path
) -> None:
    server = live_server(sqlite_url)
    worker = subprocess.Popen(
        [*lionsweep_command(), "worker", "--server", server.url, "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = subprocess.run(
            [
                *lionsweep_command(),
                "submit",
                str(write_spec(tmp_path, SMALL)),
                "--follow",
                "--interval",
                "0.3",
                "--server",
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4/4" in done.stdout
    assert "complete" in done.stdout
    assert "Best configs" in done.stdout
    # At 80 columns (a pipe) the table truncates nothing: the config column wraps instead.
    assert "…" not in done.stdout[done.stdout.index("Best configs") :]
    best = httpx.get(f"{server.url}/api/sweeps/1/best").json()["best"]
    assert f"\n{kwargs_line(best['optimizer_kwargs'])}\n" in done.stdout  # whole, on one line
    as_json = runner.invoke(app, ["best", "1", "--json", "--server", server.url])
    assert json.loads(as_json.output)["best"]["trial_number"] == best["trial_number"]


@pytest.mark.parametrize("name", ["digits-lion", "lion-vs-adamw-charlm-width-256-long-name"])
def test_submit_follow_cuts_nothing_at_80_columns(monkeypatch, name: str) -> None:
    """The live line of ``submit --follow``: trials done of all, the elapsed time, every count
    and the best config whole at 80 columns (the total and the time were cut to ``34/…``)."""
    import io

    from rich.console import Console

    import lionsweep.cli.commands as commands

    running = {
        "id": 1,
        "name": name,
        "n_trials": 60,
        "finished": 34,
        "status": "running",
        "counts": {"complete": 20, "pruned": 14, "failed": 0, "running": 1, "handed_back": 2},
        "best": {"value": 0.0125123, "mean": 0.0125123, "n_seeds": 2},
    }
    answers = iter([running, {**running, "status": "complete"}])

    class Sweeps:
        def get(self, path: str) -> dict:
            assert path == "/api/sweeps/1"
            return next(answers)

    console = Console(width=80, file=io.StringIO(), force_terminal=False)
    monkeypatch.setattr(commands, "console", console)
    monkeypatch.setattr(commands.time, "sleep", lambda s: None)
    commands.follow_sweep(Sweeps(), 1)
    out = console.file.getvalue()
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "34/60" in out and "0:00:0" in out, out
    text = " ".join(out.split())
    assert "20 complete · 14 pruned · 0 failed · 1 running · 2 handed back" in text, out
    assert "best 0.01251 (2 seeds)" in text, out
    lines = out.splitlines()
    folded = lines[: next(i for i, line in enumerate(lines) if line.startswith("20 complete"))]
    assert "".join(line.split()[0] for line in folded) == name, out  # folded, not cut


def test_bench_forwards_arguments_and_exit_code() -> None:
    help_run = subprocess.run(
        [*lionsweep_command(), "bench", "--", "--help"], capture_output=True, text=True
    )
    assert help_run.returncode == 0, help_run.stderr
    assert "optim_step.py" in help_run.stdout
    bad = subprocess.run(
        [*lionsweep_command(), "bench", "--no-such-flag"], capture_output=True, text=True
    )
    assert bad.returncode == 2


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*lionsweep_command(), "up", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} is already in use" in one_error_line(done.stderr)
    assert not (tmp_path / "lionsweep.db").exists()


# -- commands that open the database: bad settings are one line, never a traceback ------------


def run_db_command(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``lionsweep *args`` in ``tmp_path`` with only the given ``LIONSWEEP_*`` variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIONSWEEP_")}
    return subprocess.run(
        [*lionsweep_command(), *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def only_error_line(done: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed command (log lines may precede it), no traceback."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


DB_COMMANDS = {
    "serve": ["serve", "--port", "0"],
    "db upgrade": ["db", "upgrade"],
    "token create": ["token", "create", "--scope", "read"],
}


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_malformed_settings_name_the_variable_and_exit_2(command: str, tmp_path: Path) -> None:
    done = run_db_command(DB_COMMANDS[command], tmp_path, LIONSWEEP_PORT="abc")
    assert done.returncode == 2, done.stdout + done.stderr
    line = only_error_line(done)
    assert "LIONSWEEP_PORT" in line and "integer" in line
    assert not (tmp_path / "lionsweep.db").exists()


@pytest.mark.parametrize("command", DB_COMMANDS)
def test_sqlite_file_in_a_missing_directory_is_one_line(command: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'lionsweep.db'}"
    done = run_db_command(DB_COMMANDS[command], tmp_path, LIONSWEEP_DATABASE_URL=url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot open the database" in only_error_line(done)


def test_token_create_with_an_unknown_scope_is_one_line(tmp_path: Path) -> None:
    done = run_db_command(["token", "create", "--scope", "bogus"], tmp_path)
    assert done.returncode == 2
    assert "scopes must be among" in one_error_line(done.stderr)
    assert done.stdout == ""


def test_token_commands_take_the_database_of_an_up_and_never_create_an_empty_one(
    tmp_path: Path,
) -> None:
    """``token list`` in a directory with no database said "no tokens (the server is open)"
    after creating an empty one; a first token, which ends a database's open mode, says so."""
    for args in (["token", "list"], ["token", "revoke", "1"]):
        done = run_db_command(args, tmp_path)
        assert done.returncode == 2 and "no database at" in one_error_line(done.stderr), done
        assert not (tmp_path / "lionsweep.db").exists()
    first = run_db_command(["token", "create", "--scope", "read", "--db", "up.db"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("lsw_") and len(first.stdout.splitlines()) == 1
    assert "first token" in first.stderr and "--scope worker --scope submit" in first.stderr
    second = run_db_command(["token", "create", "--scope", "worker", "--db", "up.db"], tmp_path)
    assert second.returncode == 0 and second.stderr == "", second.stderr
    listed = run_db_command(["token", "list", "--db", str(tmp_path / "up.db")], tmp_path)
    assert listed.returncode == 0 and "read" in listed.stdout and "worker" in listed.stdout
    assert not (tmp_path / "lionsweep.db").exists()


def test_settings_errors_never_echo_the_value(tmp_path: Path) -> None:
    """A rejected database URL may hold a password: the message names the rule, not the value."""
    url = "mysql://lion:hunter2@db.example/sweeps"
    done = run_db_command(["db", "upgrade"], tmp_path, LIONSWEEP_DATABASE_URL=url)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "LIONSWEEP_DATABASE_URL" in line and "hunter2" not in line


def test_best_says_lion_vs_adamw_in_80_columns(live_server, sqlite_url) -> None:
    from test_service_arms import OPTIMA, planted, run_sweep

    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        arms_id = run_sweep(
            c,
            planted(0.25, 0.0),
            baseline="adamw",
            sampler={"name": "random", "seed": 3},
            n_trials=4,
            enqueue=OPTIMA,
            reevaluate={"top_k": 1, "seeds": 3},
        )
        plain_id = run_sweep(c, planted(0.0, 0.0), n_trials=2, reevaluate="off")
        arms = c.get(f"/api/sweeps/{arms_id}/arms").json()
    assert arms["verdict"] == "adamw_better", arms["reason"]
    out = runner.invoke(app, ["best", str(arms_id), "--server", server.url], terminal_width=80)
    assert out.exit_code == 0, out.output
    assert all(len(line) <= 80 for line in out.output.splitlines()), out.output
    lo, hi = sorted(abs(v) for v in arms["difference_ci"])
    head = f"Lion vs AdamW: AdamW better by {fmt(arms['difference'])} [{fmt(lo)}–{fmt(hi)}]"
    assert head in out.output, out.output
    lion = arms["lion"]["best"]
    assert f"Lion  {fmt(lion['mean'])} [{fmt(lion['ci'][0])}–{fmt(lion['ci'][1])}]" in out.output
    lr = f"lr AdamW/Lion {fmt(arms['lr_ratio']['value'])}× (best configs), paper 3–10×: unclear"
    assert lr in out.output
    assert "wd AdamW/Lion 0.2× (best configs), paper 0.1–0.33×: unclear" in out.output
    plain = runner.invoke(app, ["best", str(plain_id), "--server", server.url])
    assert plain.exit_code == 0 and "Lion vs AdamW" not in plain.output, plain.output
    as_json = runner.invoke(app, ["best", str(arms_id), "--json", "--server", server.url])
    assert "Lion vs AdamW" not in as_json.output and json.loads(as_json.output)["best"]


def test_submit_follow_ends_with_lion_vs_adamw(live_server, sqlite_url, tmp_path: Path) -> None:
    """``submit --follow`` ends as ``best`` does, with the arms' answer (it left it out)."""
    from test_service_arms import OPTIMA, SPACE, finish_all, planted

    server = live_server(sqlite_url)
    task = f"f{uuid.uuid4().hex[:10]}"
    spec = {
        "name": "follow-arms",
        "task": {"name": task},
        "space": SPACE,
        "pruner": {"name": "none"},
        "baseline": "adamw",
        "sampler": {"name": "random", "seed": 3},
        "n_trials": 4,
        "enqueue": OPTIMA,
        "reevaluate": {"top_k": 1, "seeds": 3},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    submit = ["submit", str(path), "--idempotency-key", "follow-1", "--server", server.url]
    assert runner.invoke(app, submit).exit_code == 0
    with httpx.Client(base_url=server.url, timeout=30) as c:
        finish_all(c, task, planted(0.25, 0.0))
    out = runner.invoke(app, [*submit, "--follow"], terminal_width=80)
    assert out.exit_code == 0, out.output
    assert "best optimizer kwargs" in out.output and "Lion vs AdamW: " in out.output, out.output


def test_status_list_and_progress_show_the_seed_mean_best_with_its_seed_count(
    live_server, sqlite_url: str, tmp_path: Path, capsys
) -> None:
    from types import SimpleNamespace

    from lionsweep.server_cli import progress_printer
    from worker.client import Client

    server = live_server(sqlite_url)
    spec = {**SMALL, "task": {"name": "scripted-best"}, "reevaluate": {"top_k": 2, "seeds": 3}}
    assert runner.invoke(app, ["submit", str(write_spec(tmp_path, spec)), "--server", server.url])
    rng = random.Random(2)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        body = {"worker_id": "w", "tasks": ["scripted-best"]}
        while (got := c.post("/api/trials/claim", json=body)).status_code == 200:
            a = got.json()
            value = math.log(a["params"]["lr"] / 1e-3) ** 2 + rng.gauss(0, 0.3)
            done = {"state": "complete", "value": value}
            assert c.post(f"/api/trials/{a['trial_id']}/finish", json=done).status_code == 200
        best = c.get("/api/sweeps/1/best").json()["best"]
        sweep = c.get("/api/sweeps/1").json()
    single = sweep["best"]["best_single_value"]
    assert best["n_seeds"] == 2 and single != best["mean"]
    lo, hi = best["ci"]
    seed_mean = f"{fmt(best['mean'])} [{fmt(lo)}{' to ' if min(lo, hi) < 0 else '–'}{fmt(hi)}]"
    shown = f"{seed_mean} (trial {best['trial_number']}, 2 seeds)"

    listing = runner.invoke(app, ["status", "--server", server.url], terminal_width=200)
    assert listing.exit_code == 0, listing.output
    flat = " ".join(re.sub(r"[│┃]", " ", listing.output).split())
    assert "best (seed" in flat and f"{fmt(best['mean'])} (2 seeds)" in flat, flat
    assert fmt(single) not in flat
    one = runner.invoke(app, ["status", "1", "--server", server.url], terminal_width=200)
    assert one.exit_code == 0, one.output
    assert f"best config (seed mean) │ {shown}" in one.output
    number = sweep["best"]["best_single_trial_number"]
    assert f"best single run         │ {fmt(single)} (trial {number}; one seed" in one.output

    with Client(server.url) as client:
        progress_printer(client, SimpleNamespace(done=False), {"id": 1})()
    line = capsys.readouterr().out
    assert f"best {shown}, complete" in " ".join(line.split()), line


# -- 80 columns: nothing cut, copyable output whole on one line --------------------------------


def lionsweep_at_80(*args: str) -> str:
    """The stdout of ``lionsweep *args`` run as a subprocess in an 80-column terminal."""
    env = {**os.environ, "COLUMNS": "80", "LINES": "50"}
    done = subprocess.run(
        [*lionsweep_command(), *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "…" not in done.stdout, done.stdout  # nothing cut with an ellipsis
    too_wide = [line for line in done.stdout.splitlines() if len(line) > 80]
    return done.stdout if not too_wide else pytest.fail(f"lines over 80 columns: {too_wide}")


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table as cells, each cell's wrapped or folded lines joined
    without spaces (a row starts where its first cell is not empty)."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return [[c.replace(" ", "") for c in row] for row in rows]


def test_status_best_and_submit_at_80_columns_cut_nothing(
    live_server, sqlite_url: str, tmp_path: Path
) -> None:
    server = live_server(sqlite_url)
    long_task = "my-own-training-script-nobody-runs-yet"
    spec = {**SMALL, "name": "lion-vs-adamw-charlm-width-256-long-name", "reevaluate": "off"}
    out = lionsweep_at_80(
        "submit",
        str(write_spec(tmp_path, {**spec, "task": {"name": long_task}})),
        "--server",
        server.url,
    )
    # too long for one line with its link: the link, whole, on a line of its own
    assert f"Submitted sweep 1 ({spec['name']}, 4 trials):\n{server.url}/sweeps/1\n" in out, out
    with httpx.Client(base_url=server.url, timeout=30) as c:
        body = {**SMALL, "name": "scripted", "task": {"name": "scripted-80"}, "reevaluate": "off"}
        assert c.post("/api/sweeps", json=body).status_code == 201
        claim = {"worker_id": "w", "tasks": ["scripted-80"]}
        while (got := c.post("/api/trials/claim", json=claim)).status_code == 200:
            a = got.json()
            done = {"state": "complete", "value": math.log(a["params"]["lr"] / 1e-3) ** 2 / 7}
            assert c.post(f"/api/trials/{a['trial_id']}/finish", json=done).status_code == 200
        sweeps = {s["id"]: s for s in c.get("/api/sweeps").json()["items"]}
        best = c.get("/api/sweeps/2/best").json()["best"]

    listing = lionsweep_at_80("status", "--server", server.url)
    head = [line.strip("┃").split("┃") for line in listing.splitlines() if line[:1] == "┃"]
    columns = [" ".join(" ".join(parts).split()) for parts in zip(*head, strict=True)]
    assert columns == [*("id", "name", "task", "status", "done", "c/p/f/r", "best (seed mean)")], (
        listing
    )
    rows = {row[0]: row for row in table_rows(listing)}
    assert rows["1"][1:6] == [spec["name"], long_task, "noworkeryet", "0/4", "0/0/0/0"], rows
    assert rows["2"][1:6] == ["scripted", "scripted-80", "complete", "4/4", "4/0/0/0"], rows
    assert rows["2"][6] == f"{fmt(sweeps[2]['best']['mean'])}(1seed)", rows

    one = lionsweep_at_80("status", "1", "--server", server.url)
    fields = {row[0]: row[1] for row in table_rows(one)}
    assert fields["status"] == f"waitingforaworkerwithtask'{long_task}'", fields

    shown = lionsweep_at_80("best", "2", "--server", server.url).splitlines()
    kwargs_at = shown.index(next(s for s in shown if s.startswith("best optimizer kwargs")))
    copied = json.loads(shown[kwargs_at + 1])  # the line after the label, whole
    exact = best["optimizer_kwargs"]
    assert copied.keys() == exact.keys()
    assert copied["lr"] == pytest.approx(exact["lr"], rel=1e-5)
    assert copied["weight_decay"] == pytest.approx(exact["weight_decay"], rel=1e-5)
    assert copied["betas"] == pytest.approx(exact["betas"], rel=1e-5)


def test_server_text_in_square_brackets_is_printed_as_is(monkeypatch) -> None:
    """Reasons and notes come from the server: rich must not read their brackets as markup."""
    from rich.console import Console

    import lionsweep.cli.render as render

    console = Console(width=100, record=True)
    monkeypatch.setattr(render, "console", console)
    fit = {
        "verdict": "insufficient",
        "reason": "too few trials [need 12] for [bold]this[/bold]",
        "notes": ["weight decay [0, 1e-3] holds the control"],
        "n": 3,
    }
    render.print_sweep_rule(fit, 5)
    text = console.export_text()
    assert "too few trials [need 12] for [bold]this[/bold]" in text
    assert "weight decay [0, 1e-3] holds the control" in text


def test_a_spec_file_reads_exponents_booleans_and_dates_as_yaml_1_2_does(tmp_path) -> None:
    from lionsweep.cli.commands import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(
        "name: 2026-01-01\nreevaluate: off\ntask: {name: quadratic}\n"
        "space: {lr: {low: 1e-5, high: 1e-3}}\n"
    )
    assert load_spec(path) == {
        "name": "2026-01-01",
        "reevaluate": "off",
        "task": {"name": "quadratic"},
        "space": {"lr": {"low": 1e-5, "high": 1e-3}},
    }
