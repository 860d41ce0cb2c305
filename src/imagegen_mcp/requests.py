"""What a caller may ask for, and how one request is fitted to the model that will actually run it."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imagegen_mcp.errors import InvalidRequestError
from imagegen_mcp.providers.base import MAX_SEED, GenerationRequest, ModelConfig

_N = TypeVar("_N", int, float)
_M = TypeVar("_M", bound=BaseModel)


class ImageRequest(BaseModel):
    """The arguments of ``generate_image``. Field descriptions are written for the agent that calls it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(
        min_length=1,
        max_length=4000,
        description="What to draw: subject, style, lighting, composition.",
    )
    model: str | None = Field(
        None,
        description="Model id 'provider:key' from list_models; default: the server's.",
    )
    provider: str | None = Field(None, description="Provider name from list_providers.")
    negative_prompt: str | None = Field(
        None,
        max_length=2000,
        description="What to keep out of the image.",
    )
    width: int | None = Field(None, ge=64, le=4096, description="Pixels; default: the model's.")
    height: int | None = Field(None, ge=64, le=4096, description="Pixels; default: the model's.")
    aspect_ratio: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]?:[1-9][0-9]?$",
        description="'W:H' such as '16:9', instead of width and height.",
    )
    steps: int | None = Field(None, ge=1, le=150, description="Denoising steps; default: tuned per model.")
    guidance_scale: float | None = Field(
        None, ge=0, le=30, description="Prompt guidance (CFG); default: tuned per model."
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="For reproducible results; default: random (reported).",
    )
    count: int = Field(1, ge=1, le=4, description="How many images.")
    fallback: Literal["auto", "strict"] | None = Field(
        None,
        description="'auto': another provider may serve if this one fails; 'strict': never. Default: the server's.",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _one_way_to_size(self) -> ImageRequest:
        if self.aspect_ratio is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either width/height or aspect_ratio, not both")
        return self


def _round_to(value: int, multiple: int, ceiling: int) -> int:
    rounded = max(multiple, round(value / multiple) * multiple)
    return rounded if rounded <= ceiling else (ceiling // multiple) * multiple


def _requested_size(request: ImageRequest, model: ModelConfig) -> tuple[int, int]:
    default_w, default_h = model.default_width, model.default_height
    if request.aspect_ratio is not None:
        ratio_w, ratio_h = (int(part) for part in request.aspect_ratio.split(":"))
        long_side = max(default_w, default_h)
        if ratio_w >= ratio_h:
            return long_side, round(long_side * ratio_h / ratio_w)
        return round(long_side * ratio_w / ratio_h), long_side
    if request.width is not None and request.height is not None:
        return request.width, request.height
    if request.width is not None:
        return request.width, round(request.width * default_h / default_w)
    if request.height is not None:
        return round(request.height * default_w / default_h), request.height
    return default_w, default_h


def fit_request(
    request: ImageRequest, model: ModelConfig, model_id: str, *, primary: bool, seed: int
) -> tuple[GenerationRequest, list[str]]:
    """Resolve ``request`` for ``model``: final size, steps, guidance and negative prompt.

    On the primary candidate the caller's values are kept, and a size the model cannot make is an error.
    On a fallback candidate the model-tuned values follow the model that runs and an oversized request is
    scaled down. Every change is returned as a sentence for the result.
    """
    adjustments: list[str] = []
    width, height = _requested_size(request, model)
    longest = max(width, height)
    if longest > model.max_resolution:
        if primary:
            raise InvalidRequestError(
                f"{width}x{height} is larger than {model_id} allows (longest side {model.max_resolution}px).",
                model=model_id,
                remediation=[
                    f"Use width and height of at most {model.max_resolution}",
                    "or give aspect_ratio instead of pixel sizes",
                ],
            )
        scale = model.max_resolution / longest
        adjustments.append(f"size {width}x{height} scaled to fit {model_id} (longest side {model.max_resolution}px)")
        width, height = int(width * scale), int(height * scale)
    fitted_w = _round_to(width, model.size_multiple, model.max_resolution)
    fitted_h = _round_to(height, model.size_multiple, model.max_resolution)
    if (fitted_w, fitted_h) != (width, height):
        adjustments.append(
            f"size {width}x{height} rounded to {fitted_w}x{fitted_h}: {model_id} needs multiples of "
            f"{model.size_multiple}"
        )

    steps = _tuned("steps", request.steps, model.default_steps, model_id, primary, adjustments)
    guidance = _tuned("guidance_scale", request.guidance_scale, model.default_guidance, model_id, primary, adjustments)

    negative = request.negative_prompt
    if not model.supports_negative_prompt:
        if negative:
            adjustments.append(f"negative_prompt ignored: {model_id} does not support one")
        negative = None
    elif negative is None:
        negative = model.default_negative_prompt

    resolved = GenerationRequest(
        prompt=request.prompt,
        negative_prompt=negative,
        width=fitted_w,
        height=fitted_h,
        aspect_ratio=request.aspect_ratio,
        steps=steps,
        guidance_scale=guidance,
        seed=seed,
        count=request.count,
    )
    return resolved, adjustments


def _tuned(
    name: str, asked: _N | None, default: _N | None, model_id: str, primary: bool, adjustments: list[str]
) -> _N | None:
    if default is None:
        if asked is not None:
            adjustments.append(f"{name} ignored: {model_id} takes no {name}")
        return None
    if asked is None or asked == default:
        return default
    if primary:
        return asked
    adjustments.append(f"{name} {asked} -> {default}: fallback model {model_id} is tuned for {default}")
    return default


def parse_arguments(model: type[_M], arguments: dict[str, Any]) -> _M:
    """Validate tool arguments, turning every problem into one structured ``invalid_request`` error."""
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_url=False)
        ]
        raise InvalidRequestError(
            "Invalid arguments: " + "; ".join(problems),
            remediation=["Correct the arguments listed above; the tool's input schema gives every limit"],
            details={"errors": problems},
        ) from None
