"""Local generation with diffusers pipelines (SDXL and SD class models) on a GPU, or the CPU when asked.

This module is what the server imports at start: availability and the async side of generation. It imports
no torch or diffusers. The heavy half (:mod:`.pipeline`) is imported in the device's worker thread on the
first generation, in a way that keeps the event loop answering meanwhile (see :func:`_import_runtime`);
:mod:`.weights` finds the weights on disk and :mod:`.queue` lines requests up for the device.

A generation waits for its turn on the device (one at a time, in arrival order, told its place in line),
then runs in a worker thread while the event loop keeps serving. The thread reports every denoising step
as progress and checks after each step whether the request was cancelled (by the client or a timeout);
if so it stops the pipeline at that step and gives the device to the next request.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import importlib
import importlib.machinery
import os
import platform
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from imagegen_mcp.config import Settings
from imagegen_mcp.errors import GenerationCancelledError
from imagegen_mcp.providers.base import (
    GenerationRequest,
    ImageProvider,
    LoraSpec,
    Progress,
    ProviderInfo,
    ProviderResult,
    Requirement,
    missing_modules,
)
from imagegen_mcp.providers.flux_local.config import (
    FLUX_LOCAL_MODELS,
    NEW_MODEL_DEFAULTS,
    FluxLocalSettings,
    FluxModelConfig,
)
from imagegen_mcp.providers.flux_local.queue import DeviceQueue
from imagegen_mcp.providers.flux_local.weights import WeightsLocator, lora_problem

if TYPE_CHECKING:
    from imagegen_mcp.providers.flux_local.pipeline import DevicePipelines, Generation, Report, ShouldStop

#: Seconds one generation may take, waiting for the device and a first load from disk included.
GPU_TIMEOUT_S = 300.0
CPU_TIMEOUT_S = 1800.0
_REQUIRED_MODULES = ("torch", "diffusers", "transformers", "huggingface_hub")
#: What the first generation imports in its worker thread, in this order, and what the client hears meanwhile.
_RUNTIME_IMPORTS = (
    ("torch", "importing torch (first use)"),
    ("imagegen_mcp.providers.flux_local.pipeline", "importing diffusers and transformers (first use)"),
)


@functools.cache
def _cuda_present() -> bool:
    """An NVIDIA driver is loaded; checked without importing torch (and once: it is asked on every request)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _mps_present() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


