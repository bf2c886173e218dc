"""Peer spatial metrics from the same per-frame boxes as the DSR-Score.

Reviewers ask for the numbers other benchmarks report; both are computed here from
the animal/object box arrays the DSR-Score reads (``[N, 4]`` xyxy pixels, y down, an
all-NaN row = not detected), so no second detector or toolchain is needed. The
animal plays the benchmarks' "object 1" and the object their "object 2": a prompt
"the animal is left of the object" is relation ``L``.

**T2V-CompBench, spatial relationships (2D)** — Sun et al., *T2V-CompBench: A
Comprehensive Benchmark for Compositional Text-to-video Generation*, arXiv:2407.14505,
section "Evaluation metrics", detection-based metric for spatial relationships. Definition
as in repository ``KaiyueSun98/T2V-CompBench``, file
``Grounded-Segment-Anything/compbench_eval_spatial_relationships.py``: functions
``spatial_judge`` (per frame), ``calculate_iou`` and ``combine_frame`` (frame -> video).
Per frame, with centre offset ``d = c_1 - c_2``:

* both boxes present: the *actual* relation is the dominant axis of ``d`` with its
  sign (``d_x < 0`` and ``|d_x| > |d_y|`` -> left, ``d_x > 0`` -> right, ``d_y < 0``
  -> above, ``d_y > 0`` -> below; a tie ``|d_x| = |d_y|`` is no relation). If it
  matches the prompt, the raw score is ``1 - IoU``, else ``0``;
* one box missing: raw ``-1``; both missing: raw ``-2``;
* mapped to 0-1 by ``combine_frame``: ``-2 -> 0``, ``-1 -> 0.2``, ``0 -> 0.4``,
  ``s > 0 -> 0.4 + 0.6 s``; the video score is the mean over its (16 sampled) frames.

The official script keeps, among several detections, the pair with the best
``0.5 (1 - IoU) + 0.5 mean(detector confidence)``; tracks hold one box per label, so
that choice does not arise here.

**VBench, spatial_relationship** — Huang et al., *VBench: Comprehensive Benchmark Suite
for Video Generative Models*, CVPR 2024 (arXiv:2311.17982), the "Spatial Relationship"
dimension of video-condition consistency. Definition as in repository ``Vchitect/VBench``, file
``vbench/spatial_relationship.py``: ``get_position_score`` (per frame pair of boxes),
``check_generate`` (per frame: the best pair, ``0`` when fewer than two boxes) and
``spatial_relationship`` (video: mean over 16 frames). Per frame, for a horizontal
relation (left/right) the frame scores when ``|d_x| > |d_y|`` and for a vertical one
(top/bottom) when ``|d_y| > |d_x|``; the score is ``1`` when ``IoU < 0.1`` and
``0.1 / IoU`` otherwise; ``0`` when the other axis dominates or a box is missing.

**What they cannot see, and the DSR-Score adds.** VBench's score ignores the sign of
the offset: "left of" and "right of" score the same, so a video with the animal on
the wrong side still gets full marks. T2V-CompBench sees the sign, but both are
*static* relation scores averaged over frames: applied to a video whose relation is
meant to change (``initial`` -> ``final``), they reward whichever relation holds for
more frames and are blind to order — a video that never moves, or moves the wrong
way, scores as well as one that makes the prompted transition for the same number of
frames. The DSR-Score checks both ends and the motion between them (``g_init``,
``g_final``), and grades by distance rather than by axis dominance alone. Both peer
scores are reported for the prompt's final and initial relation.

Frames: the benchmarks sample 16 frames per video; here every frame of the track is
used (pass evenly spaced frames to mimic them). Frames absent from the tracks count as
"both missing" when the video's frame count is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from spatialalign.rundir.tracks import Tracks

RELATIONS = {"L": "L", "R": "R", "T": "T", "B": "B"}
RELATIONS.update({"left": "L", "right": "R", "top": "T", "bottom": "B"})
VBENCH_IOU_THRESHOLD = 0.1

# T2V-CompBench's combine_frame mapping of raw frame scores to 0-1
_CB_BOTH_MISSING = 0.0
_CB_ONE_MISSING = 0.2
_CB_WRONG = 0.4
_CB_SPAN = 0.6


def _relation(rel: str) -> str:
    try:
        return RELATIONS[rel]
    except KeyError:
        raise ValueError(
            f"unknown relation {rel!r}: expected L R T B or left/right/top/bottom"
        ) from None


def _boxes(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{name} boxes must be [N, 4] xyxy, got shape {a.shape}")
    return a


@dataclass(frozen=True)
class _Geometry:
    """Per-frame quantities both metrics share."""

    has_a: np.ndarray  # animal detected
    has_o: np.ndarray  # object detected
    dx: np.ndarray  # animal centre x - object centre x (NaN when a box is missing)
    dy: np.ndarray  # animal centre y - object centre y (y down)
    iou: np.ndarray


def _geometry(animal: np.ndarray, obj: np.ndarray) -> _Geometry:
    a = _boxes(animal, "animal")
    o = _boxes(obj, "object")
    if len(a) != len(o):
        raise ValueError(f"animal has {len(a)} frames, object {len(o)}")
    has_a = ~np.isnan(a).all(axis=1)
    has_o = ~np.isnan(o).all(axis=1)
    for arr, has, name in ((a, has_a, "animal"), (o, has_o, "object")):
        bad = has & ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise ValueError(f"{name} box in frame {int(np.argmax(bad))} is partly NaN/inf")
        bad = has & ((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
        if bad.any():
            raise ValueError(f"{name} box in frame {int(np.argmax(bad))} is inverted")
    dx = (a[:, 0] + a[:, 2]) / 2 - (o[:, 0] + o[:, 2]) / 2
    dy = (a[:, 1] + a[:, 3]) / 2 - (o[:, 1] + o[:, 3]) / 2
    ix = np.clip(np.minimum(a[:, 2], o[:, 2]) - np.maximum(a[:, 0], o[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], o[:, 3]) - np.maximum(a[:, 1], o[:, 1]), 0, None)
    inter = ix * iy
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1])
    union = union - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return _Geometry(has_a, has_o, dx, dy, iou)


def t2v_compbench_frame_scores(animal: np.ndarray, obj: np.ndarray, relation: str) -> np.ndarray:
    """T2V-CompBench's per-frame spatial score in [0, 1] (see the module docstring)."""
    rel = _relation(relation)
    g = _geometry(animal, obj)
    both = g.has_a & g.has_o
    horiz = np.abs(g.dx) > np.abs(g.dy)
    vert = np.abs(g.dy) > np.abs(g.dx)
    actual = {
        "L": horiz & (g.dx < 0),
        "R": horiz & (g.dx > 0),
        "T": vert & (g.dy < 0),
        "B": vert & (g.dy > 0),
    }[rel]
    right = _CB_WRONG + _CB_SPAN * (1.0 - g.iou)
    scores = np.where(actual, right, _CB_WRONG)
    scores = np.where(both, scores, _CB_ONE_MISSING)
    return np.where(g.has_a | g.has_o, scores, _CB_BOTH_MISSING)


