"""The detector interface shared by GroundingDINO (torch / ONNX) and the toy colour detector."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class FrameDetections:
    """Detections in one frame, already filtered by the detector's thresholds."""

    boxes: np.ndarray
    """float32 [n, 4] xyxy pixels, y downwards."""
    scores: np.ndarray
    """float32 [n] box confidences."""
    labels: list[str] = field(default_factory=list)
    """One label per box: one of the queried class names, or another phrase the
    detector produced (which makes the frame 'redundant' under the official rules)."""

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ValueError(
                f"boxes ({len(self.boxes)}), scores ({len(self.scores)}) and labels "
                f"({len(self.labels)}) must have the same length"
            )

    def count(self, label: str) -> int:
        """Number of boxes labelled ``label``."""
        return sum(1 for lab in self.labels if lab == label)


@runtime_checkable
class Detector(Protocol):
    """Frames + the prompt's two class names (animal, object) -> per-frame detections."""

    name: str

    def detect(self, frames: np.ndarray, class_names: Sequence[str]) -> list[FrameDetections]:
        """``frames`` is uint8 [F, H, W, 3] RGB; returns one entry per frame."""
        ...
