"""Box crops of a video and the first/previous-frame consistency both ID metrics share.

The ID consistency of the official SpatialAlign ``calc_metric.py`` (DINOv2 features)
and our weight-free histogram proxy have the same shape: a similarity of the animal's
crop in frame ``k`` to the crop in the first frame and to the crop in the previous
frame, for ``k = 1..K-1`` over the K frames where the animal was detected, averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Consistency:
    """Mean similarity to the first and to the previous crop; NaN with fewer than 2 crops."""

    to_first: float
    to_previous: float
    n_frames: int  # crops compared (frames where the animal was detected)

    @property
    def mean(self) -> float:
        """``mean_k (sim(k, 0) + sim(k, k-1)) / 2``, the official ID-consistency number."""
        return (self.to_first + self.to_previous) / 2


def consistency(sim_first: np.ndarray, sim_previous: np.ndarray, n_frames: int) -> Consistency:
    """Averages per-frame similarities (frames 1..K-1) into a :class:`Consistency`."""
    if len(sim_first) == 0:
        return Consistency(math.nan, math.nan, n_frames)
    return Consistency(float(np.mean(sim_first)), float(np.mean(sim_previous)), n_frames)


def crop_slices(box: np.ndarray, height: int, width: int) -> tuple[slice, slice] | None:
    """Integer pixel window of an xyxy box, clipped to the frame; None if absent or empty.

    Coordinates are truncated to integers (the official script slices
    ``frame[top:bottom, left:right]`` with integer boxes); a box narrower than one pixel
    keeps one pixel.
    """
    box = np.asarray(box, dtype=np.float64)
    if not np.isfinite(box).all():
        return None
    x0, y0, x1, y1 = (int(math.floor(v)) for v in box)
    x0, x1 = max(x0, 0), min(max(x1, x0 + 1), width)
    y0, y1 = max(y0, 0), min(max(y1, y0 + 1), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def box_crops(frames: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The crops ``[h, w, 3]`` of ``boxes`` (``[F, 4]``, NaN row = absent) in time order.

    Frames whose box is absent or falls outside the image are skipped.
    """
    frames = check_frames(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (len(frames), 4):
        raise ValueError(f"boxes must be [{len(frames)}, 4] (one per frame), got {boxes.shape}")
    _, h, w, _ = frames.shape
    crops = []
    for frame, box in zip(frames, boxes, strict=True):
        window = crop_slices(box, h, w)
        if window is not None:
            crops.append(frame[window])
    return crops


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validates a video as uint8 ``[F, H, W, 3]`` (what ``spatialalign.core.video.read_video`` gives)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    return frames
