"""SAM box refinement: detector box -> SAM mask (box prompt) -> tight box around the mask.

transformers' ``SamModel`` is used rather than Meta's ``segment-anything`` package:
that package imports torchvision at import time (not a dependency here) and its model
builders only know the three published sizes, while ``SamConfig`` builds a tiny model
for tests and loads the published ``facebook/sam-vit-*`` weights as safetensors (see
models/onnx/README.md). Both refiners share the processor's pre/post-processing, so
the torch and ONNX forms differ only in the network that runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spatialalign.core.errors import SpatialAlignError
from spatialalign.detection.onnx_common import (
    SAM_DECODER_FILE,
    SAM_ENCODER_FILE,
    SAM_PROCESSOR_DIR,
    SAM_SIDECAR,
    make_session,
)


def mask_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """Tight ``[x_min, y_min, x_max, y_max]`` (pixel indices) of each boolean mask [n, H, W].

    Same convention as supervision's ``mask_to_xyxy`` used by the official pipeline;
    an empty mask gives a row of NaN.
    """
    masks = np.asarray(masks, dtype=bool)
    out = np.full((len(masks), 4), np.nan, dtype=np.float32)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        if len(xs):
            out[i] = (xs[0], ys[0], xs[-1], ys[-1])
    return out


def load_sam_processor(path: str | Path):
    from transformers import SamProcessor

    p = Path(path)
    if not p.is_dir():
        raise SpatialAlignError(f"SAM directory not found: {p}")
    try:
        return SamProcessor.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError) as e:
        raise SpatialAlignError(f"cannot load a SAM processor from {p}: {e}") from e


def load_sam_model(path: str | Path, device: str = "cpu"):
    from transformers import SamModel

    p = Path(path)
    if not p.is_dir():
        raise SpatialAlignError(f"SAM directory not found: {p}")
    if not any(p.glob("*.safetensors")):
        raise SpatialAlignError(f"no .safetensors weights in {p} (only safetensors are loaded)")
    try:
        model = SamModel.from_pretrained(p, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise SpatialAlignError(f"cannot load SAM from {p}: {e}") from e
    return model.to(device).eval()


class SamRefiner:
    """Base class: ``refine(frame, boxes)`` returns SAM-tightened boxes (same order).

    A box whose mask comes out empty keeps the detector's box.
    """

    processor = None

    def low_res_masks(self, pixel_values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[1, 3, S, S] pixels + [1, n, 4] boxes (processor coords) -> [1, n, 1, h, w] logits."""
        raise NotImplementedError

    def masks(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Boolean masks [n, H, W] at the frame's size, one per box."""
        import torch

        inputs = self.processor(
            images=frame, input_boxes=[[list(map(float, b)) for b in boxes]], return_tensors="np"
        )
        logits = self.low_res_masks(
            inputs["pixel_values"].astype(np.float32), inputs["input_boxes"].astype(np.float32)
        )
        masks = self.processor.post_process_masks(
            [torch.from_numpy(np.ascontiguousarray(logits[0]))],
            inputs["original_sizes"],
            inputs["reshaped_input_sizes"],
        )[0]
        return masks[:, 0].numpy()

    def refine(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return boxes
        tight = mask_to_xyxy(self.masks(frame, boxes))
        empty = np.isnan(tight).any(axis=1)
        tight[empty] = boxes[empty]
        return tight


class SamTorchRefiner(SamRefiner):
    """SAM box refinement with transformers' ``SamModel`` in PyTorch."""

    def __init__(self, model_dir: str | Path, *, device: str = "cpu") -> None:
        self.processor = load_sam_processor(model_dir)
        self.model = load_sam_model(model_dir, device)
        self.device = device

    def low_res_masks(self, pixel_values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(
                pixel_values=torch.from_numpy(pixel_values).to(self.device),
                input_boxes=torch.from_numpy(boxes).to(self.device),
                multimask_output=False,
            )
        return out.pred_masks.float().cpu().numpy()


class SamOnnxRefiner(SamRefiner):
    """SAM box refinement from the exported vision encoder + box-prompt mask decoder."""

    def __init__(self, onnx_dir: str | Path, *, providers: list[str] | None = None) -> None:
        d = Path(onnx_dir)
        for name in (SAM_ENCODER_FILE, SAM_DECODER_FILE, SAM_SIDECAR):
            if not (d / name).is_file():
                raise SpatialAlignError(
                    f"{d / name} not found: run `spatialalign export-onnx --sam ...` first"
                )
        self.processor = load_sam_processor(d / SAM_PROCESSOR_DIR)
        self.encoder = make_session(d / SAM_ENCODER_FILE, providers)
        self.decoder = make_session(d / SAM_DECODER_FILE, providers)

    def low_res_masks(self, pixel_values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        (emb,) = self.encoder.run(None, {"pixel_values": pixel_values})
        masks, _ = self.decoder.run(None, {"image_embeddings": emb, "input_boxes": boxes})
        return masks


def resolve_sam(sam, *, onnx: bool, device: str = "cpu", providers: list[str] | None = None):
    """``sam`` as a :class:`SamRefiner`: None, a refiner, or a local path.

    A path is a transformers SAM checkpoint for the torch back end, or the directory
    ``export-onnx --sam`` wrote to for the ONNX back end.
    """
    if sam is None or isinstance(sam, SamRefiner):
        return sam
    if isinstance(sam, (str, Path)):
        if onnx:
            return SamOnnxRefiner(sam, providers=providers)
        return SamTorchRefiner(sam, device=device)
    raise SpatialAlignError(f"--sam must be a directory or a SamRefiner, got {type(sam).__name__}")


# ----------------------------------------------------------------------------- export wrappers


def sam_export_modules(model):
    """(vision encoder, box decoder) ``nn.Module`` wrappers of a ``SamModel`` for ONNX export."""
    import torch

    class VisionEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sam = model

        def forward(self, pixel_values):
            return self.sam.get_image_embeddings(pixel_values)

    class BoxDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sam = model

        def forward(self, image_embeddings, input_boxes):
            out = self.sam(
                image_embeddings=image_embeddings, input_boxes=input_boxes, multimask_output=False
            )
            return out.pred_masks, out.iou_scores

    return VisionEncoder().eval(), BoxDecoder().eval()
