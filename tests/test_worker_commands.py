"""Command tasks: a real ``lionsweep worker --commands`` running real programs per trial,
against a real ``lionsweep serve`` (SQLite).

Most cases run ``PROGRAM`` below (Python, so that one file covers every behaviour; it
reports with the stdout line protocol, not the Python client). ``examples/command_task``
holds a sh + awk program on the line protocol and a Python one on ``current_trial()``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from conftest import wait_for
from test_worker_agent import (
    FAST_LEASES,
    lionsweep_command,
    running_trial,
    start_worker,  # noqa: F401 (the fixture behind new_worker)
    submit,
    trials,
)

from worker import commands
from worker.command_runner import Final, ProtocolError, Report, parse_line

ENDED = ("complete", "pruned", "failed")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "command_task"

PROGRAM = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time
    from pathlib import Path

    def param(name):
        return json.loads(os.environ["LIONSWEEP_TASK_PARAM_" + name.upper()])

    def say(message):
        print("lionsweep: " + json.dumps(message), flush=True)

    def record_pids():  # the program and a child in its process group
        child = subprocess.Popen(["sleep", "600"])
        (out / f"pids-{trial}.json").write_text(json.dumps([os.getpid(), child.pid]))

    mode, lr = param("mode"), json.loads(os.environ["LIONSWEEP_PARAM_LR"])
    trial, out = os.environ["LIONSWEEP_TRIAL_ID"], Path(os.environ["OUT_DIR"])
    print(f"mode {mode}, lr {lr}", flush=True)
    if param("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "ok":
        for step in (1, 2, 3):
            say({"step": step, "value": lr * (4 - step)})
        say({"final": lr, "metrics": {"acc": 0.5}})
    elif mode == "exit3":
        print("\\n".join(f"context line {i}" for i in range(15)), file=sys.stderr)
        print("ValueError: the data is gone", file=sys.stderr)
        sys.exit(3)
    elif mode == "silent":
        print("trained, but never said so")
    elif mode == "malformed":
        say({"step": 1, "value": 0.5})
        print("lionsweep: {step: 2, value: 0.4}", flush=True)
        time.sleep(60)
    elif mode == "nan":
        say({"step": 1, "value": 0.5})
        print('lionsweep: {"step": 2, "value": NaN}', flush=True)
        time.sleep(60)
    elif mode == "long":  # quiet for `seconds`, then done
        record_pids()
        time.sleep(param("seconds"))
        say({"final": lr})
    elif mode == "prunable":  # a large lr trains long; steps come in pairs, no pause
        record_pids()
        for step in range(1, 6 if lr < 1e-4 else 600):
            say({"step": step, "value": lr})
            if step % 2 == 0:
                time.sleep(0.1)
        say({"final": lr})
    elif mode == "daemon":  # a grandchild in a session of its own outlives its parent
        if os.fork() == 0:
            if os.fork() == 0:
                os.setsid()
                tmp = out / f"daemon-{trial}.tmp"
                tmp.write_text(json.dumps(os.getpid()))
                tmp.rename(out / f"daemon-{trial}.json")
                time.sleep(600)
            os._exit(0)
        os.wait()
        while not (out / f"daemon-{trial}.json").exists():
            time.sleep(0.01)
        time.sleep(param("seconds"))
        say({"final": lr})
    elif mode == "self_finish":  # as a Python client would, as the worker's holder
        import httpx

        body = {"state": "complete", "value": 0.123, "worker_id": os.environ["LIONSWEEP_WORKER_ID"]}
        url = f"{os.environ['LIONSWEEP_SERVER']}/api/trials/{trial}/finish"
        httpx.post(url, json=body).raise_for_status()
    elif mode == "record":
        trial_file = Path(os.environ["LIONSWEEP_TRIAL_FILE"])
        seen = {"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}
        seen["trial"] = json.loads(trial_file.read_text())
        (out / "record.json").write_text(json.dumps(seen))
        say({"final": 1.0})
    """
)

