"""Pictures of toy clips for docs: one row per clip, its frames side by side."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatialalign.core.fileio import atomic_path

_BOX_COLORS = ((255, 255, 255), (0, 0, 0))  # animal, object outlines


def _outline(img: np.ndarray, box: np.ndarray, scale: int, color: tuple[int, int, int]) -> None:
    """Draws a one-pixel rectangle along the edges of ``box`` (frame pixels) on ``img``."""
    if not np.all(np.isfinite(box)):
        return
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, w) - 1, min(y1, h) - 1
    if x1 < x0 or y1 < y0:
        return
    img[y0, x0 : x1 + 1] = color
    img[y1, x0 : x1 + 1] = color
    img[y0 : y1 + 1, x0] = color
    img[y0 : y1 + 1, x1] = color


def clip_grid(
    videos: Sequence[np.ndarray],
    *,
    scale: int = 6,
    pad: int = 2,
    boxes: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
    pad_value: int = 255,
) -> np.ndarray:
    """Tiles videos (each uint8 [F, H, W, 3]) into one uint8 image, one row per video.

    Frames are upscaled by ``scale`` (nearest neighbour) and separated by ``pad``
    pixels; rows with fewer frames are padded. ``boxes[i]`` optionally gives
    (animal_boxes, object_boxes) [F, 4] of row i, drawn as white / black outlines.
    """
    if not videos:
        raise ValueError("no videos to draw")
    vids = [np.asarray(v) for v in videos]
    for v in vids:
        if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8:
            raise ValueError(f"videos must be uint8 [F, H, W, 3], got {v.dtype} {v.shape}")
    if boxes is not None and len(boxes) != len(vids):
        raise ValueError(f"got {len(boxes)} box sets for {len(vids)} videos")
    fh = max(v.shape[1] for v in vids) * scale
    fw = max(v.shape[2] for v in vids) * scale
    ncol = max(v.shape[0] for v in vids)
    out = np.full(
        (len(vids) * (fh + pad) + pad, ncol * (fw + pad) + pad, 3), pad_value, dtype=np.uint8
    )
    for r, v in enumerate(vids):
        for c, frame in enumerate(v):
            big = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
            if boxes is not None and boxes[r] is not None:
                for k, color in enumerate(_BOX_COLORS):
                    _outline(big, np.asarray(boxes[r][k])[c], scale, color)
            y, x = pad + r * (fh + pad), pad + c * (fw + pad)
            out[y : y + big.shape[0], x : x + big.shape[1]] = big
    return out


def save_clip_grid(
    path: str | os.PathLike[str],
    videos: Sequence[np.ndarray],
    *,
    scale: int = 6,
    pad: int = 2,
    boxes: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> Path:
    """Writes :func:`clip_grid` of ``videos`` to a PNG at ``path`` (atomically)."""
    import matplotlib.image

    img = clip_grid(videos, scale=scale, pad=pad, boxes=boxes)
    path = Path(path)
    with atomic_path(path) as tmp:
        matplotlib.image.imsave(tmp, img, format="png")
    return path
