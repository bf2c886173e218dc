"""Wan's latent geometry and peak-memory measurement (the GPU benchmark and its CPU estimate).

``81x480x832`` frames are ``16x21x60x104`` latents (VAE: 4x in time, 8x in space) and
``21x30x52 = 32,760`` transformer tokens (patch 1x2x2). Peak memory is CUDA's allocator
high-water mark on a GPU; on the CPU it is the process's resident high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs``), meaningful only with glibc returning
large blocks at once (``MALLOC_MMAP_THRESHOLD_`` set small in a fresh process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

VAE_TEMPORAL = 4
VAE_SPATIAL = 8
LATENT_CHANNELS = 16
PATCH = (1, 2, 2)


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """``[C, F', h, w]`` of a ``frames x height x width`` video (Wan needs 4k+1 frames and
    sides divisible by 16)."""
    if frames % VAE_TEMPORAL != 1 or height % 16 or width % 16:
        raise ValueError(
            f"Wan needs 4k+1 frames and sides divisible by 16: {frames}x{height}x{width}"
        )
    return (
        LATENT_CHANNELS,
        (frames - 1) // VAE_TEMPORAL + 1,
        height // VAE_SPATIAL,
        width // VAE_SPATIAL,
    )


def token_count(latent: tuple[int, ...], patch: tuple[int, int, int] = PATCH) -> int:
    """Transformer tokens of one latent ``[C, F', h, w]``."""
    return math.prod(n // p for n, p in zip(latent[1:], patch, strict=True))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


@dataclass
class PeakMemory:
    """Peak bytes above the level at :meth:`start` (``delta``) and in total (``peak``)."""

    device: str
    start_bytes: int = 0
    peak: int = 0
    delta: int = 0
    reserved: int = 0
    """CUDA only: the allocator's reserved high-water mark (what the card must hold)."""

    def start(self) -> PeakMemory:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_bytes = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
            self.start_bytes = _status_kib("VmRSS") * 1024
        return self

    def stop(self) -> PeakMemory:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            self.reserved = torch.cuda.max_memory_reserved()
        else:
            self.peak = _status_kib("VmHWM") * 1024
        self.delta = self.peak - self.start_bytes
        return self
