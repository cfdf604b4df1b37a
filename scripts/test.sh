#!/usr/bin/env bash
# Set up, then run the whole test suite (every notebook executes at smoke size).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CI="${CI:-true}"   # notebooks executed by the tests run at smoke size
.venv/bin/python -m pytest -q "$@"
