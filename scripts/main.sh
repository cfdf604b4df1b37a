#!/usr/bin/env bash
# The main job: set up, then execute every notebook on the built-in corpus and regenerate figures/.
# Full (teaching) size by default; CI=true or --smoke runs the smoke size.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m bnvae_core figures "$@"
