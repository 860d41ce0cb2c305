"""Tiny random-weight SDXL and SD pipelines, saved the ways real models ship, for the flux_local tests.

Each pipeline is built from diffusers/transformers classes with a seeded random init and a CLIP tokenizer
whose vocabulary is written here (nothing comes from a hub), then saved three ways:

* a diffusers-format folder (``save_pretrained``),
* a single-file checkpoint in the original LDM key layout that community checkpoints use. diffusers only
  converts *from* that layout, so the reverse key mapping for the tiny UNet, VAE and text encoders lives
  here; loading the file back gives exactly the weights of the folder,
* both of those inside a Hugging Face cache folder (``models--org--name/snapshots/<commit>``), so the
  provider's repository sources resolve through huggingface_hub offline, as they do on a user's machine.

:func:`tiny_provider_type` registers test models that point at every one of those sources. Building takes a
few seconds; :func:`ensure_tiny_pipelines` builds once per folder, so every test module of a session shares
one build. :class:`ProgressLog` and :func:`unet_calls` let tests watch progress and count denoising steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from imagegen_mcp.config import Settings
from imagegen_mcp.providers.flux_local import FluxLocalProvider
from imagegen_mcp.providers.flux_local.config import FluxModelConfig, SchedulerConfig

# No test may reach the internet: huggingface_hub and diffusers read this when they are first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

SEED = 0
HUB_ORG = "imagegen-test"
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"
#: Written after a build completes; a folder without it is rebuilt.
_DONE = "BUILD_COMPLETE"

# -- tokenizer ------------------------------------------------------------------------------------------

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 77


def _byte_characters() -> list[str]:
    """CLIP's byte-level alphabet: every byte as a printable character (GPT-2's bytes_to_unicode)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    extra = 0
    characters = []
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + extra))
            extra += 1
    return characters


def write_clip_tokenizer(folder: Path) -> int:
    """Write a CLIP tokenizer with a character-level vocabulary (no merges); returns the vocabulary size."""
    characters = _byte_characters()
    tokens = [BOS, EOS, *characters, *(c + "</w>" for c in characters)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_TOKENS,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(tokens)


# -- LDM key layout -------------------------------------------------------------------------------------

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet(rest: str) -> str:
    layer, _, param = rest.partition(".")
    return f"{_UNET_RESNET[layer]}.{param}"


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers UNet2DConditionModel state dict in the LDM layout (``model.diffusion_model.*``)."""
    per_block = config["layers_per_block"]
    up_with_attention = {i for i, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}
    rules: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (
            r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
            lambda m: f"input_blocks.{1 + int(m[1]) * (per_block + 1) + int(m[2])}.0.{_resnet(m[3])}",
        ),
        (
            r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
            lambda m: f"input_blocks.{1 + int(m[1]) * (per_block + 1) + int(m[2])}.1.{m[3]}",
        ),
        (
            r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)",
            lambda m: f"input_blocks.{1 + int(m[1]) * (per_block + 1) + per_block}.0.op.{m[2]}",
        ),
        (r"mid_block\.resnets\.(\d+)\.(.+)", lambda m: f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"),
        (r"mid_block\.attentions\.0\.(.+)", lambda m: f"middle_block.1.{m[1]}"),
        (
            r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
            lambda m: f"output_blocks.{int(m[1]) * (per_block + 1) + int(m[2])}.0.{_resnet(m[3])}",
        ),
        (
            r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
            lambda m: f"output_blocks.{int(m[1]) * (per_block + 1) + int(m[2])}.1.{m[3]}",
        ),
        (
            r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)",
            lambda m: (
                f"output_blocks.{int(m[1]) * (per_block + 1) + per_block}."
                f"{2 if int(m[1]) in up_with_attention else 1}.conv.{m[2]}"
            ),
        ),
        (
            r"(time_embedding\.linear_\d|add_embedding\.linear_\d|conv_in|conv_norm_out|conv_out)\.(.+)",
            lambda m: f"{_UNET_TOP[m[1]]}.{m[2]}",
        ),
    ]
    return {f"model.diffusion_model.{_rename(key, rules)}": value for key, value in state.items()}


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers AutoencoderKL state dict in the LDM layout (``first_stage_model.*``)."""
    last = len(config["up_block_types"]) - 1
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    rules: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", lambda m: f"encoder.down.{m[1]}.downsample.{m[2]}"),
        (
            r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
            lambda m: f"decoder.up.{last - int(m[1])}.block.{m[2]}.{m[3]}",
        ),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", lambda m: f"decoder.up.{last - int(m[1])}.upsample.{m[2]}"),
        (r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"),
        (
            r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)",
            lambda m: f"{m[1]}.mid.attn_1.{attention[m[2]]}.{m[3]}",
        ),
        (r"(encoder|decoder)\.conv_norm_out\.(.+)", lambda m: f"{m[1]}.norm_out.{m[2]}"),
    ]
    converted = {}
    for key, value in state.items():
        ldm = _rename(key, rules).replace("conv_shortcut", "nin_shortcut")
        # The original attention projections are 1x1 convolutions; diffusers stores them as linear layers.
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        converted[f"first_stage_model.{ldm}"] = value
    return converted


def clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIP text model in the original layout: the HF keys under ``prefix``."""
    return {f"{prefix}text_model.{key.removeprefix('text_model.')}": value for key, value in state.items()}


def open_clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A CLIPTextModelWithProjection in OpenCLIP's layout (SDXL's second text encoder)."""
    import torch

    fixed = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    layer_parts = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    converted: dict[str, Any] = {prefix + "text_projection": state["text_projection.weight"].T.contiguous()}
    for key, value in state.items():
        if key in fixed:
            converted[prefix + fixed[key]] = value
            continue
        match = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if match is None:
            continue
        layer, part, kind = match.groups()
        block = f"{prefix}transformer.resblocks.{layer}."
        if part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            if part == "self_attn.q_proj":  # q, k and v are one packed projection in OpenCLIP
                packed = [state[f"text_model.encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                converted[f"{block}attn.in_proj_{kind}"] = torch.cat(packed)
            continue
        converted[f"{block}{layer_parts[part]}.{kind}"] = value
    return converted


def _rename(key: str, rules: list[tuple[str, Callable[[re.Match[str]], str]]]) -> str:
    for pattern, replace in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return replace(match)
    return key


# -- building -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyPipelines:
    """Where the tiny pipelines were saved."""

    root: Path

    @property
    def hub_cache(self) -> Path:
        return self.root / "hub"

    def folder(self, kind: str) -> Path:
        return self.root / f"tiny-{kind}"

    def checkpoint(self, kind: str) -> Path:
        return self.root / f"tiny-{kind}.safetensors"

    @staticmethod
    def repo_id(kind: str) -> str:
        return f"{HUB_ORG}/tiny-{kind}"

    @staticmethod
    def checkpoint_name(kind: str) -> str:
        return f"tiny-{kind}.safetensors"


def _text_encoder_config(vocab_size: int, hidden: int, projection: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=projection,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="gelu",
    )


def _vae(scaling_factor: float) -> Any:
    from diffusers import AutoencoderKL

    # Four levels like the real VAE, so the latents are 1/8 of the image as they are for SDXL and SD.
    return AutoencoderKL(  # type: ignore[no-untyped-call]
        block_out_channels=(16, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=scaling_factor,
    )


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    # The base models' own scheduler settings; each test model config replaces them at load.
    return EulerDiscreteScheduler(  # type: ignore[no-untyped-call]
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )


def build_sdxl(tokenizer_dir: Path) -> Any:
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(SEED)
    vocab_size = write_clip_tokenizer(tokenizer_dir)
    # The two text encoders differ in width, as CLIP-L and OpenCLIP bigG do: diffusers tells them apart
    # in a single-file checkpoint by that width.
    text_encoder = CLIPTextModel(_text_encoder_config(vocab_size, hidden=32, projection=32))
    text_encoder_2 = CLIPTextModelWithProjection(_text_encoder_config(vocab_size, hidden=48, projection=32))
    time_embed_dim = 8
    unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=32 + 6 * time_embed_dim,
        cross_attention_dim=32 + 48,
        norm_num_groups=8,
    )
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    return StableDiffusionXLPipeline(  # type: ignore[no-untyped-call]
        vae=_vae(scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler(),
    )


def build_sd(tokenizer_dir: Path) -> Any:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED + 1)
    vocab_size = write_clip_tokenizer(tokenizer_dir)
    unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=32,
        norm_num_groups=8,
    )
    return StableDiffusionPipeline(  # type: ignore[no-untyped-call]
        vae=_vae(scaling_factor=0.18215),
        text_encoder=CLIPTextModel(_text_encoder_config(vocab_size, hidden=32, projection=32)),
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        unet=unet,
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def single_file_state(pipe: Any, kind: str) -> dict[str, Any]:
    """Every weight of ``pipe`` in the layout of an original SDXL or SD checkpoint."""
    state = {**unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))}
    state.update(vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
    if kind == "sdxl":
        state.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        state.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    return {key: value.contiguous() for key, value in state.items()}


def _save(pipe: Any, kind: str, tiny: TinyPipelines) -> None:
    from safetensors.torch import save_file

    folder = tiny.folder(kind)
    pipe.save_pretrained(folder, safe_serialization=True)
    for tokenizer in ("tokenizer", "tokenizer_2"):
        if (folder / tokenizer).is_dir():  # the original vocabulary files, as the real repositories ship them
            write_clip_tokenizer(folder / tokenizer)
    save_file(single_file_state(pipe, kind), str(tiny.checkpoint(kind)))
    # The same repository in a Hugging Face cache: the diffusers folder with the checkpoint at its root.
    repo = tiny.hub_cache / f"models--{HUB_ORG}--tiny-{kind}"
    snapshot = repo / "snapshots" / HUB_COMMIT
    shutil.copytree(folder, snapshot)
    shutil.copyfile(tiny.checkpoint(kind), snapshot / tiny.checkpoint_name(kind))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)


