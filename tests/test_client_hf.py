"""The Hugging Face ``Trainer`` callback for real: ``examples/hf_trainer.py`` trains a tiny
GPT-2 built from a config (random weights, synthetic token ids, nothing downloaded) with
each trial's Lion config, reports ``eval_loss`` at each evaluation and stops on a prune."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.mark.slow
def test_trainer_callback_reports_evaluations_and_stops_on_a_prune(live_server, sqlite_url):
    server = live_server(sqlite_url)
    spec = {
        "name": "hf",
        "task": {"name": "tiny-gpt2"},
        "n_trials": 2,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "space": {"lr": {"low": 1e-7, "high": 1e-2, "log": True}, "weight_decay": 0.01},
        # A good lr first; then one too small to learn: it is pruned at its first evaluation.
        "enqueue": [{"lr": 3e-3}, {"lr": 1e-7}],
    }
    with httpx.Client(base_url=server.url, timeout=30) as api:
        sweep = api.post("/api/sweeps", json=spec).json()["id"]
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "hf_trainer.py"), "--server", server.url]
            + ["--sweep", str(sweep), "--steps", "40", "--eval-every", "10"],
            env={**os.environ, **OFFLINE, "LIONSWEEP_LION_IMPL": "foreach", "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "trial 0 complete at step 40" in out.stdout, out.stdout
        assert "trial 1 pruned at step 10" in out.stdout, out.stdout
        good, slow = api.get(f"/api/sweeps/{sweep}/trials").json()["items"]
        assert good["state"] == "complete" and good["config"]["lr"] == 3e-3
        assert list(good["intermediate_values"]) == ["10", "20", "30", "40"]
        assert good["value"] == good["intermediate_values"]["40"]
        assert "eval_runtime" in good["metrics"]
        assert slow["state"] == "pruned" and list(slow["intermediate_values"]) == ["10"]
        assert slow["intermediate_values"]["10"] > good["intermediate_values"]["10"]
        assert api.get(f"/api/sweeps/{sweep}").json()["status"] == "complete"
