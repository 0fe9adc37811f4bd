"""``import lionsweep``: the Python client for users' own training code, against a real
``lionsweep serve`` — in this process (``lionsweep.trials``, ``current_trial``) and in user
scripts run as subprocesses (``examples/plain_pytorch.py``), SIGTERM and kill -9 included.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import get_free_port, wait_for

import lionsweep
from lionsweep import loop as trials_module
from service.auth import create_token
from service.settings import Settings
from worker.client import ApiError, Client

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FAST_LEASES = {
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    # 10 heartbeats per grace: a loaded machine (tests in parallel) may delay a few of them.
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "5",
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": "0.5",
}
SCRIPT_ENV = {"LIONSWEEP_LION_IMPL": "foreach", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def task_name() -> str:
    return f"own{uuid.uuid4().hex[:8]}"


def submit(api: httpx.Client, n_trials: int, **spec) -> dict:
    """Submit a sweep of a fresh task (random sampler, no pruner unless given)."""
    body = {
        "name": "own-code",
        "task": {"name": task_name()},
        "n_trials": n_trials,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        **spec,
    }
    r = api.post("/api/sweeps", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def trials_of(api: httpx.Client, sweep_id: int) -> dict[int, dict]:
    r = api.get(f"/api/sweeps/{sweep_id}/trials", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {t["number"]: t for t in r.json()["items"]}


def running(api: httpx.Client, sweep_id: int) -> dict | None:
    return next((t for t in trials_of(api, sweep_id).values() if t["state"] == "running"), None)


@pytest.fixture(scope="module")
def fast(module_live_server, make_sqlite_url):
    """A server on SQLite with half-second heartbeats and a 5 s lease grace."""
    return module_live_server(make_sqlite_url(), env=FAST_LEASES)


@pytest.fixture
def api(fast):
    with httpx.Client(base_url=fast.url, timeout=30) as c:
        yield c


def run_script(args: list[str], **kwargs) -> subprocess.Popen[str]:
    """A user script in a subprocess of its own, its output in ``.communicate()``."""
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **SCRIPT_ENV, **kwargs.pop("env", {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def finish_script(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"script still running after {timeout}s:\n{out}") from None
    return proc.returncode, out


# ---- the claim filter --------------------------------------------------------------------


def test_claim_only_from_the_named_sweeps(fast, api):
    client, server = api, fast
    task = task_name()
    spec = {"task": {"name": task}, "n_trials": 2, "pruner": {"name": "none"}}
    first = client.post("/api/sweeps", json={"name": "a", **spec}).json()["id"]
    second = client.post("/api/sweeps", json={"name": "b", **spec}).json()["id"]

    def claim(**extra):
        return client.post("/api/trials/claim", json={"worker_id": "w", "tasks": [task], **extra})

    r = claim(sweeps=[second])
    assert r.status_code == 200 and r.json()["sweep_id"] == second, r.text
    assert claim(sweeps=[2**31 - 1]).status_code == 204
    r = claim()
    assert r.status_code == 200 and r.json()["sweep_id"] == first  # no filter: any sweep
    for bad in ([], [-1], ["1"], [True], 3, [2**31]):
        r = claim(sweeps=bad)
        assert r.status_code == 422, (bad, r.text)
        assert "sweeps" in r.text
    with Client(server.url) as worker:
        got = worker.claim("w2", "cpu", [task], sweeps=[second])
        assert got is not None and got["sweep_id"] == second


# ---- a user script claims and runs a sweep -----------------------------------------------


def test_plain_example_runs_both_arms_of_a_sweep(fast, api):
    sweep = submit(
        api,
        2,
        baseline="adamw",
        enqueue=[
            {"lr": 1e-3, "weight_decay": 0.1, "optimizer": "lion"},
            {"lr": 3e-3, "weight_decay": 0.01, "optimizer": "adamw"},
        ],
        space={"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "warmup_steps": 5},
    )
    script = run_script(
        [str(EXAMPLES / "plain_pytorch.py"), "--server", fast.url, "--sweep", str(sweep["id"])],
        env={"LIONSWEEP_SERVER": "http://127.0.0.1:9"},  # --server wins over the env
    )
    code, out = finish_script(script)
    assert code == 0, out
    assert api.get(f"/api/sweeps/{sweep['id']}").json()["status"] == "complete"
    done = trials_of(api, sweep["id"])
    assert sorted(t["config"]["optimizer"] for t in done.values()) == ["adamw", "lion"]
    for t in done.values():
        assert t["state"] == "complete", t
        assert t["config"]["optimizer"] == t["params"]["optimizer"]
        assert t["config"]["lr"] == t["params"]["lr"] and t["config"]["warmup_steps"] == 5
        assert t["config"]["total_steps"] == 200 and t["config"]["world_size"] == 1
        assert sorted(map(int, t["intermediate_values"])) == list(range(20, 201, 20))
        assert t["value"] == t["intermediate_values"]["200"] < t["intermediate_values"]["20"]
        assert t["worker_id"].endswith("-client") and "train_loss" in t["metrics"]
        assert f"trial {t['number']} complete" in out


def test_optimizer_and_schedule_follow_the_trial():
    import torch

    from optim import Lion
    from worker.harness import effective_config, make_schedule
    from worker.tasks import TaskDefaults

    params = {"lr": 2e-3, "weight_decay": 0.3, "beta1": 0.8, "beta2": 0.95, "warmup_steps": 4}
    trial = lionsweep.Trial({"trial_id": 1, "params": params, "seed": 7}, client=None)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = trial.optimizer(model, impl="foreach")
    assert isinstance(opt, Lion) and opt.impl == "foreach" and not opt.flatten
    matrices, vectors = opt.param_groups
    assert [p.ndim for p in matrices["params"]] == [2] and matrices["weight_decay"] == 0.3
    assert {p.ndim for p in vectors["params"]} == {1} and vectors["weight_decay"] == 0.0
    assert matrices["lr"] == 2e-3 and matrices["betas"] == (0.8, 0.95)
    one_group = trial.optimizer(model.parameters(), impl="foreach")
    assert len(one_group.param_groups) == 1 and one_group.param_groups[0]["weight_decay"] == 0.3
    assert (trial.lr, trial.betas, trial.weight_decay) == (2e-3, (0.8, 0.95), 0.3)

    schedule = trial.schedule(opt, total_steps=20)
    twin = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=2e-3)
    task = type("T", (), {"name": "t", "defaults": TaskDefaults(steps=20)})()
    reference = make_schedule(effective_config(task, {"params": params}, "cpu"), twin)
    for _ in range(20):
        assert opt.param_groups[0]["lr"] == pytest.approx(twin.param_groups[0]["lr"])
        opt.step(), schedule.step(), twin.step(), reference.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

    adamw = lionsweep.Trial(
        {"trial_id": 2, "params": {**params, "optimizer": "adamw"}}, client=None
    ).optimizer(model)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["betas"] == (0.8, 0.95)
    assert trial.seed_everything().initial_seed() == 7


# ---- how trials end ----------------------------------------------------------------------


@contextmanager
def one_trial(server: str, sweep_id: int, **options) -> Iterator[lionsweep.Trial]:
    """The next trial of the sweep, held by a trials() loop that is closed on leaving."""
    loop = lionsweep.trials(server, sweep=sweep_id, max_trials=1, **options)
    try:
        yield next(loop)
    finally:
        loop.close()


def test_errors_in_user_code_and_non_finite_values_fail_the_trial_with_a_reason(fast, api):
    sweep = submit(api, 5, max_retries=0)["id"]
    with pytest.raises(ValueError, match="boom"):
        for trial in lionsweep.trials(fast.url, sweep=sweep):
            with trial:
                trial.report(1, 0.5)
                raise ValueError("boom")
    assert trial.state == "failed"

    for trial in lionsweep.trials(fast.url, sweep=sweep, max_trials=1):
        assert trial.report(2, 0.25) is False and not trial.should_stop
        assert trial.report(3, math.nan, grad_norm=math.inf) is True  # fails it at once
        assert trial.state == "failed" and trial.finish(1.0) == "failed"

    for trial in lionsweep.trials(fast.url, sweep=sweep, max_trials=1):
        assert trial.finish(math.inf) == "failed"

    for trial in lionsweep.trials(fast.url, sweep=sweep, max_trials=1):
        with trial:
            trial.report(1, 0.75)  # no finish: the block's end completes it with 0.75

    for _ in lionsweep.trials(fast.url, sweep=sweep):
        break  # left without finishing it

    got = trials_of(api, sweep)
    assert [(got[n]["state"], got[n]["reason"]) for n in sorted(got)] == [
        ("failed", "ValueError: boom"),
        ("failed", "non-finite value nan reported at step 3"),
        ("failed", "non-finite final value inf"),
        ("complete", None),
        ("failed", trials_module.LEFT_REASON),
    ]
    assert got[1]["intermediate_values"] == {"2": 0.25}
    assert got[3]["value"] == 0.75


def test_optimize_prune_and_cancel_reach_the_trial_at_once(fast, api):
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    sweep = submit(api, 3, pruner=pruner)["id"]
    seen: list[tuple[bool, str | None]] = []

    def objective(trial: lionsweep.Trial) -> float:
        stop = trial.report(1, 0.1 if trial.number == 0 else 5.0)
        seen.append((stop, trial.should_prune))
        return 5.0

    assert lionsweep.optimize(objective, fast.url, sweep=sweep, max_trials=2) == 2
    assert seen == [(False, False), (True, True)]
    with one_trial(fast.url, sweep) as trial:
        assert not trial.should_stop
        assert api.post(f"/api/sweeps/{sweep}/cancel").status_code == 200
        wait_for(lambda: trial.should_stop, 10, "the heartbeat's stop")  # no report needed
        assert not trial.should_prune and trial.finish(1.0) == "failed"
    got = trials_of(api, sweep)
    assert [(got[n]["state"], got[n]["reason"]) for n in range(3)] == [
        ("complete", None),
        ("pruned", None),
        ("failed", "stopped by server"),
    ]


def test_current_trial_reports_and_finishes_as_the_worker_that_claimed_it(
    fast, api, tmp_path, monkeypatch
):
    sweep = submit(api, 2)["id"]
    with Client(fast.url) as runner:
        assignment = runner.claim("runner-1", "cpu", [task_of(api, sweep)], sweeps=[sweep])
        assert assignment is not None
        path = tmp_path / "trial.json"
        path.write_text(json.dumps(assignment))
        monkeypatch.setattr(trials_module, "_current", None)
        monkeypatch.setenv("LIONSWEEP_SERVER", fast.url)
        monkeypatch.setenv("LIONSWEEP_WORKER_ID", "runner-1")
        monkeypatch.setenv("LIONSWEEP_TRIAL_ID", str(assignment["trial_id"]))
        monkeypatch.setenv("LIONSWEEP_TRIAL_FILE", str(path))
        trial = lionsweep.current_trial()
        assert lionsweep.current_trial() is trial
        assert trial.params == assignment["params"] and trial.seed == assignment["seed"]
        assert trial.report(1, 2.0) is False
        assert trial.finish(1.5, accuracy=0.9) == "complete"
        # The worker's own finish afterwards: the same state is a repeat, another a 409.
        assert runner.finish(assignment["trial_id"], "complete", 1.5)["state"] == "complete"
        with pytest.raises(ApiError, match="409"):
            runner.finish(assignment["trial_id"], "failed", reason="exit code 0")
    done = trials_of(api, sweep)[assignment["trial_number"]]
    assert (done["state"], done["value"], done["worker_id"]) == ("complete", 1.5, "runner-1")
    assert done["metrics"]["accuracy"] == 0.9

    # Without the JSON file: the params and seed come from their own variables.
    monkeypatch.setattr(trials_module, "_current", None)
    monkeypatch.delenv("LIONSWEEP_TRIAL_FILE")
    monkeypatch.setenv("LIONSWEEP_PARAM_LR", "0.003")
    monkeypatch.setenv("LIONSWEEP_PARAM_OPTIMIZER", '"adamw"')
    monkeypatch.setenv("LIONSWEEP_SEED", "11")
    bare = lionsweep.current_trial()
    assert bare.params["lr"] == 0.003 and bare.optimizer_name == "adamw" and bare.seed == 11

    monkeypatch.setattr(trials_module, "_current", None)
    monkeypatch.delenv("LIONSWEEP_TRIAL_ID")
    with pytest.raises(lionsweep.NoTrial, match="LIONSWEEP_TRIAL_ID is not set"):
        lionsweep.current_trial()


def task_of(api: httpx.Client, sweep_id: int) -> str:
    return api.get(f"/api/sweeps/{sweep_id}").json()["task"]["name"]


# ---- clear errors ------------------------------------------------------------------------


def test_the_server_defaults_to_the_local_one(monkeypatch):
    """With no ``server`` and no LIONSWEEP_SERVER, the loop asks the local default server
    (it raised AttributeError before asking anyone)."""
    from protocol import DEFAULT_SERVER

    monkeypatch.delenv("LIONSWEEP_SERVER", raising=False)
    with pytest.raises(lionsweep.ClientError) as caught:
        next(iter(lionsweep.trials(sweep=999_999, token="")))
    assert DEFAULT_SERVER in str(caught.value), caught.value


@pytest.mark.slow
def test_errors_name_the_server_and_the_sweep(fast, live_server, make_sqlite_url):
    nowhere = f"http://127.0.0.1:{get_free_port()}"
    started = time.monotonic()
    with pytest.raises(lionsweep.ServerUnreachable) as caught, one_trial(nowhere, 1):
        pass
    assert time.monotonic() - started < 15
    assert str(caught.value).startswith(f"cannot reach the lionsweep server at {nowhere} (")
    with pytest.raises(lionsweep.NotFound) as caught, one_trial(fast.url, 999_999):
        pass
    assert str(caught.value).startswith(f"sweep 999999 does not exist on the server at {fast.url}")
    with pytest.raises(lionsweep.ClientError, match="must be an http"), one_trial("x:80", 1):
        pass

    url = make_sqlite_url()
    settings = Settings(database_url=url)
    token = {s: create_token(settings, scopes=[s]) for s in ("submit", "worker", "read")}
    secured = live_server(url)
    with httpx.Client(base_url=secured.url, timeout=30) as api:
        r = api.post(
            "/api/sweeps",
            json={"name": "s", "task": {"name": "x"}, "n_trials": 1},
            headers={"Authorization": f"Bearer {token['submit']}"},
        )
        sweep = r.json()["id"]
    with pytest.raises(lionsweep.AuthError) as caught, one_trial(secured.url, sweep, token="bad"):
        pass
    assert str(caught.value).startswith(
        f"the server at {secured.url} refused the token (invalid or revoked token, HTTP 401)"
    )
    reader = one_trial(secured.url, sweep, token=token["read"])
    with pytest.raises(lionsweep.AuthError, match="lacks the 'worker' scope"), reader:
        pass
    with one_trial(secured.url, sweep, token=token["worker"]) as trial:
        assert trial.finish(0.5) == "complete"
    for error in (lionsweep.ServerUnreachable, lionsweep.AuthError, lionsweep.NotFound):
        assert issubclass(error, lionsweep.ClientError)


# ---- crash safety of a user script -------------------------------------------------------


def test_sigterm_hands_a_script_trial_back_and_the_script_exits(fast, api):
    sweep = submit(api, 2)["id"]
    args = ["--server", fast.url, "--sweep", str(sweep), "--steps", "5000", "--step-delay", "0.01"]
    script = run_script([str(EXAMPLES / "plain_pytorch.py"), *args, "--eval-every", "10"])
    victim = wait_for(lambda: running(api, sweep), 60, "a running trial")
    script.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code, out = finish_script(script, 30)
    assert code == 0, out
    assert time.monotonic() - started < 10
    got = trials_of(api, sweep)
    handed_back = got[victim["number"]]
    assert (handed_back["state"], handed_back["reason"]) == ("failed", "worker shutdown")
    assert handed_back["handed_back"] is True  # re-queued without using a retry
    retry = [t for t in got.values() if t["retry_of"] == victim["number"]]
    assert len(retry) == 1 and retry[0]["state"] == "waiting"
    assert f"trial {victim['number']} stops at step" in out


EXITS = """
import sys
import lionsweep

