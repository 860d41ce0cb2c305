"""The torch/diffusers half of flux_local: load pipelines, keep the recently used ones, generate.

Imported only inside the device's worker thread (importing diffusers takes seconds, never at server start
or on the event loop), and only one thread at a time calls into a :class:`DevicePipelines`: the one holding
the device's turn in the queue.
"""

from __future__ import annotations

import gc
import io
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import diffusers
import torch
from PIL import Image

from imagegen_mcp.errors import OutOfMemoryError, ProviderUnavailableError
from imagegen_mcp.providers.base import EditOperation, GeneratedImage, GenerationRequest, LoraSpec
from imagegen_mcp.providers.flux_local.config import FluxModelConfig, SchedulerConfig
from imagegen_mcp.providers.flux_local.weights import WeightsLocator

#: Called from the worker thread with a message and the fraction done (``None``: no new fraction).
Report = Callable[[str, float | None], None]
#: Whether the request was cancelled; checked after every denoising step.
ShouldStop = Callable[[], bool]

#: diffusers pipelines are only partly typed (``__call__``, components and ``from_*`` are not): handled as Any.
Pipeline = Any

PIPELINE_CLASSES: dict[str, Any] = {
    "sdxl": diffusers.StableDiffusionXLPipeline,
    "sd": diffusers.StableDiffusionPipeline,
}
#: The pipelines an edit runs, built from the loaded text-to-image one with ``from_pipe`` (the same weights).
EDIT_CLASSES: dict[tuple[str, EditOperation], Any] = {
    ("sdxl", "image_to_image"): diffusers.StableDiffusionXLImg2ImgPipeline,
    ("sdxl", "inpaint"): diffusers.StableDiffusionXLInpaintPipeline,
    ("sd", "image_to_image"): diffusers.StableDiffusionImg2ImgPipeline,
    ("sd", "inpaint"): diffusers.StableDiffusionInpaintPipeline,
}
DTYPES = {"float16": torch.float16, "float32": torch.float32}
#: The share of the progress bar the denoising steps fill; the service reports saving after them.
STEPS_SHARE = 0.95

OUT_OF_MEMORY_STEPS = [
    "Ask for a smaller size (e.g. width and height 768) or fewer images (count 1)",
    "Or use a lighter model (see list_models), e.g. flux_local:sd_turbo",
    "Or free the device's memory: close other programs using it, keep FLUX_LOCAL_MAX_PIPELINES=1",
]


@dataclass
class Generation:
    images: list[GeneratedImage]
    details: dict[str, Any]


