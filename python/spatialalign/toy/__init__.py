"""The toy world: a procedural DSR video renderer, its colour detector and the toy T2V model."""

from spatialalign.toy.world import Clip, ToyWorldConfig, render_batch, render_clip

__all__ = [
    "Clip",
    "ToyWorldConfig",
    "render_batch",
    "render_clip",
]
