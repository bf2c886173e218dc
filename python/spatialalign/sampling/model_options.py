"""The model and sampler options shared by ``spatialalign sample`` and ``spatialalign eval``.

One definition for both commands: :func:`model_options` adds the click options, and
:func:`pop_backend_config` turns the values it received into a :class:`BackendConfig`, so
an evaluation can be told everything a sampling run can (Wan's resolution, offload,
attention backend, ...) and the two never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from spatialalign.models.backends import MODELS, BackendConfig
from spatialalign.models.wan.runtime import ATTENTION, OFFLOAD

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option(
        "--model",
        type=click.Choice(MODELS),
        default="toy",
        show_default=True,
        help="Back end: the shipped toy model or a diffusers WanPipeline.",
    ),
    click.option(
        "--model-path",
        "--model-dir",
        "model_path",
        type=click.Path(path_type=Path),
        default=None,
        help="toy: weights directory (default: shipped); wan: a local Wan directory, "
        "diffusers format (model_index.json) or the original Wan2.1 files.",
    ),
    click.option(
        "--adapter",
        type=click.Path(path_type=Path),
        default=None,
        help="LoRA: a .safetensors file or a directory with pytorch_lora_weights.safetensors.",
    ),
    click.option(
        "--steps",
        type=click.IntRange(min=1),
        default=None,
        help="Denoising steps [toy 20, wan 50].",
    ),
    click.option(
        "--guidance",
        type=float,
        default=None,
        help="Guidance scale, finite and >= 0 [toy 3.0, wan diffusers' default 5.0].",
    ),
    click.option("--num-frames", type=click.IntRange(min=1), default=None, help="wan only [81]."),
    click.option("--height", type=click.IntRange(min=16), default=None, help="wan only [480]."),
    click.option("--width", type=click.IntRange(min=16), default=None, help="wan only [832]."),
    click.option(
        "--fps", type=click.FloatRange(min=0, min_open=True), default=None, help="wan only [16]."
    ),
    click.option(
        "--negative-prompt",
        default=None,
        help="wan only [the official SpatialAlign negative prompt].",
    ),
    click.option(
        "--device", default=None, help="torch device [cuda:LOCAL_RANK if available, else cpu]."
    ),
    click.option(
        "--dtype",
        type=click.Choice(["float32", "bfloat16", "float16"]),
        default=None,
        help="wan only [bfloat16 on CUDA, float32 on CPU].",
    ),
    click.option(
        "--text-encoder-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="wan, original Wan2.1 layout: a transformers UMT5 encoder directory (diffusers "
        "cannot convert models_t5_umt5-xxl-enc-bf16.pth).",
    ),
    click.option("--vae-tiling", is_flag=True, help="wan only: tiled VAE decoding (less memory)."),
    click.option(
        "--vae-slicing", is_flag=True, help="wan only: decode a batch one video at a time."
    ),
    click.option(
        "--offload",
        type=click.Choice(OFFLOAD),
        default="none",
        show_default=True,
        help="wan only, CUDA only: CPU offload for small GPUs (model: one component on the "
        "GPU at a time; sequential: layer by layer, least memory, slowest).",
    ),
    click.option(
        "--attention",
        type=click.Choice(list(ATTENTION)),
        default=None,
        help="wan only: attention backend via diffusers' dispatcher [diffusers' default: "
        "sdpa]; flash/flash3/sage/xformers need their package.",
    ),
    click.option(
        "--compile",
        "compile_",
        is_flag=True,
        help="wan only: torch.compile the transformer blocks (GPU-oriented; the first batch "
        "pays the compile time).",
    ),
)
_NAMES = (
    "model",
    "model_path",
    "adapter",
    "steps",
    "guidance",
    "num_frames",
    "height",
    "width",
    "fps",
    "negative_prompt",
    "device",
    "dtype",
    "text_encoder_dir",
    "vae_tiling",
    "vae_slicing",
    "offload",
    "attention",
    "compile_",
)
_PATHS = ("model_path", "adapter", "text_encoder_dir")


def model_options(f: F) -> F:
    """Adds the model/sampler options (their values reach ``f`` as keyword arguments; hand
    them to :func:`pop_backend_config`)."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def pop_backend_config(options: dict[str, Any]) -> BackendConfig:
    """The :class:`BackendConfig` of the values :func:`model_options` added, removed from
    ``options`` (the command's other options stay)."""
    values = {name: options.pop(name) for name in _NAMES}
    for name in _PATHS:
        values[name] = None if values[name] is None else str(values[name])
    values["compile"] = values.pop("compile_")
    return BackendConfig(**values)
