"""imagegen-mcp: an MCP server that generates images with Runware, local diffusers pipelines and Gemini."""

__version__ = "0.1.0"
