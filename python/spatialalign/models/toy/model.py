"""The toy denoiser: diffusers' ``WanTransformer3DModel`` at toy scale.

``ToyWanTransformer3DModel`` *is* a ``WanTransformer3DModel`` (same module names, so the
SpatialAlign LoRA targets ``condition_embedder.text_embedder.linear_1/2`` and
``blocks.N.attn2.to_k/to_v`` exist) plus one addition: a learned absolute position
embedding over the (frame, row, column) token grid, added to the patch embeddings. Wan
itself only has rotary (relative) positions; a model with a few hundred thousand
parameters trained for CPU minutes cannot infer which frame is the first or the last
from relative positions alone, and "initial" vs "final" relation is exactly that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers import WanTransformer3DModel
from torch import nn


@dataclass
class ToyTransformerConfig:
    """The tiny Wan config (see ``WanTransformer3DModel``) plus the token grid size."""

    in_channels: int = 4
    out_channels: int = 4
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    text_dim: int = 64
    freq_dim: int = 64
    ffn_dim: int = 512
    num_layers: int = 4
    cross_attn_norm: bool = True
    qk_norm: str = "rms_norm_across_heads"
    rope_max_seq_len: int = 64
    pos_grid: tuple[int, int, int] | None = (9, 4, 4)
    """(frames, rows, cols) of the patch-token grid for the learned absolute position
    embedding; None gives a plain Wan transformer (rotary positions only)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["pos_grid"] = list(self.pos_grid) if self.pos_grid is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ToyTransformerConfig:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["patch_size"] = tuple(kw.get("patch_size", (1, 2, 2)))
        if kw.get("pos_grid") is not None:
            kw["pos_grid"] = tuple(kw["pos_grid"])
        return cls(**kw)


class ToyWanTransformer3DModel(WanTransformer3DModel):
    """``WanTransformer3DModel`` + a learned absolute (t, h, w) position embedding."""

    def __init__(self, *args, pos_grid: tuple[int, int, int] | list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_to_config(pos_grid=list(pos_grid) if pos_grid is not None else None)
        if pos_grid is not None:
            dim = self.config.num_attention_heads * self.config.attention_head_dim
            self.pos_embed = nn.Parameter(torch.zeros(1, dim, *pos_grid))
            nn.init.normal_(self.pos_embed, std=0.02)
            self.patch_embedding.register_forward_hook(self._add_pos_embed)
        else:
            self.pos_embed = None

    def _add_pos_embed(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        f, h, w = output.shape[2:]
        gf, gh, gw = self.pos_embed.shape[2:]
        if f > gf or h > gh or w > gw:
            raise ValueError(
                f"latent token grid {f}x{h}x{w} exceeds the position grid {gf}x{gh}x{gw}"
            )
        return output + self.pos_embed[:, :, :f, :h, :w].to(output.dtype)


def build_transformer(config: ToyTransformerConfig) -> ToyWanTransformer3DModel:
    """A freshly initialised toy transformer from its config."""
    kw = config.to_dict()
    kw["patch_size"] = tuple(kw["patch_size"])
    pos_grid = kw.pop("pos_grid")
    return ToyWanTransformer3DModel(pos_grid=pos_grid, **kw)
