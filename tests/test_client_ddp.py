"""A DDP trial (``torchrun``, two CPU processes on gloo) through ``import lionsweep``: rank 0
alone talks to the server, and every rank learns of a prune in the same step.

The test plays the worker: it claims the trial through ``worker.client`` and launches
``examples/ddp_train.py`` with the environment a worker gives a program per trial.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from worker.client import Client

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = {"LIONSWEEP_LION_IMPL": "foreach", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def server(module_live_server, make_sqlite_url):
    return module_live_server(make_sqlite_url())


def torchrun(*args: str, env: dict[str, str]) -> str:
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 examples/ddp_train.py``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    command += ["--standalone", str(EXAMPLES / "ddp_train.py"), *args]
    out = subprocess.run(
        command,
        env={**os.environ, **ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def submit(api: httpx.Client, **spec) -> tuple[int, str]:
    body = {"name": "ddp", "task": {"name": "ddp-own"}, "sampler": {"name": "random"}, **spec}
    r = api.post("/api/sweeps", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["task"]["name"]


def test_ddp_ranks_stop_at_the_same_step_when_rank_0_is_pruned(server, tmp_path):
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep, task = submit(api, n_trials=2, pruner=pruner)
        with Client(server.url) as runner:
            # A first trial that was perfect at every step: the next one is pruned at its first.
            best = runner.claim("runner", "cpu", [task], sweeps=[sweep])
            for step in range(5, 101, 5):
                runner.report(best["trial_id"], step, 0.0)
            runner.finish(best["trial_id"], "complete", 0.0)
            assignment = runner.claim("runner", "cpu", [task], sweeps=[sweep])
        path = tmp_path / "trial.json"
        path.write_text(json.dumps(assignment))
        env = {
            "LIONSWEEP_SERVER": server.url,
            "LIONSWEEP_WORKER_ID": "runner",
            "LIONSWEEP_TRIAL_ID": str(assignment["trial_id"]),
            "LIONSWEEP_TRIAL_FILE": str(path),
            "LIONSWEEP_SEED": str(assignment["seed"]),
        }
        out = torchrun("--steps", "100", "--eval-every", "5", env=env)
        number = assignment["trial_number"]
        assert sorted(re.findall(r"rank (\d) stops at step (\d+)", out)) == [("0", "5"), ("1", "5")]
        assert f"rank 0 trial {number} pruned talks to the server: True" in out
        assert f"rank 1 trial {number} pruned talks to the server: False" in out
        got = api.get(f"/api/sweeps/{sweep}/trials/{number}").json()
        assert got["state"] == "pruned" and list(got["intermediate_values"]) == ["5"]
        assert got["worker_id"] == "runner" and got["config"]["world_size"] == 2
    trial_id = assignment["trial_id"]
    assert len(re.findall(rf"POST /api/trials/{trial_id}/report ", server.log())) == 1
    assert len(re.findall(rf"POST /api/trials/{trial_id}/finish ", server.log())) == 1


@pytest.mark.slow
def test_ddp_script_claims_trials_itself_on_rank_0(server):
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep, _ = submit(api, n_trials=2, pruner={"name": "none"})
        out = torchrun("--server", server.url, "--sweep", str(sweep), "--steps", "20", env={})
        for number in (0, 1):
            for rank, talks in ((0, True), (1, False)):
                assert f"rank {rank} trial {number} complete talks to the server: {talks}" in out
        trials = api.get(f"/api/sweeps/{sweep}/trials").json()["items"]
        assert [t["state"] for t in trials] == ["complete", "complete"]
        assert all(list(t["intermediate_values"]) == ["10", "20"] for t in trials)
        assert api.get(f"/api/sweeps/{sweep}").json()["status"] == "complete"
