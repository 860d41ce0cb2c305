#!/usr/bin/env bash
# Register imagegen-mcp with Claude Code (stdio), passing the keys it should use.
claude mcp add imagegen \
  --env RUNWARE_API_KEY="${RUNWARE_API_KEY:?set RUNWARE_API_KEY}" \
  -- "$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/imagegen-mcp"