class DevicePipelines:
    """The pipelines loaded on one device, least recently used first, at most ``capacity`` of them."""

    def __init__(self, device: str, dtype: str, capacity: int, locator: WeightsLocator) -> None:
        _check_device(device)
        self.device = device
        self.dtype = dtype
        self.capacity = capacity
        self.locator = locator
        self.loaded: OrderedDict[str, Pipeline] = OrderedDict()
        #: Edit pipelines sharing a loaded pipeline's components, by model key and operation.
        self.derived: dict[tuple[str, EditOperation], Pipeline] = {}
        #: The LoRAs each loaded pipeline has (its edit pipelines share them: the same components).
        self.applied: dict[str, tuple[LoraSpec, ...]] = {}

    def generate(
        self, model: FluxModelConfig, request: GenerationRequest, report: Report, should_stop: ShouldStop
    ) -> Generation | None:
        """Make ``request.count`` images; ``None`` when ``should_stop`` ended the run early."""
        try:
            return self._generate(model, request, report, should_stop)
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
            text = str(exc).strip()
            detail = text.splitlines()[0] if text else type(exc).__name__
        # Outside the except block, so the traceback no longer pins the failed step's tensors.
        self.free_memory()
        raise OutOfMemoryError(
            f"{model.key} ran out of memory on {self.device} at {request.width}x{request.height}, "
            f"{request.count} image(s): {detail}",
            remediation=OUT_OF_MEMORY_STEPS,
        )

    def clear(self) -> None:
        """Unload every pipeline and give their memory back."""
        self.loaded.clear()
        self.derived.clear()
        self.applied.clear()
        self.free_memory()

    def free_memory(self) -> None:
        gc.collect()
        if self.device == "cuda":
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()

    def _generate(
        self, model: FluxModelConfig, request: GenerationRequest, report: Report, should_stop: ShouldStop
    ) -> Generation | None:
        if should_stop():  # cancelled as its turn came: leave the device to the next request at once
            return None
        pipe, load_ms = self._pipeline(model)
        self._apply_loras(model, pipe, request.loras, report)
        if request.edit is not None:
            pipe = self._edit_pipeline(model, pipe, request.edit.operation)
        images = []
        for index in range(request.count):
            if should_stop():
                return None
            seed = request.seed_of(index)
            image = _denoise(pipe, model, request, seed, index, report, should_stop)
            if image is None:
                return None
            images.append(GeneratedImage(data=_png(image), mime_type="image/png", seed=seed, decoded=image))
        scheduler = pipe.scheduler
        details = {
            "device": self.device,
            "dtype": self.dtype,
            "scheduler": {
                "class_name": type(scheduler).__name__,
                **{name: scheduler.config[name] for name in model.scheduler.config},
            },
            "pipeline_load_ms": load_ms,
        }
        return Generation(images=images, details=details)

    def _apply_loras(self, model: FluxModelConfig, pipe: Pipeline, loras: tuple[LoraSpec, ...], report: Report) -> None:
        """Give the pipeline exactly ``loras``: loaded as adapters when they change, all of them unloaded when
        the request has none. They are never fused into the weights, so that unloading gives the model back
        exactly (a request without a LoRA makes the same pixels as before one)."""
        if self.applied.get(model.key, ()) == loras:
            return
        if self.applied.get(model.key):
            pipe.unload_lora_weights()
        self.applied[model.key] = ()
        names = []
        for index, lora in enumerate(loras):
            report(f"loading LoRA {lora.label}", None)
            file = self.locator.lora_file(lora)
            name = f"lora_{index}"
            pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=name)
            names.append(name)
        if names:
            pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
        self.applied[model.key] = loras

    def _edit_pipeline(self, model: FluxModelConfig, base: Pipeline, operation: EditOperation) -> Pipeline:
        """The edit pipeline of a loaded model: no second load, the components are the base pipeline's.

        ``dtype`` is passed on purpose: without it ``from_pipe`` converts the shared components to float32,
        and with them the text-to-image pipeline.
        """
        if operation == "instruction_edit":
            raise ValueError(f"{model.key} does not edit by instruction")
        key = (model.key, operation)
        if key not in self.derived:
            edit_class = EDIT_CLASSES[(model.pipeline, operation)]
            derived = edit_class.from_pipe(base, dtype=DTYPES[self.dtype])
            derived.set_progress_bar_config(disable=True)
            self.derived[key] = derived
        return self.derived[key]

    def _pipeline(self, model: FluxModelConfig) -> tuple[Pipeline, int | None]:
        """The model's pipeline and how long loading it took (``None``: it was already loaded). The provider
        has told the client about a load before the worker thread started."""
        if model.key in self.loaded:
            self.loaded.move_to_end(model.key)
            return self.loaded[model.key], None
        # Unload first, so the new pipeline has the memory the old one held.
        while len(self.loaded) >= self.capacity:
            evicted, _ = self.loaded.popitem(last=False)
            self.derived = {key: pipe for key, pipe in self.derived.items() if key[0] != evicted}
            self.applied.pop(evicted, None)
            self.free_memory()
        started = time.perf_counter()
        pipe = self._load(model)
        self.loaded[model.key] = pipe
        return pipe, round((time.perf_counter() - started) * 1000)

    def _load(self, model: FluxModelConfig) -> Pipeline:
        weights = self.locator.locate(model)
        pipeline_class = PIPELINE_CLASSES[model.pipeline]
        dtype = DTYPES[self.dtype]
        try:
            if weights.checkpoint is not None:
                pipe = pipeline_class.from_single_file(
                    str(weights.checkpoint), config=str(weights.folder), dtype=dtype, local_files_only=True
                )
            else:
                pipe = pipeline_class.from_pretrained(str(weights.folder), dtype=dtype, local_files_only=True)
        except OSError as exc:
            missing = self.locator.missing(model)
            raise ProviderUnavailableError(
                f"The weights of {model.key} could not be read: {exc}",
                remediation=missing.steps if missing else ("Download the model's files again",),
            ) from None
        pipe.scheduler = _scheduler(model.scheduler, pipe.scheduler.config)
        # stdout belongs to the protocol: no progress bars from the pipeline.
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)


