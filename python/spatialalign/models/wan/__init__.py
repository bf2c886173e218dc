"""Wan2.1-specific helpers: loading checkpoints, runtime switches, memory accounting.

* :mod:`~spatialalign.models.wan.layout` — which checkpoint layout a directory holds (diffusers
  ``WanPipeline`` or the original Wan2.1 / DiffSynth files) and what it lacks
* :mod:`~spatialalign.models.wan.original` — the original layout's transformer and VAE through
  diffusers' own key conversions (safetensors; ``.pth`` only with ``weights_only=True``)
* :mod:`~spatialalign.models.wan.loading` — :func:`load_wan_pipeline` for either layout
* :mod:`~spatialalign.models.wan.runtime` — VAE tiling/slicing, CPU offload, attention backend,
  ``torch.compile``
* :mod:`~spatialalign.models.wan.memory` — token counts and peak-memory measurement (benchmarks)
"""

from spatialalign.models.wan.layout import WanLayout, detect_layout
from spatialalign.models.wan.loading import WanLoadOptions, load_wan_pipeline

__all__ = ["WanLayout", "WanLoadOptions", "detect_layout", "load_wan_pipeline"]
