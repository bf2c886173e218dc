"""The reward-hacking watch: what an iteration's highest-reward videos look like.

A reward the policy maximises is only as good as the videos it prefers: an animal that
freezes on the right side, an object that vanishes, a smear the detector still boxes. So
every iteration writes a contact sheet of its ``n`` highest-reward videos (each a row of
evenly spaced frames, titled with its prompt, reward and verdict) beside its rewards table,
and ``spatialalign report`` shows the latest one under the rl run's training curves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHEET_VIDEOS = 4
"""Videos on a sheet (the highest rewards of the iteration)."""
SHEET_FRAMES = 8
"""Frames shown per video at most (evenly spaced, first and last included)."""
MAX_SIDE = 96
"""A frame larger than this (pixels, its longer side) is shown strided down to it."""


def top_indices(rewards: np.ndarray, n: int = SHEET_VIDEOS) -> list[int]:
    """Indices of the ``n`` highest rewards, highest first (ties: the lower index first)."""
    r = np.asarray(rewards, dtype=np.float64)
    order = np.argsort(-r, kind="stable")
    return [int(i) for i in order[:n]]


def frame_strip(video: np.ndarray, max_frames: int = SHEET_FRAMES, max_side: int = MAX_SIDE):
    """uint8 [H, W*k + (k-1), 3]: ``k <= max_frames`` evenly spaced frames of ``video``
    ([F, H, W, 3]) side by side with a one-pixel white gap, strided to ``max_side``."""
    video = np.asarray(video)
    f, h, w, _ = video.shape
    idx = np.unique(np.linspace(0, f - 1, min(f, max_frames)).round().astype(int))
    step = max(1, int(np.ceil(max(h, w) / max_side)))
    frames = video[idx, ::step, ::step]
    gap = np.full((frames.shape[1], 1, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, fr in enumerate(frames):
        if i:
            parts.append(gap)
        parts.append(fr.astype(np.uint8))
    return np.concatenate(parts, axis=1)


def top_sheet_png(
    frames: np.ndarray,
    rewards: np.ndarray,
    titles: Sequence[str],
    iteration: int,
    n: int = SHEET_VIDEOS,
) -> bytes:
    """PNG: the ``n`` highest-reward videos of ``frames`` ([N, F, H, W, 3] uint8), a row
    each, titled ``titles[i]`` (the prompt and verdict) and the reward."""
    from matplotlib.figure import Figure

    from spatialalign.scoring.plots import png_bytes

    chosen = top_indices(rewards, n)
    strips = [frame_strip(frames[i]) for i in chosen]
    aspect = strips[0].shape[1] / strips[0].shape[0]
    fig = Figure(figsize=(min(14.0, 1.2 * aspect + 1.0), 1.45 * len(strips) + 0.5),
                 layout="constrained")  # fmt: skip
    axes = np.atleast_1d(fig.subplots(len(strips), 1, squeeze=False)).ravel()
    for ax, i, strip in zip(axes, chosen, strips, strict=True):
        ax.imshow(strip, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"reward {float(rewards[i]):.3f} · {titles[i]}", fontsize=8, loc="left")
    fig.suptitle(f"rl iteration {iteration}: highest-reward samples", fontsize=10)
    return png_bytes(fig)
