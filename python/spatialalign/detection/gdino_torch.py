"""``gdino-torch``: transformers GroundingDINO, one frame at a time (the official way).

This is the reference back end: exactly what the official SpatialAlign ``detection.py``
does per frame (processor on one image with the caption ``"{animal}. {object}."``,
``GroundingDinoForObjectDetection``, then ``post_process_grounded_object_detection``
with the box/text thresholds), optionally followed by SAM box refinement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spatialalign.detection.base import FrameDetections
from spatialalign.detection.gdino_common import (
    caption,
    check_frames,
    load_model,
    load_processor,
    to_frame_detections,
)
from spatialalign.detection.sam import SamRefiner, resolve_sam


class GroundingDinoTorchDetector:
    """GroundingDINO in PyTorch, per frame, from a local model directory."""

    name = "gdino-torch"

    def __init__(
        self,
        model_dir: str,
        *,
        box_threshold: float = 0.4,
        text_threshold: float = 0.3,
        device: str = "cpu",
        sam: SamRefiner | str | None = None,
    ) -> None:
        """``sam``: a refiner, or a local SAM checkpoint directory (see :mod:`.sam`)."""
        self.processor = load_processor(model_dir)
        self.model = load_model(model_dir, device)
        self.device = device
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.sam = resolve_sam(sam, onnx=False, device=device)

    def detect(self, frames: np.ndarray, class_names: Sequence[str]) -> list[FrameDetections]:
        """Runs the model on each frame separately; returns one entry per frame."""
        import torch

        frames = check_frames(frames)
        text = caption(class_names)
        height, width = frames.shape[1:3]
        out: list[FrameDetections] = []
        for frame in frames:
            inputs = self.processor(images=frame, text=text, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self.model(**inputs)
            result = self.processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                threshold=self.box_threshold,
                text_threshold=self.text_threshold,
                target_sizes=[(height, width)],
            )[0]
            det = to_frame_detections(result)
            if self.sam is not None and len(det.boxes):
                det = FrameDetections(self.sam.refine(frame, det.boxes), det.scores, det.labels)
            out.append(det)
        return out