for trial in lionsweep.trials(sys.argv[1], sweep=int(sys.argv[2])):
    with trial:
        sys.exit(3)
"""


def test_sys_exit_inside_a_trial_fails_it_and_uses_a_retry(fast, api, tmp_path):
    """A script's own ``sys.exit`` is no interrupt: the trial fails ("SystemExit: 3") and
    uses up a retry, so a script that always exits ends its sweep (it used to hand the trial
    back every time, re-queued for ever)."""
    sweep = submit(api, 1, max_retries=1)["id"]
    path = tmp_path / "exits.py"
    path.write_text(textwrap.dedent(EXITS))
    for _ in range(2):
        code, out = finish_script(run_script([str(path), fast.url, str(sweep)]), 60)
        assert code == 3, out
    got = sorted(trials_of(api, sweep).values(), key=lambda t: t["number"])
    assert [(t["state"], t["reason"], t["handed_back"]) for t in got] == [
        ("failed", "SystemExit: 3", False)
    ] * 2, got
    status = api.get(f"/api/sweeps/{sweep}").json()
    assert status["status"] == "complete", status
    assert status["counts"]["failed"] == 2 and status["counts"]["handed_back"] == 0


SILENT = """
import sys, time
import lionsweep

for trial in lionsweep.trials(sys.argv[1], sweep=int(sys.argv[2]), stop_grace=1.0):
    with trial:
        print("training", flush=True)
        time.sleep(120)  # never reports, never looks at trial.should_stop
