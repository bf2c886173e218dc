"""One video's row of quality metrics (the ``metrics.parquet`` columns).

Weight-free proxies always; the DINOv2 ID consistency, CLIP-IQA and VBench's imaging
quality (MUSIQ, :mod:`.musiq`) only when their models are passed in (else NaN, so every
row has the same columns). As in the official ``calc_metric.py``, the consistency
metrics use the frames where both the animal and the object were detected; CLIP-IQA,
imaging quality and the image proxies use every frame.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from spatialalign.evaluation.proxies import colourfulness, crop_histogram_consistency, sharpness
from spatialalign.rundir.tracks import Tracks

if TYPE_CHECKING:
    from torch import nn

    from spatialalign.evaluation.neural import ClipIqa

METRIC_COLUMNS = (
    "sharpness",
    "colourfulness",
    "hist_consistency",
    "id_consistency",
    "id_consistency_first",
    "id_consistency_previous",
    "clip_iqa_natural",
    "imaging_quality",
)


def both_detected(animal: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """``animal`` with a NaN row wherever either box is missing."""
    a = np.asarray(animal, dtype=np.float64).copy()
    o = np.asarray(obj, dtype=np.float64)
    if a.shape != o.shape:
        raise ValueError(f"animal {a.shape} and object {o.shape} boxes differ in shape")
    a[np.isnan(a).all(axis=1) | np.isnan(o).all(axis=1)] = np.nan
    return a


def video_metrics(
    frames: np.ndarray,
    animal: np.ndarray,
    obj: np.ndarray,
    *,
    dino: nn.Module | None = None,
    clip_iqa: ClipIqa | None = None,
    musiq: nn.Module | None = None,
    dino_image_size: int = 518,
) -> dict[str, float]:
    """:data:`METRIC_COLUMNS` for one video (uint8 ``[F, H, W, 3]``, boxes ``[F, 4]`` xyxy)."""
    kept = both_detected(animal, obj)
    row = {c: math.nan for c in METRIC_COLUMNS}
    row["sharpness"] = sharpness(frames)
    row["colourfulness"] = colourfulness(frames)
    row["hist_consistency"] = crop_histogram_consistency(frames, kept).mean
    if dino is not None:
        from spatialalign.evaluation.neural import id_consistency

        c = id_consistency(frames, kept, dino, image_size=dino_image_size)
        row["id_consistency"] = c.mean
        row["id_consistency_first"] = c.to_first
        row["id_consistency_previous"] = c.to_previous
    if clip_iqa is not None:
        row["clip_iqa_natural"] = clip_iqa(frames).get("natural", math.nan)
    if musiq is not None:
        from spatialalign.evaluation.musiq import imaging_quality

        row["imaging_quality"] = imaging_quality(musiq, frames)
    return row


def tracked_boxes_by_frame(tracks: Tracks, i: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``i``'s animal and object boxes as ``[n_frames, 4]`` (NaN where untracked)."""
    idx, a, o = tracks.sample(i)
    animal = np.full((n_frames, 4), np.nan)
    obj = np.full((n_frames, 4), np.nan)
    inside = idx < n_frames
    animal[idx[inside]] = a[inside]
    obj[idx[inside]] = o[inside]
    return animal, obj