def ensure_tiny_pipelines(root: Path) -> TinyPipelines:
    """Build and save both tiny pipelines under ``root`` unless a complete build is already there."""
    tiny = TinyPipelines(root)
    if (root / _DONE).is_file():
        return tiny
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _save(build_sdxl(root / "tokenizer-sdxl"), "sdxl", tiny)
    _save(build_sd(root / "tokenizer-sd"), "sd", tiny)
    (root / _DONE).write_text("ok")
    return tiny


def write_tiny_lora(tiny: TinyPipelines, folder: Path, seed: int = 1) -> Path:
    """A LoRA for the tiny SDXL UNet with random (non-zero) weights, saved as diffusers saves LoRAs: it changes
    what the model makes, as a real one does."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(tiny.folder("sdxl"), subfolder="unet")  # type: ignore[no-untyped-call]
    config = LoraConfig(r=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    unet.add_adapter(config)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))  # type: ignore[no-untyped-call]
    # Strong enough to change the tiny model's pictures plainly (the file carries no alpha, so scale is 1).
    layers = {name: weight * 10 if ".up." in name else weight for name, weight in layers.items()}
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=layers, weight_name="tiny_lora.safetensors")
    return folder / "tiny_lora.safetensors"


def tiny_environ(tiny: TinyPipelines) -> dict[str, str]:
    """Settings under which the tiny test models are available: the CPU and the tiny hub cache."""
    return {
        "FLUX_LOCAL_DEVICE": "cpu",
        "FLUX_LOCAL_CACHE_DIR": str(tiny.hub_cache),
        "IMAGEGEN_DEFAULT_PROVIDER": "flux_local",
        "HF_HUB_OFFLINE": "1",
    }


class ProgressLog:
    """A progress sink (for :class:`~imagegen_mcp.providers.base.Progress` or an MCP client's
    ``progress_callback``) that keeps every notification with the time it arrived."""

    def __init__(self, on_message: Callable[[str], None] | None = None) -> None:
        self.events: list[tuple[float, float, str]] = []
        self.on_message = on_message

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        self.events.append((time.perf_counter(), value, message or ""))
        if self.on_message is not None:
            self.on_message(message or "")

    @property
    def values(self) -> list[float]:
        return [value for _, value, _ in self.events]

    @property
    def messages(self) -> list[str]:
        return [message for _, _, message in self.events]

    def step_times(self) -> list[float]:
        return [at for at, _, message in self.events if "step" in message]


@contextmanager
def unet_calls(provider: FluxLocalProvider, key: str) -> Iterator[list[int]]:
    """Count the denoising steps a loaded pipeline runs (one UNet call per step without guidance)."""
    assert provider.pipelines is not None
    calls: list[int] = []
    handle = provider.pipelines.loaded[key].unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


# -- test models ----------------------------------------------------------------------------------------

#: Lightning's scheduler (what lightning_4step names) and Juggernaut XI's (an SDE solver that draws noise).
EULER_TRAILING = SchedulerConfig(
    class_name="EulerDiscreteScheduler", config={"timestep_spacing": "trailing", "prediction_type": "epsilon"}
)
DPM_SDE = SchedulerConfig(
    class_name="DPMSolverMultistepScheduler", config={"algorithm_type": "sde-dpmsolver++", "solver_type": "midpoint"}
)


def tiny_model_configs(tiny: TinyPipelines) -> list[FluxModelConfig]:
    """One test model per source kind: local folder, local checkpoint, hub checkpoint, hub diffusers repo."""
    common: dict[str, Any] = {
        "default_steps": 4,
        "default_guidance": 0.0,
        "default_width": 128,
        "default_height": 128,
        "max_resolution": 512,
    }
    return [
        FluxModelConfig(
            key="tiny_sdxl",
            display_name="Tiny SDXL (diffusers folder)",
            pipeline="sdxl",
            path=tiny.folder("sdxl"),
            scheduler=EULER_TRAILING,
            **common,
        ),
        FluxModelConfig(
            key="tiny_sdxl_file",
            display_name="Tiny SDXL (single-file checkpoint)",
            pipeline="sdxl",
            path=tiny.checkpoint("sdxl"),
            base_path=tiny.folder("sdxl"),
            scheduler=EULER_TRAILING,
            **common,
        ),
        FluxModelConfig(
            key="tiny_sdxl_hub",
            display_name="Tiny SDXL (checkpoint from the Hugging Face cache)",
            pipeline="sdxl",
            repo_id=TinyPipelines.repo_id("sdxl"),
            filename=TinyPipelines.checkpoint_name("sdxl"),
            base_repo_id=TinyPipelines.repo_id("sdxl"),
            scheduler=DPM_SDE,
            **{**common, "default_guidance": 4.5, "default_negative_prompt": "blurry"},
        ),
        FluxModelConfig(
            key="tiny_sd_hub",
            display_name="Tiny SD (diffusers repository from the Hugging Face cache)",
            pipeline="sd",
            repo_id=TinyPipelines.repo_id("sd"),
            scheduler=EULER_TRAILING,
            **common,
        ),
        FluxModelConfig(
            key="tiny_sd_file",
            display_name="Tiny SD (single-file checkpoint)",
            pipeline="sd",
            path=tiny.checkpoint("sd"),
            base_path=tiny.folder("sd"),
            scheduler=EULER_TRAILING,
            **common,
        ),
    ]


class RecordingFluxLocalProvider(FluxLocalProvider):
    """The flux_local provider, keeping every instance so a test can look at the one a server built."""

    instances: ClassVar[list[FluxLocalProvider]]

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.instances.append(self)


def tiny_provider_type(tiny: TinyPipelines) -> type[RecordingFluxLocalProvider]:
    """The real flux_local provider with the tiny test models as its whole catalog.

    Passed to ``build_server(settings, providers=[...])`` in place of the installed provider, so the
    provider keeps its name and every line of its code; only the built-in models differ. Each call makes a
    new class, so ``instances`` holds the providers of one test only.
    """
    models = tiny_model_configs(tiny)

    class TinyFluxLocalProvider(RecordingFluxLocalProvider):
        info = dataclasses.replace(FluxLocalProvider.info, default_model="tiny_sdxl")
        instances: ClassVar[list[FluxLocalProvider]] = []

        def builtin_models(self) -> Sequence[FluxModelConfig]:
            return models

    return TinyFluxLocalProvider