MODES = [
    "ok",
    "exit3",
    "silent",
    "malformed",
    "nan",
    "long",
    "prunable",
    "daemon",
    "self_finish",
    "record",
]
PARAMS = {
    "mode": {"type": "str", "default": "ok", "choices": MODES},
    "seconds": {"type": "float", "default": 0.0, "low": 0.0, "high": 600.0},
    "ignore_term": {"type": "bool", "default": False},
    "note": {"type": "str", "default": ""},
}


def _toml(value: object) -> str:
    """``value`` as a TOML value (JSON strings, numbers and bools are valid TOML)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def write_commands(tmp_path: Path) -> tuple[Path, Path]:
    """The test program and a commands file registering it as ``prog`` and, with a 1 s
    timeout, ``prog_timeout``; return (commands file, the program's output folder)."""
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    (work / "prog.py").write_text(PROGRAM)
    lines = []
    for name, extra in (("prog", ""), ("prog_timeout", "timeout = 1\n")):
        lines.append(
            f"[tasks.{name}]\n"
            f"command = {_toml([sys.executable, 'prog.py', '--literal', '$(touch pwned)'])}\n"
            'cwd = "work"\n'
            f"env = {_toml({'OUT_DIR': str(out), 'EXTRA': 'from config'})}\n"
            f"stop_grace = 1\n{extra}"
            f"[tasks.{name}.params]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in PARAMS.items())
        )
    path = tmp_path / "commands.toml"
    path.write_text("\n".join(lines))
    return path, out


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids(out: Path, trial_id: int) -> list[int]:
    """The program's pid and its child's, as the program recorded them."""
    return json.loads((out / f"pids-{trial_id}.json").read_text())


def by_number(api: httpx.Client, sweep_id: int) -> dict[int, dict]:
    """A sweep's trials by number."""
    return {t["number"]: t for t in trials(api, sweep_id)}


@pytest.fixture
def new_worker(start_worker):  # noqa: F811
    """``start_worker`` of the agent's tests: ``new_worker(url, *args, env=...)``."""
    return start_worker


# ---- a malformed config stops the worker at start -------------------------------------

BAD_CONFIGS = {
    "missing command": ('[tasks.a]\ncwd = "."\n', "task 'a': no command"),
    "command not a list": (
        '[tasks.a]\ncommand = "python3 train.py"\n',
        "task 'a': command must be a list of strings (argv, run without a shell), "
        "not str 'python3 train.py'",
    ),
    "program not found": (
        '[tasks.a]\ncommand = ["no-such-program-x9"]\n',
        "task 'a': program 'no-such-program-x9' not found on PATH",
    ),
    "not executable": ('[tasks.a]\ncommand = ["./data.txt"]\n', "data.txt' is not executable"),
    "unknown key": (
        '[tasks.a]\ncommand = ["true"]\nshell = true\n',
        "task 'a': unknown key 'shell' (known: command, cwd, env, params, stop_grace, timeout)",
    ),
    "bad param": (
        '[tasks.a]\ncommand = ["true"]\n'
        '[tasks.a.params]\nlr = { type = "float", low = 1, high = 0 }\n',
        "task 'a': param 'lr': low 1 is above high 0",
    ),
    "two steps": (
        '[tasks.a]\ncommand = ["true"]\n[tasks.a.params]\n'
        'e = { type = "int", default = 1, role = "steps" }\n'
        'f = { type = "int", default = 2, role = "steps" }\n',
        "task 'a': at most one param is the steps, not ['e', 'f']",
    ),
    "bad role": (
        '[tasks.a]\ncommand = ["true"]\n[tasks.a.params]\n'
        'e = { type = "int", default = 1, role = "size" }\n',
        "task 'a': param 'e': role must be one of width, steps, batch, not 'size'",
    ),
    "param type": (
        '[tasks.a]\ncommand = ["true"]\nparams = { n = { type = "integer" } }\n',
        "task 'a': param 'n': param type must be one of",
    ),
    "cwd missing": (
        '[tasks.a]\ncommand = ["true"]\ncwd = "nowhere"\n',
        "nowhere' is not a directory",
    ),
    "reserved env": (
        '[tasks.a]\ncommand = ["true"]\nenv = { LIONSWEEP_TRIAL_ID = "1" }\n',
        "task 'a': env LIONSWEEP_TRIAL_ID is set by the worker for each trial",
    ),
    "clash": (
        '[tasks.quadratic]\ncommand = ["true"]\n',
        "task 'quadratic': clashes with the built-in",
    ),
    "yaml": (
        "tasks:\n  a:\n    command: [true]\n",
        "task 'a': command must be a non-empty list of str",
    ),
}


def test_a_malformed_command_config_stops_the_worker_with_one_line(tmp_path, free_port):
    (tmp_path / "data.txt").write_text("not a program")
    url = f"http://127.0.0.1:{free_port}"  # never reached: the worker stops before claiming
    started = {}
    for case, (text, _) in BAD_CONFIGS.items():
        path = tmp_path / f"{case.replace(' ', '_')}.{'yaml' if case == 'yaml' else 'toml'}"
        path.write_text(text)
        started[case] = (
            path,
            subprocess.Popen(
                [*lionsweep_command(), "worker", "--server", url, "--commands", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    # With --gpus the file is checked once, before any agent starts.
    path = started["missing command"][0]
    args = ["--gpus", "0,1", "--device", "cpu", "--commands", str(path)]
    started["supervised"] = (
        path,
        subprocess.Popen(
            [*lionsweep_command(), "worker", "--server", url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
    )
    expected = {k: v[1] for k, v in BAD_CONFIGS.items()}
    expected["supervised"] = expected["missing command"]
    for case, (path, proc) in started.items():
        output, _ = proc.communicate(timeout=60)
        lines = output.strip().splitlines()
        assert proc.returncode == 2, (case, output)
        assert len(lines) == 1 and "ERROR" in lines[0], (case, output)
        assert f"{path}: " in lines[0] and expected[case] in lines[0], (case, output)


def test_a_yaml_config_registers_the_same_tasks_as_toml(tmp_path):
    (tmp_path / "work").mkdir()
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[tasks.t]\ncommand = ["sh", "-c", "exit 0"]\ncwd = "work"\nenv = { A = "1" }\n'
        "timeout = 5\n[tasks.t.params]\n"
        'n = { type = "int", default = 2, low = 1, role = "steps" }\n'
    )
    yaml = tmp_path / "c.yaml"
    yaml.write_text(
        "tasks:\n  t:\n    command: [sh, -c, exit 0]\n    cwd: work\n    env: {A: '1'}\n"
        "    timeout: 5\n    params: {n: {type: int, default: 2, low: 1, role: steps}}\n"
    )
    assert commands.load(toml) == commands.load(yaml)
    (task,) = commands.load(yaml).values()
    assert task.argv[0].endswith("/sh") and task.cwd == tmp_path / "work"
    assert task.announce() == {
        "n": {"type": "int", "low": 1, "high": None, "choices": None, "default": 2, "role": "steps"}
    }
    assert task.task_params({"task": {"params": {}}}) == {"n": 2}


def test_a_yaml_config_reads_exponents_as_numbers(tmp_path):
    """``1e-5`` in a YAML config is the number (YAML 1.1 alone reads it as a string)."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "tasks:\n  t:\n    command: [sh, -c, exit 0]\n"
        "    params: {lr: {type: float, default: 3e-4, low: 1e-6, high: 1e-1}}\n"
    )
    (task,) = commands.load(config).values()
    assert task.announce()["lr"] | {"role": None} == {
        "type": "float",
        "low": 1e-6,
        "high": 0.1,
        "choices": None,
        "default": 3e-4,
        "role": None,
    }


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("epoch 3 lionsweep: {}", None),
        ('lionsweep: {"step": 0, "value": 1}', Report(0, 1.0)),
        ('lionsweep:{"step": 2, "value": 0.5, "metrics": {"acc": 1}}', Report(2, 0.5, {"acc": 1})),
        ('lionsweep: {"final": -3.5}', Final(-3.5)),
        ('lionsweep: {"step": true, "value": 1}', "step must be an int ≥ 0, not true"),
        ('lionsweep: {"step": -1, "value": 1}', "step must be an int ≥ 0, not -1"),
        ('lionsweep: {"step": 1, "value": "0.5"}', 'value must be a number, not "0.5"'),
        ('lionsweep: {"step": 1}', "no value"),
        ('lionsweep: {"step": 1, "value": 1, "loss": 2}', "unknown key 'loss'"),
        ('lionsweep: {"final": Infinity}', "non-finite final value: Infinity"),
        ('lionsweep: {"step": 4, "value": -Infinity}', "non-finite value at step 4: -Infinity"),
        ('lionsweep: {"final": 1, "metrics": {"a": NaN}}', "non-finite metric 'a': NaN"),
        ("lionsweep: [1, 2]", "expected an object"),
        ("lionsweep: 0.5", "expected an object"),
    ],
)
def test_the_line_protocol(line, parsed):
    if parsed is None or isinstance(parsed, Report | Final):
        assert parse_line(line) == parsed
    else:
        with pytest.raises(ProtocolError, match=re.escape(parsed)):
            parse_line(line)


# ---- what a program is given, and how its end becomes the trial's ---------------------


@pytest.mark.slow
def test_outcomes_of_programs_and_the_worker_carries_on(
    sqlite_url, live_server, new_worker, tmp_path
):
    commands, out = write_commands(tmp_path)
    note = '$(touch pwned); rm -rf "$HOME" `touch pwned2` && echo x > pwned3 | cat; \\ \'"'
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as api:

        def sweep(mode: str, task: str = "prog", **params: object) -> int:
            return submit(api, 1, task=task, params={"mode": mode, **params}, max_retries=0)

        sweeps = {
            mode: sweep(mode)
            for mode in ("exit3", "silent", "malformed", "nan", "self_finish", "ok")
        }
        sweeps["record"] = sweep("record", note=note)
        # Submitted before any worker declared the params: refused by the worker instead.
        sweeps["undeclared"] = sweep("rm -rf /")
        sweeps["timeout"] = sweep("long", task="prog_timeout", seconds=60)
        worker = new_worker(server.url, "--commands", str(commands), "--idle-exit", "1")
        assert worker.wait(90) == 0, worker.log()
        ended = {k: trials(api, s)[0] for k, s in sweeps.items()}
        # The worker announced the declarations: a sweep that breaks them is refused.
        bad = {"name": "x", "task": {"name": "prog", "params": {"mode": "rm -rf /"}}}
        r = api.post("/api/sweeps", json=bad)
        assert r.status_code == 422 and "must be one of" in r.text, r.text

    def outcome(key: str) -> tuple[str, str | None]:
        return ended[key]["state"], ended[key]["reason"]

    ok = ended["ok"]
    assert (ok["state"], ok["value"]) == ("complete", ok["params"]["lr"])
    assert ok["intermediate_values"] == {str(s): ok["params"]["lr"] * (4 - s) for s in (1, 2, 3)}
    assert ok["metrics"]["acc"] == 0.5 and ok["metrics"]["time_wall_s"] > 0
    assert ok["config"]["task_params"] == {
        "mode": "ok",
        "seconds": 0.0,
        "ignore_term": False,
        "note": "",
    }
    state, reason = outcome("exit3")
    assert state == "failed" and reason.startswith("exit code 3: context line 6 | context line 7")
    assert reason.endswith("context line 14 | ValueError: the data is gone"), reason
    assert outcome("silent") == ("failed", "program exited 0 without finishing trial 0")
    state, reason = outcome("malformed")
    assert state == "failed"
    assert reason.startswith("malformed metric line 3: not JSON"), reason
    assert reason.endswith(": lionsweep: {step: 2, value: 0.4}"), reason
    assert ended["malformed"]["intermediate_values"] == {"1": 0.5}
    state, reason = outcome("nan")
    assert (state, reason.split(" (line")[0]) == ("failed", "non-finite value at step 2: NaN")
    for key in ("malformed", "nan"):  # stopped at once, not after its 60 s sleep
        assert ended[key]["metrics"]["time_wall_s"] < 10, ended[key]
    assert outcome("timeout") == ("failed", "timed out after 1 s")
    state, reason = outcome("undeclared")
    assert state == "failed" and reason.startswith("invalid task params: mode: must be one of")
    # The program finished its trial itself: the worker's own finish does not overwrite it.
    finished = ended["self_finish"]
    assert (finished["state"], finished["value"], finished["reason"]) == ("complete", 0.123, None)

    # The params arrive as data, verbatim; the configured argv is run as is, with no shell.
    seen = json.loads((out / "record.json").read_text())
    env, record = seen["env"], ended["record"]
    assert seen["argv"][1:] == ["--literal", "$(touch pwned)"]
    assert json.loads(env["LIONSWEEP_TASK_PARAM_NOTE"]) == note
    assert json.loads(env["LIONSWEEP_TASK_PARAM_MODE"]) == "record"
    assert json.loads(env["LIONSWEEP_PARAM_LR"]) == record["params"]["lr"]
    assert seen["trial"]["task"]["params"]["note"] == note
    assert seen["trial"]["params"] == record["params"]
    assert seen["trial"]["trial_id"] == int(env["LIONSWEEP_TRIAL_ID"])
    assert int(env["LIONSWEEP_SEED"]) == seen["trial"]["seed"]
    assert env["LIONSWEEP_SERVER"] == server.url and env["LIONSWEEP_WORKER_ID"]
    assert env["LIONSWEEP_DEVICE"] == "cpu" and env["EXTRA"] == "from config"
    assert "LIONSWEEP_TOKEN" not in env  # this server has no tokens
    assert seen["cwd"] == str(tmp_path / "work")
    assert not Path(env["LIONSWEEP_TRIAL_FILE"]).exists()  # removed after the trial
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))
    assert record["config"]["command"][1:] == ["prog.py", "--literal", "$(touch pwned)"]

    log = worker.log()
    assert "trial 0 | mode ok, lr" in log  # other stdout lines go to the log
    assert "stderr | ValueError: the data is gone" in log
    assert "already ended on the server (trial " in log
    assert "Traceback" not in log


# ---- stopping a program: prune, cancel, worker SIGTERM, worker kill -9 -----------------


@pytest.mark.slow
def test_prune_and_cancel_stop_the_programs_process_group(
    sqlite_url, live_server, new_worker, tmp_path
):
    commands, out = write_commands(tmp_path)
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        # Trial 1 reports 1e-3 against trial 0's 1e-5: pruned at its first report. It
        # ignores SIGTERM (its child does not), so it ends by SIGKILL after stop_grace (1 s).
        pruned = submit(
            api,
            2,
            task="prog",
            params={"mode": "prunable", "ignore_term": True},
            pruner={"name": "median", "n_startup_trials": 1},
            enqueue=[{"lr": 1e-5, "weight_decay": 0.1}, {"lr": 1e-3, "weight_decay": 0.1}],
        )
        worker = new_worker(server.url, "--commands", str(commands))
        first, second = wait_for(
            lambda: (
                len(t := by_number(api, pruned)) == 2
                and all(x["state"] in ENDED for x in t.values())
                and (t[0], t[1])
            ),
            60,
            "both trials to end",
        )
        assert (first["state"], first["value"]) == ("complete", 1e-5)
        assert (second["state"], second["reason"]) == ("pruned", None)
        # Step 2 was already printed when the prune came back: it is not relayed.
        assert list(second["intermediate_values"]) == ["1"]
        assert second["metrics"]["time_wall_s"] < 6
        assert not any(map(alive, pids(out, second["trial_id"])))
        # The first program left its child running: stopped when the program exited.
        assert not any(map(alive, pids(out, first["trial_id"])))
        assert "program still running 1s after SIGTERM; SIGKILL" in worker.log()

        cancelled = submit(api, 1, task="prog", params={"mode": "long", "seconds": 600})
        victim = wait_for(lambda: running_trial(api, cancelled), 30, "a running trial")
        wait_for(lambda: (out / f"pids-{victim['trial_id']}.json").exists(), 30, "the program")
        assert api.post(f"/api/sweeps/{cancelled}/cancel").status_code == 200
        ended = wait_for(
            lambda: (t := by_number(api, cancelled)[0])["state"] != "running" and t,
            30,
            "the trial to end",
        )
        assert (ended["state"], ended["reason"]) == ("failed", "stopped by server")
        assert not any(map(alive, pids(out, victim["trial_id"])))
        assert worker.process.poll() is None  # the worker carries on
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()


@pytest.mark.slow
def test_sigterm_hands_the_trial_back_and_kill_9_is_requeued_by_the_reaper(
    sqlite_url, live_server, new_worker, tmp_path
):
    commands, out = write_commands(tmp_path)
    args = ("--commands", str(commands))
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep_id = submit(api, 1, task="prog", params={"mode": "long", "seconds": 4})

        def program_of(trial: dict) -> list[int]:
            path = out / f"pids-{trial['trial_id']}.json"
            wait_for(path.exists, 30, "the program to start")
            return pids(out, trial["trial_id"])

        worker = new_worker(server.url, *args)
        first = wait_for(lambda: running_trial(api, sweep_id), 60, "a running trial")
        program = program_of(first)
        worker.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(30) == 0, worker.log()
        assert time.monotonic() - started < 5
        assert not any(map(alive, program))
        handed_back = by_number(api, sweep_id)[first["number"]]
        assert (handed_back["state"], handed_back["reason"]) == ("failed", "worker shutdown")

        doomed = new_worker(server.url, *args)
        retry = wait_for(lambda: running_trial(api, sweep_id), 60, "the retry to run")
        assert retry["retry_of"] == first["number"]
        program = program_of(retry)
        doomed.process.kill()
        doomed.process.wait(10)
        wait_for(lambda: not alive(program[0]), 10, "the program to die with its worker")
        # The reaper re-queues the lost trial once its lease expires; a rescuer started
        # sooner could find nothing to claim for its one idle second and exit.
        wait_for(
            lambda: by_number(api, sweep_id)[retry["number"]]["state"] == "failed",
            60,
            "the reaper to re-queue the lost trial",
        )
        rescuer = new_worker(server.url, *args, "--idle-exit", "1")
        assert rescuer.wait(60) == 0, rescuer.log()
        done = by_number(api, sweep_id)
        lost = done[retry["number"]]
        assert lost["state"] == "failed" and "lease expired" in lost["reason"]
        (last,) = [t for t in done.values() if t["retry_of"] == retry["number"]]
        assert last["state"] == "complete" and last["value"] == last["params"]["lr"]


# ---- descendants that leave the program's process group die with the trial ----------


def daemon_of(out: Path, trial_id: int) -> int:
    """The pid of the trial's grandchild that called ``setsid()``, once it has written it."""
    path = out / f"daemon-{trial_id}.json"
    wait_for(path.exists, 30, "the grandchild to start")
    return json.loads(path.read_text())


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended and been reaped (no zombie left behind)."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def no_stray_daemons(tmp_path):
    """Kill, at teardown, any grandchild a failed test left running (this test's own)."""
    yield
    for path in (tmp_path / "out").glob("daemon-*.json"):
        pid = json.loads(path.read_text())
        try:
            if "prog.py" in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
def test_a_setsid_grandchild_ends_with_its_trial_however_the_trial_ends(
    sqlite_url, live_server, new_worker, tmp_path, no_stray_daemons
):
    commands, out = write_commands(tmp_path)
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        worker = new_worker(server.url, "--commands", str(commands))
        cases = {
            "complete": submit(api, 1, task="prog", params={"mode": "daemon"}),
            "timed out": submit(
                api, 1, task="prog_timeout", params={"mode": "daemon", "seconds": 60}
            ),
        }
        for case, sweep_id in cases.items():
            ended = wait_for(
                lambda s=sweep_id: (t := trials(api, s)) and t[0]["state"] in ENDED and t[0],
                60,
                f"the {case} trial to end",
            )
            expected = (
                ("complete", None) if case == "complete" else ("failed", "timed out after 1 s")
            )
            assert (ended["state"], ended["reason"]) == expected, ended
            assert gone(daemon_of(out, ended["trial_id"])), case

        cancelled = submit(api, 1, task="prog", params={"mode": "daemon", "seconds": 600})
        victim = wait_for(lambda: running_trial(api, cancelled), 30, "a running trial")
        daemon = daemon_of(out, victim["trial_id"])
        assert not gone(daemon)
        assert api.post(f"/api/sweeps/{cancelled}/cancel").status_code == 200
        ended = wait_for(
            lambda: (t := trials(api, cancelled)[0])["state"] != "running" and t,
            30,
            "the trial to end",
        )
        assert (ended["state"], ended["reason"]) == ("failed", "stopped by server")
        assert gone(daemon)
        assert worker.process.poll() is None  # ended by the trial's end, not the worker's
        assert "left processes behind; stopping them" in worker.log()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()


def test_a_setsid_grandchild_ends_when_the_worker_is_told_to_stop(
    sqlite_url, live_server, new_worker, tmp_path, no_stray_daemons
):
    commands, out = write_commands(tmp_path)
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep_id = submit(api, 1, task="prog", params={"mode": "daemon", "seconds": 600})
        worker = new_worker(server.url, "--commands", str(commands))
        trial = wait_for(lambda: running_trial(api, sweep_id), 60, "a running trial")
        daemon = daemon_of(out, trial["trial_id"])
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
        assert not alive(daemon)
        handed_back = trials(api, sweep_id)[0]
        assert (handed_back["state"], handed_back["reason"]) == ("failed", "worker shutdown")


# ---- the example ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_examples_run_sweeps_through_the_line_protocol_and_the_python_client(
    sqlite_url, live_server, new_worker
):
    venv = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # its python3
    # With tokens on: the Python program reports with the token the worker hands it.
    server = live_server(sqlite_url, env={"LIONSWEEP_BOOTSTRAP_TOKEN": "s3cret"})
    headers = {"Authorization": "Bearer s3cret"}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as api:
        params = {"steps": 60, "report_every": 20}
        awk = submit(api, 3, task="awk_quadratic", params=params)
        # Trial 1's lr is too small to move by step 25: its own report gets "prune".
        python = submit(
            api,
            2,
            task="torch_regression",
            pruner={"name": "median", "n_startup_trials": 1},
            enqueue=[{"lr": 1e-3, "weight_decay": 1e-3}, {"lr": 1e-5, "weight_decay": 1e-3}],
        )
        commands = str(EXAMPLE / "commands.toml")
        worker = new_worker(
            server.url,
            "--commands",
            commands,
            "--idle-exit",
            "1",
            "--token",
            "s3cret",
            env={"PATH": venv},
        )
        assert worker.wait(90) == 0, worker.log()
        done = trials(api, awk)
        assert [t["state"] for t in done] == ["complete"] * 3, done
        for t in done:
            assert list(t["intermediate_values"]) == ["20", "40", "60"]
            assert t["value"] == t["intermediate_values"]["60"] > 0
            assert t["config"]["task_params"] == {**params, "step_delay": 0.0}
        r = api.post(
            "/api/sweeps",
            json={"name": "x", "task": {"name": "awk_quadratic", "params": {"steps": 0}}},
        )
        assert r.status_code == 422 and "steps" in r.text, r.text
        # The Python program finished its trials itself; the worker recorded nothing over them.
        complete, pruned = (by_number(api, python)[n] for n in (0, 1))
        assert complete["state"] == "complete" and list(complete["intermediate_values"]) == [
            "25",
            "50",
        ]
        assert complete["value"] == complete["intermediate_values"]["50"]
        assert complete["value"] < complete["intermediate_values"]["25"]
        assert (pruned["state"], pruned["reason"]) == ("pruned", None)
        assert list(pruned["intermediate_values"]) == ["25"]
    log = worker.log()
    assert f"trial 0 | trial {done[0]['trial_id']}: lr=" in log
    assert "trial 1 | trial 1 pruned" in log
    assert log.count("already ended on the server") == 2, log
