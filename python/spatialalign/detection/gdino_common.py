"""Pieces the GroundingDINO back ends and the export share: loading, the caption, the text
inputs, the frame check, padding to the graph's image size and the result conversion.

The text side of GroundingDINO (phrase masks and position ids between the ``.``
delimiters) is computed with transformers' own
``generate_masks_with_special_tokens_and_transfer_map`` so the ONNX graph takes them
as inputs and the caption is never baked into the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatialalign.core.errors import SpatialAlignError
from spatialalign.detection.base import FrameDetections

# bert-base-uncased ids of [CLS], [SEP], '.', '?' (transformers' GroundingDINO SPECIAL_TOKENS)
SPECIAL_TOKENS = (101, 102, 1012, 1029)


def caption(class_names: Sequence[str]) -> str:
    """The official text prompt ``"{animal}. {object}."``."""
    if len(class_names) != 2 or not all(isinstance(c, str) and c.strip() for c in class_names):
        raise SpatialAlignError(f"expected two class names (animal, object), got {class_names!r}")
    animal, obj = (c.strip() for c in class_names)
    return f"{animal}. {obj}."


def require_dir(path: str | Path, what: str) -> Path:
    """A local directory that must exist (nothing is downloaded)."""
    p = Path(path)
    if not p.is_dir():
        raise SpatialAlignError(f"{what} directory not found: {p}")
    return p


def load_processor(path: str | Path):
    """The GroundingDINO processor (image processor + BERT tokenizer) from a local directory."""
    from transformers import AutoProcessor

    p = require_dir(path, "GroundingDINO processor")
    try:
        return AutoProcessor.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError) as e:
        raise SpatialAlignError(f"cannot load a GroundingDINO processor from {p}: {e}") from e


def load_model(path: str | Path, device: str = "cpu"):
    """``GroundingDinoForObjectDetection`` from a local directory (safetensors), in eval mode."""
    from transformers import GroundingDinoForObjectDetection

    p = require_dir(path, "GroundingDINO model")
    if not any(p.glob("*.safetensors")):
        raise SpatialAlignError(f"no .safetensors weights in {p} (only safetensors are loaded)")
    try:
        model = GroundingDinoForObjectDetection.from_pretrained(
            p, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError) as e:
        raise SpatialAlignError(f"cannot load GroundingDINO from {p}: {e}") from e
    return model.to(device).eval()


def text_inputs(tokenizer, class_names: Sequence[str], text_len: int) -> dict[str, np.ndarray]:
    """Tokenized caption padded to ``text_len`` plus its phrase masks / position ids (batch 1).

    Padding tokens attend only to themselves and are masked out of every
    cross-attention, so padding does not change the real tokens' outputs.
    """
    import torch
    from transformers.models.grounding_dino.modeling_grounding_dino import (
        generate_masks_with_special_tokens_and_transfer_map,
    )

    text = caption(class_names)
    enc = tokenizer(
        text,
        padding="max_length",
        max_length=text_len,
        truncation=False,
        return_token_type_ids=True,
        return_tensors="np",
    )
    n_tokens = int(enc["attention_mask"].sum())
    if enc["input_ids"].shape[1] != text_len:
        raise SpatialAlignError(
            f"caption {text!r} has {n_tokens} tokens, more than the exported text length "
            f"{text_len}; re-export with a larger --text-len"
        )
    ids = torch.from_numpy(enc["input_ids"].astype(np.int64))
    masks, position_ids = generate_masks_with_special_tokens_and_transfer_map(
        ids, torch.tensor(SPECIAL_TOKENS, dtype=torch.long)
    )
    return {
        "input_ids": enc["input_ids"].astype(np.int64),
        "attention_mask": enc["attention_mask"].astype(np.int64),
        "token_type_ids": enc["token_type_ids"].astype(np.int64),
        "text_self_attention_masks": masks.numpy().astype(bool),
        "position_ids": position_ids.numpy().astype(np.int64),
    }


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Frames must be uint8 [F, H, W, 3] RGB."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise SpatialAlignError(
            f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
        )
    return frames


def to_frame_detections(result: dict) -> FrameDetections:
    """One ``post_process_grounded_object_detection`` result -> :class:`FrameDetections`."""
    return FrameDetections(
        boxes=result["boxes"].detach().cpu().float().numpy(),
        scores=result["scores"].detach().cpu().float().numpy(),
        labels=[str(t) for t in result["text_labels"]],
    )


def pad_pixels(
    pixel_values: np.ndarray, pixel_mask: np.ndarray, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pads processed pixels (and their mask) bottom/right to the graph's image size."""
    h, w = pixel_values.shape[-2:]
    gh, gw = image_size
    if (h, w) == (gh, gw):
        return pixel_values.astype(np.float32), pixel_mask.astype(np.int64)
    if h > gh or w > gw:
        raise SpatialAlignError(
            f"frames are processed to {h}x{w} pixels, larger than the exported graph's "
            f"{gh}x{gw}; re-export with --frame-size matching these videos"
        )
    pv = np.zeros((len(pixel_values), 3, gh, gw), dtype=np.float32)
    pm = np.zeros((len(pixel_values), gh, gw), dtype=np.int64)
    pv[:, :, :h, :w] = pixel_values
    pm[:, :h, :w] = pixel_mask
    return pv, pm
