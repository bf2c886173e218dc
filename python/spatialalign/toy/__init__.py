"""The toy world: a procedural DSR video renderer and the toy T2V model.

Its colour detector is :mod:`spatialalign.detection.color`, beside the other detectors.
"""

from spatialalign.toy.viz import clip_grid, save_clip_grid
from spatialalign.toy.world import Clip, ToyWorldConfig, render_batch, render_clip

__all__ = [
    "Clip",
    "ToyWorldConfig",
    "clip_grid",
    "render_batch",
    "render_clip",
    "save_clip_grid",
    "ToyPipeline",
]


def __getattr__(name: str):
    # the toy T2V model needs torch/diffusers: import it only when asked for
    if name == "ToyPipeline":
        from spatialalign.models.toy.pipeline import ToyPipeline

        return ToyPipeline
    raise AttributeError(f"module 'spatialalign.toy' has no attribute {name!r}")