def vbench_frame_scores(
    animal: np.ndarray,
    obj: np.ndarray,
    relation: str,
    *,
    iou_threshold: float = VBENCH_IOU_THRESHOLD,
) -> np.ndarray:
    """VBench's per-frame ``get_position_score`` in [0, 1]; 0 where a box is missing."""
    rel = _relation(relation)
    g = _geometry(animal, obj)
    if rel in ("L", "R"):
        dominant = np.abs(g.dx) > np.abs(g.dy)
    else:
        dominant = np.abs(g.dy) > np.abs(g.dx)
    with np.errstate(divide="ignore"):
        penalty = np.where(g.iou < iou_threshold, 1.0, iou_threshold / np.maximum(g.iou, 1e-300))
    return np.where(g.has_a & g.has_o & dominant, penalty, 0.0)


def _video_mean(frame_scores: np.ndarray, num_frames: int | None) -> float:
    """Mean over the video's frames; frames without a track row count 0 (both missing)."""
    n = len(frame_scores) if num_frames is None else max(int(num_frames), len(frame_scores))
    return float(frame_scores.sum() / n) if n else float("nan")


def t2v_compbench_score(
    animal: np.ndarray, obj: np.ndarray, relation: str, *, num_frames: int | None = None
) -> float:
    """T2V-CompBench's video score: the mean frame score (NaN for an empty video)."""
    return _video_mean(t2v_compbench_frame_scores(animal, obj, relation), num_frames)


def vbench_score(
    animal: np.ndarray,
    obj: np.ndarray,
    relation: str,
    *,
    num_frames: int | None = None,
    iou_threshold: float = VBENCH_IOU_THRESHOLD,
) -> float:
    """VBench's ``spatial_relationship`` video score: the mean frame score."""
    frames = vbench_frame_scores(animal, obj, relation, iou_threshold=iou_threshold)
    return _video_mean(frames, num_frames)


PEER_COLUMNS = (
    "t2v_compbench_final",
    "t2v_compbench_initial",
    "vbench_final",
    "vbench_initial",
)


def peer_scores(
    tracks: Tracks,
    sample_ids: Sequence[str],
    initial: Sequence[str],
    final: Sequence[str],
    *,
    num_frames: Sequence[int | None] | None = None,
) -> pa.Table:
    """Per-sample peer scores for the prompt's final and initial relation.

    ``tracks`` comes from :func:`spatialalign.rundir.tracks.read_tracks` (dense arrays
    ordered like ``sample_ids``); ``initial``/``final`` are each sample's relation
    letters; ``num_frames`` (e.g. the manifest's) makes untracked frames count as
    "both missing". A sample without tracks gets NaN. Columns: sample_id,
    :data:`PEER_COLUMNS`, n_frames (frames with a track row).
    """
    n = len(sample_ids)
    if len(initial) != n or len(final) != n or len(tracks.offsets) != n + 1:
        raise ValueError("sample_ids, initial, final and tracks must describe the same samples")
    if num_frames is not None and len(num_frames) != n:
        raise ValueError("num_frames must have one entry per sample")
    cols: dict[str, list[float]] = {c: [] for c in PEER_COLUMNS}
    n_frames: list[int] = []
    for i in range(n):
        _, a, o = tracks.sample(i)
        total = None if num_frames is None else num_frames[i]
        n_frames.append(len(a))
        for which, rel in (("final", final[i]), ("initial", initial[i])):
            if len(a) == 0:
                cols[f"t2v_compbench_{which}"].append(float("nan"))
                cols[f"vbench_{which}"].append(float("nan"))
                continue
            cols[f"t2v_compbench_{which}"].append(t2v_compbench_score(a, o, rel, num_frames=total))
            cols[f"vbench_{which}"].append(vbench_score(a, o, rel, num_frames=total))
    arrays = {"sample_id": pa.array(list(sample_ids), pa.string())}
    arrays.update({c: pa.array(v, pa.float64()) for c, v in cols.items()})
    arrays["n_frames"] = pa.array(n_frames, pa.int64())
    return pa.table(arrays)
