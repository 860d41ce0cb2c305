"""The MCP layer: maps the protocol to :mod:`imagegen_mcp.service` and back, nothing more."""
