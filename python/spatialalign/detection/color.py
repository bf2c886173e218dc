"""The toy world's colour detector (``--detector toy``): palette colours -> connected
components -> boxes.

It implements :class:`spatialalign.detection.base.Detector`, so toy videos flow
through ``track`` like real ones. A pixel belongs to a class when it is within
``tolerance`` (RGB Euclidean) of the class colour *and* nearer to it than to the
other queried classes and to the frame's background (its median colour); this
nearest-colour rule keeps blurred edges and colour-drifted generated videos
usable. Every 8-connected component of at least ``min_pixels`` pixels becomes a
box, so a video that draws two animals yields two animal boxes (redundant frame).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spatialalign.detection.base import FrameDetections
from spatialalign.detection.palette import class_colors

# connect within a frame (8-neighbourhood), never across frames
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = True


@dataclass(frozen=True)
class ColorDetectorConfig:
    """Thresholds of the colour detector."""

    tolerance: float = 100.0
    """Max RGB distance of a seed pixel from its class colour (palette colours of an
    animal and an object are >= 106 apart, and the nearest-colour rule decides ties)."""
    min_pixels: int = 4
    """Components with fewer pixels are noise (each also needs a pixel within ``tolerance``)."""
    min_score: float = 0.35
    """Boxes scoring below this are dropped."""
    grow_alpha: float = 0.4
    """A component grows into neighbouring pixels that are at least this much of the way
    from the background to the class colour (blurred sprite edges)."""
    min_background: float = 0.3
    """A frame where fewer pixels than this fraction look like its background (within
    ``background_tolerance`` of its median colour) is not a scene (e.g. noise): no detections."""
    background_tolerance: float = 40.0
    """RGB distance from the frame's median colour within which a pixel is background."""


class ColorDetector:
    """Detects toy-world sprites by their palette colours (``name = "toy"``)."""

    name = "toy"

    def __init__(self, config: ColorDetectorConfig | None = None, **overrides: float) -> None:
        self.config = dataclasses.replace(config or ColorDetectorConfig(), **overrides)

    def masks(self, frames: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
        """Per-class pixel masks, bool [k, F, H, W] (after growing into blurred edges)."""
        return self._masks(np.asarray(frames), class_names)[0]

    def _masks(
        self, frames: np.ndarray, class_names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (grown masks, strict seed masks, colour distances), each [k, F, H, W]."""
        from scipy import ndimage  # the optional "detect" dependency, needed only here

        cfg = self.config
        px = frames.astype(np.float32)
        colors = class_colors(list(class_names))  # [k, 3]
        bg = np.median(px.reshape(px.shape[0], -1, 3), axis=1)[:, None, None, :]  # [F,1,1,3]
        dist = np.linalg.norm(px[None] - colors[:, None, None, None, :], axis=-1)  # [k,F,H,W]
        d_bg = np.linalg.norm(px - bg, axis=-1)  # [F,H,W]
        nearest = dist.argmin(axis=0)  # [F,H,W]
        k = np.arange(len(colors))[:, None, None, None]
        mine = nearest[None] == k
        seeds = (dist <= cfg.tolerance) & (dist < d_bg[None]) & mine
        # how far each pixel is from the background towards each class colour
        to_c = colors[:, None, None, None, :] - bg[None]  # [k,F,1,1,3]
        alpha = ((px - bg)[None] * to_c).sum(-1) / np.maximum((to_c * to_c).sum(-1), 1.0)
        grown = np.empty_like(seeds)
        for c in range(len(colors)):
            grown[c] = ndimage.binary_propagation(
                seeds[c], structure=_STRUCTURE, mask=(alpha[c] >= cfg.grow_alpha) & mine[c]
            )
        scene = (d_bg <= cfg.background_tolerance).mean(axis=(1, 2)) >= cfg.min_background  # [F]
        grown &= scene[None, :, None, None]
        return grown, seeds, dist

    def detect(self, frames: np.ndarray, class_names: Sequence[str]) -> list[FrameDetections]:
        """``frames`` uint8 [F, H, W, 3]; ``class_names`` ``[animal, object]`` -> per-frame boxes.

        A box's score is half colour closeness (1 - mean distance / tolerance) and
        half fill (matching pixels / box area), in [0, 1].
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [F, H, W, 3], got {frames.shape}")
        if not class_names:
            raise ValueError("need at least one class name")
        n_frames = frames.shape[0]
        per_frame: list[tuple[list, list, list]] = [([], [], []) for _ in range(n_frames)]
        from scipy import ndimage

        masks, seeds, dist = self._masks(frames, class_names)
        tol = self.config.tolerance
        for c, name in enumerate(class_names):
            labels, n = ndimage.label(masks[c], structure=_STRUCTURE)
            if n == 0:
                continue
            idx = np.arange(1, n + 1)
            sizes = ndimage.sum_labels(np.ones(labels.shape), labels, idx)
            n_seed = ndimage.sum_labels(seeds[c], labels, idx)
            mean_d = ndimage.mean(np.minimum(dist[c], tol), labels, idx)
            for j, sl in enumerate(ndimage.find_objects(labels)):
                if sl is None or sizes[j] < self.config.min_pixels or n_seed[j] < 1:
                    continue
                f, ys, xs = sl
                area = (ys.stop - ys.start) * (xs.stop - xs.start)
                score = 0.5 * (1.0 - mean_d[j] / tol) + 0.5 * sizes[j] / area
                if score < self.config.min_score:
                    continue
                boxes, scores, labs = per_frame[f.start]
                boxes.append((xs.start, ys.start, xs.stop, ys.stop))
                scores.append(score)
                labs.append(name)
        return [FrameDetections(boxes=b, scores=s, labels=lab) for b, s, lab in per_frame]
