"""Associating per-frame detections into tracks, and picking each class's main track.

Detections of one label are linked frame to frame by Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) on a gated cost: ``1 - IoU`` between a
track's predicted box (constant velocity from its last two observations) and the
detection when the IoU reaches ``iou_gate``; otherwise ``1 + d`` when the centre
distance ``d`` (in mean box diagonals) is at most ``centre_gate`` — small, fast boxes
barely overlap from frame to frame; otherwise no link. A track survives up to
``max_gap`` frames without a detection, so short detector dropouts do not split it.
Tracks of at least ``min_instance_len`` frames count as distinct instances.

The **main track** of a class plays the part of the official pipeline's SAM2
propagation, which follows the objects found on the first frame of the first
stable run: it is the track holding that class's detection on the anchor frame
(:attr:`~spatialalign.detection.validity.VideoValidity.anchor_frame`), or the
longest track when there is no anchor.

What ``tracks.parquet`` holds: for each *valid* video, one row per frame and class
where the main track has a detection — whatever that frame's status (a redundant
frame with an extra false positive still carries the main track's box). Frames
where the main track was not detected have no row, which the scorer reads as "not
detected" (the frame is not kept). Boxes are never interpolated. Rejected videos
have no rows at all: their rejection lives in ``detections.parquet``, and a scorer
that sees no boxes finds them invalid too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from spatialalign.detection.base import FrameDetections

ROLES = ("animal", "object")
"""Track labels written to ``tracks.parquet``, in class-name order."""

_NO_LINK = 1e6


@dataclass(frozen=True)
class TrackerConfig:
    """Association parameters."""

    iou_gate: float = 0.1
    """Minimum IoU between a predicted box and a detection for an overlap link."""
    centre_gate: float = 1.0
    """Maximum centre distance, in mean box diagonals, for a link without overlap."""
    max_gap: int = 5
    """Frames a track may go undetected and still be continued."""
    min_instance_len: int = 3
    """Tracks with fewer detections are not counted as distinct instances."""
    velocity: bool = True
    """Predict a track's box with constant velocity (else: its last box)."""
    fill_single: bool = False
    """Extend each main track with every frame where its class has exactly one
    detection and the main track none: identity is unambiguous there under the
    official rule of one animal and one object per prompt. Used by the toy preset,
    whose generated sprites can jump (a model artefact) and split their track."""

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_gate <= 1.0:
            raise ValueError(f"iou_gate must be in (0, 1], got {self.iou_gate}")
        if self.centre_gate < 0 or self.max_gap < 0 or self.min_instance_len < 1:
            raise ValueError("centre_gate and max_gap must be >= 0, min_instance_len >= 1")


@dataclass
class Track:
    """One instance followed through the video: its detections in frame order."""

    track_id: int
    label: str
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    det_index: list[int] = field(default_factory=list)
    """Index of the detection within its frame's :class:`FrameDetections`."""

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: int, box: np.ndarray, score: float, index: int) -> None:
        self.frames.append(frame)
        self.boxes.append(np.asarray(box, dtype=np.float64))
        self.scores.append(float(score))
        self.det_index.append(index)

    def predict(self, frame: int, velocity: bool = True) -> np.ndarray:
        """The box expected at ``frame`` (after the last observation)."""
        last = self.boxes[-1]
        if not velocity or len(self.frames) < 2:
            return last
        step = (last - self.boxes[-2]) / (self.frames[-1] - self.frames[-2])
        return last + step * (frame - self.frames[-1])

    def index_at(self, frame: int) -> int | None:
        """The detection index this track holds on ``frame``, if any."""
        try:
            return self.det_index[self.frames.index(frame)]
        except ValueError:
            return None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [n, 4] with every box in ``b`` [m, 4] (xyxy)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _link_costs(pred: np.ndarray, boxes: np.ndarray, config: TrackerConfig) -> np.ndarray:
    """Gated association costs [tracks, detections]; :data:`_NO_LINK` where gated out."""
    iou = iou_matrix(pred, boxes)
    centre_p = (pred[:, :2] + pred[:, 2:]) / 2
    centre_b = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = np.linalg.norm(centre_p[:, None] - centre_b[None], axis=-1)
    diag_p = np.linalg.norm(pred[:, 2:] - pred[:, :2], axis=-1)
    diag_b = np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=-1)
    scale = np.maximum((diag_p[:, None] + diag_b[None]) / 2, 1e-6)
    rel = dist / scale
    cost = np.full(iou.shape, _NO_LINK)
    near = rel <= config.centre_gate
    cost[near] = 1.0 + rel[near]
    overlap = iou >= config.iou_gate
    cost[overlap] = 1.0 - iou[overlap]
    return cost


