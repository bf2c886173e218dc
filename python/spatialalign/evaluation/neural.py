"""Neural video metrics: DINOv2 ID consistency of the animal and CLIP-IQA "natural".

Weights load from local paths only (``local_files_only``, safetensors, no remote code)
or come in as model objects, so nothing is downloaded here.

**ID consistency** — as the official SpatialAlign ``calc_metric.py`` (repository
``fengming001ntu/SpatialAlign``) computes it, the same two-anchor scheme as VBench's
``subject_consistency`` (``vbench/subject_consistency.py``) but on the animal's box
crop instead of the whole frame: every crop (frames where the animal — with
``obj`` given, both boxes, as the official script — was detected, in time order) is
resized so its short side is ``image_size`` (bicubic, antialiased), centre-cropped to
``image_size`` square and normalised with the ImageNet mean/std (the official
``dinov2_frame_transform``, 518 px); its DINOv2 feature is the final-layer-norm CLS
token (``Dinov2Model``'s ``pooler_output``, what the torch-hub ``dinov2_vitb14``
returns), L2-normalised. The score is ``mean_k (cos(f_k, f_0) + cos(f_k, f_{k-1})) / 2``
for ``k = 1..K-1``. VBench additionally clamps each cosine at 0; the official script
does not, and neither do we (``clamp_negative=True`` gives VBench's variant).

**CLIP-IQA "natural"** — torchmetrics' :class:`CLIPImageQualityAssessment` with the
prompt pair ("Natural photo.", "Synthetic photo."): per frame, ``softmax(100 cos(img,
text))`` over the pair, first entry; the video score is the mean over its frames, as
the official script does with all 81 frames. Two adaptations to a local CLIP under
transformers 5.x: ``get_text_features``/``get_image_features`` now return a
``BaseModelOutputWithPooling`` (the projected features in ``pooler_output``) where
torchmetrics expects a tensor, so :class:`ClipFeatures` unwraps them; and torchmetrics
divides the images by ``data_range`` *before* calling the processor, whose default
``do_rescale`` would divide by 255 again, so :func:`iqa_processor` switches it off. The
paper-original ``clip_iqa`` weights need ``piq`` (not installed); any local CLIP works.

**MUSIQ** (VBench's imaging quality, pyiqa with local SPAQ weights) is in
:mod:`.musiq`, behind the optional ``iqa`` extra (``pip install 'spatialalign[iqa]'``).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spatialalign.evaluation.crops import Consistency, box_crops, check_frames, consistency

if TYPE_CHECKING:
    from transformers import CLIPModel, Dinov2Model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_IMAGE_SIZE = 518
NATURAL_PROMPTS = ("Natural photo.", "Synthetic photo.")


def _local_dir(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(
            f"{what}: {p} is not a local model directory (nothing is downloaded)"
        )
    return p


# -------------------------------------------------------------------- ID consistency


def load_dinov2(path: str | os.PathLike[str]) -> Dinov2Model:
    """A ``Dinov2Model`` from a local directory (safetensors only), in eval mode."""
    from transformers import Dinov2Model

    p = _local_dir(path, "DINOv2")
    return Dinov2Model.from_pretrained(p, local_files_only=True, use_safetensors=True).eval()


def dinov2_transform(
    crops: Sequence[np.ndarray], image_size: int = DINOV2_IMAGE_SIZE
) -> torch.Tensor:
    """uint8 ``[h, w, 3]`` crops -> normalised ``[N, 3, S, S]`` float tensor (official transform).

    Short side resized to ``S`` (the long one to ``int(S * long / short)``, as
    torchvision's ``Resize``), bicubic + antialias on [0, 1] floats, centre crop
    (offsets rounded as torchvision's ``center_crop``), ImageNet normalisation.
    """
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for crop in crops:
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255.0
        h, w = x.shape[1:]
        if h <= w:
            size = (image_size, int(image_size * w / h))
        else:
            size = (int(image_size * h / w), image_size)
        x = F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)
        top = int(round((size[0] - image_size) / 2.0))
        left = int(round((size[1] - image_size) / 2.0))
        x = x[0, :, top : top + image_size, left : left + image_size]
        out.append((x - mean) / std)
    return torch.stack(out) if out else torch.zeros(0, 3, image_size, image_size)


@torch.inference_mode()
def dinov2_features(
    model: nn.Module, pixels: torch.Tensor, *, batch_size: int = 16
) -> torch.Tensor:
    """L2-normalised CLS features ``[N, D]`` of preprocessed pixels, in batches."""
    device = next(model.parameters()).device
    feats = []
    for i in range(0, len(pixels), batch_size):
        out = model(pixel_values=pixels[i : i + batch_size].to(device))
        feats.append(F.normalize(out.pooler_output.float(), dim=-1).cpu())
    return torch.cat(feats) if feats else torch.zeros(0, 0)


def id_consistency(
    frames: np.ndarray,
    animal: np.ndarray,
    model: nn.Module,
    *,
    obj: np.ndarray | None = None,
    image_size: int = DINOV2_IMAGE_SIZE,
    batch_size: int = 16,
    clamp_negative: bool = False,
) -> Consistency:
    """DINOv2 ID consistency of the animal's crops (see the module docstring).

    ``frames``: uint8 ``[F, H, W, 3]``; ``animal`` (and ``obj``): ``[F, 4]`` xyxy with a
    NaN row where undetected. With ``obj``, only frames with both boxes are used.
    """
    frames = check_frames(frames)
    boxes = np.asarray(animal, dtype=np.float64).copy()
    if obj is not None:
        missing = np.isnan(np.asarray(obj, dtype=np.float64)).all(axis=1)
        if len(missing) != len(boxes):
            raise ValueError(f"obj has {len(missing)} frames, animal {len(boxes)}")
        boxes[missing] = np.nan
    crops = box_crops(frames, boxes)
    if len(crops) < 2:
        return Consistency(math.nan, math.nan, len(crops))
    f = dinov2_features(model, dinov2_transform(crops, image_size), batch_size=batch_size)
    to_first = (f[1:] @ f[0]).numpy()
    to_previous = (f[1:] * f[:-1]).sum(dim=1).numpy()
    if clamp_negative:
        to_first, to_previous = np.maximum(to_first, 0.0), np.maximum(to_previous, 0.0)
    return consistency(to_first.astype(np.float64), to_previous.astype(np.float64), len(crops))


# --------------------------------------------------------------------------- CLIP-IQA


class ClipFeatures(nn.Module):
    """A ``CLIPModel`` whose ``get_*_features`` return tensors, as torchmetrics expects.

    transformers 5.x returns ``BaseModelOutputWithPooling`` with the projected features
    in ``pooler_output``; 4.x returned the tensor itself. Both are accepted.
    """

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.clip = clip

    @staticmethod
    def _tensor(out: Any) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, input_ids, attention_mask=None) -> torch.Tensor:
        return self._tensor(self.clip.get_text_features(input_ids, attention_mask))

    def get_image_features(self, pixel_values) -> torch.Tensor:
        return self._tensor(self.clip.get_image_features(pixel_values))


def iqa_processor(processor: Any) -> Any:
    """A copy of a ``CLIPProcessor`` that does not rescale (torchmetrics already did)."""
    processor = copy.deepcopy(processor)
    processor.image_processor.do_rescale = False
    return processor


def load_clip(path: str | os.PathLike[str]) -> tuple[CLIPModel, Any]:
    """``CLIPModel`` (safetensors) and ``CLIPProcessor`` from one local directory."""
    from transformers import CLIPModel, CLIPProcessor

    p = _local_dir(path, "CLIP")
    model = CLIPModel.from_pretrained(p, local_files_only=True, use_safetensors=True).eval()
    return model, CLIPProcessor.from_pretrained(p, local_files_only=True)


class ClipIqa:
    """CLIP-IQA through torchmetrics with a local CLIP model; "natural" by default.

    ``prompts`` is torchmetrics' argument: built-in names ("natural", "quality", ...)
    or ``(positive, negative)`` pairs. Anchors are computed once, here.
    """

    def __init__(
        self,
        model: CLIPModel,
        processor: Any,
        *,
        prompts: tuple[str | tuple[str, str], ...] = ("natural",),
        batch_size: int = 16,
    ) -> None:
        from torchmetrics.multimodal import CLIPImageQualityAssessment

        device = next(model.parameters()).device
        # torchmetrics computes the text anchors at construction on its (CPU) device, so
        # the model is built in on the CPU and the whole metric then moved to ``device``
        wrapped, proc = ClipFeatures(model.to("cpu")).eval(), iqa_processor(processor)
        self.batch_size = batch_size
        self.metric = CLIPImageQualityAssessment(
            model_name_or_path=lambda: (wrapped, proc), data_range=255.0, prompts=prompts
        )
        self.metric.to(device)
        self.prompt_names = list(self.metric.prompts_name)

    @torch.inference_mode()
    def frame_scores(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Per-frame probability of the first prompt of each pair, ``{name: [F]}``."""
        frames = check_frames(frames)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().to(self.metric.device)
        parts = []
        for i in range(0, len(x), self.batch_size):
            self.metric.reset()
            self.metric.update(x[i : i + self.batch_size])
            out = self.metric.compute()
            if isinstance(out, dict):
                probs = torch.stack([out[n].reshape(-1) for n in self.prompt_names], dim=1)
            else:
                probs = out.reshape(-1, 1)
            parts.append(probs.cpu())
        probs = torch.cat(parts).double().numpy()
        return {name: probs[:, j] for j, name in enumerate(self.prompt_names)}

    def __call__(self, frames: np.ndarray) -> dict[str, float]:
        """Video scores: the mean over frames of :meth:`frame_scores`."""
        return {k: float(v.mean()) for k, v in self.frame_scores(frames).items()}
