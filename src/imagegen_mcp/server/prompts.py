"""Prompts: templates a person picks in the client (a slash command, a menu entry) to start a task well.

``create_image`` turns a subject, a style and a shape into a request that names what the image models
respond to (subject, medium, lighting, composition) and asks for the result to be shown; people who do
not know the tool's arguments get a good first image from it.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

from imagegen_mcp.service import ImageService

STYLES = (
    "photograph",
    "cinematic still",
    "studio product photo",
    "digital illustration",
    "watercolor painting",
    "oil painting",
    "pencil sketch",
    "3d render",
    "pixel art",
    "flat vector icon",
)
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")


def create_image_text(subject: str, style: str | None = None, aspect_ratio: str | None = None) -> str:
    lines = [f"Generate an image of {subject.strip()} with the generate_image tool."]
    if style:
        lines.append(f"Style: {style.strip()}. Describe the medium, lighting and composition in the prompt.")
    else:
        lines.append("Describe the subject, the medium, the lighting and the composition in the prompt.")
    if aspect_ratio:
        lines.append(f"Use aspect_ratio {aspect_ratio.strip()}.")
    lines.append("Then show me the result, and say which model made it and whether anything was adjusted.")
    return "\n".join(lines)


def complete_prompt_argument(service: ImageService, prompt: str, argument: str, value: str) -> list[str]:
    """Values for a prompt argument that start with what was typed."""
    if prompt != "create_image":
        return []
    options = {"style": STYLES, "aspect_ratio": ASPECT_RATIOS}.get(argument, ())
    return [option for option in options if option.startswith(value.lower())]


def add_prompts(server: MCPServer[Any], service: ImageService) -> None:
    @server.prompt(
        name="create_image",
        title="Create an image",
        description="Generate an image of a subject, optionally in a style and shape; the image is shown when done.",
    )
    def create_image(subject: str, style: str | None = None, aspect_ratio: str | None = None) -> str:
        return create_image_text(subject, style, aspect_ratio)
