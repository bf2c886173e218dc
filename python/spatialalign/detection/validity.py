"""The official detection-level validity rules (SpatialAlign ``detection.py``).

Each frame's detections are classified by their labels alone:

* fewer than 2 boxes: **miss**;
* more than 2 boxes: **redundant**;
* exactly 2 boxes whose labels are the prompt's animal and object (compared as a
  sorted list, as the official script does): **valid**, otherwise **redundant**.

A video is then rejected, with a reason code, when

1. it has no frames at all (``no_frames``);
2. it has more than ``max_redundant`` redundant frames (``redundant``);
3. it has fewer than ``min_valid`` valid frames (``too_few_frames``);
4. no run of at least ``min_run`` consecutive valid frames exists (``no_stable_run``).

The official script tests (2) and (3) together; when both hold we report ``redundant``.
A video that cannot be decoded is ``unreadable_video`` (see :func:`rejected`). The first
stable run is kept: its first frame is where the official pipeline anchors tracking.
Thresholds come from :class:`spatialalign.core.presets.ScoringConfig` (presets ``official``/``toy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spatialalign.core.presets import ScoringConfig
from spatialalign.detection.base import FrameDetections

VALID = "valid"
MISS = "miss"
REDUNDANT = "redundant"

REJECTED = "rejected"

REASON_NO_FRAMES = "no_frames"
REASON_REDUNDANT = "redundant"
REASON_TOO_FEW = "too_few_frames"
REASON_NO_RUN = "no_stable_run"
REASON_UNREADABLE = "unreadable_video"

REASONS: tuple[str, ...] = (
    REASON_NO_FRAMES,
    REASON_REDUNDANT,
    REASON_TOO_FEW,
    REASON_NO_RUN,
    REASON_UNREADABLE,
)


def classify_frame(labels: Sequence[str], class_names: Sequence[str]) -> str:
    """``valid``, ``miss`` or ``redundant`` for one frame's detection labels."""
    if len(labels) < 2:
        return MISS
    if len(labels) > 2:
        return REDUNDANT
    return VALID if sorted(labels) == sorted(class_names) else REDUNDANT


def classify_frames(detections: Sequence[FrameDetections], class_names: Sequence[str]) -> list[str]:
    """Frame statuses of a whole video, in frame order."""
    if len(class_names) != 2:
        raise ValueError(f"expected two class names (animal, object), got {list(class_names)}")
    return [classify_frame(d.labels, class_names) for d in detections]


def first_stable_run(frame_status: Sequence[str], min_run: int) -> tuple[int, int] | None:
    """(start, length) of the first maximal run of >= ``min_run`` consecutive valid frames.

    This is the official ``first_max_run_ge4`` with the run length as a parameter.
    """
    if min_run < 1:
        raise ValueError(f"min_run must be >= 1, got {min_run}")
    start = None
    for i, status in enumerate([*frame_status, None]):
        if status == VALID:
            if start is None:
                start = i
        elif start is not None:
            if i - start >= min_run:
                return start, i - start
            start = None
    return None


def longest_run(frame_status: Sequence[str]) -> int:
    """Length of the longest run of consecutive valid frames."""
    best = current = 0
    for status in frame_status:
        current = current + 1 if status == VALID else 0
        best = max(best, current)
    return best


@dataclass(frozen=True)
class VideoValidity:
    """The verdict on one video: frame counts, status (``valid``/``rejected``) and reason."""

    n_frames: int
    n_valid: int
    n_miss: int
    n_redundant: int
    longest_run: int
    status: str
    reason: str
    """One of :data:`REASONS`; ``""`` for a valid video."""
    stable_run: tuple[int, int] | None = None
    """(start, length) of the first stable run; ``None`` when there is none."""
    frame_status: tuple[str, ...] = field(default=(), repr=False)

    @property
    def valid(self) -> bool:
        return self.status == VALID

    @property
    def anchor_frame(self) -> int | None:
        """First frame of the first stable run, where tracking is anchored."""
        return None if self.stable_run is None else self.stable_run[0]

    def to_row(self, sample_id: str) -> dict[str, Any]:
        """One row of ``detections.parquet``."""
        return {
            "sample_id": sample_id,
            "n_valid": self.n_valid,
            "n_miss": self.n_miss,
            "n_redundant": self.n_redundant,
            "longest_run": self.longest_run,
            "status": self.status,
            "reason": self.reason,
        }


def rejected(reason: str) -> VideoValidity:
    """A rejection with no frame statistics (e.g. ``unreadable_video``)."""
    if reason not in REASONS:
        raise ValueError(f"unknown rejection reason {reason!r}")
    return VideoValidity(0, 0, 0, 0, 0, REJECTED, reason)


def judge_frames(frame_status: Sequence[str], config: ScoringConfig) -> VideoValidity:
    """Applies the video rules to per-frame statuses."""
    statuses = tuple(frame_status)
    unknown = set(statuses) - {VALID, MISS, REDUNDANT}
    if unknown:
        raise ValueError(f"unknown frame status(es) {sorted(unknown)}")
    n_valid = statuses.count(VALID)
    n_miss = statuses.count(MISS)
    n_redundant = statuses.count(REDUNDANT)
    run = first_stable_run(statuses, config.min_run)
    if not statuses:
        reason = REASON_NO_FRAMES
    elif n_redundant > config.max_redundant:
        reason = REASON_REDUNDANT
    elif n_valid < config.min_valid:
        reason = REASON_TOO_FEW
    elif run is None:
        reason = REASON_NO_RUN
    else:
        reason = ""
    return VideoValidity(
        n_frames=len(statuses),
        n_valid=n_valid,
        n_miss=n_miss,
        n_redundant=n_redundant,
        longest_run=longest_run(statuses),
        status=REJECTED if reason else VALID,
        reason=reason,
        stable_run=run,
        frame_status=statuses,
    )


def judge_detections(
    detections: Sequence[FrameDetections],
    class_names: Sequence[str],
    config: ScoringConfig,
) -> VideoValidity:
    """Classifies every frame's detections and applies the video rules."""
    return judge_frames(classify_frames(detections, class_names), config)
