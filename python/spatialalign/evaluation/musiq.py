"""VBench's imaging quality: MUSIQ (pyiqa) with local SPAQ weights, mean over frames / 100.

As VBench computes it (``vbench/imaging_quality.py``, repository ``Vchitect/VBench``):
the model is pyiqa's ``pyiqa.archs.musiq_arch.MUSIQ`` (Ke et al., "MUSIQ: Multi-scale
Image Quality Transformer", ICCV 2021, re-implemented in IQA-PyTorch) built with
``pretrained_model_path`` = the SPAQ checkpoint ``musiq_spaq_ckpt-358bb6af.pth`` (one
output: a MOS on a 0-100 scale). The video's frames are float ``0..255``, and in
VBench's default preprocessing mode ``"longer"`` they are resized when their longer side
exceeds 512: ``scale = 512 / max(h, w)``, size ``(int(scale * h), int(scale * w))``,
torchvision's ``Resize`` on a tensor (bilinear; VBench pins torchvision < 0.16, where a
tensor is resized without antialiasing), then divided by 255. Each frame is scored alone
(a batch of one: MUSIQ cuts every image into its own multi-scale patch sequence), the
video's score is the mean over its frames, and VBench's reported number is the average
over videos divided by 100. Per video we report ``imaging_quality`` = the mean over
frames of MUSIQ / 100, in [0, 1] like VBench's number.

The weights must be a local file: nothing is downloaded (pyiqa's own loader would fetch
a URL and unpickle with ``weights_only=False``; it is not used). A ``.safetensors`` file
is read with safetensors; anything else (``.pth``/``.pt``, as pyiqa ships
``musiq_spaq_ckpt-358bb6af.pth``) only with ``torch.load(weights_only=True)``, which
refuses pickled objects other than tensors and plain containers. pyiqa comes with the
``iqa`` extra (``pip install 'spatialalign[iqa]'``).
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spatialalign.core.errors import SpatialAlignError
from spatialalign.evaluation.crops import check_frames

SPAQ_CHECKPOINT = "musiq_spaq_ckpt-358bb6af.pth"
"""pyiqa's name for the SPAQ-trained MUSIQ weights VBench uses."""
MAX_SIDE = 512
"""VBench's ``"longer"`` mode: frames whose longer side exceeds this are scaled down to it."""
INSTALL_HINT = "pip install 'spatialalign[iqa]'"


def musiq_class() -> type[nn.Module]:
    """pyiqa's ``MUSIQ`` class, or an ImportError naming the ``iqa`` extra."""
    try:
        from pyiqa.archs.musiq_arch import MUSIQ
    except ImportError as e:
        raise ImportError(
            f"MUSIQ (VBench imaging quality) needs pyiqa, which did not import ({e}): "
            f"{INSTALL_HINT}"
        ) from e
    return MUSIQ


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a local ``.safetensors`` file, or a ``.pth`` read with
    ``weights_only=True``; a ``"params"`` wrapper and ``module.`` prefixes are removed
    (as pyiqa's ``load_pretrained_network`` / ``clean_state_dict``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"MUSIQ: {p} is not a local weights file (nothing is downloaded)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(p, device="cpu")
        except Exception as e:  # safetensors raises its own error type for a bad header
            raise SpatialAlignError(f"MUSIQ: {p} is not a readable safetensors file: {e}") from e
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise SpatialAlignError(
                f"MUSIQ: refused {p}: it holds pickled objects other than tensors, which "
                "are never unpickled (torch.load weights_only=True); convert the checkpoint "
                "to safetensors"
            ) from e
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise SpatialAlignError(f"MUSIQ: {p} is not a readable checkpoint: {e}") from e
    if isinstance(state, Mapping) and "params" in state and isinstance(state["params"], Mapping):
        state = state["params"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise SpatialAlignError(f"MUSIQ: {p} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def _fit_weights(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Loads ``state`` strictly, or raises one clear error listing what does not fit."""
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    reshaped = sorted(k for k in set(want) & set(state) if want[k].shape != state[k].shape)
    if missing or unexpected or reshaped:

        def some(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = [
            f"{len(missing)} missing ({some(missing)})" if missing else "",
            f"{len(unexpected)} unexpected ({some(unexpected)})" if unexpected else "",
            f"{len(reshaped)} of another shape ({some(reshaped)})" if reshaped else "",
        ]
        raise SpatialAlignError(
            f"MUSIQ: the weights in {path} do not fit a one-output MUSIQ: "
            + "; ".join(x for x in parts if x)
            + f" (VBench's imaging quality uses the SPAQ checkpoint {SPAQ_CHECKPOINT})"
        )
    model.load_state_dict(state, strict=True)


def load_musiq(path: str | os.PathLike[str], **model_kwargs: Any) -> nn.Module:
    """pyiqa's MUSIQ with one output (``num_class=1``, as SPAQ's checkpoint) and the
    weights of the local file ``path`` (see :func:`read_weights`), in eval mode.

    ``model_kwargs`` go to ``MUSIQ`` (e.g. ``num_layers``, ``hidden_size``, ``mlp_dim``,
    ``num_heads`` for a small model); nothing is downloaded whatever they say.
    """
    musiq = musiq_class()
    state = read_weights(path)
    kwargs = {"num_class": 1, **model_kwargs, "pretrained": False, "pretrained_model_path": None}
    model = musiq(**kwargs)
    _fit_weights(model, state, Path(path))
    return model.eval()


def musiq_transform(frames: np.ndarray, max_side: int = MAX_SIDE) -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` -> float ``[F, 3, H', W']`` in [0, 1] (VBench's ``"longer"``).

    Frames whose longer side exceeds ``max_side`` are resized to ``(int(s * H), int(s *
    W))`` with ``s = max_side / max(H, W)`` (bilinear, no antialiasing, on 0..255 floats
    as VBench), the others are kept; then divided by 255.
    """
    frames = check_frames(frames)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (int(scale * h), int(scale * w))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return x / 255.0


@torch.inference_mode()
def frame_quality(
    model: nn.Module, frames: np.ndarray, device: str | torch.device | None = None
) -> np.ndarray:
    """MUSIQ's score (0-100 for SPAQ) of every frame, ``[F]``, one frame at a time."""
    frames = check_frames(frames)
    if model.training:  # MUSIQ cuts the image into patches only in eval mode
        raise ValueError("MUSIQ must be in eval mode (model.eval())")
    if device is None:
        device = next(model.parameters()).device
    scores = np.empty(len(frames), dtype=np.float64)
    for i in range(len(frames)):  # transformed one by one: a float video can be large
        x = musiq_transform(frames[i : i + 1]).to(device)
        scores[i] = float(model(x))
    return scores


def imaging_quality(
    model: nn.Module, frames: np.ndarray, device: str | torch.device | None = None
) -> float:
    """VBench's imaging quality of one video: mean over frames of MUSIQ / 100 (NaN: no frames)."""
    scores = frame_quality(model, frames, device)
    return float(scores.mean() / 100.0) if len(scores) else math.nan
