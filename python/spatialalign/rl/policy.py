"""The model GRPO samples and trains, behind one small interface for toy and Wan.

A :class:`Policy` wraps a sampling back end's pipeline
(:class:`~spatialalign.models.backends.ToyBackend` / ``WanBackend``): it encodes prompts
(and the unconditional input of classifier-free guidance), gives the latent shape and the
scheduler's noise grid, predicts the guided velocity with any transformer call (the LoRA
policy, or the same module with the adapter disabled as the reference) and decodes
latents to uint8 frames. Sampling (:mod:`.rollout`) and the update (:mod:`.update`) both
call :func:`guided_velocity`, so the log-probabilities they compute are of one function.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def guided_velocity(
    transformer: torch.nn.Module,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance: float,
) -> torch.Tensor:
    """The classifier-free-guided velocity ``v_u + g (v_c - v_u)`` (float32) at latents ``x``
    ``[B, ...]`` and per-sample ``timesteps`` ``[B]``: conditional and unconditional inputs in
    one batched forward (as the toy sampler does); ``uncond`` None: the conditional one."""
    frozen = (p.dtype for p in transformer.parameters() if not p.requires_grad)
    dtype = next(frozen, None) or next(transformer.parameters()).dtype  # the base weights'
    if uncond is None:
        return transformer(
            hidden_states=x.to(dtype),
            timestep=timesteps,
            encoder_hidden_states=cond.to(dtype),
            return_dict=False,
        )[0].float()
    v = transformer(
        hidden_states=torch.cat([x, x]).to(dtype),
        timestep=torch.cat([timesteps, timesteps]),
        encoder_hidden_states=torch.cat([cond, uncond]).to(dtype),
        return_dict=False,
    )[0].float()
    v_cond, v_uncond = v.chunk(2)
    return v_uncond + guidance * (v_cond - v_uncond)


@dataclass
class Grid:
    """The sampler's noise levels ``sigmas`` ``[T + 1]`` (from 1 to 0) and the transformer's
    ``timesteps`` ``[T]`` (float32, on the policy's device)."""

    sigmas: torch.Tensor
    timesteps: torch.Tensor

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])

    @property
    def sigma_cap(self) -> float:
        """What replaces ``s = 1`` in ``1 - s`` (the second level, as in Flow-GRPO)."""
        return float(self.sigmas[1]) if self.steps > 1 else 0.5


class Policy:
    """A back end's pipeline as GRPO needs it (see the module doc)."""

    model: str
    lossless: bool

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.toy = hasattr(backend, "pipeline")
        """A toy-family back end (a ``ToyPipeline``); else a ``WanPipeline``'s."""
        self.model = backend.model
        self.lossless = bool(backend.lossless)
        self.fps = backend.fps
        self.steps = int(backend.steps)

    @property
    def pipe(self) -> Any:
        return self.backend.pipeline if self.toy else self.backend.pipe

    @property
    def transformer(self) -> torch.nn.Module:
        return self.pipe.transformer

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def guidance(self) -> float:
        g = self.backend.guidance
        return 5.0 if g is None else float(g)  # WanPipeline's default when unset

    def grid(self) -> Grid:
        """The scheduler's levels for ``steps`` steps (a copy: the pipeline's is untouched)."""
        scheduler = copy.deepcopy(self.pipe.scheduler)
        scheduler.set_timesteps(self.steps, device=self.device)
        return Grid(scheduler.sigmas.float().to(self.device), scheduler.timesteps.float())

    def latent_shape(self) -> tuple[int, ...]:
        """``(C, F, h, w)`` of one video's latents."""
        if self.toy:
            return tuple(self.pipe.latent_shape)
        pipe, b = self.pipe, self.backend
        frames = (b.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        s = pipe.vae_scale_factor_spatial
        return (pipe.transformer.config.in_channels, frames, b.height // s, b.width // s)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(cond, uncond)`` text embeddings of ``texts`` (``uncond`` None without guidance):
        the empty caption for the toy model, the negative prompt for Wan."""
        cfg = self.guidance > 1.0
        if self.toy:
            cond = self.pipe.encode_prompt(texts)
            return cond, self.pipe.encode_prompt([""] * len(texts)) if cfg else None
        b = self.backend
        cond, uncond = self.pipe.encode_prompt(
            prompt=list(texts),
            negative_prompt=[b.negative_prompt] * len(texts),
            do_classifier_free_guidance=cfg,
            max_sequence_length=b.max_sequence_length,
            device=self.device,
        )
        return cond, uncond if cfg else None

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames ``[B, F, H, W, 3]`` of denoised latents (as the pipeline decodes)."""
        if self.toy:
            return np.asarray(self.pipe.vae.decode_frames(latents))
        vae = self.pipe.vae
        lat = latents.to(next(vae.parameters()).device, dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(lat)
        std = torch.tensor(vae.config.latents_std).view(shape).to(lat)
        video = vae.decode(lat * std + mean, return_dict=False)[0]
        frames = self.pipe.video_processor.postprocess_video(video, output_type="np")
        return (np.clip(np.asarray(frames, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
