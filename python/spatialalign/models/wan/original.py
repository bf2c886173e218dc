"""The original Wan2.1 transformer and VAE files, through diffusers' own key conversions.

diffusers' ``from_single_file`` runs the same conversions
(``convert_wan_transformer_to_diffusers`` / ``convert_wan_vae_to_diffusers``) but fetches
the model config from the Hub and only warns about tensors it could not place; here the
config comes from the directory's ``config.json`` (or the tensors' shapes) and any
missing, unexpected or misshapen tensor is a one-line error. Weights are read with
safetensors; a ``.pth`` VAE only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spatialalign.core.errors import SpatialAlignError

HEAD_DIM = 128
"""Wan2.1's attention head width (1.3B: 1536 = 12 x 128, 14B: 5120 = 40 x 128); used for
the head count only when no config.json says it."""
PREFIX = "model.diffusion_model."


def read_safetensors(paths: Sequence[Path], dtype: torch.dtype | None = None) -> dict:
    """All tensors of ``paths`` (shards of one model), cast to ``dtype`` one at a time."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for path in paths:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    t = f.get_tensor(key)
                    out[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
        except (OSError, ValueError, RuntimeError) as e:  # safetensors' own errors included
            raise SpatialAlignError(f"cannot read {path}: {str(e).splitlines()[0]}") from e
    return out


def read_pth(path: Path) -> dict:
    """A ``.pth`` of plain tensors via ``torch.load(weights_only=True)``; anything that needs
    unpickling arbitrary objects is refused."""
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpatialAlignError(
            f"refused {path}: not a plain tensor checkpoint (torch.load weights_only): {reason}"
        ) from e
    while isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model"):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpatialAlignError(f"refused {path}: not a flat dict of tensors")
    return obj


def strip_prefix(state: dict) -> dict:
    """Drops the ``model.diffusion_model.`` prefix some trainers (ComfyUI) write."""
    return {k.removeprefix(PREFIX): v for k, v in state.items()}


def transformer_config(state: dict, original: dict | None, source: str) -> dict[str, Any]:
    """The diffusers ``WanTransformer3DModel`` config of an original-named state dict; the
    shapes decide, and a ``config.json`` that disagrees with them is an error."""
    if any(k.startswith("img_emb.") for k in state):
        raise SpatialAlignError(f"{source}: an image-to-video checkpoint (img_emb); use a T2V one")
    try:
        dim, in_ch, *patch = state["patch_embedding.weight"].shape
        text_dim = state["text_embedding.0.weight"].shape[1]
        freq_dim = state["time_embedding.0.weight"].shape[1]
        ffn_dim = state["blocks.0.ffn.0.weight"].shape[0]
        out_ch = state["head.head.weight"].shape[0] // (patch[0] * patch[1] * patch[2])
    except KeyError as e:
        raise SpatialAlignError(f"{source}: not a Wan transformer checkpoint (no {e})") from e
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    cfg: dict[str, Any] = {
        "patch_size": list(patch),
        "num_attention_heads": dim // HEAD_DIM,
        "attention_head_dim": HEAD_DIM,
        "in_channels": in_ch,
        "out_channels": out_ch,
        "text_dim": text_dim,
        "freq_dim": freq_dim,
        "ffn_dim": ffn_dim,
        "num_layers": layers,
        "cross_attn_norm": "blocks.0.norm3.weight" in state,
        "qk_norm": "rms_norm_across_heads" if "blocks.0.self_attn.norm_q.weight" in state else None,
        "eps": 1e-6,
    }
    if not original and dim % HEAD_DIM:
        raise SpatialAlignError(
            f"{source}: no config.json to tell the attention heads of width {dim} "
            f"(Wan2.1's heads are {HEAD_DIM} wide); put the release's config.json beside it"
        )
    if original:
        _check_original_config(original, cfg, dim, source)
        heads = int(original.get("num_heads", cfg["num_attention_heads"]))
        cfg["num_attention_heads"], cfg["attention_head_dim"] = heads, dim // heads
        cfg["eps"] = float(original.get("eps", cfg["eps"]))
    return cfg


def _check_original_config(original: dict, cfg: dict, dim: int, source: str) -> None:
    if original.get("model_type", "t2v") != "t2v":
        raise SpatialAlignError(
            f"{source}: config.json model_type is {original['model_type']!r}; only t2v is sampled"
        )
    said = {
        "dim": dim,
        "in_dim": cfg["in_channels"],
        "out_dim": cfg["out_channels"],
        "ffn_dim": cfg["ffn_dim"],
        "freq_dim": cfg["freq_dim"],
        "num_layers": cfg["num_layers"],
    }
    for key, have in said.items():
        if key in original and int(original[key]) != int(have):
            raise SpatialAlignError(
                f"{source}: config.json says {key} {original[key]} but the weights have {have}"
            )
    if "num_heads" in original and dim % int(original["num_heads"]):
        raise SpatialAlignError(f"{source}: config.json num_heads does not divide dim {dim}")


def load_checked(model: torch.nn.Module, state: dict, what: str, source: str) -> None:
    """Loads ``state`` into a (meta-initialised) ``model``; any missing, unexpected or
    misshapen tensor is one :class:`SpatialAlignError` with the first example of each."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = [
        f"{len(items)} {label} (e.g. {items[0]})"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("of another shape", wrong),
        )
        if items
    ]
    if problems:
        raise SpatialAlignError(f"{source}: the {what} weights do not fit: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True, assign=True)


def load_original_transformer(
    files: Sequence[Path], config_file: Path | None, dtype: torch.dtype
) -> Any:
    """``WanTransformer3DModel`` from original Wan2.1 (or DiffSynth/ComfyUI-prefixed) files."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    source = str(files[0].parent / files[0].name)
    state = strip_prefix(read_safetensors(files, dtype))
    original = None
    if config_file is not None:
        try:
            original = json.loads(config_file.read_text())
        except (OSError, ValueError) as e:
            raise SpatialAlignError(f"{config_file} is not readable JSON: {e}") from e
    cfg = transformer_config(state, original, source)
    converted = convert_wan_transformer_to_diffusers(state)
    with init_empty_weights():
        model = WanTransformer3DModel.from_config(cfg)
    load_checked(model, converted, "transformer", source)
    return model.eval()


def load_original_vae(path: Path) -> Any:
    """``AutoencoderKLWan`` (Wan2.1's VAE: diffusers' default config) from ``Wan2.1_VAE.pth``
    or a safetensors copy of it; float32."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = read_pth(path) if path.suffix == ".pth" else read_safetensors([path])
    converted = convert_wan_vae_to_diffusers({k: v.float() for k, v in state.items()})
    with init_empty_weights():
        model = AutoencoderKLWan()
    load_checked(model, converted, "VAE", str(path))
    return model.eval()
