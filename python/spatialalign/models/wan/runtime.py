"""Runtime switches of a loaded Wan pipeline: VAE tiling/slicing, placement or CPU offload,
attention backend, ``torch.compile``. None changes the weights; each is checked before a
model is loaded, so a bad choice costs no loading time."""

from __future__ import annotations

from typing import Any

from spatialalign.core.errors import SpatialAlignError

OFFLOAD: tuple[str, ...] = ("none", "model", "sequential")
"""``model``: diffusers' ``enable_model_cpu_offload`` (one whole component on the GPU at a
time; ~the transformer's size of GPU memory, small slowdown). ``sequential``:
``enable_sequential_cpu_offload`` (layer by layer; least memory, much slower)."""

ATTENTION: dict[str, str] = {
    "sdpa": "native",
    "sdpa-flash": "_native_flash",
    "sdpa-efficient": "_native_efficient",
    "sdpa-cudnn": "_native_cudnn",
    "sdpa-math": "_native_math",
    "flash": "flash",
    "flash3": "_flash_3",
    "sage": "sage",
    "xformers": "xformers",
    "flex": "flex",
}
"""Our names -> diffusers' ``AttentionBackendName`` values. ``sdpa`` is PyTorch's
``scaled_dot_product_attention`` choosing its own kernel (diffusers' default); the
``sdpa-*`` ones pin a kernel; ``flash``/``flash3``/``sage``/``xformers`` need their
package installed. diffusers' ``*_hub`` backends are left out: they download kernel code."""


def check_runtime(device: str, offload: str = "none", attention: str | None = None) -> None:
    """Refuses an unknown offload mode or attention backend, and offload without CUDA."""
    if offload not in OFFLOAD:
        raise SpatialAlignError(f"unknown --offload {offload!r} (choose from {', '.join(OFFLOAD)})")
    if offload != "none" and not device.startswith("cuda"):
        raise SpatialAlignError(
            f"--offload {offload} needs a CUDA device (it moves weights between CPU and GPU); "
            f"the device here is {device}: use --offload none"
        )
    if attention is not None and attention not in ATTENTION:
        raise SpatialAlignError(
            f"unknown --attention {attention!r} (choose from {', '.join(ATTENTION)})"
        )


def set_vae_switches(pipe: Any, *, tiling: bool = False, slicing: bool = False) -> None:
    """Tiled VAE decoding (spatial tiles: bounded memory at any resolution, slight seams
    are blended) and sliced decoding (one video of a batch at a time)."""
    if tiling:
        pipe.vae.enable_tiling()
    if slicing:
        pipe.vae.enable_slicing()


def set_attention(transformer: Any, attention: str | None) -> None:
    """Routes every attention of ``transformer`` through diffusers' dispatcher backend
    ``ATTENTION[attention]`` (None: leave diffusers' default, native SDPA)."""
    if attention is None:
        return
    try:
        transformer.set_attention_backend(ATTENTION[attention])
    except (RuntimeError, ValueError, ImportError) as e:
        reason = str(e).strip().splitlines()[0]
        raise SpatialAlignError(f"--attention {attention}: {reason}") from e


def place(pipe: Any, device: str, offload: str = "none") -> None:
    """Moves the pipeline to ``device``, or installs diffusers' CPU offload hooks for it."""
    import torch

    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=torch.device(device))
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=torch.device(device))
    else:
        check_runtime(device, offload)


def compile_transformer(transformer: Any, **kwargs: Any) -> Any:
    """Regional ``torch.compile`` of the repeated transformer blocks (diffusers'
    ``compile_repeated_blocks``: compiles one block graph, reused by all 30). GPU-oriented:
    the first call pays the compile time (tens of seconds); it helps long sampling runs.
    Apply after any LoRA is loaded."""
    if hasattr(transformer, "compile_repeated_blocks"):
        transformer.compile_repeated_blocks(**kwargs)
        return transformer
    transformer.compile(**kwargs)
    return transformer
