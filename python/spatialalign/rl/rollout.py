"""Sampling with log-probabilities: the SDE sampler of :mod:`.sde` over a :class:`Policy`.

Each video has its own ``torch.Generator`` seeded with its seed: its first draw is the
initial latents (as ``ToyPipeline.prepare_latents`` and ``WanPipeline`` with one generator
per video draw them, so ``noise_level`` 0 reproduces the ODE sampler's video of that seed),
then one standard-normal draw per step. A video therefore depends on its seed (and the
weights) only, not on the batch it was sampled in. The states of every step are kept:
the update recomputes the step's Gaussian at the states the sampler visited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spatialalign.models.toy.pipeline import constant_context
from spatialalign.rl.policy import Grid, Policy, guided_velocity
from spatialalign.rl.sde import gaussian_log_prob, sde_step


@dataclass
class Trajectories:
    """The sampled videos' denoising paths."""

    states: torch.Tensor
    """``[N, T + 1, C, F, h, w]`` float32: the initial noise, then the state after each step."""
    log_probs: torch.Tensor
    """``[N, T]`` float32: each step's log-probability under the sampling policy (per-element
    mean; NaN with ``noise_level`` 0)."""
    grid: Grid

    @property
    def final(self) -> torch.Tensor:
        return self.states[:, -1]


def rollout(
    policy: Policy,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    seeds: Sequence[int],
    *,
    noise_level: float,
    batch_size: int = 64,
) -> Trajectories:
    """Samples one video per ``seeds[i]`` with text embeddings ``cond[i]`` (``uncond[i]``),
    recording every state and step log-probability. Runs under ``inference_mode``."""
    if len(seeds) != cond.shape[0]:
        raise ValueError(f"{cond.shape[0]} text embeddings but {len(seeds)} seeds")
    grid = policy.grid()
    states, log_probs = [], []
    for start in range(0, len(seeds), batch_size):
        sl = slice(start, start + batch_size)
        s, lp = _rollout_batch(policy, grid, cond[sl], None if uncond is None else uncond[sl],
                               list(seeds[sl]), noise_level)  # fmt: skip
        states.append(s)
        log_probs.append(lp)
    return Trajectories(torch.cat(states), torch.cat(log_probs), grid)


def _rollout_batch(
    policy: Policy,
    grid: Grid,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    seeds: list[int],
    noise_level: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = policy.latent_shape()
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    device = policy.device
    x = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
    states, log_probs = [x], []
    n = len(seeds)
    with torch.inference_mode(), constant_context(policy.transformer):
        for j in range(grid.steps):
            t = grid.timesteps[j].expand(n)
            v = guided_velocity(policy.transformer, x, t, cond, uncond, policy.guidance)
            noise = None
            if noise_level > 0:
                noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
            x, mean, std = sde_step(
                x, v, grid.sigmas[j], grid.sigmas[j + 1], noise_level, grid.sigma_cap, noise
            )
            if noise_level > 0:
                log_probs.append(gaussian_log_prob(x, mean, std))
            else:
                log_probs.append(torch.full((n,), float("nan"), device=device))
            states.append(x)
    return torch.stack(states, dim=1).clone(), torch.stack(log_probs, dim=1).clone()


def decode(policy: Policy, final: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """uint8 frames ``[N, F, H, W, 3]`` of the final latents, ``batch_size`` at a time."""
    chunks = [policy.decode(final[i : i + batch_size]) for i in range(0, len(final), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0,), dtype=np.uint8)