def track_label(
    detections: Sequence[FrameDetections],
    label: str,
    config: TrackerConfig | None = None,
    first_id: int = 0,
) -> list[Track]:
    """All tracks of the detections labelled ``label``, ids from ``first_id``, by start."""
    config = config or TrackerConfig()
    tracks: list[Track] = []
    active: list[Track] = []
    for frame, det in enumerate(detections):
        index = [
            i
            for i, lab in enumerate(det.labels)
            if lab == label and np.all(np.isfinite(det.boxes[i]))
        ]
        # tracks unseen for more than max_gap frames are finished
        active = [t for t in active if frame - t.frames[-1] - 1 <= config.max_gap]
        matched: set[int] = set()
        if index and active:
            boxes = det.boxes[index].astype(np.float64)
            pred = np.stack([t.predict(frame, config.velocity) for t in active])
            cost = _link_costs(pred, boxes, config)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] < _NO_LINK:
                    i = index[c]
                    active[r].add(frame, det.boxes[i], det.scores[i], i)
                    matched.add(c)
        for c, i in enumerate(index):
            if c not in matched:
                track = Track(first_id + len(tracks), label)
                track.add(frame, det.boxes[i], det.scores[i], i)
                tracks.append(track)
                active.append(track)
    return tracks


def _longest(tracks: Sequence[Track]) -> Track | None:
    """Most detections, then highest total score, then earliest id."""
    if not tracks:
        return None
    return max(tracks, key=lambda t: (len(t), sum(t.scores), -t.track_id))


@dataclass
class VideoTracks:
    """Every track of a video, the main animal and object tracks, and instance counts."""

    n_frames: int
    tracks: list[Track]
    main: dict[str, Track | None]
    """``{"animal": Track | None, "object": Track | None}``."""
    n_instances: dict[str, int]
    """Tracks of at least ``min_instance_len`` detections per role."""

    def boxes(self, role: str) -> np.ndarray:
        """float64 [n_frames, 4] main-track boxes of ``role``; NaN rows where undetected."""
        out = np.full((self.n_frames, 4), np.nan)
        track = self.main[role]
        if track is not None:
            for frame, box in zip(track.frames, track.boxes, strict=True):
                out[frame] = box
        return out

    def rows(self, sample_id: str) -> list[dict[str, Any]]:
        """The ``tracks.parquet`` rows of this video, by frame, animal before object."""
        rows = []
        for role in ROLES:
            track = self.main[role]
            if track is None:
                continue
            for frame, box, score in zip(track.frames, track.boxes, track.scores, strict=True):
                x0, y0, x1, y1 = (float(v) for v in box)
                rows.append(
                    {
                        "sample_id": sample_id,
                        "frame": int(frame),
                        "label": role,
                        "x0": x0,
                        "y0": y0,
                        "x1": x1,
                        "y1": y1,
                        "score": float(score),
                    }
                )
        rows.sort(key=lambda r: (r["frame"], ROLES.index(r["label"])))
        return rows