class FluxLocalProvider(ImageProvider[FluxModelConfig]):
    info = ProviderInfo(
        name="flux_local",
        display_name="Local diffusers",
        description="SDXL-class models run locally with diffusers: private, no per-image cost; needs a GPU.",
        default_model="lightning_4step",
        priority=2,
        paid=False,
    )

    def __init__(self, settings: Settings) -> None:
        self.config = settings.provider_settings(FluxLocalSettings)
        self.weights = WeightsLocator(self.config.cache_dir, allow_download=self.config.allow_download)
        self.queue = DeviceQueue()
        #: The loaded pipelines; created in the worker thread by the first generation.
        self.pipelines: DevicePipelines | None = None
        super().__init__(settings)

    def builtin_models(self) -> Sequence[FluxModelConfig]:
        return FLUX_LOCAL_MODELS

    def _device(self) -> str | None:
        choice = self.config.device
        if choice == "cpu":
            return "cpu"
        if choice in ("auto", "cuda") and _cuda_present():
            return "cuda"
        if choice in ("auto", "mps") and _mps_present():
            return "mps"
        return None

    # -- availability -----------------------------------------------------------------------------

    def requirements(self) -> list[Requirement]:
        missing = missing_modules(*_REQUIRED_MODULES)
        if self.config.device == "auto":
            no_device = "no GPU found (CUDA or Apple MPS); the CPU is used only when FLUX_LOCAL_DEVICE=cpu"
        else:
            no_device = f"FLUX_LOCAL_DEVICE={self.config.device} but that device is not present"
        return [
            Requirement(
                met=not missing,
                reason=f"{', '.join(missing)} not installed",
                steps=("Install the local extra: pip install 'imagegen-mcp[local]' (torch with CUDA for a GPU)",),
            ),
            Requirement(
                met=self._device() is not None,
                reason=no_device,
                steps=(
                    "Run on a machine with an NVIDIA GPU (CUDA) or Apple silicon (MPS), or set "
                    "FLUX_LOCAL_DEVICE=cpu to run on the CPU (slow: minutes per SDXL image; sd_turbo takes seconds)",
                ),
            ),
        ]

    def model_requirements(self, model: FluxModelConfig) -> list[Requirement]:
        if self.config.allow_download:
            return []
        problem = self.weights.missing(model)
        if problem is None:
            return []
        return [Requirement(met=False, reason=f"weights not on this machine: {problem.reason}", steps=problem.steps)]

    def new_model_defaults(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().new_model_defaults(fields), **NEW_MODEL_DEFAULTS.get(str(fields.get("pipeline")), {})}

    def check_user_model(self, model: FluxModelConfig) -> str | None:
        for name in ("path", "base_path"):
            path = getattr(model, name)
            if path is not None and not path.exists():
                return f"{name}: {path} does not exist"
        problems = [f"loras: {lora.label}: {problem}" for lora in model.loras if (problem := lora_problem(lora))]
        return problems[0] if problems else None

    def lora_problem(self, lora: LoraSpec) -> str | None:
        return lora_problem(lora)

    def timeout_s(self, default: float) -> float:
        """Waiting for the device and a first load from disk count against a request's time too, and on the
        CPU an SDXL image takes minutes: never less than :data:`GPU_TIMEOUT_S` / :data:`CPU_TIMEOUT_S`."""
        return max(default, CPU_TIMEOUT_S if self._device() == "cpu" else GPU_TIMEOUT_S)

    # -- generation -------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest, model: FluxModelConfig, progress: Progress) -> ProviderResult:
        device = self._device()

        async def report_position(ahead: int) -> None:
            await progress.update(f"waiting for the {device} device: {ahead} generation(s) ahead")

        report, should_stop = _thread_callbacks(progress)
        async with self.queue.turn(report_position):
            if self.pipelines is None or model.key not in self.pipelines.loaded:
                # Said before the worker thread starts: a first load imports torch and diffusers for seconds.
                await progress.update(self._loading_message(model))
            outcome = await anyio.to_thread.run_sync(self._generate_in_thread, model, request, report, should_stop)
        if outcome is None:
            # Stopped because this request was cancelled: let that cancellation (or timeout) surface as itself.
            await anyio.lowlevel.checkpoint()
            raise GenerationCancelledError(f"The generation with {model.key} was stopped before it finished.")
        return ProviderResult(images=outcome.images, details=outcome.details)

    def _loading_message(self, model: FluxModelConfig) -> str:
        downloading = self.weights.allow_download and self.weights.missing(model) is not None
        return f"{'downloading and loading' if downloading else 'loading'} {model.key} (first use)"

    def _generate_in_thread(
        self, model: FluxModelConfig, request: GenerationRequest, report: Report, should_stop: ShouldStop
    ) -> Generation | None:
        if self.pipelines is None:
            device_pipelines = _import_runtime(lambda stage: report(stage, None))
            device = self._device()
            assert device is not None
            dtype = "float32" if device == "cpu" else "float16"
            self.pipelines = device_pipelines(device, dtype, self.config.max_pipelines, self.weights)
        return self.pipelines.generate(model, request, report, should_stop)

    async def aclose(self) -> None:
        """Unload every pipeline once the generation on the device (if any) has finished."""
        pipelines = self.pipelines
        if pipelines is None:
            return

        async def ignore_position(ahead: int) -> None:
            return None

        async with self.queue.turn(ignore_position):
            await anyio.to_thread.run_sync(pipelines.clear)


def _thread_callbacks(progress: Progress) -> tuple[Report, ShouldStop]:
    """Progress reporting and the cancellation check, for the worker thread of the current task."""
    cancelled = anyio.get_cancelled_exc_class()

    def report(message: str, fraction: float | None) -> None:
        # Cancelled while reporting: nothing to report to; should_stop() then ends the run.
        with contextlib.suppress(concurrent.futures.CancelledError, cancelled):
            anyio.from_thread.run(progress.update, message, fraction)

    def should_stop() -> bool:
        try:
            anyio.from_thread.check_cancelled()
        except cancelled:
            return True
        return False

    return report, should_stop


# -- importing torch and diffusers in a worker thread -------------------------------------------------------


