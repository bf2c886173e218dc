"""``gdino-onnx``: the exported GroundingDINO on ONNX Runtime, frames batched.

Per video the caption is tokenized once (padded to the graph's text length, phrase
masks computed once) and bound to every batch; frames go through the same image
processor as ``gdino-torch`` and are batched along the graph's batch axis. The raw
logits/boxes are post-processed by transformers' own
``post_process_grounded_object_detection`` (sigmoid, box/text thresholds, phrase
extraction from the token spans), so labels and boxes match ``gdino-torch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_json
from spatialalign.detection.base import FrameDetections
from spatialalign.detection.gdino_common import (
    check_frames,
    load_processor,
    pad_pixels,
    text_inputs,
    to_frame_detections,
)
from spatialalign.detection.onnx_common import GDINO_SIDECAR, make_session
from spatialalign.detection.sam import SamRefiner, resolve_sam


class GroundingDinoOnnxDetector:
    """GroundingDINO exported by ``spatialalign export-onnx``, run in batches."""

    name = "gdino-onnx"

    def __init__(
        self,
        onnx_dir: str,
        *,
        box_threshold: float = 0.4,
        text_threshold: float = 0.3,
        providers: list[str] | None = None,
        batch_size: int = 8,
        sam: SamRefiner | str | None = None,
        threads: int | None = None,
    ) -> None:
        """``sam``: a refiner, or the directory ``export-onnx --sam`` wrote SAM to;
        ``threads``: onnxruntime intra-op threads (default: onnxruntime's choice)."""
        d = Path(onnx_dir)
        if not d.is_dir():
            raise SpatialAlignError(f"ONNX directory not found: {d}")
        if not (d / GDINO_SIDECAR).is_file():
            raise SpatialAlignError(
                f"{d / GDINO_SIDECAR} not found: run `spatialalign export-onnx` first"
            )
        if batch_size < 1:
            raise SpatialAlignError(f"batch size must be >= 1, got {batch_size}")
        self.meta = read_json(d / GDINO_SIDECAR)
        self.session = make_session(d / self.meta["onnx"], providers, threads=threads)
        self.processor = load_processor(d / self.meta["processor_dir"])
        self.image_size = tuple(self.meta["image_size"])
        self.text_len = int(self.meta["text_len"])
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.batch_size = int(batch_size)
        self.sam = resolve_sam(sam, onnx=True, providers=providers)

    @property
    def providers(self) -> list[str]:
        """The providers the session actually runs on."""
        return self.session.get_providers()

    def raw(
        self, frames: np.ndarray, class_names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits [F,Q,T], pred_boxes [F,Q,4], input_ids [1,N]) before post-processing."""
        frames = check_frames(frames)
        text = text_inputs(self.processor.tokenizer, class_names, self.text_len)
        logits, boxes = [], []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            pix = self.processor.image_processor(images=list(chunk), return_tensors="np")
            pv, pm = pad_pixels(pix["pixel_values"], pix["pixel_mask"], self.image_size)
            feed = {k: np.repeat(v, len(chunk), axis=0) for k, v in text.items()}
            feed["pixel_values"], feed["pixel_mask"] = pv, pm
            lg, bx = self.session.run(["logits", "pred_boxes"], feed)
            logits.append(lg)
            boxes.append(bx)
        return np.concatenate(logits), np.concatenate(boxes), text["input_ids"]

    def detect(self, frames: np.ndarray, class_names: Sequence[str]) -> list[FrameDetections]:
        """Batched inference + the official post-processing; one entry per frame."""
        import torch
        from transformers.models.grounding_dino.modeling_grounding_dino import (
            GroundingDinoObjectDetectionOutput,
        )

        frames = check_frames(frames)
        if len(frames) == 0:
            return []
        logits, boxes, input_ids = self.raw(frames, class_names)
        height, width = frames.shape[1:3]
        outputs = GroundingDinoObjectDetectionOutput(
            logits=torch.from_numpy(logits), pred_boxes=torch.from_numpy(boxes)
        )
        results = self.processor.post_process_grounded_object_detection(
            outputs,
            torch.from_numpy(np.repeat(input_ids, len(frames), axis=0)),
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(height, width)] * len(frames),
        )
        out = []
        for frame, result in zip(frames, results, strict=True):
            det = to_frame_detections(result)
            if self.sam is not None and len(det.boxes):
                det = FrameDetections(self.sam.refine(frame, det.boxes), det.scores, det.labels)
            out.append(det)
        return out