def track_video(
    detections: Sequence[FrameDetections],
    class_names: Sequence[str],
    config: TrackerConfig | None = None,
    anchor_frame: int | None = None,
) -> VideoTracks:
    """Tracks the animal and object classes and picks each one's main track.

    ``class_names`` is ``(animal, object)`` as given to the detector. With an
    ``anchor_frame`` the main track of each class is the one detected there (if the
    animal and object share a name, the first detection on that frame is the animal);
    without one, or if no track of the class is detected there, the longest.
    """
    config = config or TrackerConfig()
    if len(class_names) != 2:
        raise ValueError(f"expected two class names (animal, object), got {list(class_names)}")
    if anchor_frame is not None and not 0 <= anchor_frame < len(detections):
        raise ValueError(f"anchor frame {anchor_frame} outside 0..{len(detections) - 1}")
    animal, obj = class_names
    by_role: dict[str, list[Track]] = {}
    if animal == obj:
        shared = track_label(detections, animal, config)
        by_role = {"animal": shared, "object": shared}
        tracks = list(shared)
    else:
        by_role["animal"] = track_label(detections, animal, config)
        by_role["object"] = track_label(detections, obj, config, first_id=len(by_role["animal"]))
        tracks = by_role["animal"] + by_role["object"]

    main: dict[str, Track | None] = {}
    if anchor_frame is not None:
        at_anchor = {
            role: sorted(
                (t for t in by_role[role] if t.index_at(anchor_frame) is not None),
                key=lambda t: t.index_at(anchor_frame),
            )
            for role in ROLES
        }
        if animal == obj:
            pair = at_anchor["animal"]
            main = {role: pair[k] if len(pair) > k else None for k, role in enumerate(ROLES)}
        else:
            main = {role: at_anchor[role][0] if at_anchor[role] else None for role in ROLES}
    for role in ROLES:
        if main.get(role) is None:
            others = [t for t in by_role[role] if all(t is not m for m in main.values())]
            main[role] = _longest(others)
    if config.fill_single and animal != obj:
        for role, name in zip(ROLES, class_names, strict=True):
            if main[role] is not None:
                main[role] = _fill_single(main[role], detections, name)
    n_instances = {
        role: sum(1 for t in by_role[role] if len(t) >= config.min_instance_len) for role in ROLES
    }
    return VideoTracks(len(detections), tracks, main, n_instances)


def _fill_single(track: Track, detections: Sequence[FrameDetections], label: str) -> Track:
    """``track`` plus the lone ``label`` detection of every frame it does not cover."""
    held = dict(zip(track.frames, range(len(track)), strict=True))
    out = Track(track.track_id, track.label)
    for frame, det in enumerate(detections):
        if frame in held:
            k = held[frame]
            out.add(frame, track.boxes[k], track.scores[k], track.det_index[k])
            continue
        index = [
            i
            for i, lab in enumerate(det.labels)
            if lab == label and np.all(np.isfinite(det.boxes[i]))
        ]
        if len(index) == 1:
            out.add(frame, det.boxes[index[0]], det.scores[index[0]], index[0])
    return out


TRACKER_PRESETS: dict[str, TrackerConfig] = {
    "official": TrackerConfig(),
    "wan": TrackerConfig(),
    # Toy clips are 9 frames of 16x16 pixels with one animal and one object: the animal
    # moves up to ~2.4 box diagonals per frame and eases in and out, so the centre gate
    # spans the whole frame (there is nothing else to confuse it with).
    "toy": TrackerConfig(centre_gate=6.0, fill_single=True),
    # The hard world (toy-hard: 12 frames of 16x16, one animal and one object per prompt as in
    # the toy world): the toy world's settings. Filling uses only frames with exactly one
    # detection of the class, so a frame where the animal is split behind the object (two
    # detections) is left to the preset's redundant-frame rule.
    "toy-hard": TrackerConfig(centre_gate=6.0, fill_single=True),
}


def tracker_config(name: str = "official", **overrides: Any) -> TrackerConfig:
    """The tracker parameters that go with a scoring preset (``official``/``wan``/``toy``/
    ``toy-hard``)."""
    try:
        base = TRACKER_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown tracker preset {name!r} (choose from {', '.join(TRACKER_PRESETS)})"
        ) from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(base, **overrides)