def _import_runtime(report_stage: Callable[[str], None]) -> type[DevicePipelines]:
    """Import torch and :mod:`.pipeline` (diffusers, transformers) in the calling worker thread, telling the
    client each stage as it starts; the :class:`~.pipeline.DevicePipelines` class.

    A worker thread alone does not keep the event loop answering: it shares the GIL, and three things in these
    imports keep it from the loop for 100-400 ms at a time on 2 cores (see bench/local_responsiveness.py):

    * the cyclic garbage collector: the imports create some 400,000 objects that it tracks, and each of its
      full collections, run in whichever thread happens to allocate, scans them all;
    * loading extension modules: the import system calls ``dlopen`` holding the GIL, and for torch that runs
      the static initialisers of a 400 MB library (200-300 ms; longer from a cold disk);
    * the GIL's hand-off: a waiting thread asks for the GIL only after a whole switch interval (5 ms) in which
      it did not change hands, and the imports' bursts of short system calls (each one a release and retake by
      the worker) restart that wait again and again.

    :class:`_SharedGilImports` answers each of them for the duration of the imports.
    """
    for module, stage in _RUNTIME_IMPORTS:
        if module not in sys.modules:
            report_stage(stage)
            with _SHARED_GIL_IMPORTS.running():
                importlib.import_module(module)
    from imagegen_mcp.providers.flux_local.pipeline import DevicePipelines

    return DevicePipelines


class _SharedGilImports:
    """While :meth:`running` (concurrent uses share one window):

    * garbage collection is off, and what exists when the window closes is frozen (:func:`gc.freeze`: never
      scanned again; the imported modules live as long as the process, and so does any object alive then that
      later becomes cyclic garbage);
    * the switch interval is :attr:`SWITCH_INTERVAL_S`: the imports' bursts of system calls often leave that
      long without a hand-off (5 ms, hardly ever), so a waiting event loop gets to ask for the GIL; the
      slowest list_providers during a first generation halves, and the imports take no longer (on 2 cores);
    * this meta path finder, placed just before :class:`importlib.machinery.PathFinder` and answering as it
      does, gives each extension module it finds a loader that first opens the file with libc's ``dlopen``
      called through ctypes, which releases the GIL for the call; the import system's own ``dlopen`` is then
      instant, and only the module's init function runs holding the GIL.

    The finder is installed once and never removed (removing a finder while another thread walks
    ``sys.meta_path`` can make that thread skip the next one); outside a window it answers nothing.
    """

    SWITCH_INTERVAL_S = 0.0005

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._installed = False
        #: Whether garbage collection was on, and the switch interval, as the last window opened.
        self._saved = (gc.isenabled(), sys.getswitchinterval())

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            if not self._users:
                self._open()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._close()

    def _open(self) -> None:
        self._saved = (gc.isenabled(), sys.getswitchinterval())
        gc.disable()
        sys.setswitchinterval(min(self._saved[1], self.SWITCH_INTERVAL_S))
        if not self._installed and _dlopen() is not None and importlib.machinery.PathFinder in sys.meta_path:
            sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder), self)
            self._installed = True

    def _close(self) -> None:
        collecting, interval = self._saved
        sys.setswitchinterval(interval)
        gc.freeze()
        if collecting:
            gc.enable()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self._users:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.ExtensionFileLoader:
            spec.loader = _PreopenedExtensionLoader(spec.loader.name, spec.loader.path)
        return spec


class _PreopenedExtensionLoader(importlib.machinery.ExtensionFileLoader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        dlopen = _dlopen()
        if dlopen is not None:
            # The flags the import system opens extension modules with; a failure is left to it to report.
            dlopen(os.fsencode(self.path), sys.getdlopenflags())
        return super().create_module(spec)


@functools.cache
def _dlopen() -> Callable[[bytes, int], int | None] | None:
    """libc's ``dlopen`` as a ctypes foreign function (``None`` where there is none, as on Windows)."""
    import ctypes

    if not hasattr(sys, "getdlopenflags"):
        return None
    try:
        dlopen = ctypes.CDLL(None).dlopen
    except (OSError, AttributeError):
        return None
    dlopen.argtypes = (ctypes.c_char_p, ctypes.c_int)
    dlopen.restype = ctypes.c_void_p
    return dlopen


_SHARED_GIL_IMPORTS = _SharedGilImports()
