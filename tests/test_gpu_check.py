"""``bench/gpu_check.py``, which only a GPU runs for real, dry-runs its benchmark code on the
CPU, and refuses plainly without a GPU otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_dry_run_on_the_cpu_writes_the_table_and_the_json(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = run(
        "--device", "cpu", "--sizes", "tiny", "--repeats", "2", "--warmup", "1", "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    names = [row["optimizer"] for row in report["rows"]]
    assert names[0] == "adamw fused (torch)"
    assert {"lion flat (ours)", "lion default (ours)", "lion bf16 + kahan (ours)"} <= set(names)
    assert all(
        row["ms"] > 0 and row["params"] == report["rows"][0]["params"] for row in report["rows"]
    )
    assert report["rows"][0]["x_adamw_fused"] == 1.0 and report["tests"] is None
    table = (out / "gpu_check.md").read_text()
    assert table.startswith("| size | optimizer |") and "| tiny | lion flat (ours) |" in table
    assert "dry run" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_and_fails(tmp_path: Path) -> None:
    done = run("--out", str(tmp_path))
    assert done.returncode == 1
    assert "no CUDA device" in done.stdout
