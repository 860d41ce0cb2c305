#!/usr/bin/env bash
# Run every benchmark and print their tables (about twenty minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
for bench in cold_start runware_overhead concurrency edit_overhead job_overhead history_search local_reuse \
  local_responsiveness context_cost; do
  "$PYTHON" -m "bench.$bench" 2>/dev/null
  echo
done
