#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance) against imagegen-mcp over
# streamable HTTP on a free loopback port. The server is stopped when the script ends.
#   bash scripts/conformance.sh                 # every server scenario the suite has
#   bash scripts/conformance.sh ping tools-list # only these
# Most scenarios call test tools, resources and prompts of the suite's reference server; the ones that
# apply to this server are listed, with the reasons, in tests/test_conformance.py, which runs them.
# PYTHON: the interpreter with imagegen-mcp installed (default: .venv/bin/python).
# CONFORMANCE_RESULTS: folder for each scenario's checks.json and the server's log (default: a new temporary one).
# CONFORMANCE_TIMEOUT_S: the most one run of the suite may take (default: 120).
# The server gets this shell's environment; IMAGEGEN_OUTPUT_DIR defaults to a folder inside the results.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${CONFORMANCE_RESULTS:-$(mktemp -d)}
export IMAGEGEN_OUTPUT_DIR=${IMAGEGEN_OUTPUT_DIR:-$RESULTS/images}
mkdir -p "$RESULTS"

clients=$("$PYTHON" -m tests.node_clients)
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/mcp"

"$PYTHON" -m imagegen_mcp serve --transport streamable-http --host 127.0.0.1 --port "$port" \
  >/dev/null 2>"$RESULTS/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "the server exited before listening on $port:" >&2
    cat "$RESULTS/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

# tests/clients/node20.mjs lets the suite load on Node.js 20 (it does nothing on 22 and later).
conformance() {
  timeout "${CONFORMANCE_TIMEOUT_S:-120}" node --import ./tests/clients/node20.mjs \
    "$clients/node_modules/.bin/conformance" server --url "$url" --output-dir "$RESULTS" "$@"
}

status=0
if [ $# -eq 0 ]; then
  conformance --suite all || status=$?
else
  for scenario in "$@"; do
    conformance --scenario "$scenario" || status=$?
  done
fi
echo "results: $RESULTS"
exit "$status"
