"""Load a ``WanPipeline`` from a local directory in either layout, never downloading.

Every path is local (``local_files_only=True``), every weight file safetensors
(``use_safetensors=True``; the original VAE ``.pth`` only via ``weights_only``), no remote
code. bf16 on CUDA and float32 elsewhere by default; the VAE always runs in float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatialalign.core.errors import SpatialAlignError
from spatialalign.models.wan.layout import DIFFUSERS, WanLayout, detect_layout
from spatialalign.models.wan.runtime import check_runtime, place, set_attention, set_vae_switches

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
UNIPC_FLOW_SHIFT = 3.0
"""The scheduler of Wan2.1-T2V-1.3B-Diffusers (UniPC on flow sigmas, shift 3), used when an
original-layout directory brings no ``scheduler/``."""


@dataclass
class WanLoadOptions:
    """How to load and place a Wan pipeline (the CLI's ``--model wan`` options)."""

    device: str = "cpu"
    dtype: str | None = None
    """Transformer and text encoder: float32, bfloat16, float16 (default bf16 on CUDA,
    float32 elsewhere); the VAE is always float32."""
    text_encoder_dir: str | None = None
    """Original layout only: a transformers UMT5 encoder directory."""
    vae_tiling: bool = False
    vae_slicing: bool = False
    offload: str = "none"
    """none, model or sequential (CUDA only): see :data:`spatialalign.models.wan.runtime.OFFLOAD`."""
    attention: str | None = None
    """An attention backend of :data:`spatialalign.models.wan.runtime.ATTENTION` (None: default)."""

    def torch_dtype(self) -> Any:
        import torch

        dtype = self.dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        if dtype not in DTYPES:
            raise SpatialAlignError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
        return getattr(torch, dtype)


def load_wan_pipeline(
    path: str | os.PathLike[str] | None, options: WanLoadOptions | None = None
) -> Any:
    """The ``WanPipeline`` in ``path`` (diffusers or original layout), placed and switched as
    ``options`` say; any missing or mismatched file is one :class:`SpatialAlignError`."""
    opts = options or WanLoadOptions()
    check_runtime(opts.device, opts.offload, opts.attention)
    dtype = opts.torch_dtype()
    layout = detect_layout(path, opts.text_encoder_dir)
    if layout.kind == DIFFUSERS:
        pipe = _load_diffusers(layout, dtype)
    else:
        pipe = _load_original(layout, dtype)
    set_vae_switches(pipe, tiling=opts.vae_tiling, slicing=opts.vae_slicing)
    set_attention(pipe.transformer, opts.attention)
    place(pipe, opts.device, opts.offload)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _dtype_key() -> str:
    """diffusers >= 0.42 names the argument ``dtype`` (``torch_dtype`` is deprecated)."""
    import diffusers.utils.deprecation_utils as deprecation

    return "dtype" if hasattr(deprecation, "_resolve_dtype") else "torch_dtype"


def _reason(e: BaseException) -> str:
    """The first line of an error; a long one cut after its first sentence (diffusers'
    shape errors go on with advice that does not apply here)."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    if len(line) > 160 and ". " in line:
        line = line.split(". ")[0] + "."
    return line


LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError)


def _load_diffusers(layout: WanLayout, dtype: Any) -> Any:
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel

    common = {"local_files_only": True, "use_safetensors": True}
    key = _dtype_key()
    parts: dict[str, Any] = {}
    for name, cls, dt in (
        ("transformer", WanTransformer3DModel, dtype),
        ("vae", AutoencoderKLWan, torch.float32),
    ):
        try:
            parts[name] = cls.from_pretrained(layout.root, subfolder=name, **common, **{key: dt})
        except LOAD_ERRORS as e:
            raise SpatialAlignError(
                f"{layout.describe()}: cannot load {name}/: {_reason(e)}"
            ) from e
    try:
        return WanPipeline.from_pretrained(layout.root, **parts, **common, **{key: dtype})
    except LOAD_ERRORS as e:
        raise SpatialAlignError(
            f"{layout.describe()}: cannot load text_encoder/tokenizer/scheduler: {_reason(e)}"
        ) from e


def _load_original(layout: WanLayout, dtype: Any) -> Any:
    from diffusers import WanPipeline
    from transformers import AutoTokenizer, UMT5EncoderModel

    from spatialalign.models.wan.original import load_original_transformer, load_original_vae

    files = layout.files
    config = files["config"][0] if files["config"] else None
    transformer = load_original_transformer(files["transformer"], config, dtype)
    vae = load_original_vae(files["vae"][0])
    te_dir, tok_dir = files["text_encoder"][0], files["tokenizer"][0]
    try:
        text_encoder = UMT5EncoderModel.from_pretrained(
            te_dir, local_files_only=True, use_safetensors=True, dtype=dtype
        )
    except LOAD_ERRORS as e:
        raise SpatialAlignError(f"cannot load the text encoder from {te_dir}: {_reason(e)}") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    except LOAD_ERRORS as e:
        raise SpatialAlignError(f"cannot load the tokenizer from {tok_dir}: {_reason(e)}") from e
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=_scheduler(layout.root),
    )


def _scheduler(root: Path) -> Any:
    """``root/scheduler/`` when present, else Wan2.1-T2V-1.3B-Diffusers' UniPC."""
    from diffusers import UniPCMultistepScheduler

    config = root / "scheduler" / "scheduler_config.json"
    if config.is_file():
        import json

        import diffusers
        from diffusers import SchedulerMixin

        try:
            name = json.loads(config.read_text()).get("_class_name", "")
            cls = getattr(diffusers, name, None)
            if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
                raise ValueError(f"{name!r} is not a diffusers scheduler")
            return cls.from_pretrained(root, subfolder="scheduler", local_files_only=True)
        except LOAD_ERRORS as e:
            raise SpatialAlignError(f"cannot load {root}/scheduler/: {_reason(e)}") from e
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=UNIPC_FLOW_SHIFT,
    )
