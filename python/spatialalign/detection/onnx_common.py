"""The exported-ONNX directory: the file names ``export-onnx`` writes and the back ends read,
and how an ONNX Runtime session is opened on them (providers, threads).

Shared by :mod:`.export` (writer), :mod:`.gdino_onnx` and :mod:`.sam` (readers) and
:mod:`.registry`, so that none of those has to import another for these.
"""

from __future__ import annotations

from pathlib import Path

from spatialalign.core.errors import SpatialAlignError

GDINO_FILE = "grounding_dino.onnx"
GDINO_SIDECAR = "grounding_dino.json"
"""Written last by the export: its presence marks a finished GroundingDINO export."""
GDINO_PROCESSOR_DIR = "grounding_dino_processor"

SAM_ENCODER_FILE = "sam_vision_encoder.onnx"
SAM_DECODER_FILE = "sam_box_decoder.onnx"
SAM_SIDECAR = "sam.json"
"""Written last by the export: its presence marks a finished SAM export."""
SAM_PROCESSOR_DIR = "sam_processor"


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build offers it and a GPU is visible, else CPU.

    ``get_available_providers`` lists CUDA whenever the GPU build is installed, even on
    a machine without a GPU, so torch's device check decides (and the session would
    fall back to CPU anyway, as ``GroundingDinoOnnxDetector.providers`` shows).
    """
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and cuda_visible():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def cuda_visible() -> bool:
    """Whether torch sees a usable CUDA device (False without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is part of the detect extra
        return False
    return bool(torch.cuda.is_available())


def make_session(
    path: str | Path, providers: list[str] | None = None, *, threads: int | None = None
):
    """An InferenceSession on ``providers`` (default :func:`default_providers`).

    ``threads`` sets onnxruntime's intra-op thread count (default: its own choice).
    """
    import onnxruntime as ort
    import torch  # noqa: F401  (loads the CUDA libraries onnxruntime-gpu shares with torch)

    if not Path(path).is_file():
        raise SpatialAlignError(f"ONNX graph not found: {path}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), opts, providers=providers or default_providers())
