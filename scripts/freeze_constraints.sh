#!/usr/bin/env bash
# Rewrite constraints.txt from a fresh virtual environment (torch 2.13.0 first, then the package
# with every extra the notebooks and tests use — as scripts/setup.sh installs it — newest versions
# allowed), after the suite passed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$tmp/venv/bin/python" -m pip install --quiet ".[notebooks,test,dialogue,ptb]"
{
  echo "# The versions the test suite passed with (pip freeze of a fresh .venv: torch first, then"
  echo "# .[notebooks,test,dialogue,ptb]; the test extra brings ray and tensorboard); scripts/setup.sh"
  echo "# installs with -c constraints.txt, so a fresh machine gets this tested set. Regenerate with:"
  echo "# bash scripts/freeze_constraints.sh"
  "$tmp/venv/bin/python" -m pip freeze | grep -v '^bnvae' | sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
