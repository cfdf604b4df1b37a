#!/usr/bin/env bash
# Create .venv (if missing) and install bnvae_core with its notebook and test extras.
# torch==2.13.0 is installed FIRST: on the project's machines pip finds a local CPU wheel for it,
# and pyproject's `torch>=2.4` is then already satisfied (an unpinned torch would pull a
# multi-GB CUDA build). Elsewhere, pip fetches torch 2.13.0 from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[notebooks,test,dialogue]"
.venv/bin/python -c "import torch, bnvae_core; print('bnvae_core ready: torch', torch.__version__)"
