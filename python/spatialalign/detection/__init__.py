"""Detection and tracking: frames + class names -> boxes -> tracks and validity."""

from spatialalign.detection.base import Detector, FrameDetections

__all__ = ["Detector", "FrameDetections"]
