"""Image providers. Each module owns its typed model config, its model registry and its availability."""
