"""The toy "VAE": a small per-frame convolutional autoencoder, shaped like Wan's VAE.

Frames ``[B, 3, F, H, W]`` in [-1, 1] map to latents ``[B, C, F, H/2, W/2]`` (no temporal
compression: toy clips are short). As with ``AutoencoderKLWan`` the raw latents are
normalised per channel with ``latents_mean`` / ``latents_std`` stored in the config, so the
diffusion model sees roughly unit-variance latents; ``encode``/``decode`` return diffusers'
output types so code written for Wan's VAE reads the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from torch import nn


@dataclass
class ToyCodecConfig:
    """Architecture of the toy autoencoder and its latent normalisation statistics."""

    in_channels: int = 3
    latent_channels: int = 4
    hidden_channels: int = 32
    downsample: int = 2
    """Spatial reduction factor (a power of two)."""
    latents_mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    latents_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ToyCodecConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class _DeterministicLatents:
    """The encoder's 'latent distribution': a point mass (``mode() == sample()``)."""

    def __init__(self, latents: torch.Tensor) -> None:
        self.mean = latents

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean


class ToyCodec(nn.Module):
    """Per-frame conv autoencoder; ``[B, C, F, H, W]`` video tensors like diffusers' Wan VAE."""

    def __init__(self, config: ToyCodecConfig | None = None) -> None:
        super().__init__()
        self.config = config or ToyCodecConfig()
        c, h, z = self.config.in_channels, self.config.hidden_channels, self.config.latent_channels
        if len(self.config.latents_mean) != z or len(self.config.latents_std) != z:
            raise ValueError("latents_mean/latents_std need one value per latent channel")
        n_down = int(np.log2(self.config.downsample))
        if 2**n_down != self.config.downsample:
            raise ValueError("downsample must be a power of two")
        enc: list[nn.Module] = [nn.Conv2d(c, h, 3, padding=1), nn.SiLU()]
        for _ in range(n_down):
            enc += [nn.Conv2d(h, h, 3, stride=2, padding=1), nn.SiLU()]
        enc += [nn.Conv2d(h, h, 3, padding=1), nn.SiLU(), nn.Conv2d(h, z, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(z, h, 3, padding=1), nn.SiLU()]
        dec += [nn.Conv2d(h, h, 3, padding=1), nn.SiLU()]
        for _ in range(n_down):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(h, h, 3, padding=1)]
            dec += [nn.SiLU()]
        dec += [nn.Conv2d(h, c, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer(
            "latents_mean", torch.tensor(self.config.latents_mean, dtype=torch.float32)
        )
        self.register_buffer(
            "latents_std", torch.tensor(self.config.latents_std, dtype=torch.float32)
        )

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def spatial_compression_ratio(self) -> int:
        return self.config.downsample

    def _per_frame(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        y = net(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
        return y.reshape(b, f, *y.shape[1:]).permute(0, 2, 1, 3, 4)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """Raw (unnormalised) latents of frames ``x`` in [-1, 1], ``[B, 3, F, H, W]``."""
        z = self._per_frame(self.encoder, x)
        dist = _DeterministicLatents(z)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """Frames in about [-1, 1] from raw latents ``[B, C, F, h, w]``."""
        x = self._per_frame(self.decoder, z)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x).latent_dist.mode()).sample

    # normalisation, as WanPipeline applies latents_mean / latents_std
    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return self.latents_mean.view(shape).to(z), self.latents_std.view(shape).to(z)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Stores per-channel statistics (measured on training latents) in buffers and config."""
        self.latents_mean.copy_(mean.float())
        self.latents_std.copy_(std.float().clamp_min(1e-6))
        self.config.latents_mean = [float(v) for v in self.latents_mean]
        self.config.latents_std = [float(v) for v in self.latents_std]

    # uint8 conveniences used by the pipeline, pretraining and the training cache
    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, F, H, W, 3]`` -> normalised latents ``[B, C, F, h, w]`` (float32)."""
        x = frames_to_tensor(frames).to(self.latents_mean.device)
        return self.normalize(self.encode(x).latent_dist.mode())

    @torch.no_grad()
    def decode_frames(self, latents: torch.Tensor) -> np.ndarray:
        """Normalised latents ``[B, C, F, h, w]`` -> uint8 ``[B, F, H, W, 3]``."""
        x = self.decode(self.denormalize(latents.float())).sample
        return tensor_to_frames(x)


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, F, H, W, 3]`` -> float ``[B, 3, F, H, W]`` in [-1, 1]."""
    t = torch.as_tensor(np.asarray(frames) if not torch.is_tensor(frames) else frames)
    if t.ndim != 5 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [B, F, H, W, 3], got shape {tuple(t.shape)}")
    return t.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float ``[B, 3, F, H, W]`` in [-1, 1] -> uint8 ``[B, F, H, W, 3]`` (rounded, clipped)."""
    y = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 4, 1).contiguous().numpy()