"""


@pytest.mark.slow
def test_heartbeats_keep_a_silent_script_trial_and_the_watchdog_hands_it_back(fast, api, tmp_path):
    sweep = submit(api, 1)["id"]
    path = tmp_path / "silent.py"
    path.write_text(textwrap.dedent(SILENT))
    script = run_script([str(path), fast.url, str(sweep)])
    victim = wait_for(lambda: running(api, sweep), 60, "a running trial")
    time.sleep(6.0)  # longer than the 5 s grace: only heartbeats keep the lease
    again = running(api, sweep)
    assert again is not None and again["number"] == victim["number"], again
    script.send_signal(signal.SIGTERM)
    code, out = finish_script(script, 20)
    assert code == 128 + signal.SIGTERM, out
    assert "handing it back and exiting" in out
    got = trials_of(api, sweep)[victim["number"]]
    assert (got["state"], got["reason"]) == ("failed", "worker shutdown")


@pytest.mark.slow
def test_kill_9_mid_trial_is_requeued_and_a_second_run_finishes_it(fast, api):
    sweep = submit(api, 1, max_retries=1)["id"]
    common = ["--server", fast.url, "--sweep", str(sweep)]
    doomed = run_script([str(EXAMPLES / "plain_pytorch.py"), *common, "--step-delay", "0.05"])
    victim = wait_for(lambda: running(api, sweep), 60, "a running trial")
    doomed.kill()
    doomed.communicate(timeout=10)
    lost = wait_for(
        lambda: trials_of(api, sweep)[victim["number"]]["state"] == "failed", 15, "the reaper"
    )
    assert lost
    rescue = run_script([str(EXAMPLES / "plain_pytorch.py"), *common, "--steps", "40"])
    code, out = finish_script(rescue)
    assert code == 0, out
    got = trials_of(api, sweep)
    assert "lease expired" in got[victim["number"]]["reason"]
    retry = [t for t in got.values() if t["retry_of"] == victim["number"]]
    assert len(retry) == 1 and retry[0]["state"] == "complete"
    assert retry[0]["params"] == got[victim["number"]]["params"]
    assert api.get(f"/api/sweeps/{sweep}").json()["status"] == "complete"
