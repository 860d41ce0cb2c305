"""Local generation with diffusers pipelines; see :mod:`.provider`."""

from imagegen_mcp.providers.flux_local.provider import FluxLocalProvider

__all__ = ["FluxLocalProvider"]
