#!/usr/bin/env bash
# The CUDA check in one command, on a machine with an NVIDIA GPU and this project installed
# (pip install -e '.[dev,bench]' next to a CUDA build of torch): the CUDA tests, then Lion's
# step against fused AdamW, lion-pytorch and bitsandbytes at 124M and 1B parameters.
#   bash bench/gpu_check.sh [--out DIR] [--sizes 124M,1B] [--skip-tests]
# Writes DIR/gpu_check.json and DIR/gpu_check.md (default DIR: gpu_check_results).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
exec "$py" bench/gpu_check.py "$@"
