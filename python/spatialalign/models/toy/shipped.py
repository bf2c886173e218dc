"""Where the toy model's shipped files are: its pretrained weights and the aligned LoRA.

Kept apart from :mod:`~spatialalign.models.toy.pipeline` so that finding them imports
no torch (``demo`` builds its command lines before any model loads).
"""

from __future__ import annotations

from pathlib import Path

from spatialalign.core.errors import SpatialAlignError
from spatialalign.lora.adapter import LORA_WEIGHT_NAME

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""The pretrained toy model shipped inside the package."""
ALIGNED_DIR = WEIGHTS_DIR / "aligned"
"""The shipped DPO+ZO-aligned LoRA, as ``train`` left it (adapter, config, train log)."""


def aligned_adapter() -> Path:
    """The shipped aligned toy LoRA's weight file (diffusers format); one clear error when
    the installation lacks it."""
    weights = ALIGNED_DIR / LORA_WEIGHT_NAME
    if not weights.is_file():
        raise SpatialAlignError(
            f"the aligned toy adapter is missing from the installation: {weights}"
        )
    return weights
