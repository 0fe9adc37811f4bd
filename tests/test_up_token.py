"""``lionsweep up --token X``: the server it starts asks every writer for that token."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import get_free_port, lionsweep_command, wait_for

TOKEN = "lsw_up-test-secret"
SPEC = {
    "name": "up-token",
    "task": {"name": "quadratic", "params": {}},
    "space": {"lr": {"low": 1e-4, "high": 3e-2, "log": True}},
    "sampler": {"name": "random", "seed": 1},
    "pruner": {"name": "none"},
    "n_trials": 3,
}


def run_worker(base: str, token: str, *args: str) -> subprocess.CompletedProcess:
    """Run a ``lionsweep worker`` against ``base`` with ``token`` until it exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIONSWEEP_")}
    return subprocess.run(
        [*lionsweep_command(), "worker", "--server", base, "--token", token, "--device", "cpu"]
        + list(args),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def finished(base: str, sweep_id: int) -> int:
    """How many trials of the sweep have finished (reads are open)."""
    return httpx.get(f"{base}/api/sweeps/{sweep_id}", timeout=5).json()["finished"]


@pytest.mark.slow
def test_up_with_a_token_refuses_requests_and_workers_without_it(tmp_path: Path) -> None:
    port = get_free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIONSWEEP_")}
    up = subprocess.Popen(
        [*lionsweep_command(), "up", "--port", str(port), "--workers", "0", "--token", TOKEN],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200,
            timeout=90,
            what="the server to answer",
        )
        url = f"{base}/api/sweeps"
        assert httpx.post(url, json=SPEC, timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer lsw_wrong"}
        assert httpx.post(url, json=SPEC, headers=wrong, timeout=10).status_code == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        created = httpx.post(url, json=SPEC, headers=right, timeout=10)
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]

        refused = run_worker(base, "lsw_wrong", "--idle-exit", "20")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "refused this worker's token" in refused.stderr
        assert finished(base, sweep_id) == 0

        ran = run_worker(base, TOKEN, "--max-trials", "1")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert finished(base, sweep_id) == 1
    finally:
        up.send_signal(signal.SIGINT)
        try:
            out, _ = up.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
            out, _ = up.communicate()
            pytest.fail(f"lionsweep up did not stop on SIGINT:\n{out}")
    assert up.returncode == 0, out
    assert "Traceback" not in out

    # The database keeps the token: `up` without it says so at once rather than start
    # workers that the server would refuse.
    again = subprocess.run(
        [*lionsweep_command(), "up", "--port", str(port), "--workers", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2, again.stdout + again.stderr
    assert "has API tokens (from `lionsweep token create` or an earlier" in again.stderr
    assert "so its server asks for one: pass --token with a token of the worker" in again.stderr
    assert "Traceback" not in again.stderr
