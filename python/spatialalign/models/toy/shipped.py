"""Where the toy models' shipped files are: their pretrained weights and the aligned LoRA.

Kept apart from :mod:`~spatialalign.models.toy.pipeline` so that finding them imports
no torch (``demo`` builds its command lines before any model loads).
"""

from __future__ import annotations

from pathlib import Path

from spatialalign.core.errors import SpatialAlignError
from spatialalign.lora.adapter import LORA_WEIGHT_NAME

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""The pretrained toy model shipped inside the package."""
HARD_WEIGHTS_DIR = Path(__file__).parent / "weights_hard"
"""The pretrained model of the hard toy world (``--model toy-hard``: 12 frames of 16x16)."""
ALIGNED_DIR = WEIGHTS_DIR / "aligned"
"""The shipped DPO+ZO-aligned LoRA, as ``train`` left it (adapter, config, train log)."""
SHIPPED_WEIGHTS: dict[str, Path] = {"toy": WEIGHTS_DIR, "toy-hard": HARD_WEIGHTS_DIR}
"""Toy-family model name -> its shipped weights directory."""
WEIGHT_FILES = ("config.json", "model.safetensors")
"""What a toy weights directory holds (``ToyPipeline.save_pretrained``)."""


def shipped_weights(model: str = "toy") -> Path:
    """The shipped weights directory of toy-family ``model``; one clear error when the
    installation lacks it (or it is not a toy-family model)."""
    if model not in SHIPPED_WEIGHTS:
        raise SpatialAlignError(
            f"no shipped weights for model {model!r} (toy-family: {', '.join(SHIPPED_WEIGHTS)})"
        )
    root = SHIPPED_WEIGHTS[model]
    missing = [name for name in WEIGHT_FILES if not (root / name).is_file()]
    if missing:
        raise SpatialAlignError(
            f"the shipped {model} model is missing from the installation: {root} "
            f"(no {' or '.join(missing)}; pass --model-path DIR)"
        )
    return root


def toy_model_dir(model: str, model_path: str | Path | None) -> Path:
    """The weights directory a toy-family ``model`` loads: ``model_path`` when given, else
    the shipped one (:func:`shipped_weights`)."""
    return Path(model_path) if model_path is not None else shipped_weights(model)


def aligned_adapter() -> Path:
    """The shipped aligned toy LoRA's weight file (diffusers format); one clear error when
    the installation lacks it."""
    weights = ALIGNED_DIR / LORA_WEIGHT_NAME
    if not weights.is_file():
        raise SpatialAlignError(
            f"the aligned toy adapter is missing from the installation: {weights}"
        )
    return weights
