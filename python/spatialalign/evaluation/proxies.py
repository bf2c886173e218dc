"""Weight-free image/video quality proxies: always available, numpy/scipy only.

They serve the toy world (where neural quality metrics mean little) and any run
without model weights:

* **sharpness** — variance of the Laplacian of the grey image, per frame, averaged
  over frames (Pech-Pacheco et al. 2000; the ``cv2.Laplacian(gray).var()`` recipe:
  3x3 kernel ``[[0,1,0],[1,-4,1],[0,1,0]]``, mirrored border = OpenCV's
  ``BORDER_REFLECT_101``; grey = ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` in
  0-255 floats, not rounded). Higher is sharper; 0 for a constant image.
* **colourfulness** — Hasler & Süsstrunk (2003), "Measuring colourfulness in natural
  images": ``rg = R - G``, ``yb = (R + G)/2 - B``,
  ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`` on 0-255
  values, per frame, averaged. 0 for any grey image.
* **crop-histogram consistency** — the animal's appearance stability without a
  feature network: a joint RGB histogram (``bins`` per channel, normalised to sum 1)
  of the animal's box crop in every frame where it was detected; the similarity of two
  crops is the histogram intersection ``sum_i min(p_i, q_i)`` in [0, 1] (Swain &
  Ballard 1991; 1 iff the colour distributions are equal, whatever the crop sizes).
  Reported like the DINOv2 ID consistency: mean similarity of crop ``k`` to the first
  and to the previous crop, ``k = 1..K-1``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spatialalign.evaluation.crops import Consistency, box_crops, check_frames, consistency

LUMA = np.array([0.299, 0.587, 0.114])
HISTOGRAM_BINS = 8


def grey(frames: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of uint8 ``[..., 3]`` RGB, float64 in 0-255."""
    return np.asarray(frames, dtype=np.float64) @ LUMA


def laplacian_variance(frames: np.ndarray) -> np.ndarray:
    """Per-frame variance of the Laplacian of the grey image (``[F]``)."""
    g = grey(check_frames(frames))
    return np.array([ndimage.laplace(f, mode="mirror").var() for f in g])


def sharpness(frames: np.ndarray) -> float:
    """Mean over frames of :func:`laplacian_variance`."""
    return float(laplacian_variance(frames).mean())


def colourfulness_per_frame(frames: np.ndarray) -> np.ndarray:
    """Hasler & Süsstrunk's colourfulness M of each frame (``[F]``)."""
    f = check_frames(frames).astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    rg = (r - g).reshape(len(f), -1)
    yb = (0.5 * (r + g) - b).reshape(len(f), -1)
    spread = np.sqrt(rg.std(axis=1) ** 2 + yb.std(axis=1) ** 2)
    centre = np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)
    return spread + 0.3 * centre


def colourfulness(frames: np.ndarray) -> float:
    """Mean over frames of :func:`colourfulness_per_frame`."""
    return float(colourfulness_per_frame(frames).mean())


def colour_histogram(crop: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Joint RGB histogram of a uint8 ``[h, w, 3]`` crop, ``bins**3`` entries summing to 1."""
    q = (np.asarray(crop, dtype=np.uint16).reshape(-1, 3) * bins) // 256
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = np.bincount(idx, minlength=bins**3).astype(np.float64)
    return hist / hist.sum()


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
    """``sum min(p, q)`` of two normalised histograms: 1 for equal ones, 0 for disjoint."""
    return float(np.minimum(p, q).sum())


def crop_histogram_consistency(
    frames: np.ndarray, animal: np.ndarray, *, bins: int = HISTOGRAM_BINS
) -> Consistency:
    """Histogram-intersection consistency of the animal's crops (``animal``: ``[F, 4]`` xyxy)."""
    hists = [colour_histogram(c, bins) for c in box_crops(frames, animal)]
    first = [histogram_intersection(h, hists[0]) for h in hists[1:]]
    previous = [histogram_intersection(a, b) for a, b in zip(hists[1:], hists[:-1], strict=True)]
    return consistency(np.array(first), np.array(previous), len(hists))
