"""The flow-matching sampler as an SDE with Gaussian steps, as in Flow-GRPO.

Wan's scheduler (``FlowMatchEulerDiscreteScheduler``) integrates the ODE ``dx = v ds`` with
Euler steps ``x' = x + (s' - s) v`` from noise level ``s`` to ``s'``. Flow-GRPO turns it into
the reverse-time SDE with the same marginals and diffusion ``sigma_s = eta sqrt(s / (1 - s))``;
its Euler-Maruyama step is a Gaussian with

    mean = x + v ds + (sigma_s^2 / (2 s)) ds (x + (1 - s) v),   ds = s' - s < 0
    std  = sigma_s sqrt(-ds)

(``s = 1``, the first step, uses the next grid level in ``1 - s``, as Flow-GRPO does). With
``eta = 0`` the step is the scheduler's Euler step exactly (the correction is a zero term).
The log-probability of a step is the Gaussian's, averaged over the elements of a sample (Flow-
GRPO's convention: the policy ratio of one step is then ``exp`` of a per-element mean).
"""

from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _per_sample(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[B]`` tensor shaped to broadcast over ``like`` ``[B, ...]`` (float32)."""
    t = torch.as_tensor(t, dtype=torch.float32, device=like.device)
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.dim() else t


def step_std(
    sigma: torch.Tensor | float,
    sigma_next: torch.Tensor | float,
    noise_level: float,
    sigma_cap: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sigma_s, std)``: the SDE's diffusion at ``sigma`` and the step's std to
    ``sigma_next``; ``sigma_cap`` replaces ``sigma`` in ``1 - sigma`` where ``sigma`` is 1."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    sigma_next = torch.as_tensor(sigma_next, dtype=torch.float32, device=sigma.device)
    cap = torch.as_tensor(sigma_cap, dtype=torch.float32, device=sigma.device)
    denom = 1.0 - torch.where(sigma >= 1.0, cap, sigma)
    diffusion = noise_level * torch.sqrt(sigma / denom)
    return diffusion, diffusion * torch.sqrt(sigma - sigma_next)


def step_mean(
    x: torch.Tensor,
    velocity: torch.Tensor,
    sigma: torch.Tensor | float,
    sigma_next: torch.Tensor | float,
    diffusion: torch.Tensor | float,
) -> torch.Tensor:
    """The Gaussian step's mean (float32); ``diffusion`` 0 gives the Euler step
    ``x + (s' - s) v`` bit for bit."""
    x, v = x.float(), velocity.float()
    s, s_next = _per_sample(sigma, x), _per_sample(sigma_next, x)
    dt = s_next - s
    g = _per_sample(diffusion, x)
    euler = x + dt * v
    return euler + (g * g / (2.0 * s)) * dt * (x + (1.0 - s) * v)


def gaussian_log_prob(
    sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float
) -> torch.Tensor:
    """``log N(sample; mean, std^2)`` per element, averaged over all but the first dim
    (``[B]``, float32)."""
    sample, mean = sample.float(), mean.float()
    std = _per_sample(std, sample)
    z = (sample - mean) / std
    lp = -0.5 * z * z - torch.log(std) - LOG_SQRT_2PI
    return lp.flatten(1).mean(dim=1)


def sde_step(
    x: torch.Tensor,
    velocity: torch.Tensor,
    sigma: torch.Tensor | float,
    sigma_next: torch.Tensor | float,
    noise_level: float,
    sigma_cap: torch.Tensor | float,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step from ``sigma`` to ``sigma_next``: ``(x_next, mean, std)``. ``noise`` (standard
    normal, ``x``'s shape) is the step's draw; ``noise_level`` 0 needs none (the ODE step)."""
    diffusion, std = step_std(sigma, sigma_next, noise_level, sigma_cap)
    mean = step_mean(x, velocity, sigma, sigma_next, diffusion.to(x.device))
    if noise_level == 0:
        return mean, mean, std
    if noise is None:
        raise ValueError("an SDE step with noise_level > 0 needs its noise")
    return mean + _per_sample(std.to(x.device), mean) * noise.to(mean), mean, std


def kl_between_steps(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL of two Gaussian steps with the same std (the policy's and the reference's means),
    per element averaged per sample: ``mean((mean - mean_ref)^2) / (2 std^2)`` ``[B]``."""
    diff = (mean.float() - mean_ref.float()).flatten(1).pow(2).mean(dim=1)
    std = torch.as_tensor(std, dtype=torch.float32, device=diff.device).reshape(-1)
    return diff / (2.0 * std * std)