def _denoise(
    pipe: Pipeline,
    model: FluxModelConfig,
    request: GenerationRequest,
    seed: int,
    index: int,
    report: Report,
    should_stop: ShouldStop,
) -> Image.Image | None:
    """One image, or ``None`` when stopped. Each image gets its own generator, on the CPU so
    that a seed gives the same starting noise on every device, and each image is reproducible alone from
    its reported seed (a batched call would tie it to the batch)."""
    count = request.count

    def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        total = pipe.num_timesteps
        report(
            f"image {index + 1}/{count}: step {step + 1}/{total}", STEPS_SHARE * (index + (step + 1) / total) / count
        )
        if should_stop():
            # diffusers skips the remaining steps; the image is thrown away below.
            pipe._interrupt = True
        return tensors

    steps = request.steps if request.steps is not None else model.default_steps
    inputs = _size_and_inputs(request, steps)
    output = pipe(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_inference_steps=steps,
        guidance_scale=request.guidance_scale if request.guidance_scale is not None else model.default_guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=on_step_end,
        **inputs,
    )
    if pipe.interrupt:
        return None
    image: Image.Image = output.images[0]
    if "mask_image" in inputs:
        # The VAE's round trip changes every pixel a little; outside the mask the input's own pixels are kept.
        image = Image.composite(image, inputs["image"], inputs["mask_image"])
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _size_and_inputs(request: GenerationRequest, steps: int) -> dict[str, Any]:
    """The pipeline arguments that differ between a generation and an edit. An edit's image (and mask) are
    scaled to the requested size; its strength leaves at least one denoising step."""
    size = (request.width, request.height)
    edit = request.edit
    if edit is None:
        return {"width": size[0], "height": size[1]}
    strength = max(edit.strength if edit.strength is not None else 1.0, 1.0 / steps)
    image = Image.open(io.BytesIO(edit.image.data)).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    arguments: dict[str, Any] = {"image": image, "strength": strength}
    if edit.mask is not None:
        mask = Image.open(io.BytesIO(edit.mask.data)).convert("L").resize(size, Image.Resampling.BILINEAR)
        arguments.update(mask_image=mask, width=size[0], height=size[1])
    return arguments


def _scheduler(config: SchedulerConfig, base: Any) -> Any:
    """The model's scheduler, built on the checkpoint's own scheduler config with the model's overrides."""
    scheduler_class = getattr(diffusers, config.class_name, None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, diffusers.SchedulerMixin)):
        raise ValueError(f"{config.class_name!r} is not a diffusers scheduler")
    return scheduler_class.from_config(base, **config.config)  # type: ignore[no-untyped-call]


def _check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise ProviderUnavailableError(
            f"An NVIDIA GPU is present but torch {torch.__version__} cannot use it (a CPU-only build, or a "
            "driver too old for it)",
            remediation=[
                "Install a CUDA build of torch: https://pytorch.org/get-started/locally/",
                "Or set FLUX_LOCAL_DEVICE=cpu to run on the CPU (slow)",
            ],
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ProviderUnavailableError(
            f"torch {torch.__version__} cannot use Apple MPS on this machine",
            remediation=["Install torch 2.4 or newer on macOS 12.3 or newer", "Or set FLUX_LOCAL_DEVICE=cpu"],
        )


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the RuntimeError the MPS and CPU allocators raise."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
