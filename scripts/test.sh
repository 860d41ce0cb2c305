#!/usr/bin/env bash
# Set up a virtual environment with every extra, check the code (ruff, ruff format, mypy strict) and run the
# whole test suite.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k runware # extra arguments go to pytest (the checks still run first)
# TORCH_SPEC picks the PyTorch build installed before the extras (default: torch==2.13.0; on machines
# without a local wheel, e.g. "torch --index-url https://download.pytorch.org/whl/cpu" avoids the CUDA download).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
"$VENV/bin/python" -m pip install -q -e '.[all,test]'
# Headless Chromium for the browser tests: Playwright drives the system's (its own download cannot run here).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
"$VENV/bin/python" -m ruff check .
"$VENV/bin/python" -m ruff format --check .
"$VENV/bin/python" -m mypy
"$VENV/bin/python" -m pytest -q "$@"
