"""Real ``lionsweep worker`` processes against a real ``lionsweep serve`` (SQLite, PostgreSQL).

Workers train with the foreach Lion step unless a test says otherwise (the fused step's
compilation costs seconds on a small CPU); the PostgreSQL case of the main end-to-end
test runs the fused step.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import wait_for

FAST_LEASES = {
    "LIONSWEEP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "LIONSWEEP_HEARTBEAT_GRACE_SECONDS": "3",
    "LIONSWEEP_REAPER_INTERVAL_SECONDS": "0.5",
}


def lionsweep_command() -> list[str]:
    """The ``lionsweep`` console script next to this interpreter (or
    ``-m lionsweep.server_cli``)."""
    script = Path(sys.executable).with_name("lionsweep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lionsweep.server_cli"]


class Worker:
    """A ``lionsweep worker`` subprocess with its log file."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the worker to exit; return its exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout}s:\n{self.log()}") from None


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: start ``lionsweep worker --server URL *args``; all are killed at teardown."""
    workers: list[Worker] = []

    def start(server_url: str, *args: str, env: dict[str, str] | None = None) -> Worker:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        full_env = {
            **os.environ,
            "LIONSWEEP_LION_IMPL": "foreach",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [*lionsweep_command(), "worker", "--server", server_url, *args],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, log_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def submit(api: httpx.Client, n_trials: int, task: str = "quadratic", **spec) -> int:
    """Submit a sweep (random sampler, no pruner unless given); return its id."""
    body = {
        "name": f"{task}-{n_trials}",
        "task": {"name": task, "params": spec.pop("params", {})},
        "n_trials": n_trials,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        **spec,
    }
    r = api.post("/api/sweeps", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def trials(api: httpx.Client, sweep_id: int) -> list[dict]:
    """All trials of a sweep."""
    r = api.get(f"/api/sweeps/{sweep_id}/trials", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def running_trial(api: httpx.Client, sweep_id: int) -> dict | None:
    """A running trial of the sweep, or None."""
    return next((t for t in trials(api, sweep_id) if t["state"] == "running"), None)


@pytest.mark.slow
def test_sweep_completes_with_n_trials_and_the_best_is_the_minimum(
    database_url, live_server, start_worker
):
    # The PostgreSQL case trains with the fused (compiled) Lion step, the SQLite one with foreach.
    impl = "fused" if database_url.startswith("postgresql") else "foreach"
    server = live_server(database_url)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep_id = submit(api, 5)
        worker = start_worker(server.url, "--idle-exit", "1", env={"LIONSWEEP_LION_IMPL": impl})
        assert worker.wait(120) == 0, worker.log()
        sweep = api.get(f"/api/sweeps/{sweep_id}").json()
        assert sweep["status"] == "complete", sweep
        assert sweep["counts"]["complete"] == 5 and sweep["counts"]["failed"] == 0
        done = trials(api, sweep_id)
        assert sorted(t["number"] for t in done) == list(range(5))
        values = [t["value"] for t in done]
        assert sweep["best"]["value"] == min(values)
        assert api.get(f"/api/sweeps/{sweep_id}/best").json()["best"]["value"] == min(values)
        for t in done:
            assert t["config"]["lion_impl"] == impl
            assert t["config"]["batch_size"] == 16 and t["config"]["warmup_steps"] == 10
            assert t["config"]["lr"] == t["params"]["lr"]
            assert len(t["intermediate_values"]) == 10
            assert t["value"] == t["intermediate_values"]["1000"]
            assert t["metrics"]["time_first_step_s"] > 0
            assert 0 < t["metrics"]["time_optimizer_ns_per_param"] < 1e6
            assert t["config"]["device"] == t["config"]["device_name"] == "cpu"
    log = worker.log()
    assert len(re.findall(r"trial \d+ \(sweep \d+, id \d+\) complete value=", log)) == 5
    assert "first_step=" in log and "overhead=" in log


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_one_sweep_without_duplicates(
    make_postgres_db, live_server, start_worker
):
    server = live_server(make_postgres_db())
    with httpx.Client(base_url=server.url, timeout=30) as api:
        workers = [start_worker(server.url) for _ in range(2)]
        for w in workers:  # both ready before there is work, so both get some
            wait_for(lambda w=w: "worker " in w.log() and " on cpu" in w.log(), 60, "startup")
        sweep_id = submit(api, 8, params={"steps": 300, "step_delay": 0.002})
        wait_for(
            lambda: api.get(f"/api/sweeps/{sweep_id}").json()["status"] == "complete",
            120,
            "the sweep to complete",
        )
        workers[0].process.send_signal(signal.SIGTERM)
        workers[1].process.send_signal(signal.SIGINT)
        for w in workers:
            assert w.wait(30) == 0, w.log()
        assert "received SIGINT" in workers[1].log()
        done = trials(api, sweep_id)
        assert sorted(t["number"] for t in done) == list(range(8))
        assert all(t["state"] == "complete" for t in done)
        by_worker: dict[str, int] = {}
        for t in done:
            by_worker[t["worker_id"]] = by_worker.get(t["worker_id"], 0) + 1
        assert len(by_worker) == 2, by_worker
    runs = [len(re.findall(r" complete value=", w.log())) for w in workers]
    assert sorted(runs) == sorted(by_worker.values())


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_mid_trial_is_requeued_and_finished_by_another_worker(
    make_postgres_db, live_server, start_worker
):
    server = live_server(make_postgres_db(), env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep_id = submit(api, 3, params={"steps": 200, "step_delay": 0.005})
        doomed = start_worker(server.url)
        victim = wait_for(lambda: running_trial(api, sweep_id), 60, "a running trial")
        doomed.process.kill()
        doomed.process.wait(10)
        rescuer = start_worker(server.url, "--idle-exit", "2")
        assert rescuer.wait(120) == 0, rescuer.log()
        sweep = api.get(f"/api/sweeps/{sweep_id}").json()
        assert sweep["status"] == "complete" and sweep["counts"]["complete"] == 3
        all_trials = {t["number"]: t for t in trials(api, sweep_id)}
        lost = all_trials[victim["number"]]
        assert lost["state"] == "failed" and "lease expired" in lost["reason"]
        retry = [t for t in all_trials.values() if t["retry_of"] == victim["number"]]
        assert len(retry) == 1 and retry[0]["state"] == "complete"
        assert retry[0]["params"] == lost["params"]
        assert retry[0]["worker_id"] != lost["worker_id"]


@pytest.mark.slow
def test_heartbeats_keep_a_silent_trial_and_sigterm_hands_it_back(
    sqlite_url, live_server, start_worker
):
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        # 1000 steps of 10 ms and no report before the end: only heartbeats keep the lease.
        sweep_id = submit(api, 2, params={"steps": 1000, "step_delay": 0.01, "eval_every": 1000})
        worker = start_worker(server.url)
        victim = wait_for(lambda: running_trial(api, sweep_id), 60, "a running trial")
        time.sleep(4.5)  # longer than the 3 s grace
        again = running_trial(api, sweep_id)
        assert again is not None and again["number"] == victim["number"], again
        worker.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(30) == 0, worker.log()
        assert time.monotonic() - started < 10
        by_number = {t["number"]: t for t in trials(api, sweep_id)}
        handed_back = by_number[victim["number"]]
        assert handed_back["state"] == "failed" and handed_back["reason"] == "worker shutdown"
        assert handed_back["config"]["steps"] == 1000
        requeued = [t for t in by_number.values() if t["retry_of"] == victim["number"]]
        assert len(requeued) == 1 and requeued[0]["state"] == "waiting"
    assert "received SIGTERM" in worker.log()


def test_stop_answer_ends_the_trial_and_the_worker_moves_on(sqlite_url, live_server, start_worker):
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        slow = submit(api, 3, params={"steps": 1000, "step_delay": 0.01})
        worker = start_worker(server.url, "--idle-exit", "1")
        victim = wait_for(lambda: running_trial(api, slow), 60, "a running trial")
        other = submit(api, 1)
        assert api.post(f"/api/sweeps/{slow}/cancel").status_code == 200
        assert worker.wait(60) == 0, worker.log()
        stopped = {t["number"]: t for t in trials(api, slow)}[victim["number"]]
        assert (stopped["state"], stopped["reason"]) == ("failed", "stopped by server")
        assert len(stopped["intermediate_values"]) < 10
        assert [t["state"] for t in trials(api, other)] == ["complete"]


@pytest.mark.slow
def test_nan_loss_ends_pruned_as_diverged_and_a_prune_answer_ends_pruned(
    sqlite_url, live_server, start_worker
):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        bad = submit(api, 2, params={"nan_at_step": 5})
        good = submit(api, 1)
        # The median pruner compares trial 1 (lr 1e-5, slow) with trial 0 (lr 1e-3) at step 100.
        pruned = submit(
            api,
            2,
            pruner={"name": "median", "n_startup_trials": 1},
            enqueue=[{"lr": 1e-3, "weight_decay": 0.1}, {"lr": 1e-5, "weight_decay": 0.1}],
        )
        typo = submit(api, 1, params={"dimm": 3}, max_retries=0)
        worker = start_worker(server.url, "--idle-exit", "1")
        assert worker.wait(60) == 0, worker.log()
        (failed,) = trials(api, typo)
        assert failed["state"] == "failed"
        assert failed["reason"].startswith("invalid task params: dimm: unknown param (known: ")
        for t in trials(api, bad):
            assert (t["state"], t["reason"]) == ("pruned", "diverged")
            assert t["config"]["task_params"]["nan_at_step"] == 5
            assert t["intermediate_values"] == {}
        assert [t["state"] for t in trials(api, good)] == ["complete"]
        first, second = trials(api, pruned)
        assert first["state"] == "complete"
        assert (second["state"], second["reason"]) == ("pruned", None)
        assert list(second["intermediate_values"]) == ["100"]


# An operator's own task, registered without a param declaration.
TASK_MODULE = textwrap.dedent(
    """
    from worker.tasks import TaskDefaults, register
    from worker.tasks.quadratic import Quadratic

    class Operators(Quadratic):
        name = "operators_task"
        defaults = TaskDefaults(steps=20, eval_every=10, params=dict(Quadratic.defaults.params))

    register(Operators)
    """
)


@pytest.mark.parametrize(
    ("stop", "reason"), [("sigterm", "worker shutdown"), ("cancel", "stopped by server")]
)
@pytest.mark.slow
def test_a_stop_inside_a_long_step_ends_the_trial_within_the_stop_grace(
    stop, reason, sqlite_url, live_server, start_worker
):
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        # 1 s per step (the most quadratic allows) and no report before the end.
        params = {"steps": 1000, "step_delay": 1.0, "eval_every": 1000}
        sweep_id = submit(api, 1, params=params)
        worker = start_worker(server.url, "--stop-grace", "2", "--idle-exit", "1")
        victim = wait_for(lambda: running_trial(api, sweep_id), 60, "a running trial")
        time.sleep(1.5)
        if stop == "sigterm":
            worker.process.send_signal(signal.SIGTERM)
        else:
            assert api.post(f"/api/sweeps/{sweep_id}/cancel").status_code == 200
        started = time.monotonic()

        def ended() -> dict | None:
            trial = {t["number"]: t for t in trials(api, sweep_id)}[victim["number"]]
            return trial if trial["state"] != "running" else None

        trial = wait_for(ended, 30, "the trial to end")
        assert time.monotonic() - started < 2 + 3, worker.log()
        assert (trial["state"], trial["reason"]) == ("failed", reason)
        requeued = [t for t in trials(api, sweep_id) if t["retry_of"] == victim["number"]]
        assert len(requeued) == 1 and requeued[0]["state"] == "waiting"
        assert worker.wait(30) == 0, worker.log()


@pytest.mark.slow
def test_the_watchdog_ends_a_step_that_outlasts_the_grace_on_stop_and_on_sigterm(
    sqlite_url, live_server, start_worker, tmp_path
):
    (tmp_path / "operators_tasks.py").write_text(TASK_MODULE)  # not declared: no bounds
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    args = ("--task-module", "operators_tasks", "--stop-grace", "1")
    server = live_server(sqlite_url, env=FAST_LEASES)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        # One 10-minute step: only the watchdog ends these trials in time.
        cancelled = submit(api, 1, task="operators_task", params={"step_delay": 600})
        worker = start_worker(server.url, *args, env=env)
        wait_for(lambda: running_trial(api, cancelled), 60, "a running trial")
        time.sleep(3)  # past the trial's setup, inside its first step
        assert api.post(f"/api/sweeps/{cancelled}/cancel").status_code == 200
        started = time.monotonic()
        ended = wait_for(
            lambda: next((t for t in trials(api, cancelled) if t["state"] == "failed"), None),
            30,
            "the watchdog to end the trial",
        )
        assert time.monotonic() - started < 1 + 3
        assert ended["reason"] == "stopped by server"
        # Abandoned, its training still sleeps: the worker takes no other trial meanwhile.
        later = submit(api, 1, task="operators_task", params={"step_delay": 600})
        time.sleep(2)
        assert trials(api, later) == [], worker.log()  # not claimed
        assert worker.process.poll() is None
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0, worker.log()
        assert "the watchdog ends it (stopped by server)" in worker.log()
        assert "waiting for its abandoned training to end" in worker.log()

        second = start_worker(server.url, *args, env=env)
        victim = wait_for(lambda: running_trial(api, later), 60, "a running trial")
        time.sleep(3)
        second.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert second.wait(30) == 0, second.log()
        assert time.monotonic() - started < 1 + 3
        by_number = {t["number"]: t for t in trials(api, later)}
        handed_back = by_number[victim["number"]]
        assert (handed_back["state"], handed_back["reason"]) == ("failed", "worker shutdown")
        assert [t["state"] for t in by_number.values() if t["retry_of"] is not None] == ["waiting"]
    log = second.log()
    assert "the watchdog ends it (worker shutdown)" in log
    assert "exiting with trial" in log


@pytest.mark.slow
def test_task_params_out_of_bounds_fail_the_trial_and_the_worker_goes_on(
    sqlite_url, live_server, start_worker
):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        refused = {
            submit(api, 1, params={"step_delay": 120}, max_retries=0): (
                "invalid task params: step_delay: must be at most 1.0, not 120"
            ),
            submit(api, 1, params={"dim": 10**9}, max_retries=0): (
                "invalid task params: dim: must be at most 65536, not 1000000000"
            ),
            submit(api, 1, params={"dim": "3"}, max_retries=0): (
                "invalid task params: dim: must be int, not str '3'"
            ),
            submit(api, 1, params={"dim": 8, "sleep": 1}, max_retries=0): (
                "invalid task params: sleep: unknown param (known: condition, decay_all, dim, "
                "eval_every, nan_at_step, noise, problem_seed, step_delay, steps)"
            ),
        }
        fine = submit(api, 1, params={"dim": 8, "steps": 50, "step_delay": 0.001})
        worker = start_worker(server.url, "--idle-exit", "1")
        assert worker.wait(60) == 0, worker.log()
        for sweep_id, reason in refused.items():
            (trial,) = trials(api, sweep_id)
            assert (trial["state"], trial["reason"]) == ("failed", reason)
        assert [t["state"] for t in trials(api, fine)] == ["complete"]
    assert "Traceback" not in worker.log()


@pytest.mark.slow
def test_only_registered_tasks_run_and_task_modules_register(
    sqlite_url, live_server, start_worker, tmp_path
):
    (tmp_path / "operators_tasks.py").write_text(TASK_MODULE)
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        unknown = submit(api, 2, task="os.system")
        mine = submit(api, 2, task="operators_task")
        plain = start_worker(server.url, "--idle-exit", "1")
        assert plain.wait(60) == 0, plain.log()
        assert trials(api, unknown) == [] and trials(api, mine) == []
        assert "os.system" not in plain.log()
        env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
        extended = start_worker(
            server.url, "--idle-exit", "1", "--task-module", "operators_tasks", env=env
        )
        assert extended.wait(60) == 0, extended.log()
        assert [t["state"] for t in trials(api, mine)] == ["complete", "complete"]
        assert [t["config"]["steps"] for t in trials(api, mine)] == [20, 20]
        assert trials(api, unknown) == []
        assert "operators_task" in extended.log()


@pytest.mark.slow
def test_reports_survive_a_server_restart(sqlite_url, live_server, start_worker, free_port):
    server = live_server(sqlite_url, port=free_port)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep_id = submit(api, 1, params={"steps": 400, "step_delay": 0.01, "eval_every": 20})
        worker = start_worker(server.url, "--idle-exit", "3", "--connect-timeout", "1")
        wait_for(lambda: running_trial(api, sweep_id), 60, "a running trial")
    server.stop()
    time.sleep(3)  # longer than --connect-timeout: that bounds only a server never reached
    server = live_server(sqlite_url, port=free_port)
    assert worker.wait(90) == 0, worker.log()
    with httpx.Client(base_url=server.url, timeout=30) as api:
        (trial,) = trials(api, sweep_id)
        assert trial["state"] == "complete"
        assert sorted(map(int, trial["intermediate_values"])) == list(range(20, 401, 20))
    assert "retrying in" in worker.log()


@pytest.mark.slow
def test_gpus_supervisor_runs_one_agent_per_slot_restarts_crashes_forwards_sigterm(
    sqlite_url, live_server, start_worker
):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep_id = submit(api, 4, params={"steps": 2000, "step_delay": 0.01})

        def running() -> list[dict]:
            return [t for t in trials(api, sweep_id) if t["state"] == "running"]

        supervisor = start_worker(server.url, "--gpus", "0,1", "--device", "cpu")
        first = wait_for(lambda: len(running()) == 2 and running(), 60, "one trial per agent")
        assert {t["worker_id"].rsplit("-", 1)[1] for t in first} == {"0", "1"}
        (pid,) = re.findall(r"started agent 1 \(pid (\d+)\) on GPU 1", supervisor.log())
        os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: len(running()) == 3, 60, "the restarted agent to claim a trial")
        assert "agent on GPU 1 exited with -9; restarting" in supervisor.log()
        assert len(re.findall(r"started agent 1 \(pid \d+\) on GPU 1", supervisor.log())) == 2
        supervisor.process.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0, supervisor.log()
        originals = [t for t in trials(api, sweep_id) if t["retry_of"] is None]
        orphan = next(t for t in originals if t["worker_id"].endswith(f"-{pid}-1"))
        assert orphan["state"] == "running"  # until its lease expires
        handed_back = [t for t in originals if t["reason"] == "worker shutdown"]
        assert len(handed_back) == 2 and all(t["state"] == "failed" for t in handed_back)


@pytest.mark.slow
def test_worker_authenticates_a_refused_token_exits_2_and_max_trials_is_kept(
    sqlite_url, live_server, start_worker
):
    server = live_server(sqlite_url, env={"LIONSWEEP_BOOTSTRAP_TOKEN": "worker-secret"})
    headers = {"Authorization": "Bearer worker-secret"}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as api:
        sweep_id = submit(api, 2)
        intruder = start_worker(server.url, "--token", "wrong", "--idle-exit", "30")
        assert intruder.wait(60) == 2, intruder.log()
        assert "refused this worker's token" in intruder.log()
        assert trials(api, sweep_id) == []
        worker = start_worker(
            server.url, "--max-trials", "1", env={"LIONSWEEP_TOKEN": "worker-secret"}
        )
        assert worker.wait(60) == 0, worker.log()
        assert [t["state"] for t in trials(api, sweep_id)] == ["complete"]
        assert "ran 1 trials (--max-trials)" in worker.log()


def test_configuration_errors_exit_2_and_are_not_restarted(start_worker, free_port):
    url = f"http://127.0.0.1:{free_port}"  # never reached: the agents stop before claiming
    supervised = start_worker(
        url, "--gpus", "0,1", "--device", "cpu", "--task-module", "no_such_tasks_module"
    )
    assert supervised.wait(60) == 2, supervised.log()
    assert supervised.log().count("cannot run as configured; not restarting") == 2
    assert "No module named 'no_such_tasks_module'" in supervised.log()
    assert start_worker(url, "--gpus", "0,zero").wait(60) == 2


@pytest.mark.slow
def test_a_worker_that_never_reaches_its_server_says_so_in_one_line_and_exits_2(
    start_worker, free_port, sqlite_url, live_server
):
    url = f"http://127.0.0.1:{free_port}"  # nothing listens there
    started = time.monotonic()
    worker = start_worker(url, "--idle-exit", "1", "--connect-timeout", "4", "--device", "cpu")
    assert worker.wait(60) == 2, worker.log()  # never 0 ("nothing to run") without a server
    took = time.monotonic() - started
    log = worker.log()
    (error,) = [line for line in log.splitlines() if " ERROR " in line]
    assert f"cannot reach the lionsweep server at {url} within 4s" in error, log
    assert "Connection refused" in error and "--server" in error, log
    assert len(log.splitlines()) <= 3, log  # started, not reached yet, gave up: no retry noise
    assert "retrying in" not in log and "nothing to run" not in log, log
    assert 4 <= took < 40, took

    # Something answers there, but not as a lionsweep server: the same, saying what it answered.
    server = live_server(sqlite_url)
    elsewhere = start_worker(
        f"{server.url}/not-the-api", env={"LIONSWEEP_WORKER_CONNECT_TIMEOUT": "2"}
    )
    assert elsewhere.wait(60) == 2, elsewhere.log()
    (error,) = [line for line in elsewhere.log().splitlines() if " ERROR " in line]
    assert "HTTP 404" in error and "is it a lionsweep server?" in error, error

    # Under --gpus each agent gives up the same way, and none is restarted.
    supervised = start_worker(url, "--gpus", "0,1", "--device", "cpu", "--connect-timeout", "1")
    assert supervised.wait(90) == 2, supervised.log()
    assert supervised.log().count("cannot reach the lionsweep server at") == 4  # 2 agents × 2
    assert supervised.log().count("cannot run as configured; not restarting") == 2
