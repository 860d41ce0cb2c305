"""Test images that compress like photographs (a smooth scene plus sensor-like noise), not like flat colour."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    scene = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(scene)
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(width // 20, width // 4)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    scene = scene.filter(ImageFilter.GaussianBlur(width / 80))
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 24) for _ in range(3)])
    return Image.blend(scene, noise, 0.18)


def photo_like_png(width: int, height: int, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    photo_like(width, height, seed).save(buffer, format="PNG")
    return buffer.getvalue()
