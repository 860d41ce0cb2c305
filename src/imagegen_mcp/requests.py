"""What a caller may ask for, and how one request is fitted to the model that will actually run it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imagegen_mcp.errors import InvalidRequestError
from imagegen_mcp.providers.base import MAX_SEED, EditInputs, EditNeeds, GenerationRequest, LoraSpec, ModelConfig

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
    loras: list[LoraSpec] | None = Field(
        None, max_length=8, description="LoRAs to apply in place of the model's own ([] for none)."
    )
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


WAIT_S_DESCRIPTION = "Seconds to wait for the images (0-300); after that a job id comes back. Default: the server's."


class GenerateImageArgs(ImageRequest):
    """``generate_image``'s arguments: the request, and how long the call waits for its job."""

    wait_s: float | None = Field(None, ge=0, le=300, description=WAIT_S_DESCRIPTION)


IMAGE_FORMS = "imagegen://images/{id} of an earlier result, an absolute path under an allowed folder, or a data: URI"


class EditImageArgs(GenerateImageArgs):
    """``edit_image``'s arguments: an instruction and the images it applies to, with every generation option."""

    prompt: str = Field(
        min_length=1,
        max_length=4000,
        description="The edit: an instruction ('make the sky darker') or the picture to arrive at.",
    )
    image: str = Field(min_length=1, description=f"The image to edit: {IMAGE_FORMS}.")
    mask: str | None = Field(None, description="Where to repaint (white) and keep (black); same forms as image.")
    reference_images: list[str] = Field(
        default_factory=list, max_length=14, description="Style or subject references; same forms as image."
    )
    strength: float | None = Field(
        None, ge=0, le=1, description="How far from image to go: 0 keeps it, 1 ignores it. Default: the model's."
    )

    @property
    def needs(self) -> EditNeeds:
        return EditNeeds(mask=self.mask is not None, references=len(self.reference_images))


def _round_to(value: int, multiple: int, ceiling: int) -> int:
    rounded = max(multiple, round(value / multiple) * multiple)
    return rounded if rounded <= ceiling else (ceiling // multiple) * multiple


def _requested_size(request: ImageRequest, model: ModelConfig, image_size: tuple[int, int] | None) -> tuple[int, int]:
    default_w, default_h = image_size or (model.default_width, model.default_height)
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
    if image_size is not None and max(image_size) > model.max_resolution:
        # An edit's output takes the input's shape; a large input is not an oversized request.
        scale = model.max_resolution / max(image_size)
        return round(image_size[0] * scale), round(image_size[1] * scale)
    return default_w, default_h


def fit_request(
    request: ImageRequest,
    model: ModelConfig,
    model_id: str,
    *,
    primary: bool,
    seed: int,
    edit: EditInputs | None = None,
) -> tuple[GenerationRequest, list[str]]:
    """Resolve ``request`` for ``model``: final size, steps, guidance, negative prompt (and for an edit, its
    strength; an edit without a size keeps its input image's shape).

    On the primary candidate the caller's values are kept, and a size the model cannot make is an error.
    On a fallback candidate the model-tuned values follow the model that runs and an oversized request is
    scaled down. Every change is returned as a sentence for the result.
    """
    adjustments: list[str] = []
    image_size = (edit.image.width, edit.image.height) if edit is not None else None
    width, height = _requested_size(request, model, image_size)
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
    elif guidance is not None and guidance <= 1:
        # Diffusion pipelines apply classifier-free guidance, which is what uses a negative prompt, above 1 only.
        adjustments.append(
            f"negative_prompt ignored: at guidance_scale {guidance:g} {model_id} runs without classifier-free "
            "guidance, which a negative prompt needs; pass guidance_scale above 1 for it to act"
        )
        negative = None

    if edit is not None:
        edit = _fit_strength(edit, request, model, model_id, adjustments)
    loras = tuple(request.loras) if request.loras is not None else model.loras
    if loras and not model.supports_loras:
        if primary and request.loras:
            raise InvalidRequestError(
                f"{model_id} takes no LoRAs.",
                model=model_id,
                remediation=["Drop loras, or choose a model that takes them (list_models: supports_loras)"],
            )
        adjustments.append(f"loras ignored: {model_id} takes none")
        loras = ()
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
        edit=edit,
        loras=loras,
    )
    return resolved, adjustments


def _fit_strength(
    edit: EditInputs, request: ImageRequest, model: ModelConfig, model_id: str, adjustments: list[str]
) -> EditInputs:
    asked = request.strength if isinstance(request, EditImageArgs) else None
    if edit.operation == "instruction_edit":
        if asked is not None:
            adjustments.append(f"strength ignored: {model_id} edits by instruction, not by a strength")
        return replace(edit, strength=None)
    return replace(edit, strength=model.default_strength if asked is None else asked)


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
