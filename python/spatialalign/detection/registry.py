"""Detector back ends by name: ``gdino-onnx``, ``gdino-torch`` and ``toy``.

Each back end is imported only when asked for, so ``track --detector toy`` never
imports onnxruntime or transformers. Missing model directories and missing
optional dependencies become one-line :class:`SpatialAlignError` messages.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from spatialalign.core.errors import SpatialAlignError
from spatialalign.detection.base import Detector

DETECTORS: tuple[str, ...] = ("gdino-onnx", "gdino-torch", "toy")

DEFAULT_ONNX_DIR = Path("models/onnx")
"""Where ``spatialalign export-onnx`` writes its graphs by default."""


def _import(module: str, attr: str, detector: str) -> Any:
    """``module.attr``, or a clear error naming the missing dependency."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        missing = e.name or str(e)
        raise SpatialAlignError(
            f"detector {detector!r} needs {missing}, which is not installed "
            f"(pip install 'spatialalign[detect]')"
        ) from e


def _existing_dir(path: str | os.PathLike[str] | None, what: str, hint: str) -> Path:
    if path is None:
        raise SpatialAlignError(f"{what} is required ({hint})")
    path = Path(path)
    if not path.is_dir():
        raise SpatialAlignError(f"{what} not found: {path} ({hint})")
    return path


def default_device() -> str:
    """``cuda:LOCAL_RANK`` when CUDA is usable (one GPU per torchrun/accelerate rank), else cpu."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return f"cuda:{local_rank % torch.cuda.device_count()}"


def rank_providers() -> list | None:
    """ONNX Runtime providers on GPU ``LOCAL_RANK`` under torchrun/accelerate; None otherwise.

    ``None`` leaves the choice to the back end (CUDA device 0 when usable, else CPU).
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if local_rank == 0:
        return None
    import torch

    from spatialalign.detection.onnx_common import default_providers

    if not torch.cuda.is_available():
        return None
    device_id = local_rank % torch.cuda.device_count()
    return [
        ("CUDAExecutionProvider", {"device_id": device_id}) if p == "CUDAExecutionProvider" else p
        for p in default_providers()
    ]


def make_detector(
    name: str,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    onnx_dir: str | os.PathLike[str] | None = None,
    box_threshold: float = 0.4,
    text_threshold: float = 0.3,
    device: str | None = None,
    providers: list[str] | None = None,
    batch_size: int = 8,
    sam: Any = None,
) -> Detector:
    """Builds the detector ``name`` from local files only.

    ``gdino-torch`` reads a transformers GroundingDINO checkpoint from ``model_dir``;
    ``gdino-onnx`` reads the graphs ``spatialalign export-onnx`` wrote to ``onnx_dir``
    (default ``models/onnx``); ``toy`` is the toy world's colour detector and takes no
    model. ``sam`` (SAM box refinement): a local SAM checkpoint directory (gdino-torch), the
    directory ``export-onnx --sam`` wrote (gdino-onnx), or a ready refiner. Under
    torchrun/accelerate each rank uses GPU ``LOCAL_RANK`` unless told otherwise.
    """
    if name == "toy":
        unused = {
            "--model-dir": model_dir,
            "--onnx-dir": onnx_dir,
            "--sam": sam,
        }
        given = [flag for flag, value in unused.items() if value is not None]
        if given:
            raise SpatialAlignError(f"the toy detector takes no {', '.join(given)}")
        color_detector = _import("spatialalign.detection.color", "ColorDetector", name)
        return color_detector()
    if not 0.0 <= box_threshold <= 1.0 or not 0.0 <= text_threshold <= 1.0:
        raise SpatialAlignError(
            f"thresholds must be in [0, 1], got box {box_threshold}, text {text_threshold}"
        )
    if name == "gdino-torch":
        path = _existing_dir(model_dir, "--model-dir", "a local GroundingDINO checkpoint directory")
        cls = _import("spatialalign.detection.gdino_torch", "GroundingDinoTorchDetector", name)
        device = device or default_device()
        if sam is not None:
            resolve_sam = _import("spatialalign.detection.sam", "resolve_sam", name)
            sam = resolve_sam(sam, onnx=False, device=device)
        return cls(
            path,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            device=device,
            sam=sam,
        )
    if name == "gdino-onnx":
        path = _existing_dir(
            DEFAULT_ONNX_DIR if onnx_dir is None else onnx_dir,
            "ONNX directory",
            "run 'spatialalign export-onnx' first, or pass --onnx-dir",
        )
        cls = _import("spatialalign.detection.gdino_onnx", "GroundingDinoOnnxDetector", name)
        return cls(
            path,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            providers=providers or rank_providers(),
            batch_size=batch_size,
            sam=sam,
        )
    raise SpatialAlignError(f"unknown detector {name!r} (choose from {', '.join(DETECTORS)})")


def detector_weights(
    detector: str,
    model_dir: str | os.PathLike[str] | None = None,
    onnx_dir: str | os.PathLike[str] | None = None,
    sam: str | os.PathLike[str] | None = None,
) -> dict[str, str | None]:
    """Where the detector's weights are and their content fingerprints: its identity in
    ``track``'s settings (every caller of ``track_run`` records the same, so a later
    ``spatialalign track`` on the run redoes nothing)."""
    from spatialalign.core.provenance import fingerprint

    if detector == "gdino-onnx" and onnx_dir is None:
        onnx_dir = DEFAULT_ONNX_DIR
    out: dict[str, str | None] = {}
    for name, path in (("model_dir", model_dir), ("onnx_dir", onnx_dir), ("sam", sam)):
        out[name] = None if path is None else str(Path(path).resolve())
        if path is not None:
            out[f"{name}_fingerprint"] = fingerprint(path)
    return out
