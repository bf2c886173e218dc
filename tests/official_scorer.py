"""The official SpatialAlign scorer's semantics as a per-frame Python loop (the oracle).

This re-states, in our own code, what ``calc_dsr_score.py`` and ``calc_correctness.py``
of the SpatialAlign repository compute, on their data shape: per video a list of
detection frames ``(frame_idx, labels, boxes[n, 4])`` and the prompt's animal, object
and two-letter DSR type (``"LR"``, ``"TL"``, ...). It deliberately keeps their
structure — one frame at a time, small numpy calls per frame, ``-100`` for an invalid
video — so that it serves two purposes:

* the oracle in tests ("our numbers equal the official scorer's"), and
* the per-frame-loop baseline in the benchmarks (docs/BENCHMARKS.md).

The official scorer knows only L/R/T; there is no bottom relation here. Production
code uses :mod:`dsr_geom` (see DESIGN.md, "Scoring").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "INVALID_REWARD",
    "Frame",
    "frames_from_arrays",
    "official_correctness",
    "official_video_reward",
]

INVALID_REWARD = -100.0
"""What the official scorer records for a video without a score."""

Frame = tuple[int, list[str], npt.NDArray[np.float64]]
"""One detection frame: (frame index, detected labels, boxes ``[len(labels), 4]`` xyxy)."""

_X_AXIS = np.array([1, 0])
_Y_AXIS = np.array([0, 1])


def _frame_rewards(
    animal_box: npt.NDArray[np.float64], object_box: npt.NDArray[np.float64]
) -> tuple[float, float, float] | None:
    """(left, right, top) SSR rewards of one frame, or None when the frame is skipped."""
    a_l, a_t, a_r, a_b = animal_box
    o_l, o_t, o_r, o_b = object_box
    a_cx, a_cy = 0.5 * (a_l + a_r), 0.5 * (a_t + a_b)
    o_cx, o_cy = 0.5 * (o_l + o_r), 0.5 * (o_t + o_b)
    a_w, o_w = a_r - a_l, o_r - o_l
    mean_w = 0.5 * (a_w + o_w)
    mean_h = 0.5 * ((a_b - a_t) + (o_b - o_t))
    if mean_w == 0 or mean_h == 0 or a_w == 0 or o_w == 0:
        return None

    rel_w = (a_cx - o_cx) / mean_w
    rel_h = (a_cy - o_cy) / mean_h
    v = np.array([a_cx - o_cx, a_cy - o_cy])
    norm = np.linalg.norm(v)

    den_x = norm * np.linalg.norm(_X_AXIS)
    cos_x = 0.0 if den_x == 0 else (np.dot(v, _X_AXIS) / den_x).item()
    dist_x = np.clip(abs(rel_w), 0.0, 1.0).item()
    den_y = norm * np.linalg.norm(_Y_AXIS)
    cos_y = 0.0 if den_y == 0 else (np.dot(v, _Y_AXIS) / den_y).item()
    dist_y = np.clip(abs(rel_h), 0.0, 1.0).item()
    return -cos_x * dist_x, cos_x * dist_x, -cos_y * dist_y


def official_video_reward(
    frames: Iterable[Frame],
    animal: str,
    object: str,  # the official column name
    dsr_type: str,
    *,
    m: int = 3,
    min_frames: int = 20,
) -> float:
    """The official DSR reward of one video, or ``-100`` when it is invalid.

    Frames are taken in frame-index order; a frame is used only when its label set is
    exactly ``{animal, object}``; frames with a zero width or a zero mean width/height
    are skipped; fewer than ``min_frames`` used frames (or no detections) give -100.
    ``dsr_type`` is the initial and final relation letter, e.g. ``"LR"`` (L/R/T only).
    """
    if len(dsr_type) != 2 or any(c not in "LRT" for c in dsr_type):
        raise ValueError(f"official DSR type must be two of L/R/T, got {dsr_type!r}")
    pick = {"L": 0, "R": 1, "T": 2}
    init_i, final_i = pick[dsr_type[0]], pick[dsr_type[1]]
    frames = sorted(frames, key=lambda f: f[0])
    if not frames:
        return INVALID_REWARD

    ref = [animal, object]
    initial_rewards: list[float] = []
    final_rewards: list[float] = []
    for _idx, labels, boxes in frames:
        if sorted(labels) != sorted(ref):
            continue
        boxes = np.asarray(boxes)
        rewards = _frame_rewards(boxes[labels.index(animal)], boxes[labels.index(object)])
        if rewards is None:
            continue
        initial_rewards.append(rewards[init_i])
        final_rewards.append(rewards[final_i])

    if len(initial_rewards) < min_frames or not initial_rewards:
        return INVALID_REWARD
    ini = np.asarray(initial_rewards)
    fin = np.asarray(final_rewards)
    initial_score = ini[:m].mean()
    initial_gap = 0.5 * (ini[0] - ini[-1])
    final_score = fin[-m:].mean()
    final_gap = 0.5 * (fin[-1] - fin[0])
    return float((initial_score + initial_gap + final_score + final_gap) / 8 + 0.5)


def official_correctness(rewards: Sequence[float] | npt.ArrayLike) -> list[float]:
    """Fraction of ALL rewards ``>= TH`` for ``TH`` in ``np.arange(0, 1, 0.1)``, as
    ``calc_correctness.py`` computes it (invalid videos carry -100)."""
    value = np.asarray(rewards, dtype=np.float64)
    return [float(np.sum(value >= th) / value.size) for th in np.arange(0, 1, 0.1)]


def frames_from_arrays(
    animal_boxes: npt.ArrayLike,
    object_boxes: npt.ArrayLike,
    animal: str,
    object: str,  # the official column name
) -> list[Frame]:
    """Converts our per-frame arrays (``[N, 4]`` each, all-NaN row = not detected) into
    the official per-frame detection shape.

    A frame with both boxes lists both labels — in the order (object, animal) on odd
    frames, so that the official label re-ordering is exercised; a frame with one box
    lists that one; a frame with neither has no labels and a ``[0, 4]`` box array.
    """
    a = np.asarray(animal_boxes, dtype=np.float64)
    o = np.asarray(object_boxes, dtype=np.float64)
    if a.shape != o.shape or a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"expected two [N, 4] arrays, got {a.shape} and {o.shape}")
    a_present = ~np.isnan(a).all(axis=1)
    o_present = ~np.isnan(o).all(axis=1)
    frames: list[Frame] = []
    for i in range(len(a)):
        labels: list[str] = []
        rows: list[npt.NDArray[np.float64]] = []
        if a_present[i]:
            labels.append(animal)
            rows.append(a[i])
        if o_present[i]:
            labels.append(object)
            rows.append(o[i])
        if len(labels) == 2 and i % 2 == 1:
            labels.reverse()
            rows.reverse()
        boxes = np.array(rows, dtype=np.float64).reshape(len(rows), 4)
        frames.append((i, labels, boxes))
    return frames
